package estest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// seed indexes n documents {"id": i, "name": "name-%03d", "even": bool,
// "title": "Doc number i"} and refreshes.
func seed(t *testing.T, c *client, idx string, n int) {
	t.Helper()
	var lines []string
	for i := 1; i <= n; i++ {
		lines = append(lines, fmt.Sprintf(`{"index":{"_id":"d%d"}}`, i),
			fmt.Sprintf(`{"id":%d,"name":"name-%03d","even":%t,"title":"Doc number %d","price":%d.5}`, i, n+1-i, i%2 == 0, i, i))
	}
	r := bulk(t, c, "/"+idx+"/_bulk?refresh=true", lines...)
	expectEq(t, "errors", r.get("errors"), false)
}

func hitIDs(r *resp) []string {
	var ids []string
	hits, _ := r.get("hits.hits").([]any)
	for i := range hits {
		ids = append(ids, r.str(fmt.Sprintf("hits.hits.%d._id", i)))
	}
	return ids
}

func TestSearchSortAndSearchAfter(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	mustCreate(t, c, idx, `{"mappings":{"properties":{"id":{"type":"long"},"name":{"type":"keyword"}}}}`)
	seed(t, c, idx, 25)

	var got []string
	var after string
	pages := 0
	for {
		body := `{"size":10,"sort":[{"id":"asc"}],"query":{"match_all":{}}`
		if after != "" {
			body += `,"search_after":` + after
		}
		r := call(t, c, "POST", "/"+idx+"/_search", body+"}")
		expectStatus(t, r, 200)
		expectEq(t, "total", r.num("hits.total.value"), int64(25))
		expectEq(t, "relation", r.str("hits.total.relation"), "eq")
		ids := hitIDs(r)
		if len(ids) == 0 {
			break
		}
		pages++
		if pages == 1 {
			expectEq(t, "max_score", r.get("hits.max_score"), nil)
			expectEq(t, "_score", r.get("hits.hits.0._score"), nil)
			expectShape(t, &resp{body: jget(r.body, "hits.hits.0")}, "search_hit_sorted.json")
		}
		got = append(got, ids...)
		last := len(ids) - 1
		after = jsonString(r.get(fmt.Sprintf("hits.hits.%d.sort", last)))
	}
	expectEq(t, "pages", pages, 3)
	for i, id := range got {
		if id != fmt.Sprintf("d%d", i+1) {
			t.Fatalf("order: %v", got)
		}
	}

	r := call(t, c, "POST", "/"+idx+"/_search", `{"size":3,"sort":[{"name":{"order":"desc"}}],"_source":["name"]}`)
	expectEq(t, "desc keyword", hitIDs(r), []string{"d1", "d2", "d3"})
	expectEq(t, "sort value", r.str("hits.hits.0.sort.0"), "name-025")
	expectEq(t, "_source filtered", jsonString(r.get("hits.hits.0._source")), `{"name":"name-025"}`)

	r = call(t, c, "GET", "/"+idx+"/_search?size=2&sort=id:desc", "")
	expectEq(t, "sort param", hitIDs(r), []string{"d25", "d24"})

	r = call(t, c, "POST", "/"+idx+"/_search", `{"size":2,"from":3,"sort":["id"]}`)
	expectEq(t, "from", hitIDs(r), []string{"d4", "d5"})
	expectEq(t, "sort value", r.num("hits.hits.0.sort.0"), int64(4))
}

func TestSearchQueries(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	seed(t, c, idx, 10)
	cases := []struct {
		query string
		total int64
	}{
		{`{"match_all":{}}`, 10},
		{`{"ids":{"values":["d1","d3","nope"]}}`, 2},
		{`{"term":{"id":3}}`, 1},
		{`{"term":{"name.keyword":"name-001"}}`, 1},
		{`{"term":{"even":true}}`, 5},
		{`{"terms":{"id":[1,2,3,99]}}`, 3},
		{`{"match":{"title":"NUMBER"}}`, 10},
		{`{"match":{"title":{"query":"doc 7","operator":"and"}}}`, 1},
		{`{"range":{"id":{"gte":3,"lt":6}}}`, 3},
		{`{"range":{"price":{"gt":8}}}`, 3},
		{`{"exists":{"field":"title"}}`, 10},
		{`{"exists":{"field":"nothing"}}`, 0},
		{`{"prefix":{"name.keyword":"name-00"}}`, 9},
		{`{"bool":{"must":[{"range":{"id":{"lte":5}}}],"filter":{"term":{"even":false}},"must_not":[{"term":{"id":1}}]}}`, 2},
		{`{"bool":{"should":[{"term":{"id":1}},{"term":{"id":2}}]}}`, 2},
		{`{"bool":{"filter":[{"match_all":{}}],"should":[{"term":{"id":1}}]}}`, 10},
		{`{"match_none":{}}`, 0},
		{`{"constant_score":{"filter":{"term":{"id":4}}}}`, 1},
	}
	for _, tc := range cases {
		r := call(t, c, "POST", "/"+idx+"/_search", `{"query":`+tc.query+`}`)
		expectStatus(t, r, 200)
		if got := r.num("hits.total.value"); got != tc.total {
			t.Errorf("%s: total %d, want %d", tc.query, got, tc.total)
		}
		rc := call(t, c, "POST", "/"+idx+"/_count", `{"query":`+tc.query+`}`)
		if got := rc.num("count"); got != tc.total {
			t.Errorf("%s: count %d, want %d", tc.query, got, tc.total)
		}
	}
	r := call(t, c, "POST", "/"+idx+"/_search", `{"query":{"match_all":{}},"size":1}`)
	expectShape(t, r, "search.json")

	// without a sort, hits come by descending _score
	r = call(t, c, "POST", "/"+idx+"/_search", `{"query":{"match":{"title":"doc 7"}},"size":3}`)
	expectEq(t, "best match first", r.str("hits.hits.0._id"), "d7")
	if r.get("hits.max_score") == nil || r.get("hits.hits.0._score") == nil {
		t.Fatalf("scores missing: %s", r.raw)
	}

	r = call(t, c, "POST", "/"+idx+"/_search", `{"query":{"match_all":{}},"track_total_hits":false,"size":0}`)
	expectEq(t, "no total", r.get("hits.total"), nil)
	r = call(t, c, "POST", "/"+idx+"/_search", `{"track_total_hits":3,"size":0}`)
	expectEq(t, "capped total", r.num("hits.total.value"), int64(3))
	expectEq(t, "relation", r.str("hits.total.relation"), "gte")
	r = call(t, c, "GET", "/"+idx+"/_search?rest_total_hits_as_int=true&size=0", "")
	expectEq(t, "int total", r.num("hits.total"), int64(10))

	r = call(t, c, "POST", "/"+idx+"/_count", "")
	expectEq(t, "count all", r.num("count"), int64(10))
	expectEq(t, "count shards", r.num("_shards.failed"), int64(0))
}

func TestMaxScore(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	seed(t, c, idx, 3)
	for _, tc := range []struct {
		body string
		want any // nil: max_score is null
	}{
		{`{"query":{"match_all":{}}}`, json.Number("1.0")},
		{`{"size":0}`, nil},
		{`{"size":0,"track_scores":true}`, nil},
		{`{"from":5,"size":1}`, json.Number("1.0")},
		{`{"sort":[{"id":"asc"}]}`, nil},
		{`{"sort":[{"id":"asc"}],"track_scores":true}`, json.Number("1.0")},
		{`{"size":0,"sort":[{"id":"asc"}],"track_scores":true}`, nil},
	} {
		r := call(t, c, "POST", "/"+idx+"/_search", tc.body)
		expectStatus(t, r, 200)
		expectEq(t, tc.body+": total", r.num("hits.total.value"), int64(3))
		expectEq(t, tc.body+": max_score", r.get("hits.max_score"), tc.want)
	}
}

func TestShardLevelErrors(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	mustCreate(t, c, idx, `{"settings":{"number_of_shards":1,"number_of_replicas":0},"mappings":{"properties":{"i":{"type":"long"},"d":{"type":"double"},"b":{"type":"boolean"}}}}`)
	call(t, c, "PUT", "/"+idx+"/_doc/1?refresh=true", `{"i":1,"d":1.5,"b":true}`)
	const nfe = `For input string: "abc"`
	for _, tc := range []struct {
		path, body   string
		root, reason string
		causes       []string // caused_by, caused_by.caused_by, ... types
	}{
		{"/_search", `{"query":{"term":{"i":"abc"}}}`, "query_shard_exception", "failed to create query: " + nfe, []string{"query_shard_exception", "number_format_exception"}},
		{"/_search", `{"query":{"terms":{"i":[1,"abc"]}}}`, "query_shard_exception", "failed to create query: " + nfe, []string{"query_shard_exception", "number_format_exception"}},
		{"/_search", `{"query":{"bool":{"filter":[{"range":{"d":{"gte":"abc"}}}]}}}`, "query_shard_exception", "failed to create query: " + nfe, []string{"query_shard_exception", "number_format_exception"}},
		{"/_search", `{"query":{"term":{"b":"maybe"}}}`, "query_shard_exception", "failed to create query: Can't parse boolean value [maybe], expected [true] or [false]", []string{"query_shard_exception", "illegal_argument_exception"}},
		{"/_search", `{"post_filter":{"term":{"i":"abc"}}}`, "query_shard_exception", "failed to create query: " + nfe, []string{"query_shard_exception", "number_format_exception"}},
		{"/_count", `{"query":{"term":{"i":"abc"}}}`, "query_shard_exception", "failed to create query: " + nfe, []string{"query_shard_exception", "number_format_exception"}},
		// an ElasticsearchException is its own root cause, given once
		{"/_search", `{"sort":[{"nosuchfield":"asc"}]}`, "query_shard_exception", "No mapping found for [nosuchfield] in order to sort on", []string{"query_shard_exception"}},
		// a JDK exception is wrapped in one of its name: given twice
		{"/_search", `{"sort":[{"i":"asc"}],"search_after":[1,2]}`, "illegal_argument_exception", "search_after has 2 value(s) but sort has 1.", []string{"illegal_argument_exception", "illegal_argument_exception"}},
		{"/_search", `{"sort":[{"i":"asc"}],"search_after":["abc"]}`, "illegal_argument_exception", "Failed to parse search_after value for field [i].", []string{"illegal_argument_exception", "illegal_argument_exception", "number_format_exception"}},
	} {
		what := tc.path + " " + tc.body
		r := call(t, c, "POST", "/"+idx+tc.path, tc.body)
		expectStatus(t, r, 400)
		expectEq(t, what+": type", r.str("error.type"), "search_phase_execution_exception")
		expectEq(t, what+": reason", r.str("error.reason"), "all shards failed")
		expectEq(t, what+": root_cause", r.str("error.root_cause.0.type"), tc.root)
		expectEq(t, what+": root_cause reason", r.str("error.root_cause.0.reason"), tc.reason)
		expectEq(t, what+": failed shard", r.str("error.failed_shards.0.reason.type"), tc.root)
		p := "error."
		for i, typ := range tc.causes {
			p += "caused_by."
			expectEq(t, what+": "+p+"type", r.str(p+"type"), typ)
			if i == 0 {
				expectEq(t, what+": caused_by reason", r.str(p+"reason"), tc.reason)
			}
		}
		expectEq(t, what+": "+p+"caused_by", r.get(p+"caused_by"), nil)
	}
}

func TestSearchErrors(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	seed(t, c, idx, 3)

	r := call(t, c, "POST", "/"+idx+"/_search", `{"query":{"frobnicate":{}}}`)
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "parsing_exception")
	expectEq(t, "reason", r.str("error.reason"), "unknown query [frobnicate]")

	r = call(t, c, "POST", "/"+idx+"/_search", `{"sizes":1}`)
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "parsing_exception")
	expectEq(t, "reason", r.str("error.reason"), "Unknown key for a VALUE_NUMBER in [sizes].")

	missing := indexName(t, c)
	r = call(t, c, "POST", "/"+missing+"/_search", `{}`)
	expectStatus(t, r, 404)
	expectEq(t, "type", r.str("error.type"), "index_not_found_exception")
	r = call(t, c, "POST", "/"+missing+"*/_search", `{}`)
	expectStatus(t, r, 200)
	expectEq(t, "no indices", r.num("hits.total.value"), int64(0))
	r = call(t, c, "POST", "/"+missing+"/_search?ignore_unavailable=true", `{}`)
	expectStatus(t, r, 200)

	r = call(t, c, "POST", "/"+idx+"/_search", `{"size":10001}`)
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "search_phase_execution_exception")
	if !strings.HasPrefix(r.str("error.root_cause.0.reason"), "Result window is too large, from + size must be less than or equal to: [10000] but was [10001].") {
		t.Fatalf("reason: %s", r.raw)
	}

	r = call(t, c, "POST", "/"+idx+"/_search", `{"sort":["nosuchfield"]}`)
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "search_phase_execution_exception")
	expectEq(t, "cause", r.str("error.root_cause.0.type"), "query_shard_exception")
	expectEq(t, "reason", r.str("error.root_cause.0.reason"), "No mapping found for [nosuchfield] in order to sort on")
	r = call(t, c, "POST", "/"+idx+"/_search", `{"sort":[{"nosuchfield":{"unmapped_type":"long"}}]}`)
	expectStatus(t, r, 200)
}

func TestSortOnIDIsRejected(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	seed(t, c, idx, 3)
	r := call(t, c, "POST", "/"+idx+"/_search", `{"sort":[{"_id":"asc"}]}`)
	if c.openSearch() {
		// indices.id_field_data.enabled defaults to true in OpenSearch
		// (false in ES 8): sorting on _id works.
		expectStatus(t, r, 200)
		expectEq(t, "by _id", hitIDs(r), []string{"d1", "d2", "d3"})
		return
	}
	expectStatus(t, r, 400)
	const msg = "Fielddata access on the _id field is disallowed, you can re-enable it by updating the dynamic cluster setting: indices.id_field_data.enabled"
	expectEq(t, "type", r.str("error.type"), "search_phase_execution_exception")
	expectEq(t, "reason", r.str("error.reason"), "all shards failed")
	expectEq(t, "phase", r.str("error.phase"), "query")
	expectEq(t, "root_cause type", r.str("error.root_cause.0.type"), "illegal_argument_exception")
	expectEq(t, "root_cause reason", r.str("error.root_cause.0.reason"), msg)
	expectEq(t, "failed shard index", r.str("error.failed_shards.0.index"), idx)
	expectEq(t, "failed shard reason", r.str("error.failed_shards.0.reason.reason"), msg)
	expectEq(t, "caused_by", r.str("error.caused_by.type"), "illegal_argument_exception")
	expectEq(t, "status", r.num("status"), int64(400))
	expectShape(t, r, "sort_id_rejected.json")

	// search_after paging keyed on a document field works instead
	r = call(t, c, "POST", "/"+idx+"/_search", `{"sort":[{"id":"asc"}],"search_after":[1]}`)
	expectStatus(t, r, 200)
	expectEq(t, "after 1", hitIDs(r), []string{"d2", "d3"})
}

func TestSortOnTextIsRejected(t *testing.T) {
	t.Parallel()
	c, s := target(t)
	idx := indexName(t, c)
	seed(t, c, idx, 2)
	r := call(t, c, "POST", "/"+idx+"/_search", `{"sort":["title"]}`)
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "search_phase_execution_exception")
	expectEq(t, "root_cause type", r.str("error.root_cause.0.type"), "illegal_argument_exception")
	reason := r.str("error.root_cause.0.reason")
	if !strings.Contains(reason, "Text fields are not optimised for operations that require per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a keyword field instead.") {
		t.Fatalf("reason %q", reason)
	}
	if c.openSearch() {
		// ES 8 names the field and index first; OpenSearch does not.
		expectEq(t, "reason", reason, "Text fields are not optimised for operations that require per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on [title] in order to load field data by uninverting the inverted index. Note that this can use significant memory.")
	}
	if s != nil {
		expectEq(t, "reason", reason, "Fielddata is disabled on [title] in ["+idx+"]. Text fields are not optimised for operations that require per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on [title] in order to load field data by uninverting the inverted index. Note that this can use significant memory.")
	}
	r = call(t, c, "POST", "/"+idx+"/_search", `{"sort":["title.keyword"]}`)
	expectStatus(t, r, 200)
}

func TestFilterPath(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	seed(t, c, idx, 2)
	r := call(t, c, "POST", "/"+idx+"/_search?filter_path=hits.hits._id,hits.total.value", `{"sort":["id"]}`)
	expectEq(t, "filtered", jsonString(r.body), `{"hits":{"hits":[{"_id":"d1"},{"_id":"d2"}],"total":{"value":2}}}`)
	r = bulk(t, c, "/"+idx+"/_bulk?filter_path=errors,items.*.status", `{"delete":{"_id":"d1"}}`)
	expectEq(t, "bulk filtered", jsonString(r.body), `{"errors":false,"items":[{"delete":{"status":200}}]}`)
}
