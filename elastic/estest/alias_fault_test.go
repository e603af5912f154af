package estest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/elastic/go-elasticsearch/v8/esutil"
)

func TestAliases(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	v1, v2 := indexName(t, c), indexName(t, c)
	alias := indexName(t, c) // unused as an index; removed with the indices
	mustCreate(t, c, v1, `{"aliases":{"`+alias+`":{}}}`)
	mustCreate(t, c, v2, "")

	// writes and reads through an alias with one index
	r := call(t, c, "PUT", "/"+alias+"/_doc/1?refresh=true", `{"v":1}`)
	expectStatus(t, r, 201)
	expectEq(t, "_index", r.str("_index"), v1)
	r = call(t, c, "GET", "/"+alias+"/_doc/1", "")
	expectEq(t, "_index", r.str("_index"), v1)
	expectEq(t, "count", call(t, c, "GET", "/"+alias+"/_count", "").num("count"), int64(1))
	r = call(t, c, "GET", "/"+alias+"/_alias", "")
	expectEq(t, "get alias", keysOf(r.body), []string{v1})

	// atomic swap
	r = call(t, c, "POST", "/_aliases", `{"actions":[{"remove":{"index":"`+v1+`","alias":"`+alias+`"}},{"add":{"index":"`+v2+`","alias":"`+alias+`"}}]}`)
	expectStatus(t, r, 200)
	expectEq(t, "acknowledged", r.get("acknowledged"), true)
	r = call(t, c, "PUT", "/"+alias+"/_doc/2?refresh=true", `{"v":2}`)
	expectEq(t, "_index after swap", r.str("_index"), v2)
	expectEq(t, "search after swap", call(t, c, "GET", "/"+alias+"/_search", "").num("hits.total.value"), int64(1))

	// a failing action rolls the whole request back
	missing := indexName(t, c)
	r = call(t, c, "POST", "/_aliases", `{"actions":[{"add":{"index":"`+v1+`","alias":"`+alias+`"}},{"add":{"index":"`+missing+`","alias":"`+alias+`"}}]}`)
	expectStatus(t, r, 404)
	expectEq(t, "type", r.str("error.type"), "index_not_found_exception")
	r = call(t, c, "GET", "/_alias/"+alias, "")
	expectEq(t, "alias unchanged", keysOf(r.body), []string{v2})
	// removing an alias that does not exist fails only when nothing else is done
	r = call(t, c, "POST", "/_aliases", `{"actions":[{"remove":{"index":"`+v1+`","alias":"no-such-alias"}}]}`)
	expectStatus(t, r, 404)
	expectEq(t, "type", r.str("error.type"), "aliases_not_found_exception")

	// two indices, no write index: reads fan out, writes are refused
	r = call(t, c, "POST", "/_aliases", `{"actions":[{"add":{"index":"`+v1+`","alias":"`+alias+`"}}]}`)
	expectStatus(t, r, 200)
	expectEq(t, "search both", call(t, c, "GET", "/"+alias+"/_search", "").num("hits.total.value"), int64(2))
	r = call(t, c, "PUT", "/"+alias+"/_doc/3", `{"v":3}`)
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "illegal_argument_exception")
	expectEq(t, "reason", r.str("error.reason"), "no write index is defined for alias ["+alias+"]. The write index may be explicitly disabled using is_write_index=false or the alias points to multiple indices without one being designated as a write index")
	r = call(t, c, "GET", "/"+alias+"/_doc/1", "")
	expectStatus(t, r, 400)

	// designate a write index
	r = call(t, c, "POST", "/_aliases", `{"actions":[{"add":{"index":"`+v2+`","alias":"`+alias+`","is_write_index":true}}]}`)
	expectStatus(t, r, 200)
	r = bulk(t, c, "/_bulk", `{"index":{"_index":"`+alias+`","_id":"4"}}`, `{"v":4}`)
	expectEq(t, "bulk via alias", r.str("items.0.index._index"), v2)
	r = bulk(t, c, "/_bulk?require_alias=true", `{"index":{"_index":"`+alias+`","_id":"5"}}`, `{"v":5}`)
	expectEq(t, "require_alias", r.num("items.0.index.status"), int64(201))

	r = call(t, c, "POST", "/_aliases", `{"actions":[{"add":{"index":"`+v1+`","alias":"`+v2+`"}}]}`)
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "invalid_alias_name_exception")
}

func TestRejectNext(t *testing.T) {
	t.Parallel()
	c, s := target(t)
	needServer(t, s)
	s.RejectNext(1)
	r := bulk(t, c, "/_bulk", `{"index":{"_index":"t-reject","_id":"1"}}`, `{"a":1}`)
	expectStatus(t, r, 429)
	expectEq(t, "type", r.str("error.type"), "es_rejected_execution_exception")
	expectEq(t, "root_cause", r.str("error.root_cause.0.type"), "es_rejected_execution_exception")
	expectEq(t, "status", r.num("status"), int64(429))
	if _, _, ok := s.Doc("t-reject", "1"); ok {
		t.Fatal("a rejected request must not write")
	}
	r = bulk(t, c, "/_bulk", `{"index":{"_index":"t-reject","_id":"1"}}`, `{"a":1}`)
	expectStatus(t, r, 200)
	expectEq(t, "requests", s.Requests(), 2)
}

func TestFailNextAndClientRetries(t *testing.T) {
	t.Parallel()
	c, s := target(t)
	needServer(t, s)
	// The default client retries 502, 503 and 504.
	s.FailNext(2, 503)
	res, err := c.Info()
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	expectEq(t, "status after retries", res.StatusCode, 200)
	expectEq(t, "requests", s.Requests(), 3)

	nr, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{s.URL}, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	s.FailNext(1, 500)
	r := call(t, &client{Client: nr}, "GET", "/", "")
	expectStatus(t, r, 500)
	expectEq(t, "has error type", r.str("error.type") != "", true)
	s.FailNext(1, 503)
	r = call(t, &client{Client: nr}, "GET", "/", "")
	expectStatus(t, r, 503)
	expectEq(t, "type", r.str("error.type"), "cluster_block_exception")
}

func TestDropNext(t *testing.T) {
	t.Parallel()
	c, s := target(t)
	needServer(t, s)
	nr, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{s.URL}, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	s.DropNext(1)
	_, err = nr.Info()
	if err == nil {
		t.Fatal("expected a transport error for a dropped connection")
	}
	res, err := nr.Info()
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	// with retries on (the default), a dropped connection is retried
	s.DropNext(1)
	res, err = c.Info()
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
}

func TestLatency(t *testing.T) {
	t.Parallel()
	c, s := target(t)
	needServer(t, s)
	s.SetLatency(150 * time.Millisecond)
	start := time.Now()
	call(t, c, "GET", "/", "")
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("answered in %v", d)
	}
	s.SetLatency(0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	s.SetLatency(time.Second)
	_, err := c.Info(c.Info.WithContext(ctx))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	s.SetLatency(0)
}

func TestFailItem(t *testing.T) {
	t.Parallel()
	c, s := target(t)
	needServer(t, s)
	s.FailItem("t-items", "2", 429, "es_rejected_execution_exception", "rejected execution of primary operation", 2)
	s.FailItem("t-items", "3", 500, "exception", "boom", -1)
	send := func() *resp {
		return bulk(t, c, "/t-items/_bulk",
			`{"index":{"_id":"1"}}`, `{"a":1}`,
			`{"index":{"_id":"2"}}`, `{"a":2}`,
			`{"delete":{"_id":"3"}}`,
		)
	}
	for i := 0; i < 2; i++ {
		r := send()
		expectStatus(t, r, 200)
		expectEq(t, "errors", r.get("errors"), true)
		expectEq(t, "ok item", r.num("items.0.index.status")/100, int64(2))
		expectEq(t, "429 item", r.num("items.1.index.status"), int64(429))
		expectEq(t, "429 type", r.str("items.1.index.error.type"), "es_rejected_execution_exception")
		expectEq(t, "429 reason", r.str("items.1.index.error.reason"), "rejected execution of primary operation")
		expectEq(t, "500 item", r.num("items.2.delete.status"), int64(500))
	}
	if _, _, ok := s.Doc("t-items", "2"); ok {
		t.Fatal("a failed item must not be written")
	}
	r := send()
	expectEq(t, "third try", r.num("items.1.index.status"), int64(201))
	expectEq(t, "still failing", r.num("items.2.delete.status"), int64(500))
	src, v, ok := s.Doc("t-items", "2")
	if !ok || string(src) != `{"a":2}` || v != 1 {
		t.Fatalf("Doc = %s %d %v", src, v, ok)
	}
	expectEq(t, "Count", s.Count("t-items"), 2)

	// single-document APIs get the error as the response
	s.FailItem("t-items", "9", 429, "es_rejected_execution_exception", "busy", 1)
	r = call(t, c, "PUT", "/t-items/_doc/9", `{"a":9}`)
	expectStatus(t, r, 429)
	expectEq(t, "type", r.str("error.type"), "es_rejected_execution_exception")
}

func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	c, s := target(t)
	idx := indexName(t, c)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				body := strings.NewReader(`{"index":{"_id":"` + string(rune('a'+w)) + `"}}` + "\n" + `{"n":1}` + "\n")
				res, err := c.Bulk(body, c.Bulk.WithIndex(idx))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if s != nil && i%5 == 0 {
					s.SetLatency(0)
					s.Count(idx)
				}
			}
		}(w)
	}
	wg.Wait()
	r := call(t, c, "GET", "/"+idx+"/_doc/a", "")
	expectEq(t, "_version", r.num("_version"), int64(20))
}

func TestEsapiRoundTrip(t *testing.T) {
	t.Parallel()
	// The esapi request types the project uses end to end.
	c, _ := target(t)
	idx := indexName(t, c)
	res, err := c.Indices.Create(idx, c.Indices.Create.WithBody(strings.NewReader(`{"mappings":{"properties":{"id":{"type":"long"}}}}`)))
	mustOK(t, res, err)
	res, err = c.Index(idx, strings.NewReader(`{"id":1}`), c.Index.WithDocumentID("1"), c.Index.WithRefresh("true"))
	mustOK(t, res, err)
	res, err = c.Bulk(bytes.NewReader([]byte(`{"index":{"_id":"2","version":3,"version_type":"external_gte"}}`+"\n"+`{"id":2}`+"\n")), c.Bulk.WithIndex(idx), c.Bulk.WithRefresh("wait_for"))
	mustOK(t, res, err)
	res, err = c.Get(idx, "2")
	mustOK(t, res, err)
	res, err = c.Mget(strings.NewReader(`{"ids":["1","2"]}`), c.Mget.WithIndex(idx))
	mustOK(t, res, err)
	res, err = c.Search(c.Search.WithIndex(idx), c.Search.WithBody(strings.NewReader(`{"sort":[{"id":"desc"}]}`)))
	mustOK(t, res, err)
	res, err = c.Count(c.Count.WithIndex(idx))
	mustOK(t, res, err)
	res, err = c.Indices.Refresh(c.Indices.Refresh.WithIndex(idx))
	mustOK(t, res, err)
	res, err = c.Indices.Exists([]string{idx})
	mustOK(t, res, err)
	res, err = c.Delete(idx, "1")
	mustOK(t, res, err)
}

func mustOK(t *testing.T, res *esapi.Response, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.IsError() {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("%s: %s", res.Status(), b)
	}
}

func TestBulkIndexer(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{Client: c, Index: idx, NumWorkers: 1, Refresh: "true"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var failed []string
	onFail := func(_ context.Context, item esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
		mu.Lock()
		defer mu.Unlock()
		failed = append(failed, item.DocumentID+":"+res.Result+res.Error.Type)
	}
	v := int64(3)
	add := func(item esutil.BulkIndexerItem) {
		item.OnFailure = onFail
		if err := bi.Add(context.Background(), item); err != nil {
			t.Fatal(err)
		}
	}
	add(esutil.BulkIndexerItem{Action: "index", DocumentID: "1", Body: strings.NewReader(`{"n":1}`)})
	add(esutil.BulkIndexerItem{Action: "index", DocumentID: "2", Version: &v, VersionType: "external_gte", Body: strings.NewReader(`{"n":2}`)})
	add(esutil.BulkIndexerItem{Action: "delete", DocumentID: "3"})
	if err := bi.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := bi.Stats()
	expectEq(t, "indexed", st.NumIndexed, uint64(2))
	// esutil.BulkIndexer counts a 404 not_found delete as a failure
	expectEq(t, "failed", failed, []string{"3:not_found"})
	expectEq(t, "count", call(t, c, "GET", "/"+idx+"/_count", "").num("count"), int64(2))
}

// TestAliasActionResults pins the alias behaviours of Elasticsearch 8.15
// that a reindex relies on. Since 8.14 (elastic/elasticsearch#106304) a
// remove of an alias that does not exist, must_exist unset, is not an
// error of the request when another action applies: the answer is 200
// with "errors": true and one action_results entry per action. With
// must_exist true it fails the whole request, which is then not applied
// (a compare-and-swap on the alias). remove_index deletes an index in the
// same update, so an index can be replaced by an alias of its name.
func TestAliasActionResults(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	v1, v2, v3 := indexName(t, c), indexName(t, c), indexName(t, c)
	alias := indexName(t, c)
	mustCreate(t, c, v1, `{"aliases":{"`+alias+`":{}}}`)
	mustCreate(t, c, v2, "")
	mustCreate(t, c, v3, "")

	// a remove that removes nothing, next to an add: 200, errors, results
	r := call(t, c, "POST", "/_aliases", `{"actions":[{"remove":{"index":"`+v2+`","alias":"`+alias+`"}},{"add":{"index":"`+v3+`","alias":"`+alias+`"}}]}`)
	expectStatus(t, r, 200)
	expectEq(t, "acknowledged", r.get("acknowledged"), true)
	expectEq(t, "errors", r.get("errors"), true)
	expectEq(t, "result 0 type", r.str("action_results.0.action.type"), "remove")
	expectEq(t, "result 0 indices", r.str("action_results.0.action.indices.0"), v2)
	expectEq(t, "result 0 aliases", r.str("action_results.0.action.aliases.0"), alias)
	expectEq(t, "result 0 status", r.num("action_results.0.status"), int64(404))
	expectEq(t, "result 0 error", r.str("action_results.0.error.type"), "aliases_not_found_exception")
	expectEq(t, "result 0 reason", r.str("action_results.0.error.reason"), "aliases ["+alias+"] missing")
	expectEq(t, "result 1 type", r.str("action_results.1.action.type"), "add")
	expectEq(t, "result 1 status", r.num("action_results.1.status"), int64(200))
	if r.get("action_results.1.error") != nil {
		t.Errorf("a successful action has an error: %v", r.get("action_results.1.error"))
	}
	r = call(t, c, "GET", "/_alias/"+alias, "")
	got := keysOf(r.body)
	slices.Sort(got)
	want := []string{v1, v3}
	slices.Sort(want)
	expectEq(t, "the add applied", got, want)

	// every action applied: no action_results
	r = call(t, c, "POST", "/_aliases", `{"actions":[{"remove":{"index":"`+v3+`","alias":"`+alias+`"}}]}`)
	expectStatus(t, r, 200)
	expectEq(t, "errors", r.get("errors"), false)
	if r.get("action_results") != nil {
		t.Errorf("action_results without errors: %v", r.get("action_results"))
	}

	// must_exist true: the whole request fails and nothing is applied
	r = call(t, c, "POST", "/_aliases", `{"actions":[{"remove":{"index":"`+v2+`","alias":"`+alias+`","must_exist":true}},{"add":{"index":"`+v3+`","alias":"`+alias+`"}}]}`)
	expectStatus(t, r, 404)
	expectEq(t, "type", r.str("error.type"), "resource_not_found_exception")
	expectEq(t, "reason", r.str("error.reason"), "required alias ["+alias+"] does not exist")
	r = call(t, c, "GET", "/_alias/"+alias, "")
	expectEq(t, "nothing applied", keysOf(r.body), []string{v1})
	// the swap a reindex sends: remove from the old index (must exist) and
	// add to the new one, in one request
	r = call(t, c, "POST", "/_aliases", `{"actions":[{"remove":{"index":"`+v1+`","alias":"`+alias+`","must_exist":true}},{"add":{"index":"`+v2+`","alias":"`+alias+`"}}]}`)
	expectStatus(t, r, 200)
	expectEq(t, "errors", r.get("errors"), false)
	r = call(t, c, "GET", "/_alias/"+alias, "")
	expectEq(t, "swapped", keysOf(r.body), []string{v2})

	// only removes of missing aliases: the request fails, naming them all
	r = call(t, c, "POST", "/_aliases", `{"actions":[{"remove":{"index":"`+v1+`","alias":"nope-a"}},{"remove":{"index":"`+v1+`","alias":"nope-b"}}]}`)
	expectStatus(t, r, 404)
	expectEq(t, "type", r.str("error.type"), "aliases_not_found_exception")
	expectEq(t, "reason", r.str("error.reason"), "aliases [nope-a, nope-b] missing")

	// an index replaced by an alias of its name, in one request
	r = call(t, c, "POST", "/_aliases", `{"actions":[{"add":{"index":"`+v3+`","alias":"`+v1+`"}}]}`)
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "invalid_alias_name_exception")
	r = call(t, c, "POST", "/_aliases", `{"actions":[{"add":{"index":"`+v3+`","alias":"`+v1+`"}},{"remove_index":{"index":"`+v1+`"}}]}`)
	expectStatus(t, r, 200)
	expectEq(t, "errors", r.get("errors"), false)
	r = call(t, c, "GET", "/_alias/"+v1, "")
	expectEq(t, "the old index's name is an alias", keysOf(r.body), []string{v3})
	r = call(t, c, "PUT", "/"+v1+"/_doc/1", `{"v":1}`)
	expectEq(t, "written through the alias", r.str("_index"), v3)
}
