package elastic_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// insertProducts inserts products from..to with raw SQL (nothing is
// queued), each titled "p<id>".
func insertProducts(t *testing.T, db *sql.DB, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		_, err := db.Exec("INSERT INTO products (id, title, price, updated_at) VALUES ($1, $2, $3, now())", i, fmt.Sprint("p", i), i)
		must(t, err)
	}
}

// recorder is a redstream.Handler that keeps the batches it is handed;
// failAt, when positive, makes the failAt-th call fail.
type recorder struct {
	mu      sync.Mutex
	batches []*redstream.Batch
	failAt  int
	calls   int
}

var errHandler = errors.New("handler down")

func (r *recorder) HandleBatch(_ context.Context, b *redstream.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.calls == r.failAt {
		return errHandler
	}
	r.batches = append(r.batches, b)
	return nil
}

// pages returns the payloads of each batch, one page per string.
func (r *recorder) pages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, b := range r.batches {
		var p []string
		for _, m := range b.Messages {
			p = append(p, string(m.Payload))
		}
		out = append(out, strings.Join(p, " "))
	}
	return out
}

// memCursor is a Cursor in memory.
type memCursor struct {
	key   string
	ok    bool
	saves []string
}

func (c *memCursor) Load(context.Context) (string, bool, error) { return c.key, c.ok, nil }
func (c *memCursor) Save(_ context.Context, key string) error {
	c.key, c.ok = key, true
	c.saves = append(c.saves, key)
	return nil
}
func (c *memCursor) Clear(context.Context) error { c.key, c.ok = "", false; return nil }

// TestBackfillPages walks a whole table in key order, ending with a short
// page, and hands each page over as a batch of {"id":"<key>"} messages.
func TestBackfillPages(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	db := s.sqlDB(t)
	ctx := context.Background()
	insertProducts(t, db, 1, 10)

	var progress []string
	r := &recorder{}
	res, err := elastic.Backfill(ctx, db, r, elastic.BackfillOptions{
		Table: "products", PageSize: 3, Stream: "catalog",
		Progress: func(rows, total int64) { progress = append(progress, fmt.Sprintf("%d/%d", rows, total)) },
	})
	must(t, err)
	if got, want := res, (elastic.BackfillResult{Rows: 10, Last: "10"}); got != want {
		t.Errorf("result = %+v, want %+v", got, want)
	}
	want := []string{
		`{"id":"1"} {"id":"2"} {"id":"3"}`,
		`{"id":"4"} {"id":"5"} {"id":"6"}`,
		`{"id":"7"} {"id":"8"} {"id":"9"}`,
		`{"id":"10"}`, // the last page holds 1 row
	}
	if got := r.pages(); !slices.Equal(got, want) {
		t.Errorf("pages =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got, want := strings.Join(progress, " "), "3/10 6/10 9/10 10/10"; got != want {
		t.Errorf("progress = %s, want %s", got, want)
	}
	b := r.batches[0]
	if b.Stream != "catalog" || b.Consumer != "backfill" || b.Attempt != 1 {
		t.Errorf("batch stream %q consumer %q attempt %d, want catalog, backfill, 1", b.Stream, b.Consumer, b.Attempt)
	}
	for i, m := range b.Messages {
		if m.Stream != "catalog" || m.ID != (redstream.ID{Seq: uint64(i) + 1}) {
			t.Errorf("message %d: stream %q id %v", i, m.Stream, m.ID)
		}
	}

	// 11 rows: the last page holds 2.
	insertProducts(t, db, 11, 11)
	r = &recorder{}
	res, err = elastic.Backfill(ctx, db, r, elastic.BackfillOptions{Table: "products", PageSize: 3})
	must(t, err)
	if got := r.pages(); res.Rows != 11 || len(got) != 4 || got[3] != `{"id":"10"} {"id":"11"}` {
		t.Errorf("11 rows: result %+v, pages %q", res, got)
	}
	if r.batches[0].Stream != "products" {
		t.Errorf("default stream %q, want the table's name", r.batches[0].Stream)
	}
}

// TestBackfillRange walks the keys above From up to To, in key order
// (not text order: 10 comes after 9).
func TestBackfillRange(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	db := s.sqlDB(t)
	insertProducts(t, db, 1, 12)
	r := &recorder{}
	res, err := elastic.Backfill(context.Background(), db, r, elastic.BackfillOptions{
		Table: "products", From: "7", To: "10", PageSize: 2,
	})
	must(t, err)
	want := []string{`{"id":"8"} {"id":"9"}`, `{"id":"10"}`}
	if got := r.pages(); res.Rows != 3 || !slices.Equal(got, want) {
		t.Errorf("result %+v, pages %q; want 3 rows in %q", res, got, want)
	}
}

// TestBackfillResume stops at a failing page, leaving the cursor after
// the last page done, and a second run resumes there and clears it.
func TestBackfillResume(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	db := s.sqlDB(t)
	ctx := context.Background()
	insertProducts(t, db, 1, 10)
	cur := &memCursor{}

	r := &recorder{failAt: 3}
	res, err := elastic.Backfill(ctx, db, r, elastic.BackfillOptions{Table: "products", PageSize: 3, Cursor: cur})
	if !errors.Is(err, errHandler) || !strings.Contains(err.Error(), `after key "6"`) {
		t.Fatalf("error = %v, want the handler's, naming the page after key 6", err)
	}
	if res.Rows != 6 || res.Last != "6" || !cur.ok || cur.key != "6" {
		t.Fatalf("after the failure: result %+v, cursor %q (%v); want 6 rows and 6", res, cur.key, cur.ok)
	}

	var progress []string
	r = &recorder{}
	res, err = elastic.Backfill(ctx, db, r, elastic.BackfillOptions{
		Table: "products", PageSize: 3, Cursor: cur, From: "1", // the cursor wins over From
		Progress: func(rows, total int64) { progress = append(progress, fmt.Sprintf("%d/%d", rows, total)) },
	})
	must(t, err)
	want := []string{`{"id":"7"} {"id":"8"} {"id":"9"}`, `{"id":"10"}`}
	if got := r.pages(); res.Rows != 4 || !slices.Equal(got, want) {
		t.Errorf("resumed: result %+v, pages %q; want %q", res, got, want)
	}
	if got, want := strings.Join(progress, " "), "3/4 4/4"; got != want {
		t.Errorf("resumed progress = %s, want %s (the rows left)", got, want)
	}
	if got, want := strings.Join(cur.saves, " "), "3 6 9 10"; got != want {
		t.Errorf("cursor saves = %s, want %s", got, want)
	}
	if cur.ok {
		t.Errorf("cursor %q left after a finished run", cur.key)
	}
}

// TestBackfillRedisCursor resumes from a cursor kept in Redis, indexing
// with the package's Handler, and removes it when done.
func TestBackfillRedisCursor(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg)
		db := s.sqlDB(t)
		ctx := context.Background()
		insertProducts(t, db, 1, 6)
		_, err := db.Exec("UPDATE products SET deleted_at = now() WHERE id = 6")
		must(t, err)
		loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "products", SoftDeleteColumn: "deleted_at"})
		must(t, err)
		h, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index})
		must(t, err)

		key := s.keys.Backfill("products", s.index)
		must(t, s.rdb.Set(ctx, key, "2", 0).Err())
		cur := elastic.RedisCursor(s.rdb, key)
		if got, ok, err := cur.Load(ctx); err != nil || !ok || got != "2" {
			t.Fatalf("Load = %q, %v, %v; want 2", got, ok, err)
		}
		res, err := elastic.Backfill(ctx, db, h, elastic.BackfillOptions{Table: "products", PageSize: 2, Cursor: cur})
		must(t, err)
		if res.Rows != 4 || res.Last != "6" || res.DeadLettered != 0 {
			t.Errorf("result = %+v, want 4 rows up to 6", res)
		}
		for id := 1; id <= 6; id++ {
			_, _, found := s.doc(t, fmt.Sprint(id))
			if want := id >= 3 && id <= 5; found != want {
				t.Errorf("document %d indexed = %v, want %v", id, found, want)
			}
		}
		if st := h.Stats(); st.Indexed != 3 || st.Deleted != 1 {
			t.Errorf("handler stats = %+v, want 3 indexed and 1 deleted (soft-deleted row 6)", st)
		}
		if n, err := s.rdb.Exists(ctx, key).Result(); err != nil || n != 0 {
			t.Errorf("cursor left after a finished run: %d, %v", n, err)
		}
		if _, ok, err := cur.Load(ctx); err != nil || ok {
			t.Errorf("Load after the run = %v, %v; want none", ok, err)
		}
	})
}

// TestBackfillTextKey walks a text primary key in its collation's order,
// and quotes each key in its payload.
func TestBackfillTextKey(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	db := s.sqlDB(t)
	_, err := db.Exec(`CREATE TABLE skus (code text COLLATE "C" PRIMARY KEY)`)
	must(t, err)
	_, err = db.Exec(`INSERT INTO skus VALUES ('b'), ('a"1'), ('c'), ('<x>')`)
	must(t, err)
	r := &recorder{}
	_, err = elastic.Backfill(context.Background(), db, r, elastic.BackfillOptions{Table: "skus", PrimaryKey: "code", PageSize: 3})
	must(t, err)
	want := []string{`{"id":"\u003cx\u003e"} {"id":"a\"1"} {"id":"b"}`, `{"id":"c"}`}
	if got := r.pages(); !slices.Equal(got, want) {
		t.Errorf("pages = %q, want %q", got, want)
	}
}

func TestBackfillErrors(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	db := s.sqlDB(t)
	ctx := context.Background()
	r := &recorder{}
	for _, tc := range []struct {
		name string
		db   *sql.DB
		h    redstream.Handler
		opts elastic.BackfillOptions
		want string
	}{
		{"no table", db, r, elastic.BackfillOptions{}, "Table"},
		{"no handler", db, nil, elastic.BackfillOptions{Table: "products"}, "handler"},
		{"no database", nil, r, elastic.BackfillOptions{Table: "products"}, "database"},
		{"negative page", db, r, elastic.BackfillOptions{Table: "products", PageSize: -1}, "PageSize"},
		{"missing table", db, r, elastic.BackfillOptions{Table: "nope"}, "nope"},
		{"missing key", db, r, elastic.BackfillOptions{Table: "products", PrimaryKey: "sku"}, "sku"},
	} {
		if _, err := elastic.Backfill(ctx, tc.db, tc.h, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.want)
		}
	}
}
