package estest

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestInternalVersionsSurviveDeletes(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	steps := []struct {
		method, path, body string
		status             int
		result             string
		version            int64
	}{
		{"PUT", "/_doc/1", `{"v":1}`, 201, "created", 1},
		{"PUT", "/_doc/1", `{"v":2}`, 200, "updated", 2},
		{"DELETE", "/_doc/1", "", 200, "deleted", 3},
		{"DELETE", "/_doc/1", "", 404, "not_found", 4},
		{"POST", "/_doc/1", `{"v":3}`, 201, "created", 5},
		{"PUT", "/_create/1", `{"v":4}`, 409, "", 0},
	}
	for i, s := range steps {
		r := call(t, c, s.method, "/"+idx+s.path, s.body)
		expectStatus(t, r, s.status)
		if s.result == "" {
			continue
		}
		if r.str("result") != s.result || r.num("_version") != s.version {
			t.Fatalf("step %d: %s", i, r.raw)
		}
	}
	r := call(t, c, "PUT", "/"+idx+"/_create/1", `{"v":4}`)
	expectEq(t, "type", r.str("error.type"), "version_conflict_engine_exception")
	expectEq(t, "reason", r.str("error.reason"), "[1]: version conflict, document already exists (current version [5])")
	expectEq(t, "index_uuid present", r.str("error.index_uuid") != "", true)
	expectShape(t, r, "version_conflict.json")
}

func TestExternalVersionTypes(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	put := func(v, vt string) *resp {
		return call(t, c, "PUT", "/"+idx+"/_doc/1?version="+v+"&version_type="+vt, `{"v":`+v+`}`)
	}
	expectStatus(t, put("9", "external"), 201)
	r := put("9", "external")
	expectStatus(t, r, 409)
	expectEq(t, "external equal", r.str("error.reason"), "[1]: version conflict, current version [9] is higher or equal to the one provided [9]")
	r = put("9", "external_gte")
	expectStatus(t, r, 200)
	expectEq(t, "_version", r.num("_version"), int64(9))
	r = put("3", "external_gte")
	expectStatus(t, r, 409)
	expectEq(t, "external_gte lower", r.str("error.reason"), "[1]: version conflict, current version [9] is higher than the one provided [3]")
	r = put("10", "external_gte")
	expectStatus(t, r, 200)
	expectEq(t, "_version", r.num("_version"), int64(10))

	// an external delete keeps its version as a tombstone
	r = call(t, c, "DELETE", "/"+idx+"/_doc/1?version=12&version_type=external", "")
	expectStatus(t, r, 200)
	expectEq(t, "_version", r.num("_version"), int64(12))
	r = put("11", "external_gte")
	expectStatus(t, r, 409)
	expectEq(t, "tombstone", r.str("error.reason"), "[1]: version conflict, current version [12] is higher than the one provided [11]")
	r = put("12", "external_gte")
	expectStatus(t, r, 201)
	expectEq(t, "result", r.str("result"), "created")

	// validation
	r = call(t, c, "PUT", "/"+idx+"/_doc/2?version_type=external", `{}`)
	expectStatus(t, r, 400)
	expectEq(t, "reason", r.str("error.reason"), "Validation Failed: 1: illegal version value [-3] for version type [EXTERNAL];")
	r = call(t, c, "PUT", "/"+idx+"/_doc/2?version=2", `{}`)
	expectStatus(t, r, 400)
	expectEq(t, "reason", r.str("error.reason"), "Validation Failed: 1: internal versioning can not be used for optimistic concurrency control. Please use `if_seq_no` and `if_primary_term` instead;")
	r = call(t, c, "PUT", "/"+idx+"/_create/2?version=2&version_type=external", `{}`)
	expectStatus(t, r, 400)
	expectEq(t, "reason", r.str("error.reason"), "Validation Failed: 1: create operations only support internal versioning. use index instead;")
}

func TestGCDeletesWindow(t *testing.T) {
	t.Parallel()
	c, s := target(t)
	needServer(t, s)
	idx := indexName(t, c)
	call(t, c, "PUT", "/"+idx+"/_doc/1?version=5&version_type=external", `{}`)
	call(t, c, "DELETE", "/"+idx+"/_doc/1?version=6&version_type=external", "")
	expectStatus(t, call(t, c, "PUT", "/"+idx+"/_doc/1?version=4&version_type=external", `{}`), 409)
	s.AdvanceClock(61 * time.Second) // index.gc_deletes is 60s
	r := call(t, c, "PUT", "/"+idx+"/_doc/1?version=4&version_type=external", `{}`)
	expectStatus(t, r, 201)
	expectEq(t, "_version", r.num("_version"), int64(4))
}

func TestSeqNoConcurrencyControl(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	r := call(t, c, "PUT", "/"+idx+"/_doc/1", `{"a":1}`)
	seq, term := r.num("_seq_no"), r.num("_primary_term")
	expectEq(t, "_primary_term", term, int64(1))
	r = call(t, c, "PUT", "/"+idx+"/_doc/1?if_seq_no="+i64(seq)+"&if_primary_term=1", `{"a":2}`)
	expectStatus(t, r, 200)
	r = call(t, c, "PUT", "/"+idx+"/_doc/1?if_seq_no="+i64(seq)+"&if_primary_term=1", `{"a":3}`)
	expectStatus(t, r, 409)
	expectEq(t, "reason", r.str("error.reason"), "[1]: version conflict, required seqNo ["+i64(seq)+"], primary term [1]. current document has seqNo ["+i64(seq+1)+"] and primary term [1]")
	r = call(t, c, "PUT", "/"+idx+"/_doc/2?if_seq_no=0&if_primary_term=1", `{"a":3}`)
	expectStatus(t, r, 409)
	expectEq(t, "reason", r.str("error.reason"), "[2]: version conflict, required seqNo [0], primary term [1]. but no document was found")
}

func TestGetDoc(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	r := call(t, c, "GET", "/"+idx+"/_doc/1", "")
	expectStatus(t, r, 404)
	expectEq(t, "type", r.str("error.type"), "index_not_found_exception")
	expectEq(t, "reason", r.str("error.reason"), "no such index ["+idx+"]")
	expectEq(t, "index", r.str("error.index"), idx)
	expectShape(t, r, "index_not_found.json")
	// ES 8 names every missing single index "index_or_alias"; OpenSearch,
	// resolving a GET's index without wildcards, "index_expression".
	resourceType := "index_or_alias"
	if c.openSearch() {
		resourceType = "index_expression"
	}
	expectEq(t, "resource.type", r.str("error.resource\\.type"), resourceType)
	expectEq(t, "resource.id", r.str("error.resource\\.id"), idx)

	call(t, c, "PUT", "/"+idx+"/_doc/1?routing=r1", `{"a":{"b":1,"c":2},"d":3}`)
	r = call(t, c, "GET", "/"+idx+"/_doc/1", "")
	expectStatus(t, r, 200)
	expectEq(t, "found", r.get("found"), true)
	expectEq(t, "_routing", r.str("_routing"), "r1")
	expectShape(t, r, "get_found.json")
	r = call(t, c, "GET", "/"+idx+"/_doc/1?_source_includes=a.b", "")
	expectEq(t, "filtered", jsonString(r.get("_source")), `{"a":{"b":1}}`)
	r = call(t, c, "GET", "/"+idx+"/_doc/1?_source=false", "")
	expectEq(t, "no source", r.get("_source"), nil)

	r = call(t, c, "GET", "/"+idx+"/_doc/2", "")
	expectStatus(t, r, 404)
	expectEq(t, "body", jsonString(r.body), `{"_id":"2","_index":"`+idx+`","found":false}`)
	expectStatus(t, call(t, c, "HEAD", "/"+idx+"/_doc/1", ""), 200)
	expectStatus(t, call(t, c, "HEAD", "/"+idx+"/_doc/2", ""), 404)
	r = call(t, c, "GET", "/"+idx+"/_source/1", "")
	expectEq(t, "_source endpoint", jsonString(r.body), `{"a":{"b":1,"c":2},"d":3}`)
}

func TestGetIsRealtimeSearchIsNot(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	mustCreate(t, c, idx, `{"settings":{"index":{"refresh_interval":"-1"}}}`)
	call(t, c, "PUT", "/"+idx+"/_doc/1", `{"a":1}`)
	expectStatus(t, call(t, c, "GET", "/"+idx+"/_doc/1", ""), 200)
	expectStatus(t, call(t, c, "GET", "/"+idx+"/_doc/1?realtime=false", ""), 404)
	expectEq(t, "count before refresh", call(t, c, "GET", "/"+idx+"/_count", "").num("count"), int64(0))
	r := call(t, c, "POST", "/"+idx+"/_search", `{"query":{"match_all":{}}}`)
	expectEq(t, "hits before refresh", r.num("hits.total.value"), int64(0))

	r = call(t, c, "POST", "/"+idx+"/_refresh", "")
	expectStatus(t, r, 200)
	expectEq(t, "failed", r.num("_shards.failed"), int64(0))
	expectEq(t, "count after refresh", call(t, c, "GET", "/"+idx+"/_count", "").num("count"), int64(1))

	// an update is invisible to search until the next refresh, a delete too
	call(t, c, "PUT", "/"+idx+"/_doc/1", `{"a":2}`)
	r = call(t, c, "POST", "/"+idx+"/_search", `{"query":{"term":{"a":2}}}`)
	expectEq(t, "old version searched", r.num("hits.total.value"), int64(0))
	call(t, c, "DELETE", "/"+idx+"/_doc/1", "")
	expectEq(t, "deleted doc still counted", call(t, c, "GET", "/"+idx+"/_count", "").num("count"), int64(1))
	call(t, c, "POST", "/_refresh", "")
	expectEq(t, "count after delete+refresh", call(t, c, "GET", "/"+idx+"/_count", "").num("count"), int64(0))

	// refresh=true on a single write
	r = call(t, c, "PUT", "/"+idx+"/_doc/2?refresh=true", `{"a":1}`)
	expectEq(t, "forced_refresh", r.get("forced_refresh"), true)
	expectEq(t, "count", call(t, c, "GET", "/"+idx+"/_count", "").num("count"), int64(1))
}

func TestPeriodicRefresh(t *testing.T) {
	t.Parallel()
	c, s := target(t)
	idx := indexName(t, c)
	mustCreate(t, c, idx, "")
	call(t, c, "PUT", "/"+idx+"/_doc/1", `{"a":1}`)
	if s != nil {
		s.AdvanceClock(1100 * time.Millisecond)
		expectEq(t, "count after refresh_interval", call(t, c, "GET", "/"+idx+"/_count", "").num("count"), int64(1))
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for call(t, c, "GET", "/"+idx+"/_count", "").num("count") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("document never became searchable")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPeriodicRefreshUsesTheIntervalSetting(t *testing.T) {
	t.Parallel()
	c, s := target(t)
	needServer(t, s)
	idx := indexName(t, c)
	mustCreate(t, c, idx, `{"settings":{"refresh_interval":"5s"}}`)
	call(t, c, "PUT", "/"+idx+"/_doc/1", `{"a":1}`)
	s.AdvanceClock(2 * time.Second)
	expectEq(t, "count at 2s", call(t, c, "GET", "/"+idx+"/_count", "").num("count"), int64(0))
	s.AdvanceClock(4 * time.Second)
	expectEq(t, "count at 6s", call(t, c, "GET", "/"+idx+"/_count", "").num("count"), int64(1))
}

func TestUpdateAPI(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	r := call(t, c, "POST", "/"+idx+"/_update/1", `{"doc":{"a":1}}`)
	expectStatus(t, r, 404)
	expectEq(t, "type", r.str("error.type"), "document_missing_exception")
	expectEq(t, "reason", r.str("error.reason"), "[1]: document missing")
	r = call(t, c, "POST", "/"+idx+"/_update/1", `{"doc":{"a":1,"o":{"x":1}},"doc_as_upsert":true}`)
	expectStatus(t, r, 201)
	expectEq(t, "result", r.str("result"), "created")
	r = call(t, c, "POST", "/"+idx+"/_update/1", `{"doc":{"b":2,"o":{"y":2}}}`)
	expectStatus(t, r, 200)
	expectEq(t, "result", r.str("result"), "updated")
	expectEq(t, "_version", r.num("_version"), int64(2))
	r = call(t, c, "GET", "/"+idx+"/_doc/1", "")
	expectEq(t, "merged", jsonString(r.get("_source")), `{"a":1,"b":2,"o":{"x":1,"y":2}}`)
	r = call(t, c, "POST", "/"+idx+"/_update/1", `{"doc":{"b":2}}`)
	expectStatus(t, r, 200)
	expectEq(t, "result", r.str("result"), "noop")
	expectEq(t, "_version", r.num("_version"), int64(2))
	expectEq(t, "_shards.total", r.num("_shards.total"), int64(0))
	r = call(t, c, "POST", "/"+idx+"/_update/2", `{"doc":{"a":1},"upsert":{"a":0}}`)
	expectStatus(t, r, 201)
	r = call(t, c, "GET", "/"+idx+"/_doc/2", "")
	expectEq(t, "upsert", jsonString(r.get("_source")), `{"a":0}`)
	r = call(t, c, "POST", "/"+idx+"/_update/2", `{"doc":{"a":1},"bogus":1}`)
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "x_content_parse_exception")
	if !strings.HasSuffix(r.str("error.reason"), "[UpdateRequest] unknown field [bogus]") {
		t.Fatalf("reason %q", r.str("error.reason"))
	}
	r = call(t, c, "POST", "/"+idx+"/_update/2?version=3", `{"doc":{"a":1}}`)
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "action_request_validation_exception")
}

func TestMget(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	missing := indexName(t, c)
	call(t, c, "PUT", "/"+idx+"/_doc/1", `{"a":1}`)
	call(t, c, "PUT", "/"+idx+"/_doc/2", `{"a":2}`)
	r := call(t, c, "POST", "/_mget", `{"docs":[{"_index":"`+idx+`","_id":"1"},{"_index":"`+idx+`","_id":"3"},{"_index":"`+missing+`","_id":"1"}]}`)
	expectStatus(t, r, 200)
	expectEq(t, "0 found", r.get("docs.0.found"), true)
	expectEq(t, "0 source", jsonString(r.get("docs.0._source")), `{"a":1}`)
	expectEq(t, "1 found", r.get("docs.1.found"), false)
	expectEq(t, "2 error", r.str("docs.2.error.type"), "index_not_found_exception")
	expectEq(t, "2 reason", r.str("docs.2.error.reason"), "no such index ["+missing+"]")
	resourceType := "index_or_alias" // as GET's, see TestGetDoc
	if c.openSearch() {
		resourceType = "index_expression"
	}
	expectEq(t, "2 resource.type", r.str("docs.2.error.resource\\.type"), resourceType)
	r = call(t, c, "GET", "/"+idx+"/_mget", `{"ids":["2","1","9"]}`)
	expectStatus(t, r, 200)
	expectEq(t, "ids order", []string{r.str("docs.0._id"), r.str("docs.1._id"), r.str("docs.2._id")}, []string{"2", "1", "9"})
	expectEq(t, "_version", r.num("docs.0._version"), int64(1))
	r = call(t, c, "POST", "/_mget", `{"ids":["1"]}`)
	expectStatus(t, r, 400)
	expectEq(t, "reason", r.str("error.reason"), "Validation Failed: 1: index is missing for doc 0;")
	r = call(t, c, "POST", "/"+idx+"/_mget", `{"docs":[]}`)
	expectStatus(t, r, 400)
	expectEq(t, "reason", r.str("error.reason"), "Validation Failed: 1: no documents to get;")
}

func TestIndexAPIs(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	expectStatus(t, call(t, c, "HEAD", "/"+idx, ""), 404)
	r := call(t, c, "PUT", "/"+idx, `{"settings":{"number_of_shards":1,"number_of_replicas":0},"mappings":{"properties":{"id":{"type":"long"}}}}`)
	expectStatus(t, r, 200)
	expectEq(t, "body", jsonString(r.body), `{"acknowledged":true,"index":"`+idx+`","shards_acknowledged":true}`)
	expectStatus(t, call(t, c, "HEAD", "/"+idx, ""), 200)
	r = call(t, c, "PUT", "/"+idx, "")
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "resource_already_exists_exception")
	if reason := r.str("error.reason"); !strings.HasPrefix(reason, "index ["+idx+"/") || !strings.HasSuffix(reason, "] already exists") {
		t.Fatalf("reason %q", reason)
	}
	r = call(t, c, "GET", "/"+idx, "")
	expectStatus(t, r, 200)
	expectEq(t, "mapping", r.str(idx+".mappings.properties.id.type"), "long")
	expectEq(t, "shards", r.str(idx+".settings.index.number_of_shards"), "1")
	expectEq(t, "replicas", r.str(idx+".settings.index.number_of_replicas"), "0")
	expectEq(t, "provided_name", r.str(idx+".settings.index.provided_name"), idx)

	r = call(t, c, "PUT", "/"+idx+"/_doc/1", `{"id":1}`)
	expectEq(t, "_shards.total with 0 replicas", r.num("_shards.total"), int64(1))

	r = call(t, c, "PUT", "/Bad"+idx, "")
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "invalid_index_name_exception")
	expectEq(t, "reason", r.str("error.reason"), "Invalid index name [Bad"+idx+"], must be lowercase")
	r = call(t, c, "PUT", "/_"+idx, "")
	expectStatus(t, r, 400)
	expectEq(t, "reason", r.str("error.reason"), "Invalid index name [_"+idx+"], must not start with '_', '-', or '+'")

	r = call(t, c, "PUT", "/"+idx+"x", `{"settings":{"index":{"frobnicate":1}}}`)
	expectStatus(t, r, 400)
	expectEq(t, "reason", r.str("error.reason"), "unknown setting [index.frobnicate] please check that any required plugins are installed, or check the breaking changes documentation for removed settings")

	r = call(t, c, "DELETE", "/"+idx, "")
	expectStatus(t, r, 200)
	expectEq(t, "body", jsonString(r.body), `{"acknowledged":true}`)
	r = call(t, c, "DELETE", "/"+idx, "")
	expectStatus(t, r, 404)
	expectEq(t, "type", r.str("error.type"), "index_not_found_exception")
}

func i64(n int64) string {
	return strings.TrimSpace(strings.Replace(jsonString(n), `"`, "", -1))
}

func TestRoutingRequired(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	mustCreate(t, c, idx, `{"settings":{"number_of_shards":1,"number_of_replicas":0},"mappings":{"_routing":{"required":true},"properties":{"a":{"type":"long"}}}}`)
	expectEq(t, "mapping", jsonString(call(t, c, "GET", "/"+idx+"/_mapping", "").get(idx+".mappings._routing")), `{"required":true}`)
	missing := func(what string, r *resp, path, id string) {
		t.Helper()
		expectEq(t, what+": type", r.str(path+"type"), "routing_missing_exception")
		expectEq(t, what+": reason", r.str(path+"reason"), "routing is required for ["+idx+"]/["+id+"]")
		expectEq(t, what+": index", r.str(path+"index"), idx)
		expectEq(t, what+": index_uuid", r.str(path+"index_uuid"), "_na_")
	}
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/_doc/1", `{"a":1}`},
		{"PUT", "/_create/1", `{"a":1}`},
		{"GET", "/_doc/1", ""},
		{"GET", "/_source/1", ""},
		{"DELETE", "/_doc/1", ""},
		{"POST", "/_update/1", `{"doc":{"a":2},"doc_as_upsert":true}`},
	} {
		r := call(t, c, tc.method, "/"+idx+tc.path, tc.body)
		expectStatus(t, r, 400)
		missing(tc.method+" "+tc.path, r, "error.", "1")
		expectEq(t, "root cause", r.str("error.root_cause.0.type"), "routing_missing_exception")
	}
	r := bulk(t, c, "/_bulk",
		`{"index":{"_index":"`+idx+`","_id":"1"}}`, `{"a":1}`,
		`{"create":{"_index":"`+idx+`","_id":"2"}}`, `{"a":2}`,
		`{"update":{"_index":"`+idx+`","_id":"3"}}`, `{"doc":{"a":3}}`,
		`{"delete":{"_index":"`+idx+`","_id":"4"}}`,
		`{"index":{"_index":"`+idx+`","_id":"5","routing":"r"}}`, `{"a":5}`,
		`{"delete":{"_index":"`+idx+`","_id":"5"}}`,
	)
	expectEq(t, "errors", r.get("errors"), true)
	for i, op := range []string{"index", "create", "update", "delete"} {
		p := "items." + strconv.Itoa(i) + "." + op + "."
		expectEq(t, p+"status", r.num(p+"status"), int64(400))
		missing(p, r, p+"error.", strconv.Itoa(i+1))
	}
	expectEq(t, "routed index", r.num("items.4.index.status"), int64(201))
	missing("delete without routing", r, "items.5.delete.error.", "5")
	// the bulk's routing parameter is every item's routing
	r = bulk(t, c, "/_bulk?routing=r&refresh=true", `{"index":{"_index":"`+idx+`","_id":"6"}}`, `{"a":6}`)
	expectEq(t, "bulk routing", r.num("items.0.index.status"), int64(201))

	r = call(t, c, "GET", "/"+idx+"/_doc/5?routing=r", "")
	expectStatus(t, r, 200)
	expectEq(t, "_routing", r.str("_routing"), "r")
	r = call(t, c, "POST", "/_mget", `{"docs":[{"_index":"`+idx+`","_id":"5"},{"_index":"`+idx+`","_id":"5","routing":"r"}]}`)
	expectStatus(t, r, 200)
	missing("mget", r, "docs.0.error.", "5")
	expectEq(t, "mget routed", r.get("docs.1.found"), true)
	r = call(t, c, "POST", "/"+idx+"/_mget?routing=r", `{"ids":["5","6"]}`)
	expectEq(t, "mget routing parameter", []any{r.get("docs.0.found"), r.get("docs.1.found")}, []any{true, true})
	r = call(t, c, "DELETE", "/"+idx+"/_doc/5?routing=r", "")
	expectStatus(t, r, 200)
	expectEq(t, "deleted", r.str("result"), "deleted")
}
