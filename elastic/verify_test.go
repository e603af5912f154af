package elastic_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// indexed backfills the table into the setup's index with a handler that
// refreshes, so that searches see the documents at once.
func (s *engineSetup) indexed(t *testing.T, db *sql.DB, opts elastic.TableOptions) (*elastic.TableLoader, *elastic.Handler) {
	t.Helper()
	ctx := context.Background()
	loader, err := elastic.NewTableLoader(ctx, db, opts)
	must(t, err)
	h, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index, Refresh: "true"})
	must(t, err)
	_, err = elastic.Backfill(ctx, db, h, elastic.BackfillOptions{Table: opts.Table, PrimaryKey: opts.PrimaryKey})
	must(t, err)
	return loader, h
}

// put writes a document straight to the setup's index, refreshed.
func (s *engineSetup) put(t *testing.T, id, body string) {
	t.Helper()
	res, err := esapi.IndexRequest{Index: s.index, DocumentID: id, Body: strings.NewReader(body), Refresh: "true"}.Do(context.Background(), s.es)
	must(t, err)
	defer res.Body.Close()
	if res.IsError() {
		t.Fatalf("index %s/%s: %s", s.index, id, res)
	}
}

func sampleIs(s elastic.IDSample, count int64, first ...string) bool {
	return s.Count == count && slices.Equal(s.First, first)
}

// TestVerify compares a table with its index: in sync; then a missing, two
// extra (a row soft-deleted, a document without row) and a stale document
// are reported, in key order, and repaired.
func TestVerify(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg)
		db := s.sqlDB(t)
		ctx := context.Background()
		insertProducts(t, db, 1, 10)
		_, err := db.Exec("UPDATE products SET deleted_at = now() WHERE id = 10")
		must(t, err)
		loader, h := s.indexed(t, db, elastic.TableOptions{Table: "products", SoftDeleteColumn: "deleted_at", VersionColumn: "updated_at"})
		// Pages of 3 make every walk take several pages.
		opts := elastic.VerifyOptions{Table: "products", Index: s.index, PageSize: 3}

		rep, err := elastic.Verify(ctx, db, s.es, loader, opts)
		must(t, err)
		if !rep.InSync() || rep.Rows != 10 || rep.Documents != 9 || !rep.Versioned || rep.KeyField != "id" || rep.Repaired != 0 {
			t.Fatalf("in sync: report %+v", rep)
		}

		// Row 11 is never indexed (missing); row 5 is soft-deleted and document
		// 999 has no row (extra); row 3 changed (stale).
		for _, q := range []string{
			"INSERT INTO products (id, title, price, updated_at) VALUES (11, 'p11', 11, now())",
			"UPDATE products SET deleted_at = now(), updated_at = now() WHERE id = 5",
			"UPDATE products SET title = 'changed', updated_at = updated_at + interval '1 second' WHERE id = 3",
		} {
			_, err := db.Exec(q)
			must(t, err)
		}
		s.put(t, "999", `{"id":999,"title":"orphan","price":1}`)

		var queued []any
		differ := opts
		differ.Sample = 1
		differ.Repair = func(_ context.Context, ids []any) error { queued = append(queued, ids...); return nil }
		rep, err = elastic.Verify(ctx, db, s.es, loader, differ)
		must(t, err)
		if rep.InSync() || rep.Rows != 11 || rep.Documents != 10 {
			t.Errorf("differences: report %+v", rep)
		}
		if !sampleIs(rep.Missing, 1, "11") || !sampleIs(rep.Extra, 2, "5") || !sampleIs(rep.Stale, 1, "3") {
			t.Errorf("missing %+v, extra %+v, stale %+v; want 1 (11), 2 (5 …), 1 (3)", rep.Missing, rep.Extra, rep.Stale)
		}
		// Walk order; integer keys as json.Number, for {"id":3} payloads.
		if want := []any{json.Number("3"), json.Number("11"), json.Number("5"), json.Number("999")}; !slices.Equal(queued, want) || rep.Repaired != 4 {
			t.Errorf("repair got %#v (repaired %d), want %#v", queued, rep.Repaired, want)
		}

		// The default sample lists every id here; a negative one none.
		differ.Repair = nil
		differ.Sample = 0
		if rep, err = elastic.Verify(ctx, db, s.es, loader, differ); err != nil || !sampleIs(rep.Extra, 2, "5", "999") {
			t.Errorf("default sample: extra %+v, %v", rep.Extra, err)
		}
		differ.Sample = -1
		if rep, err = elastic.Verify(ctx, db, s.es, loader, differ); err != nil || !sampleIs(rep.Extra, 2) {
			t.Errorf("no sample: extra %+v, %v", rep.Extra, err)
		}

		// Reindex repairs at once: the next run finds the two in sync.
		fix := opts
		fix.Repair = elastic.Reindex(h, "products")
		if rep, err = elastic.Verify(ctx, db, s.es, loader, fix); err != nil || rep.InSync() || rep.Repaired != 4 {
			t.Fatalf("repairing run: report %+v, %v; want 4 repaired", rep, err)
		}
		rep, err = elastic.Verify(ctx, db, s.es, loader, opts)
		must(t, err)
		if !rep.InSync() || rep.Rows != 11 || rep.Documents != 9 {
			t.Errorf("after the repair: report %+v", rep)
		}
		if src, _, _ := s.doc(t, "3"); src["title"] != "changed" {
			t.Errorf("document 3 after the repair: %v", src)
		}
	})
}

// TestVerifyWithoutVersion compares presence only when documents have no
// version, and reports a hard-deleted row's document as extra.
func TestVerifyWithoutVersion(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg)
		db := s.sqlDB(t)
		ctx := context.Background()
		insertProducts(t, db, 1, 4)
		loader, _ := s.indexed(t, db, elastic.TableOptions{Table: "products"})
		_, err := db.Exec("UPDATE products SET title = 'changed', updated_at = now() + interval '1 hour' WHERE id = 2")
		must(t, err)
		opts := elastic.VerifyOptions{Table: "products", Index: s.index}
		rep, err := elastic.Verify(ctx, db, s.es, loader, opts)
		must(t, err)
		if !rep.InSync() || rep.Versioned || rep.Rows != 4 || rep.Documents != 4 {
			t.Fatalf("report %+v", rep)
		}
		_, err = db.Exec("DELETE FROM products WHERE id = 4")
		must(t, err)
		if rep, err := elastic.Verify(ctx, db, s.es, loader, opts); err != nil || !sampleIs(rep.Extra, 1, "4") || rep.Missing.Count != 0 {
			t.Errorf("a deleted row: report %+v, %v", rep, err)
		}
	})
}

// TestVerifyNoIndex: with no index yet, every row is missing; Requeue
// queues each id on its shard's stream, as the GORM plugin would.
func TestVerifyNoIndex(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg)
		db := s.sqlDB(t)
		ctx := context.Background()
		insertProducts(t, db, 1, 6)
		loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "products"})
		must(t, err)
		p := mustProducer(s.rdb, &redstream.ProducerOptions{Namespace: s.ns})
		rep, err := elastic.Verify(ctx, db, s.es, loader, elastic.VerifyOptions{
			Table: "products", Index: s.index, Repair: elastic.Requeue(p, "products", 2),
		})
		must(t, err)
		if !sampleIs(rep.Missing, 6, "1", "2", "3", "4", "5", "6") || rep.Documents != 0 || rep.Repaired != 6 || rep.KeyField != "id" {
			t.Fatalf("report %+v", rep)
		}
		var got []string
		for _, shard := range []string{"products-0", "products-1"} {
			msgs, err := s.rdb.XRange(ctx, s.keys.Stream(shard), "-", "+").Result()
			must(t, err)
			for _, m := range msgs {
				payload := fmt.Sprint(m.Values["payload"])
				var v struct{ ID int }
				must(t, json.Unmarshal([]byte(payload), &v))
				if want := redstream.ShardName("products", v.ID, 2); want != shard {
					t.Errorf("%s queued on %s, want %s", payload, shard, want)
				}
				got = append(got, payload)
			}
		}
		slices.Sort(got)
		if want := []string{`{"id":1}`, `{"id":2}`, `{"id":3}`, `{"id":4}`, `{"id":5}`, `{"id":6}`}; !slices.Equal(got, want) {
			t.Errorf("queued %q, want %q", got, want)
		}
	})
}

// TestVerifyKeyField: documents without the key column need a KeyField;
// one without a unique value there is reported as a *KeyFieldError too.
func TestVerifyKeyField(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg)
		db := s.sqlDB(t)
		ctx := context.Background()
		insertProducts(t, db, 1, 5)
		loader, _ := s.indexed(t, db, elastic.TableOptions{Table: "products", Columns: []string{"title", "price"}})
		opts := elastic.VerifyOptions{Table: "products", Index: s.index, PageSize: 2}

		_, err := elastic.Verify(ctx, db, s.es, loader, opts)
		var kf *elastic.KeyFieldError
		if !errors.As(err, &kf) || kf.Field != "id" || kf.Index != s.index || !strings.Contains(err.Error(), "KeyField") {
			t.Fatalf("documents without id: error %v, want a *KeyFieldError on id", err)
		}
		opts.KeyField = "price" // the price is the id
		rep, err := elastic.Verify(ctx, db, s.es, loader, opts)
		if err != nil || !rep.InSync() || rep.Documents != 5 || rep.KeyField != "price" {
			t.Fatalf("KeyField price: report %+v, %v", rep, err)
		}
		s.put(t, "77", `{"title":"twin","price":3}`)
		if _, err := elastic.Verify(ctx, db, s.es, loader, opts); !errors.As(err, &kf) || !strings.Contains(kf.Reason, "unique") {
			t.Errorf("two documents with price 3: error %v, want a *KeyFieldError", err)
		}
	})
}

// TestVerifyTextKey walks an index whose key is mapped as text on its
// keyword sub-field, and keeps ids that are not integers away from the
// queries of an integer key.
func TestVerifyTextKey(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg)
		db := s.sqlDB(t)
		ctx := context.Background()
		_, err := db.Exec(`CREATE TABLE skus (code text PRIMARY KEY, name text)`)
		must(t, err)
		_, err = db.Exec(`INSERT INTO skus VALUES ('a-1', 'one'), ('b-2', 'two'), ('c-3', 'three')`)
		must(t, err)
		loader, _ := s.indexed(t, db, elastic.TableOptions{Table: "skus", PrimaryKey: "code"})
		var repaired []any
		opts := elastic.VerifyOptions{Table: "skus", PrimaryKey: "code", Index: s.index,
			Repair: func(_ context.Context, ids []any) error { repaired = append(repaired, ids...); return nil }}
		rep, err := elastic.Verify(ctx, db, s.es, loader, opts)
		if err != nil || !rep.InSync() || rep.KeyField != "code.keyword" || rep.Documents != 3 {
			t.Fatalf("report %+v, %v", rep, err)
		}
		s.put(t, "z-9", `{"code":"z-9","name":"gone"}`)
		rep, err = elastic.Verify(ctx, db, s.es, loader, opts)
		if err != nil || !sampleIs(rep.Extra, 1, "z-9") || !slices.Equal(repaired, []any{"z-9"}) {
			t.Errorf("extra text key: report %+v, repaired %#v, %v", rep, repaired, err)
		}

		// An integer-keyed index holding a document whose id is not an
		// integer: extra, and never cast by the loader's query.
		s2 := newEngineSetup(t, tg)
		db2 := s2.sqlDB(t)
		insertProducts(t, db2, 1, 2)
		loader2, _ := s2.indexed(t, db2, elastic.TableOptions{Table: "products"})
		s2.put(t, "abc", `{"id":3,"title":"odd"}`)
		rep, err = elastic.Verify(ctx, db2, s2.es, loader2, elastic.VerifyOptions{Table: "products", Index: s2.index})
		if err != nil || !sampleIs(rep.Extra, 1, "abc") || rep.Documents != 3 {
			t.Errorf("non-integer id: report %+v, %v", rep, err)
		}
	})
}

func TestVerifyErrors(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg)
		db := s.sqlDB(t)
		ctx := context.Background()
		loader := elastic.LoaderFunc(func(context.Context, []string) ([]elastic.Document, error) { return nil, nil })
		for _, tc := range []struct {
			name string
			call func() error
			want string
		}{
			{"no table", func() error {
				_, err := elastic.Verify(ctx, db, s.es, loader, elastic.VerifyOptions{Index: "x"})
				return err
			}, "Table"},
			{"no index", func() error {
				_, err := elastic.Verify(ctx, db, s.es, loader, elastic.VerifyOptions{Table: "products"})
				return err
			}, "Index"},
			{"nil client", func() error {
				_, err := elastic.Verify(ctx, db, tg.nilClient(), loader, elastic.VerifyOptions{Table: "products", Index: "x"})
				return err
			}, "client"},
			{"page too large", func() error {
				_, err := elastic.Verify(ctx, db, s.es, loader, elastic.VerifyOptions{Table: "products", Index: "x", PageSize: 10001})
				return err
			}, "PageSize"},
			{"missing table", func() error {
				_, err := elastic.Verify(ctx, db, s.es, loader, elastic.VerifyOptions{Table: "nope", Index: "x"})
				return err
			}, "nope"},
			{"failing repair", func() error {
				insertProducts(t, db, 1, 1)
				loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "products"})
				must(t, err)
				_, err = elastic.Verify(ctx, db, s.es, loader, elastic.VerifyOptions{Table: "products", Index: s.index,
					Repair: func(context.Context, []any) error { return errHandler }})
				if !errors.Is(err, errHandler) {
					return fmt.Errorf("not the repair's error: %w", err)
				}
				return err
			}, errHandler.Error()},
		} {
			if err := tc.call(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.want)
			}
		}
	})
}
