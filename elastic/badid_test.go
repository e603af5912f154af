package elastic_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/internal/testenv"
)

// TestTableLoaderCheckID: an integer key accepts its range written as
// PostgreSQL writes it; other key types accept any id.
func TestTableLoaderCheckID(t *testing.T) {
	t.Parallel()
	db := testenv.SQL(t, testenv.Schema(t))
	ctx := context.Background()
	_, err := db.ExecContext(ctx, `CREATE TABLE small (id smallint PRIMARY KEY);
		CREATE TABLE medium (id integer PRIMARY KEY);
		CREATE TABLE big (id bigint PRIMARY KEY);
		CREATE TABLE named (id text PRIMARY KEY)`)
	must(t, err)
	for _, tc := range []struct {
		table string
		ok    []string
		bad   []string
	}{
		{"small", []string{"0", "-32768", "32767"}, []string{"32768", "abc", "1.0", "07", "-0", " 1", ""}},
		{"medium", []string{"2147483647", "-5"}, []string{"2147483648", "1e3"}},
		{"big", []string{"9223372036854775807", "-9223372036854775808"}, []string{"9223372036854775808", "18446744073709551615", "1\x002", "+1"}},
		{"named", []string{"abc", "07", "", "1\x002"}, nil},
	} {
		l, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: tc.table})
		must(t, err)
		for _, id := range tc.ok {
			if err := l.CheckID(id); err != nil {
				t.Errorf("%s: CheckID(%q) = %v, want nil", tc.table, id, err)
			}
		}
		for _, id := range tc.bad {
			if err := l.CheckID(id); err == nil {
				t.Errorf("%s: CheckID(%q) = nil, want an error", tc.table, id)
			}
		}
	}
}

// sqlStateError is an error as PostgreSQL drivers report one.
type sqlStateError struct{ code, msg string }

func (e *sqlStateError) Error() string    { return e.msg + " (SQLSTATE " + e.code + ")" }
func (e *sqlStateError) SQLState() string { return e.code }

// TestHandlerIsolatesDataExceptions: a Loader whose query fails with a data
// exception for some ids gets the batch again in halves; the ids that fail
// alone are dead-lettered with the database's error, the others are
// written. Any other error fails the batch.
func TestHandlerIsolatesDataExceptions(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		es := tg.es
		index := "t-isolate-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
		t.Cleanup(func() { deleteIndex(es, index) })
		var (
			mu    sync.Mutex
			calls int
			fail  error // when set, every Load fails with it
		)
		loader := elastic.LoaderFunc(func(_ context.Context, ids []string) ([]elastic.Document, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if fail != nil {
				return nil, fail
			}
			var docs []elastic.Document
			for _, id := range ids {
				if strings.HasPrefix(id, "bad") {
					return nil, fmt.Errorf("load: %w", &sqlStateError{"22P02", fmt.Sprintf("invalid input syntax for type bigint: %q", id)})
				}
				docs = append(docs, elastic.Document{ID: id, Source: json.RawMessage(`{"n":` + id + `}`)})
			}
			return docs, nil
		})
		h, err := elastic.NewHandler(es, loader, &elastic.Options{Index: index, Refresh: "true"})
		must(t, err)
		var msgs []redstream.Message
		for i, id := range []string{"1", "bad1", "2", "3", "4", "bad2", "5", "6"} {
			msgs = append(msgs, redstream.Message{ID: redstream.ID{MS: 1, Seq: uint64(i)}, Payload: json.RawMessage(fmt.Sprintf(`{"id":%q}`, id))})
		}
		b := &redstream.Batch{Stream: "products", Messages: msgs}
		must(t, h.HandleBatch(context.Background(), b))
		dead := b.DeadLettered()
		if len(dead) != 2 {
			t.Fatalf("dead-lettered %v, want the two bad ids", dead)
		}
		for _, i := range []int{1, 5} {
			var idErr *elastic.IDError
			err := dead[msgs[i].ID]
			if !errors.As(err, &idErr) || !strings.HasPrefix(idErr.ID, "bad") || !strings.Contains(err.Error(), "(SQLSTATE 22P02)") {
				t.Errorf("message %d: reason %v, want an IDError with the database's message", i, err)
			}
		}
		for _, id := range []string{"1", "2", "3", "4", "5", "6"} {
			if _, _, found := doc(t, es, index, id); !found {
				t.Errorf("document %s not written", id)
			}
		}
		if calls > 12 {
			t.Errorf("%d loads for 8 ids, two bad", calls)
		}

		// Not a data exception: the batch fails, nothing is dead-lettered.
		mu.Lock()
		fail = errors.New("connection refused")
		mu.Unlock()
		b = &redstream.Batch{Stream: "products", Messages: msgs}
		if err := h.HandleBatch(context.Background(), b); err == nil {
			t.Fatal("a failing Loader did not fail the batch")
		}
		if dead := b.DeadLettered(); len(dead) != 0 {
			t.Errorf("dead-lettered %v on a connection error", dead)
		}
	})
}
