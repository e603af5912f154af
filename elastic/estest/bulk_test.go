package estest

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestBulkMixedOutcomes(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	mustCreate(t, c, idx, `{"mappings":{"properties":{"price":{"type":"long"}}}}`)

	r := bulk(t, c, "/"+idx+"/_bulk",
		`{"index":{"_id":"1"}}`, `{"price":1,"name":"one"}`,
		`{"create":{"_id":"2"}}`, `{"price":2}`,
		`{"index":{"_id":"3","version":5,"version_type":"external"}}`, `{"price":3}`,
	)
	expectStatus(t, r, 200)
	expectEq(t, "errors", r.get("errors"), false)
	expectShape(t, r, "bulk_created.json")

	r = bulk(t, c, "/"+idx+"/_bulk",
		`{"update":{"_id":"1"}}`, `{"doc":{"name":"uno"}}`, // 0 updated
		`{"create":{"_id":"2"}}`, `{"price":2}`, // 1 conflict
		`{"index":{"_id":"3","version":4,"version_type":"external"}}`, `{"price":3}`, // 2 conflict
		`{"delete":{"_id":"1"}}`,                   // 3 deleted
		`{"delete":{"_id":"missing"}}`,             // 4 not_found
		`{"index":{"_id":"7"}}`, `{"price":"abc"}`, // 5 parse error
		`{"update":{"_id":"nope"}}`, `{"doc":{"a":1}}`, // 6 document missing
		`{"index":{"_id":"8"}}`, `{"price":8}`, // 7 created
	)
	expectStatus(t, r, 200)
	expectEq(t, "errors", r.get("errors"), true)
	type want struct {
		op     string
		status int64
		result string
		errTyp string
	}
	wants := []want{
		{"update", 200, "updated", ""},
		{"create", 409, "", "version_conflict_engine_exception"},
		{"index", 409, "", "version_conflict_engine_exception"},
		{"delete", 200, "deleted", ""},
		{"delete", 404, "not_found", ""},
		{"index", 400, "", c.docParseError()},
		{"update", 404, "", "document_missing_exception"},
		{"index", 201, "created", ""},
	}
	items := r.get("items").([]any)
	if len(items) != len(wants) {
		t.Fatalf("%d items: %s", len(items), r.raw)
	}
	for i, w := range wants {
		p := "items." + strconv.Itoa(i) + "." + w.op + "."
		if r.num(p+"status") != w.status || r.str(p+"result") != w.result || r.str(p+"error.type") != w.errTyp {
			t.Errorf("item %d: %s", i, jsonString(items[i]))
		}
	}
	expectEq(t, "create conflict reason", r.str("items.1.create.error.reason"),
		"[2]: version conflict, document already exists (current version [1])")
	expectEq(t, "external conflict reason", r.str("items.2.index.error.reason"),
		"[3]: version conflict, current version [5] is higher or equal to the one provided [4]")
	expectEq(t, "conflict index", r.str("items.2.index.error.index"), idx)
	expectEq(t, "conflict shard", r.str("items.2.index.error.shard"), "0")
	expectEq(t, "parse reason", r.str("items.5.index.error.reason"),
		c.docParseReason("1:10", "failed to parse field [price] of type [long] in document with id '7'. Preview of field's value: 'abc'"))
	expectEq(t, "parse cause", r.str("items.5.index.error.caused_by.type"), "illegal_argument_exception")
	expectEq(t, "parse cause reason", r.str("items.5.index.error.caused_by.reason"), `For input string: "abc"`)
	expectEq(t, "missing reason", r.str("items.6.update.error.reason"), "[nope]: document missing")
	expectEq(t, "update version", r.num("items.0.update._version"), int64(2))
	expectEq(t, "not_found version", r.num("items.4.delete._version"), int64(1))
	expectShape(t, r, "bulk_mixed.json")

	// seq_no grows per shard across every successful write, not_found deletes included
	seqs := []int64{r.num("items.0.update._seq_no"), r.num("items.3.delete._seq_no"), r.num("items.4.delete._seq_no"), r.num("items.7.index._seq_no")}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("seq_no not consecutive: %v", seqs)
		}
	}
}

func TestBulkNotFoundDeleteIsNotAnError(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	mustCreate(t, c, idx, "")
	r := bulk(t, c, "/_bulk", `{"delete":{"_index":"`+idx+`","_id":"x"}}`)
	expectStatus(t, r, 200)
	expectEq(t, "errors", r.get("errors"), false)
	expectEq(t, "status", r.num("items.0.delete.status"), int64(404))
	expectEq(t, "result", r.str("items.0.delete.result"), "not_found")
	// the delete left a tombstone: the next write is version 2
	r = call(t, c, "PUT", "/"+idx+"/_doc/x", `{"a":1}`)
	expectStatus(t, r, 201)
	expectEq(t, "result", r.str("result"), "created")
	expectEq(t, "_version", r.num("_version"), int64(2))
}

func TestBulkDeleteDoesNotAutoCreateIndex(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	r := bulk(t, c, "/_bulk", `{"delete":{"_index":"`+idx+`","_id":"1"}}`)
	expectStatus(t, r, 200)
	expectEq(t, "errors", r.get("errors"), true)
	expectEq(t, "status", r.num("items.0.delete.status"), int64(404))
	expectEq(t, "type", r.str("items.0.delete.error.type"), "index_not_found_exception")
	expectEq(t, "reason", r.str("items.0.delete.error.reason"), "no such index ["+idx+"]")
	expectStatus(t, call(t, c, "HEAD", "/"+idx, ""), 404)

	// with external versioning the index is created and the tombstone kept
	r = bulk(t, c, "/_bulk", `{"delete":{"_index":"`+idx+`","_id":"1","version":5,"version_type":"external_gte"}}`)
	expectEq(t, "errors", r.get("errors"), false)
	expectEq(t, "result", r.str("items.0.delete.result"), "not_found")
	expectEq(t, "_version", r.num("items.0.delete._version"), int64(5))
	expectStatus(t, call(t, c, "HEAD", "/"+idx, ""), 200)
	r = bulk(t, c, "/_bulk", `{"index":{"_index":"`+idx+`","_id":"1","version":4,"version_type":"external_gte"}}`, `{"a":1}`)
	expectEq(t, "status", r.num("items.0.index.status"), int64(409))
	expectEq(t, "reason", r.str("items.0.index.error.reason"), "[1]: version conflict, current version [5] is higher than the one provided [4]")
}

func TestBulkAutoCreatesIndexWithDynamicMapping(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	r := bulk(t, c, "/_bulk", `{"index":{"_index":"`+idx+`","_id":"1"}}`, `{"n":1,"f":1.5,"s":"hello","d":"2024-01-02T03:04:05Z","b":true,"o":{"x":"2024/01/02"},"nums":"42"}`)
	expectEq(t, "errors", r.get("errors"), false)
	expectEq(t, "_shards.total", r.num("items.0.index._shards.total"), int64(2))
	expectEq(t, "_shards.successful", r.num("items.0.index._shards.successful"), int64(1))
	m := call(t, c, "GET", "/"+idx+"/_mapping", "")
	expectStatus(t, m, 200)
	p := idx + ".mappings.properties."
	expectEq(t, "n", m.str(p+"n.type"), "long")
	expectEq(t, "f", m.str(p+"f.type"), "float")
	expectEq(t, "s", m.str(p+"s.type"), "text")
	expectEq(t, "s.keyword", m.str(p+"s.fields.keyword.type"), "keyword")
	expectEq(t, "ignore_above", m.num(p+"s.fields.keyword.ignore_above"), int64(256))
	expectEq(t, "d", m.str(p+"d.type"), "date")
	expectEq(t, "b", m.str(p+"b.type"), "boolean")
	expectEq(t, "o.x", m.str(p+"o.properties.x.type"), "date")
	expectEq(t, "o.x format", m.str(p+"o.properties.x.format"), "yyyy/MM/dd HH:mm:ss||yyyy/MM/dd||epoch_millis")
	expectEq(t, "nums", m.str(p+"nums.type"), "text")

	// the first document fixed the types
	r = bulk(t, c, "/_bulk",
		`{"index":{"_index":"`+idx+`","_id":"2"}}`, `{"n":"12"}`, // numeric string into long: coerced
		`{"index":{"_index":"`+idx+`","_id":"3"}}`, `{"b":"maybe"}`,
		`{"index":{"_index":"`+idx+`","_id":"4"}}`, `{"d":"yesterday"}`,
		`{"index":{"_index":"`+idx+`","_id":"5"}}`, `{"o":"flat"}`,
		`{"index":{"_index":"`+idx+`","_id":"6"}}`, `{"s":{"nested":1}}`,
		`{"index":{"_index":"`+idx+`","_id":"7"}}`, `{"f":"x"}`,
	)
	expectEq(t, "coerced", r.num("items.0.index.status"), int64(201))
	for i, reason := range map[int]string{
		1: c.docParseReason("1:6", "failed to parse field [b] of type [boolean] in document with id '3'. Preview of field's value: 'maybe'"),
		2: c.docParseReason("1:6", "failed to parse field [d] of type [date] in document with id '4'. Preview of field's value: 'yesterday'"),
		3: c.docParseReason("1:6", "object mapping for [o] tried to parse field [o] as object, but found a concrete value"),
		4: c.docParseReason("1:17", "failed to parse field [s] of type [text] in document with id '6'. Preview of field's value: '{nested=1}'"),
		5: c.docParseReason("1:6", "failed to parse field [f] of type [float] in document with id '7'. Preview of field's value: 'x'"),
	} {
		p := "items." + strconv.Itoa(i) + ".index."
		expectEq(t, "status", r.num(p+"status"), int64(400))
		expectEq(t, "type", r.str(p+"error.type"), c.docParseError())
		expectEq(t, "reason", r.str(p+"error.reason"), reason)
	}
	expectEq(t, "bool cause", r.str("items.1.index.error.caused_by.reason"), "Failed to parse value [maybe] as only [true] or [false] are allowed.")
	expectEq(t, "float cause", r.str("items.5.index.error.caused_by.type"), "number_format_exception")
}

func TestExplicitMappingAndStrictDynamic(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	mustCreate(t, c, idx, `{"mappings":{"dynamic":"strict","properties":{"id":{"type":"integer"},"tag":{"type":"keyword"},"at":{"type":"date","format":"epoch_millis"}}}}`)
	r := call(t, c, "PUT", "/"+idx+"/_doc/1", `{"id":"12x"}`)
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), c.docParseError())
	expectEq(t, "reason", r.str("error.reason"), c.docParseReason("1:7", "failed to parse field [id] of type [integer] in document with id '1'. Preview of field's value: '12x'"))
	expectEq(t, "root cause", r.str("error.root_cause.0.type"), c.docParseError())
	r = call(t, c, "PUT", "/"+idx+"/_doc/1", `{"id":1,"other":true}`)
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "strict_dynamic_mapping_exception")
	expectEq(t, "reason", r.str("error.reason"), c.docParseReason("1:17", "mapping set to strict, dynamic introduction of [other] within [_doc] is not allowed"))
	r = call(t, c, "PUT", "/"+idx+"/_doc/1", `{"id":3000000000}`)
	expectStatus(t, r, 400)
	r = call(t, c, "PUT", "/"+idx+"/_doc/1", `{"id":7,"tag":42,"at":1700000000000}`)
	expectStatus(t, r, 201)
	r = call(t, c, "GET", "/"+idx+"/_doc/1", "")
	expectEq(t, "_source kept as sent", jsonString(r.get("_source")), `{"at":1700000000000,"id":7,"tag":42}`)
	if !strings.Contains(string(r.raw), `"_source":{"id":7,"tag":42,"at":1700000000000}`) {
		t.Fatalf("source not returned byte for byte: %s", r.raw)
	}
}

func TestBulkMalformed(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	cases := []struct {
		name, body, typ, reason string
	}{
		{"no trailing newline", "{\"index\":{\"_index\":\"" + idx + "\"}}\n{\"a\":1}", "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]"},
		{"unknown action", "{\"indx\":{\"_index\":\"" + idx + "\"}}\n{\"a\":1}\n", "illegal_argument_exception", "Malformed action/metadata line [1], expected field [create], [delete], [index] or [update] but found [indx]"},
		{"unknown parameter", "{\"index\":{\"_index\":\"" + idx + "\",\"_type\":\"doc\"}}\n{\"a\":1}\n", "illegal_argument_exception", "Action/metadata line [1] contains an unknown parameter [_type]"},
		{"array value", "{\"delete\":{\"_index\":\"" + idx + "\",\"_id\":[1]}}\n", "illegal_argument_exception", "Malformed action/metadata line [1], expected a simple value for field [_id] but found [START_ARRAY]"},
		{"not an object", "[1]\n", "illegal_argument_exception", "Malformed action/metadata line [1], expected START_OBJECT but found [START_ARRAY]"},
		{"third line", "{\"delete\":{\"_index\":\"" + idx + "\",\"_id\":\"1\"}}\n\n{\"index\":5}\n{}\n", "illegal_argument_exception", "Malformed action/metadata line [3], expected START_OBJECT or END_OBJECT but found [VALUE_NUMBER]"},
		{"delete without id", "{\"delete\":{\"_index\":\"" + idx + "\"}}\n", "action_request_validation_exception", "Validation Failed: 1: id is missing;"},
		{"no index", "{\"index\":{}}\n{\"a\":1}\n", "action_request_validation_exception", "Validation Failed: 1: index is missing;"},
		{"internal version", "{\"index\":{\"_index\":\"" + idx + "\",\"_id\":\"1\",\"version\":3}}\n{\"a\":1}\n", "action_request_validation_exception", "Validation Failed: 1: internal versioning can not be used for optimistic concurrency control. Please use `if_seq_no` and `if_primary_term` instead;"},
		{"bad version type", "{\"index\":{\"_index\":\"" + idx + "\",\"_id\":\"1\",\"version\":3,\"version_type\":\"newer\"}}\n{\"a\":1}\n", "illegal_argument_exception", "No version type match [newer]"},
		{"update with version", "{\"update\":{\"_index\":\"" + idx + "\",\"_id\":\"1\",\"version\":3,\"version_type\":\"external\"}}\n{\"doc\":{}}\n", "illegal_argument_exception", "Update requests do not support versioning. Please use `if_seq_no` and `if_primary_term` instead"},
		{"only blank lines", "\n\n", "action_request_validation_exception", "Validation Failed: 1: no requests added;"},
	}
	if c.openSearch() {
		// ES 8's BulkRequestParser words this one differently.
		cases[1].reason = "Malformed action/metadata line [1], expected one of [create, delete, index, update] but found [indx]"
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := call(t, c, "POST", "/_bulk", tc.body, "Content-Type", "application/x-ndjson")
			expectStatus(t, r, 400)
			expectEq(t, "type", r.str("error.type"), tc.typ)
			expectEq(t, "reason", r.str("error.reason"), tc.reason)
			expectEq(t, "status", r.num("status"), int64(400))
		})
	}
	t.Run("invalid json", func(t *testing.T) {
		r := call(t, c, "POST", "/_bulk", "{\"index\":{\"_index\":nope}}\n{}\n", "Content-Type", "application/x-ndjson")
		expectStatus(t, r, 400)
	})
	t.Run("empty body", func(t *testing.T) {
		r := call(t, c, "POST", "/_bulk", "", "Content-Type", "application/x-ndjson")
		expectStatus(t, r, 400)
		expectEq(t, "type", r.str("error.type"), "parse_exception")
		expectEq(t, "reason", r.str("error.reason"), "request body is required")
	})
	t.Run("blank lines between actions are skipped", func(t *testing.T) {
		r := call(t, c, "POST", "/_bulk", "\n{\"index\":{\"_index\":\""+idx+"\",\"_id\":\"1\"}}\r\n{\"a\":1}\r\n\n\n{\"delete\":{\"_index\":\""+idx+"\",\"_id\":\"1\"}}\n", "Content-Type", "application/x-ndjson")
		expectStatus(t, r, 200)
		expectEq(t, "errors", r.get("errors"), false)
		expectEq(t, "items", len(r.get("items").([]any)), 2)
	})
	t.Run("invalid source is an item error", func(t *testing.T) {
		r := call(t, c, "POST", "/_bulk", "{\"index\":{\"_index\":\""+idx+"\",\"_id\":\"9\"}}\n{\"a\":}\n", "Content-Type", "application/x-ndjson")
		expectStatus(t, r, 200)
		expectEq(t, "errors", r.get("errors"), true)
		expectEq(t, "status", r.num("items.0.index.status"), int64(400))
		expectEq(t, "type", r.str("items.0.index.error.type"), c.docParseError())
	})
}

func TestBulkRequireAliasAndInvalidIndexName(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	r := bulk(t, c, "/_bulk?require_alias=true", `{"index":{"_index":"`+idx+`","_id":"1"}}`, `{"a":1}`)
	expectEq(t, "status", r.num("items.0.index.status"), int64(404))
	expectEq(t, "reason", r.str("items.0.index.error.reason"), "no such index ["+idx+"] and [require_alias] request flag is [true] and ["+idx+"] is not an alias")
	r = bulk(t, c, "/_bulk", `{"index":{"_index":"Upper`+idx+`","_id":"1"}}`, `{"a":1}`)
	expectEq(t, "status", r.num("items.0.index.status"), int64(400))
	expectEq(t, "type", r.str("items.0.index.error.type"), "invalid_index_name_exception")
	expectEq(t, "reason", r.str("items.0.index.error.reason"), "Invalid index name [Upper"+idx+"], must be lowercase")
}

func TestBulkRefresh(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	mustCreate(t, c, idx, `{"settings":{"refresh_interval":"-1"}}`)
	r := bulk(t, c, "/"+idx+"/_bulk?refresh=true", `{"index":{"_id":"1"}}`, `{"a":1}`)
	expectEq(t, "forced_refresh", r.get("items.0.index.forced_refresh"), true)
	expectEq(t, "count", call(t, c, "GET", "/"+idx+"/_count", "").num("count"), int64(1))
	r = bulk(t, c, "/"+idx+"/_bulk?refresh=soon", `{"index":{"_id":"3"}}`, `{"a":3}`)
	expectStatus(t, r, 400)
	expectEq(t, "reason", r.str("error.reason"), "Unknown value for refresh: [soon].")

	// wait_for returns once the next scheduled refresh (1s) made the write visible
	idx2 := indexName(t, c)
	mustCreate(t, c, idx2, "")
	r = bulk(t, c, "/"+idx2+"/_bulk?refresh=wait_for", `{"index":{"_id":"2"}}`, `{"a":2}`)
	if r.get("items.0.index.forced_refresh") != nil {
		t.Fatalf("wait_for must not force a refresh: %s", r.raw)
	}
	expectEq(t, "count", call(t, c, "GET", "/"+idx2+"/_count", "").num("count"), int64(1))
}

func TestWaitForBlocksUntilRefreshWhenPeriodicRefreshIsOff(t *testing.T) {
	t.Parallel()
	// With index.refresh_interval -1, refresh=wait_for waits until something
	// refreshes the index (real Elasticsearch documents the same).
	c, s := target(t)
	needServer(t, s)
	idx := indexName(t, c)
	mustCreate(t, c, idx, `{"settings":{"refresh_interval":"-1"}}`)
	done := make(chan *resp, 1)
	go func() {
		done <- call(t, c, "PUT", "/"+idx+"/_doc/1?refresh=wait_for", `{"a":1}`)
	}()
	select {
	case r := <-done:
		t.Fatalf("returned before any refresh: %s", r.raw)
	case <-time.After(100 * time.Millisecond):
	}
	expectStatus(t, call(t, c, "POST", "/"+idx+"/_refresh", ""), 200)
	select {
	case r := <-done:
		expectStatus(t, r, 201)
	case <-time.After(5 * time.Second):
		t.Fatal("wait_for still blocked after a refresh")
	}
}
