package estest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/typedapi/types"
	"github.com/elastic/go-elasticsearch/v8/typedapi/types/enums/operationtype"
	"github.com/elastic/go-elasticsearch/v8/typedapi/types/enums/versiontype"
)

func TestProductCheckAndRoot(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	if c.openSearch() {
		// No product header, its own version and tagline: the reason the
		// go-elasticsearch client refuses OpenSearch.
		r := call(t, c, "GET", "/", "")
		expectStatus(t, r, 200)
		expectEq(t, "X-Elastic-Product", r.header.Get("X-Elastic-Product"), "")
		expectEq(t, "distribution", r.str("version.distribution"), "opensearch")
		if v := r.str("version.number"); !strings.HasPrefix(v, "2.") {
			t.Fatalf("version.number = %q", v)
		}
		expectEq(t, "tagline", r.str("tagline"), "The OpenSearch Project: https://opensearch.org/")
		expectStatus(t, call(t, c, "HEAD", "/", ""), 200)
		return
	}
	res, err := c.Info()
	if err != nil {
		t.Fatalf("Info: %v (the client's product check must pass)", err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if got := res.Header.Get("X-Elastic-Product"); got != "Elasticsearch" {
		t.Fatalf("X-Elastic-Product = %q", got)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q", ct)
	}
	r := call(t, c, "GET", "/", "")
	if v := r.str("version.number"); !strings.HasPrefix(v, "8.") {
		t.Fatalf("version.number = %q", v)
	}
	expectEq(t, "tagline", r.str("tagline"), "You Know, for Search")
	expectShape(t, r, "root.json")

	head := call(t, c, "HEAD", "/", "")
	expectStatus(t, head, 200)
	if head.header.Get("X-Elastic-Product") != "Elasticsearch" {
		t.Fatal("HEAD / lacks X-Elastic-Product")
	}
}

func TestProductHeaderOnErrorsAndHead(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	for _, r := range []*resp{
		call(t, c, "HEAD", "/"+idx, ""),
		call(t, c, "GET", "/"+idx+"/_doc/1", ""),
		call(t, c, "DELETE", "/"+idx+"/_search", ""),
		call(t, c, "GET", "/_estest_unknown/a/b/c/d/e", ""),
	} {
		want := "Elasticsearch"
		if c.openSearch() {
			want = ""
		}
		if got := r.header.Get("X-Elastic-Product"); got != want {
			t.Fatalf("status %d response: X-Elastic-Product = %q, want %q", r.status, got, want)
		}
	}
}

func TestProductCheckRejectsServerWithoutHeader(t *testing.T) {
	t.Parallel()
	// The client refuses a 2xx answer without the product header; this is
	// the check every response of the test server has to pass.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	defer ts.Close()
	c, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{ts.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Info(); err == nil || !strings.Contains(err.Error(), "not Elasticsearch") {
		t.Fatalf("expected the product check to fail, got %v", err)
	}
}

func TestCompatibilityMediaType(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	vnd := "application/vnd.elasticsearch+json;compatible-with=8"
	r := call(t, c, "PUT", "/"+idx+"/_doc/1?refresh=true", `{"a":1}`, "Content-Type", vnd, "Accept", vnd)
	if c.openSearch() {
		// OpenSearch knows no compatible-with media types.
		expectStatus(t, r, 406)
		expectEq(t, "body", jsonString(r.body), `{"error":"Content-Type header [`+vnd+`] is not supported","status":406}`)
		return
	}
	expectStatus(t, r, 201)
	ct := strings.ReplaceAll(r.header.Get("Content-Type"), " ", "")
	if ct != vnd {
		t.Fatalf("Content-Type = %q, want %q", ct, vnd)
	}
	nd := "application/vnd.elasticsearch+x-ndjson;compatible-with=8"
	r = call(t, c, "POST", "/"+idx+"/_bulk", "{\"index\":{\"_id\":\"2\"}}\n{\"a\":2}\n", "Content-Type", nd, "Accept", vnd)
	expectStatus(t, r, 200)
	expectEq(t, "errors", r.get("errors"), false)
}

func TestTypedClientBulk(t *testing.T) {
	t.Parallel()
	// The typed client sends the compatible-with=8 media types and decodes
	// the response into its own structs.
	c, s := target(t)
	idx := indexName(t, c)
	addr := os.Getenv("ELASTICSEARCH_URL")
	if s != nil {
		addr = s.URL
	}
	tc, err := elasticsearch.NewTypedClient(elasticsearch.Config{Addresses: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	id1, id2 := "1", "2"
	v := int64(7)
	req := tc.Bulk().Index(idx)
	if err := req.IndexOp(types.IndexOperation{Id_: &id1, Version: &v, VersionType: &versiontype.Externalgte}, map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if err := req.DeleteOp(types.DeleteOperation{Id_: &id2}); err != nil {
		t.Fatal(err)
	}
	out, err := req.Do(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if out.Errors {
		t.Fatalf("errors: %+v", out.Items)
	}
	if len(out.Items) != 2 {
		t.Fatalf("items: %d", len(out.Items))
	}
	ix := out.Items[0][operationtype.Index]
	if ix.Status != 201 || ix.Version_ == nil || *ix.Version_ != 7 {
		t.Fatalf("index item: %+v", ix)
	}
	del := out.Items[1][operationtype.Delete]
	if del.Status != 404 || del.Result == nil || *del.Result != "not_found" {
		t.Fatalf("delete item: %+v", del)
	}
}

func TestUnknownPath(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	r := call(t, c, "GET", "/_estest_unknown/a/b/c/d/e?x=1", "")
	expectStatus(t, r, 400)
	uri := "/_estest_unknown/a/b/c/d/e?x=1"
	if c.openSearch() {
		uri = "/_estest_unknown/a/b/c/d/e" // OpenSearch leaves out the query string
	}
	expectEq(t, "body", jsonString(r.body), `{"error":"no handler found for uri [`+uri+`] and method [GET]"}`)
}

func TestWrongMethod(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	mustCreate(t, c, idx, "")
	r := call(t, c, "DELETE", "/"+idx+"/_search", "")
	expectStatus(t, r, 405)
	allow := r.header.Get("Allow")
	if !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Fatalf("Allow = %q", allow)
	}
	reason := r.str("error")
	prefix := "Incorrect HTTP method for uri [/" + idx + "/_search] and method [DELETE], allowed: ["
	if !strings.HasPrefix(reason, prefix) {
		t.Fatalf("error = %q", reason)
	}
	expectEq(t, "status", r.num("status"), int64(405))
}

func TestUnrecognizedParameter(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	body := "{\"index\":{\"_index\":\"" + idx + "\",\"_id\":\"1\"}}\n{\"a\":1}\n"
	r := call(t, c, "POST", "/_bulk?foo=bar", body, "Content-Type", "application/x-ndjson")
	expectStatus(t, r, 400)
	expectEq(t, "type", r.str("error.type"), "illegal_argument_exception")
	expectEq(t, "reason", r.str("error.reason"), "request [/_bulk] contains unrecognized parameter: [foo]")
	expectEq(t, "root_cause.0.type", r.str("error.root_cause.0.type"), "illegal_argument_exception")

	r = call(t, c, "POST", "/_bulk?refesh=true", body, "Content-Type", "application/x-ndjson")
	expectStatus(t, r, 400)
	expectEq(t, "reason", r.str("error.reason"), "request [/_bulk] contains unrecognized parameter: [refesh] -> did you mean [refresh]?")

	// nothing was indexed
	r = call(t, c, "GET", "/"+idx+"/_doc/1", "")
	expectStatus(t, r, 404)
}

func TestContentTypeChecks(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	r := call(t, c, "PUT", "/"+idx+"/_doc/1", `{"a":1}`, "Content-Type", "text/plain")
	expectStatus(t, r, 406)
	expectEq(t, "body", jsonString(r.body), `{"error":"Content-Type header [text/plain] is not supported","status":406}`)
	r = call(t, c, "PUT", "/"+idx+"/_doc/1", `{"a":1}`, "Content-Type", "")
	expectStatus(t, r, 406)
	missing := "Content-Type header is missing"
	if c.openSearch() {
		missing = "Content-Type header [] is not supported"
	}
	expectEq(t, "error", r.str("error"), missing)
}

func TestRequestTooLarge(t *testing.T) {
	t.Parallel()
	// http.max_content_length is 100mb: the answer is a bare 413.
	h := NewHandler()
	req := httptest.NewRequest("POST", "/_bulk", bytes.NewReader(nil))
	req.ContentLength = 100<<20 + 1
	req.Header.Set("Content-Type", "application/x-ndjson")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 413 || w.Body.Len() != 0 {
		t.Fatalf("got %d %q", w.Code, w.Body.String())
	}
	// a chunked body over the limit is cut off the same way (with a smaller
	// limit, to keep the test fast)
	h.maxContent = 1 << 10
	big := &zeroReader{n: 1<<10 + 1}
	req = httptest.NewRequest("POST", "/_bulk", big)
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/x-ndjson")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 413 || w.Body.Len() != 0 {
		t.Fatalf("chunked: got %d %q", w.Code, w.Body.String())
	}
}

type zeroReader struct{ n int64 }

func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	for i := range p {
		p[i] = ' '
	}
	z.n -= int64(len(p))
	return len(p), nil
}
