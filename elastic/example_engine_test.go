package elastic_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"

	"github.com/opensearch-project/opensearch-go/v4"

	"github.com/redstream-go/redstream/elastic"
)

// An OpenSearch cluster takes the place of Elasticsearch with one change:
// the client. (Not run here: it needs a node; make test runs the same
// against one in TestEndToEnd and the other tests that run per engine.)
func ExampleNewOpenSearchClient() {
	ctx := context.Background()
	os, err := elastic.NewOpenSearchClient(opensearch.Config{
		Addresses: []string{"http://127.0.0.1:9200"},
		// As for Elasticsearch: resend a whole request on overload and on
		// a node or proxy that is down.
		RetryOnStatus: []int{429, 502, 503, 504},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer os.Close()
	engine, version, err := elastic.DetectEngine(ctx, os)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(engine, version) // opensearch 2.19.6

	var db *sql.DB // the application's database
	loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "products", SoftDeleteColumn: "deleted_at"})
	if err != nil {
		log.Fatal(err)
	}
	h, err := elastic.NewHandler(os, loader, &elastic.Options{Index: "products"})
	if err != nil {
		log.Fatal(err)
	}
	_ = h // hand it to redstream.NewConsumer
}

// A document its mapping refuses is dead-lettered with the engine's own
// error type.
func ExampleEngine_MappingErrorType() {
	deadLettered := func(err error, engine elastic.Engine) bool {
		var ie *elastic.ItemError
		return errors.As(err, &ie) && ie.Type == engine.MappingErrorType()
	}
	err := fmt.Errorf("batch: %w", &elastic.ItemError{ID: "2", Status: 400, Type: "mapper_parsing_exception", Reason: "failed to parse field [price]"})
	fmt.Println(deadLettered(err, elastic.OpenSearch), deadLettered(err, elastic.Elasticsearch))
	// Output: true false
}
