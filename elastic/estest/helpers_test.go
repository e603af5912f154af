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
)

// target returns the client the test talks to: a client for the cluster at
// ELASTICSEARCH_URL when it is set (and a nil *Server), or a client for a
// fresh test server. Credentials may be given in the URL's user info;
// ELASTICSEARCH_CA_CERT names a PEM file for HTTPS clusters.
func target(t *testing.T) (*elasticsearch.Client, *Server) {
	t.Helper()
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
		return c, nil
	}
	s := New(t)
	return s.Client(t), s
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
func indexName(t *testing.T, c *elasticsearch.Client) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "t-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		res, err := c.Indices.Delete([]string{name}, c.Indices.Delete.WithIgnoreUnavailable(true))
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

// call sends a raw request through the client's transport (so the product
// check and retries apply) and decodes the answer.
func call(t testing.TB, c *elasticsearch.Client, method, path, body string, hdr ...string) *resp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := c.Perform(req)
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

// bulk sends an NDJSON body to _bulk.
func bulk(t testing.TB, c *elasticsearch.Client, path string, lines ...string) *resp {
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
func mustCreate(t testing.TB, c *elasticsearch.Client, name, body string) {
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
