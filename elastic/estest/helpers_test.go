package estest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/redstream-go/redstream/internal/testenv"
)

// engine is what a test talks to.
type engine int

const (
	// engineTest is a fresh test server of this package.
	engineTest engine = iota
	// engineElasticsearch is the cluster at ELASTICSEARCH_URL.
	engineElasticsearch
	// engineOpenSearch is the OpenSearch node at OPENSEARCH_URL; only the
	// subtests of TestOpenSearch talk to it.
	engineOpenSearch
)

// client is a test's connection to its engine. For Elasticsearch and the
// test server, requests go through the go-elasticsearch client (so its
// product check applies); OpenSearch sends no X-Elastic-Product header,
// which that client refuses, so requests to it are plain HTTP and the
// embedded client must not be used.
type client struct {
	*elasticsearch.Client
	engine engine
	url    string // the engine's base URL, for plain HTTP
}

// openSearch reports whether the test talks to a real OpenSearch node,
// whose answer differs from Elasticsearch 8's where a test says so.
func (c *client) openSearch() bool { return c.engine == engineOpenSearch }

// docParseError is the error type of a document that does not fit its
// mapping: ES 8 throws DocumentParsingException, OpenSearch (like ES 7)
// MapperParsingException.
func (c *client) docParseError() string {
	if c.openSearch() {
		return "mapper_parsing_exception"
	}
	return "document_parsing_exception"
}

// docParseReason is the reason of such an error: ES 8 prefixes it with the
// [line:col] of the offending value, OpenSearch does not.
func (c *client) docParseReason(at, reason string) string {
	if c.openSearch() {
		return reason
	}
	return "[" + at + "] " + reason
}

// target returns the client the test talks to: for a subtest of
// TestOpenSearch, the OpenSearch node at OPENSEARCH_URL; otherwise a client
// for the cluster at ELASTICSEARCH_URL when it is set (and a nil *Server),
// or a client for a fresh test server. Credentials may be given in the
// URL's user info; ELASTICSEARCH_CA_CERT names a PEM file for HTTPS
// clusters.
func target(t *testing.T) (*client, *Server) {
	t.Helper()
	if strings.HasPrefix(t.Name(), openSearchTest+"/") {
		u := testenv.OpenSearchURL(t)
		c, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{u}})
		if err != nil {
			t.Fatal(err)
		}
		return &client{Client: c, engine: engineOpenSearch, url: strings.TrimSuffix(u, "/")}, nil
	}
	if u := os.Getenv("ELASTICSEARCH_URL"); u != "" {
		cfg := elasticsearch.Config{Addresses: []string{u}}
		if p := os.Getenv("ELASTICSEARCH_CA_CERT"); p != "" {
			pem, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			cfg.CACert = pem
		}
		c, err := elasticsearch.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return &client{Client: c, engine: engineElasticsearch, url: strings.TrimSuffix(u, "/")}, nil
	}
	s := New(t)
	return &client{Client: s.Client(t), engine: engineTest, url: s.URL}, s
}

// needServer skips a test that relies on fault injection or inspection when
// it runs against a real cluster.
func needServer(t *testing.T, s *Server) {
	t.Helper()
	if s != nil {
		return
	}
	// Only the explicit opt-in ELASTICSEARCH_URL replaces the test server.
	if os.Getenv("ELASTICSEARCH_URL") == "" {
		t.Fatal("no test server and ELASTICSEARCH_URL is not set")
	}
	t.Skip("needs the test server's fault injection, which a real cluster (ELASTICSEARCH_URL) lacks")
}

// indexName returns a unique index name, deleted when the test ends.
func indexName(t *testing.T, c *client) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "t-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		res, err := c.do(http.MethodDelete, "/"+name+"?ignore_unavailable=true", nil, nil)
		if err == nil {
			res.Body.Close()
		}
	})
	return name
}

// resp is a decoded response.
type resp struct {
	status int
	header http.Header
	raw    []byte
	body   any
}

// get walks the decoded body by a dotted path; numeric segments index arrays.
func (r *resp) get(path string) any {
	return jget(r.body, path)
}

func (r *resp) str(path string) string {
	v := r.get(path)
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return jsonString(v)
}

func (r *resp) num(path string) int64 {
	switch v := r.get(path).(type) {
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			f, _ := v.Float64()
			return int64(f)
		}
		return n
	}
	return -999
}

func jget(v any, path string) any {
	if path == "" {
		return v
	}
	for _, seg := range splitPath(path) {
		switch t := v.(type) {
		case map[string]any:
			v = t[seg]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(t) {
				return nil
			}
			v = t[i]
		default:
			return nil
		}
	}
	return v
}

// splitPath splits on dots, keeping "resource.type"-like keys addressable
// with a backslash: "error.resource\\.type".
func splitPath(p string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p):
			cur.WriteByte(p[i+1])
			i++
		case p[i] == '.':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(p[i])
		}
	}
	return append(out, cur.String())
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func decode(t testing.TB, raw []byte) any {
	t.Helper()
	if len(raw) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %q: %v", raw, err)
	}
	return v
}

// call sends a raw request to the engine and decodes the answer. Headers
// come in name, value pairs; an empty value removes the header.
func call(t testing.TB, c *client, method, path, body string, hdr ...string) *resp {
	t.Helper()
	var rd io.Reader
	h := http.Header{}
	if body != "" {
		rd = strings.NewReader(body)
		h.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			h.Del(hdr[i])
		} else {
			h.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := c.do(method, path, rd, h)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := &resp{status: res.StatusCode, header: res.Header, raw: raw}
	if method != http.MethodHead && len(raw) > 0 && strings.Contains(res.Header.Get("Content-Type"), "json") {
		r.body = decode(t, raw)
	}
	return r
}

// do sends a request: through the go-elasticsearch client's transport (so
// the product check and retries apply), or as plain HTTP to OpenSearch.
func (c *client) do(method, path string, body io.Reader, h http.Header) (*http.Response, error) {
	u := path
	if c.openSearch() {
		u = c.url + path
	}
	req, err := http.NewRequestWithContext(context.Background(), method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if c.openSearch() {
		return http.DefaultClient.Do(req)
	}
	return c.Perform(req)
}

// bulk sends an NDJSON body to _bulk.
func bulk(t testing.TB, c *client, path string, lines ...string) *resp {
	t.Helper()
	return call(t, c, "POST", path, strings.Join(lines, "\n")+"\n", "Content-Type", "application/x-ndjson")
}

func expectStatus(t testing.TB, r *resp, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body %s", r.status, want, r.raw)
	}
}

func expectEq(t testing.TB, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s = %#v, want %#v", what, got, want)
	}
}

// mustCreate creates an index with an optional body.
func mustCreate(t testing.TB, c *client, name, body string) {
	t.Helper()
	r := call(t, c, "PUT", "/"+name, body)
	expectStatus(t, r, 200)
}

// shape reduces a JSON document to its structure: object keys (sorted) and
// value kinds, arrays element by element.
func shape(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range t {
			out[k] = shape(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = shape(e)
		}
		return out
	case json.Number:
		return "number"
	case string:
		return "string"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return "?"
}

// expectShape compares a response's structure with a canned response under
// testdata (values are ignored, keys and kinds must match).
func expectShape(t testing.TB, r *resp, file string) {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	want := shape(decode(t, raw))
	got := shape(r.body)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("response shape differs from testdata/%s\n got: %s\nwant: %s\nbody: %s", file, jsonString(got), jsonString(want), r.raw)
	}
}

func keysOf(m any) []string {
	mm, _ := m.(map[string]any)
	var ks []string
	for k := range mm {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
