package estest

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"testing"
)

// pipelineName returns a unique pipeline id, whose pipeline is deleted when
// the test ends.
func pipelineName(t *testing.T, c *client) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "p-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if res, err := c.do(http.MethodDelete, "/_ingest/pipeline/"+name, nil, nil); err == nil {
			res.Body.Close()
		}
	})
	return name
}

// TestIngestPipelines: a pipeline of set processors is stored and read
// back, and runs on the documents of index and create actions (named on
// the action or as the bulk request's default, and on the single-document
// API); _none and deletes skip it; ingest_took is in the bulk answer when a
// document named a pipeline. A pipeline that does not exist fails its
// document before the index is created; so does a path through a value
// that is not an object.
func TestIngestPipelines(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	p := pipelineName(t, c)
	def := `{"description":"tags","processors":[{"set":{"field":"a.b","value":{"x":[1,2]}}},` +
		`{"set":{"field":"c","value":5,"override":false}},{"set":{"field":"via","value":"p"}}]}`
	r := call(t, c, "PUT", "/_ingest/pipeline/"+p, def)
	expectStatus(t, r, 200)
	expectEq(t, "acknowledged", r.get("acknowledged"), true)
	r = call(t, c, "GET", "/_ingest/pipeline/"+p, "")
	expectStatus(t, r, 200)
	expectEq(t, "definition", jsonString(r.get(p)), jsonString(decode(t, []byte(def))))
	r = call(t, c, "GET", "/_ingest/pipeline/"+p+"-missing", "")
	expectStatus(t, r, 404)
	expectEq(t, "missing pipeline", jsonString(r.body), `{}`)

	r = bulk(t, c, "/_bulk?refresh=true",
		`{"index":{"_index":"`+idx+`","_id":"1","pipeline":"`+p+`"}}`, `{"c":1,"d":"z"}`,
		`{"create":{"_index":"`+idx+`","_id":"2","pipeline":"`+p+`"}}`, `{"d":"z"}`,
		`{"index":{"_index":"`+idx+`","_id":"3","pipeline":"_none"}}`, `{"d":"z"}`,
		`{"delete":{"_index":"`+idx+`","_id":"3","pipeline":"`+p+`"}}`)
	expectStatus(t, r, 200)
	expectEq(t, "errors", r.get("errors"), false)
	if r.num("ingest_took") < 0 {
		t.Errorf("ingest_took = %v, want a number: %s", r.get("ingest_took"), r.raw)
	}
	for i, action := range []string{"index", "create", "index", "delete"} {
		want := map[string]int64{"delete": 200}[action]
		if want == 0 {
			want = 201
		}
		expectEq(t, "item "+strconv.Itoa(i)+" status", r.num("items."+strconv.Itoa(i)+"."+action+".status"), want)
	}
	source := func(id string) string {
		t.Helper()
		return jsonString(call(t, c, "GET", "/"+idx+"/_doc/"+id, "").get("_source"))
	}
	expectEq(t, "document 1", source("1"), `{"a":{"b":{"x":[1,2]}},"c":1,"d":"z","via":"p"}`)
	expectEq(t, "document 2", source("2"), `{"a":{"b":{"x":[1,2]}},"c":5,"d":"z","via":"p"}`)

	// The request's default pipeline, and an action's _none over it.
	r = bulk(t, c, "/"+idx+"/_bulk?pipeline="+p,
		`{"index":{"_id":"4"}}`, `{"d":"z"}`,
		`{"index":{"_id":"5","pipeline":"_none"}}`, `{"d":"z"}`)
	expectEq(t, "errors", r.get("errors"), false)
	expectEq(t, "document 4", source("4"), `{"a":{"b":{"x":[1,2]}},"c":5,"d":"z","via":"p"}`)
	expectEq(t, "document 5", source("5"), `{"d":"z"}`)
	r = call(t, c, "PUT", "/"+idx+"/_doc/6?pipeline="+p, `{"q":1}`)
	expectStatus(t, r, 201)
	expectEq(t, "document 6", source("6"), `{"a":{"b":{"x":[1,2]}},"c":5,"q":1,"via":"p"}`)
	// No document named a pipeline: no ingest_took.
	r = bulk(t, c, "/_bulk", `{"index":{"_index":"`+idx+`","_id":"7","pipeline":"_none"}}`, `{"d":"z"}`)
	expectEq(t, "errors", r.get("errors"), false)
	if v := r.get("ingest_took"); v != nil {
		t.Errorf("ingest_took = %v without a pipeline: %s", v, r.raw)
	}

	// A pipeline that does not exist fails the document before its index
	// is created.
	idx2 := indexName(t, c)
	r = bulk(t, c, "/_bulk", `{"index":{"_index":"`+idx2+`","_id":"1","pipeline":"`+p+`-missing"}}`, `{"d":"z"}`)
	expectEq(t, "errors", r.get("errors"), true)
	expectEq(t, "status", r.num("items.0.index.status"), int64(400))
	expectEq(t, "type", r.str("items.0.index.error.type"), "illegal_argument_exception")
	expectEq(t, "reason", r.str("items.0.index.error.reason"), "pipeline with id ["+p+"-missing] does not exist")
	if r.num("ingest_took") < 0 {
		t.Errorf("ingest_took = %v, want a number: %s", r.get("ingest_took"), r.raw)
	}
	expectStatus(t, call(t, c, "HEAD", "/"+idx2, ""), 404)
	r = call(t, c, "PUT", "/"+idx2+"/_doc/1?pipeline="+p+"-missing", `{"q":1}`)
	expectStatus(t, r, 400)
	expectEq(t, "reason", r.str("error.reason"), "pipeline with id ["+p+"-missing] does not exist")

	// A path through a value that is not an object.
	r = bulk(t, c, "/_bulk", `{"index":{"_index":"`+idx+`","_id":"8","pipeline":"`+p+`"}}`, `{"a":1}`)
	expectEq(t, "status", r.num("items.0.index.status"), int64(400))
	expectEq(t, "type", r.str("items.0.index.error.type"), "illegal_argument_exception")
	expectEq(t, "reason", r.str("items.0.index.error.reason"), "cannot set [b] with parent object of type [java.lang.Integer] as part of path [a.b]")

	// Deleted, the pipeline is gone.
	expectStatus(t, call(t, c, "DELETE", "/_ingest/pipeline/"+p, ""), 200)
	r = call(t, c, "DELETE", "/_ingest/pipeline/"+p, "")
	expectStatus(t, r, 404)
	expectEq(t, "type", r.str("error.type"), "resource_not_found_exception")
	expectEq(t, "reason", r.str("error.reason"), "pipeline ["+p+"] is missing")
	r = bulk(t, c, "/_bulk", `{"index":{"_index":"`+idx+`","_id":"9","pipeline":"`+p+`"}}`, `{"d":"z"}`)
	expectEq(t, "reason", r.str("items.0.index.error.reason"), "pipeline with id ["+p+"] does not exist")
}

// TestIngestPipelineErrors: the definition errors of PUT _ingest/pipeline.
func TestIngestPipelineErrors(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	p := pipelineName(t, c)
	for _, tc := range []struct {
		body, reason string
		meta         map[string]string
	}{
		{`{"description":"x"}`, "[processors] required property is missing", map[string]string{"property_name": "processors"}},
		{`{"processors":{"set":{}}}`, "[processors] property isn't a list, but of type [java.util.HashMap]", map[string]string{"property_name": "processors"}},
		{`{"processors":[],"zz":1}`, "pipeline [" + p + "] doesn't support one or more provided configuration parameters [zz]", nil},
		{`{"processors":[{"nope":{"field":"a"}}]}`, "No processor type exists with name [nope]", map[string]string{"processor_type": "nope"}},
		{`{"processors":[{"set":"x"}]}`, "property isn't a map, but of type [java.lang.String]", map[string]string{"processor_type": "set"}},
		{`{"processors":[{"set":{"value":1}}]}`, "[field] required property is missing", map[string]string{"processor_type": "set", "property_name": "field"}},
		{`{"processors":[{"set":{"field":"a"}}]}`, "[value] required property is missing", map[string]string{"processor_type": "set", "property_name": "value"}},
		{`{"processors":[{"set":{"field":1,"value":1}}]}`, "[field] property isn't a string, but of type [java.lang.Integer]", map[string]string{"processor_type": "set", "property_name": "field"}},
		{`{"processors":[{"set":{"field":"a","value":1,"override":"no"}}]}`, "[override] property isn't a boolean, but of type [java.lang.String]", map[string]string{"processor_type": "set", "property_name": "override"}},
		{`{"processors":[{"set":{"field":"a","value":1,"zz":1}}]}`, "processor [set] doesn't support one or more provided configuration parameters [zz]", map[string]string{"processor_type": "set"}},
	} {
		r := call(t, c, "PUT", "/_ingest/pipeline/"+p, tc.body)
		expectStatus(t, r, 400)
		expectEq(t, tc.body+" type", r.str("error.type"), "parse_exception")
		expectEq(t, tc.body+" reason", r.str("error.reason"), tc.reason)
		for k, v := range tc.meta {
			expectEq(t, tc.body+" "+k, r.str("error."+k), v)
		}
	}
	expectStatus(t, call(t, c, "GET", "/_ingest/pipeline/"+p, ""), 404)
}
