package elastic_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/elastic/estest"
	"github.com/redstream-go/redstream/internal/testenv"
)

// exampleDB opens the test database in a fresh schema, runs stmts there,
// and returns a function that drops the schema.
func exampleDB(stmts ...string) (db *sql.DB, cleanup func()) {
	schema := "ex_" + testenv.RandomHex(6)
	if err := testenv.AdminExec(testenv.DatabaseURL(), "CREATE SCHEMA "+schema, 10*time.Second); err != nil {
		log.Fatal(err)
	}
	dsn, err := testenv.WithSearchPath(testenv.DatabaseURL(), schema)
	if err != nil {
		log.Fatal(err)
	}
	db, err = sql.Open("pgx", dsn)
	if err != nil {
		log.Fatal(err)
	}
	for _, stmt := range stmts {
		if _, err := db.Exec(stmt); err != nil {
			log.Fatal(err)
		}
	}
	return db, func() {
		db.Close()
		if err := testenv.AdminExec(testenv.DatabaseURL(), "DROP SCHEMA "+schema+" CASCADE", time.Minute); err != nil {
			log.Print(err)
		}
	}
}

// exampleES starts a test server and returns a client for it.
func exampleES() (*estest.Server, *elasticsearch.Client) {
	srv := estest.NewServer()
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{srv.URL}})
	if err != nil {
		log.Fatal(err)
	}
	return srv, es
}

// A Handler writes what a Loader reads: here a Go function stands in for
// the database, and the test server for Elasticsearch.
func ExampleHandler() {
	srv := estest.NewServer()
	defer srv.Close()
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{srv.URL}})
	if err != nil {
		log.Fatal(err)
	}

	rows := map[string]string{"1": `{"title":"tea"}`} // record 2 is gone
	loader := elastic.LoaderFunc(func(ctx context.Context, ids []string) ([]elastic.Document, error) {
		var docs []elastic.Document
		for _, id := range ids {
			if src, ok := rows[id]; ok {
				docs = append(docs, elastic.Document{ID: id, Source: json.RawMessage(src)})
			}
		}
		return docs, nil
	})
	h, err := elastic.NewHandler(es, loader, &elastic.Options{Index: "products"})
	if err != nil {
		log.Fatal(err)
	}
	batch := &redstream.Batch{Stream: "products", Messages: []redstream.Message{
		{ID: redstream.MustParseID("1-0"), Payload: json.RawMessage(`{"id":1}`)},
		{ID: redstream.MustParseID("1-1"), Payload: json.RawMessage(`{"id":2}`)},
		{ID: redstream.MustParseID("1-2"), Payload: json.RawMessage(`{"id":1}`)},
	}}
	if err := h.HandleBatch(context.Background(), batch); err != nil {
		log.Fatal(err)
	}
	st := h.Stats()
	fmt.Println("indexed:", st.Indexed, "deleted:", st.Deleted, "duplicates:", st.DuplicateIDs)
	src, _, _ := srv.Doc("products", "1")
	fmt.Println(string(src))
	// Output:
	// indexed: 1 deleted: 1 duplicates: 1
	// {"title":"tea"}
}

// A TableLoader reads documents from a PostgreSQL table; the Handler and a
// Consumer complete the sync worker.
func ExampleNewTableLoader() {
	ctx := context.Background()
	var (
		db  *sql.DB               // e.g. from gormDB.DB()
		es  *elasticsearch.Client // elasticsearch.NewClient(…)
		rdb *redis.Client         // redis.NewClient(…)
	)
	loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{
		Table:            "products",
		SoftDeleteColumn: "deleted_at", // rows with deleted_at set become deletes
		VersionColumn:    "updated_at", // stale writes are refused
	})
	if err != nil {
		log.Fatal(err)
	}
	h, err := elastic.NewHandler(es, loader, &elastic.Options{Index: "products"})
	if err != nil {
		log.Fatal(err)
	}
	c, err := redstream.NewConsumer(rdb, "products", "indexer", h, nil)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(c.Run(ctx))
}

// Backfill indexes a table whose rows were written without the plugin (or
// a new index), a page of keys at a time, through the same Handler as the
// stream.
func ExampleBackfill() {
	db, cleanup := exampleDB(
		"CREATE TABLE products (id bigint PRIMARY KEY, title text)",
		"INSERT INTO products SELECT n, 'product ' || n FROM generate_series(1, 2500) n")
	defer cleanup()
	srv, es := exampleES()
	defer srv.Close()

	ctx := context.Background()
	loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "products"})
	if err != nil {
		log.Fatal(err)
	}
	h, err := elastic.NewHandler(es, loader, &elastic.Options{Index: "products"})
	if err != nil {
		log.Fatal(err)
	}
	res, err := elastic.Backfill(ctx, db, h, elastic.BackfillOptions{
		Table:    "products",
		PageSize: 1000,
		// To resume an interrupted run where it stopped, keep a cursor:
		// Cursor: elastic.RedisCursor(rdb, redstream.NewKeys("").Backfill("products", "products")),
		Progress: func(rows, total int64) { fmt.Printf("%d/%d rows\n", rows, total) },
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("rows:", res.Rows, "last key:", res.Last, "indexed:", h.Stats().Indexed)
	src, _, _ := srv.Doc("products", "2500")
	fmt.Println(string(src))
	// Output:
	// 1000/2500 rows
	// 2000/2500 rows
	// 2500/2500 rows
	// rows: 2500 last key: 2500 indexed: 2500
	// {"id":2500,"title":"product 2500"}
}

// A backfill into an index the worker is syncing at the same time:
// RequeueChanged queues the rows that changed while a page was in flight
// again, so that the worker writes them last.
func ExampleRequeueChanged() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://app@localhost/shop")
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	es, err := elasticsearch.NewDefaultClient()
	if err != nil {
		log.Fatal(err)
	}
	loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "products"})
	if err != nil {
		log.Fatal(err)
	}
	h, err := elastic.NewHandler(es, loader, &elastic.Options{Index: "products"})
	if err != nil {
		log.Fatal(err)
	}
	// The worker consumes the stream "products" in the namespace "shop".
	guarded := elastic.RequeueChanged(h, rdb, redstream.NewKeys("shop"), []string{"products"})
	if _, err := elastic.Backfill(ctx, db, guarded, elastic.BackfillOptions{Table: "products"}); err != nil {
		log.Fatal(err)
	}
}

// Verify compares a table with its index; with a Repair function it also
// fixes what differs, here at once with the Handler (Requeue hands the ids
// to the stream's worker instead).
func ExampleVerify() {
	db, cleanup := exampleDB(
		"CREATE TABLE products (id bigint PRIMARY KEY, title text, deleted_at timestamptz)",
		"INSERT INTO products SELECT n, 'product ' || n FROM generate_series(1, 5) n")
	defer cleanup()
	srv, es := exampleES()
	defer srv.Close()

	ctx := context.Background()
	loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "products", SoftDeleteColumn: "deleted_at"})
	if err != nil {
		log.Fatal(err)
	}
	// Refresh: searches see the writes at once (a demo; not for production).
	h, err := elastic.NewHandler(es, loader, &elastic.Options{Index: "products", Refresh: "true"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := elastic.Backfill(ctx, db, h, elastic.BackfillOptions{Table: "products"}); err != nil {
		log.Fatal(err)
	}
	// Changes the index never heard of: a soft delete and a new row.
	for _, q := range []string{
		"UPDATE products SET deleted_at = now() WHERE id = 2",
		"INSERT INTO products VALUES (6, 'product 6')",
	} {
		if _, err := db.Exec(q); err != nil {
			log.Fatal(err)
		}
	}

	opts := elastic.VerifyOptions{Table: "products", Index: "products"}
	show := func(r elastic.VerifyReport) {
		fmt.Printf("%d rows, %d documents: missing %v, extra %v, in sync %v\n",
			r.Rows, r.Documents, r.Missing.First, r.Extra.First, r.InSync())
	}
	rep, err := elastic.Verify(ctx, db, es, loader, opts)
	if err != nil {
		log.Fatal(err)
	}
	show(rep)

	opts.Repair = elastic.Reindex(h, "products")
	if rep, err = elastic.Verify(ctx, db, es, loader, opts); err != nil {
		log.Fatal(err)
	}
	fmt.Println("repaired:", rep.Repaired)

	opts.Repair = nil
	if rep, err = elastic.Verify(ctx, db, es, loader, opts); err != nil {
		log.Fatal(err)
	}
	show(rep)
	// Output:
	// 6 rows, 5 documents: missing [6], extra [2], in sync false
	// repaired: 2
	// 6 rows, 5 documents: missing [], extra [], in sync true
}

// A Reindexer rebuilds the index behind an alias with a new mapping while
// the worker goes on writing through the alias: it backfills a new index,
// replays the changes made meanwhile from the stream, verifies it and
// swaps the alias in one request.
func ExampleReindexer() {
	db, cleanup := exampleDB(
		"CREATE TABLE products (id bigint PRIMARY KEY, title text)",
		"INSERT INTO products SELECT n, 'product ' || n FROM generate_series(1, 50) n")
	defer cleanup()
	srv, es := exampleES()
	defer srv.Close()
	opt, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ns := "ex_" + testenv.RandomHex(6)

	ctx := context.Background()
	// The index as the worker creates it: a physical index behind the alias.
	if err := elastic.CreateAliasedIndex(ctx, es, "products-v1", nil, "products"); err != nil {
		log.Fatal(err)
	}
	loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "products"})
	if err != nil {
		log.Fatal(err)
	}
	ri, err := elastic.NewReindexer(rdb, db, es, loader, elastic.ReindexOptions{
		Name:      "products", // the stream: its changes are replayed
		Alias:     "products",
		Table:     "products",
		Namespace: ns,
		Body:      []byte(`{"mappings":{"properties":{"title":{"type":"text","fields":{"raw":{"type":"keyword"}}}}}}`),
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := ri.Run(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer rdb.Del(ctx, redstream.NewKeys(ns).ReindexLog("products"))
	fmt.Println("old index:", res.Old, "deleted:", res.OldDeleted)
	fmt.Println("rows:", res.Rows, "in sync:", res.Verify.InSync())
	src, _, _ := srv.Doc("products", "50")
	fmt.Println(string(src))
	// Output:
	// old index: products-v1 deleted: true
	// rows: 50 in sync: true
	// {"id":50,"title":"product 50"}
}
