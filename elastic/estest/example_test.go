package estest_test

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/redstream-go/redstream/elastic/estest"
)

func ExampleServer() {
	srv := estest.NewServer() // in a test: srv := estest.New(t)
	defer srv.Close()

	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{srv.URL}})
	if err != nil {
		panic(err)
	}

	// Item-level throttling for one document, once.
	srv.FailItem("products", "3", 429, "es_rejected_execution_exception", "rejected execution of primary operation", 1)

	body := strings.Join([]string{
		`{"index":{"_index":"products","_id":"1","version":7,"version_type":"external_gte"}}`,
		`{"name":"apple","price":3}`,
		`{"index":{"_index":"products","_id":"1","version":6,"version_type":"external_gte"}}`,
		`{"name":"stale apple","price":2}`,
		`{"index":{"_index":"products","_id":"2"}}`,
		`{"name":"pear","price":"cheap"}`,
		`{"index":{"_index":"products","_id":"3"}}`,
		`{"name":"plum","price":4}`,
		`{"delete":{"_index":"products","_id":"4"}}`,
	}, "\n") + "\n"
	res, err := es.Bulk(strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	defer res.Body.Close()

	var out struct {
		Errors bool `json:"errors"`
		Items  []map[string]struct {
			Status int `json:"status"`
			Result string
			Error  struct{ Type string }
		} `json:"items"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		panic(err)
	}
	fmt.Println("errors:", out.Errors)
	for _, item := range out.Items {
		for op, r := range item {
			fmt.Println(op, r.Status, r.Result+r.Error.Type)
		}
	}

	src, version, _ := srv.Doc("products", "1")
	fmt.Printf("%s version %d\n", src, version)
	// Output:
	// errors: true
	// index 201 created
	// index 409 version_conflict_engine_exception
	// index 400 document_parsing_exception
	// index 429 es_rejected_execution_exception
	// delete 404 not_found
	// {"name":"apple","price":3} version 7
}
