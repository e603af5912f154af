package elastic_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/elastic/estest"
)

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
