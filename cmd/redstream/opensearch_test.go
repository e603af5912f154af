package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"gorm.io/gorm"

	"github.com/redstream-go/redstream/internal/testenv"
)

// openSearchURL returns the URL of the OpenSearch node make test starts.
func openSearchURL(t *testing.T) string {
	t.Helper()
	return testenv.OpenSearchURL(t)
}

// osNode is an index of the test's own on the OpenSearch node.
type osNode struct {
	url, index string
	client     *http.Client
}

// newOSNode returns a node client for an index of the test's own, whose
// connections close, and index goes, when the test ends.
func newOSNode(t *testing.T, url, ns string) *osNode {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	n := &osNode{url: url, index: "os-" + strings.ToLower(ns), client: &http.Client{Transport: tr}}
	t.Cleanup(tr.CloseIdleConnections)
	t.Cleanup(func() { n.do(t, "DELETE", "/"+n.index, "") })
	return n
}

// do sends a request to the node and returns its status and body.
func (n *osNode) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	return httpDo(t, n.client, n.url, method, path, body)
}

// httpDo sends a request with a JSON body (none when empty) to base+path
// and returns its status and body.
func httpDo(t *testing.T, client *http.Client, base, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// osDoc is a document of the node as GET _doc returns it.
type osDoc struct {
	Version int64 `json:"_version"`
	Source  struct {
		Title string
		Price int64
	} `json:"_source"`
}

// doc returns document id, and whether it exists.
func (n *osNode) doc(t *testing.T, id uint64) (osDoc, bool) {
	t.Helper()
	code, body := n.do(t, "GET", fmt.Sprintf("/%s/_doc/%d", n.index, id), "")
	var d osDoc
	if code == http.StatusNotFound {
		return d, false
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &d) != nil {
		t.Fatalf("GET document %d: %d %s", id, code, body)
	}
	return d, true
}

// title returns the title of document id, and whether it exists.
func (n *osNode) title(t *testing.T, id uint64) (string, bool) {
	t.Helper()
	d, ok := n.doc(t, id)
	return d.Source.Title, ok
}

// newOSFixture is newFixture pointed at an index of the test's own on the
// OpenSearch node, with elasticsearch.engine: opensearch.
func newOSFixture(t *testing.T, streamYAML string) (*fixture, *osNode) {
	t.Helper()
	url := openSearchURL(t)
	f := newFixture(t, streamYAML)
	node := newOSNode(t, url, f.ns)
	f.editConfig(t, "    index: products\n", "    index: "+node.index+"\n")
	f.editConfig(t, "elasticsearch:\n", "elasticsearch:\n  engine: opensearch\n")
	f.vars["ELASTICSEARCH_URL"] = url
	return f, node
}

// TestOpenSearchWorker runs the binary against the real OpenSearch node,
// chosen with elasticsearch.engine: opensearch: the worker creates the
// index with its mapping and syncs creates, updates, soft and hard
// deletes; a document the mapping refuses is dead-lettered with
// OpenSearch's mapper_parsing_exception, shown by status and dlq list;
// verify finds the differences, --repair queues them (dropping the dead
// letter of the record it queues) and verify then finds the two in sync.
func TestOpenSearchWorker(t *testing.T) {
	t.Parallel()
	url := openSearchURL(t)
	f := &fixture{dsn: testenv.Schema(t)}
	f.rdb, f.ns = testenv.Redis(t)
	f.db = pluginDB(t, f.dsn, f.rdb, f.ns, &product{})
	node := newOSNode(t, url, f.ns)
	f.listen = freeAddr(t)
	dir := t.TempDir()
	// price is a byte: a price above 127 does not fit, and OpenSearch
	// refuses that one document.
	writeFile(t, dir, "products.json", `{"mappings":{"properties":{"id":{"type":"long"},"title":{"type":"text"},"price":{"type":"byte"}}}}`)
	f.config = writeFile(t, dir, "redstream.yaml", fmt.Sprintf(`
redis:
  namespace: %s
elasticsearch:
  engine: opensearch
worker:
  listen: %s
  lock_ttl: 2s
streams:
  - name: products
    table: products
    index: %s
    mapping: products.json
    soft_delete_column: deleted_at
    version_column: updated_at
    delay: 1h
`, f.ns, f.listen, node.index))
	f.vars = map[string]string{"DATABASE_URL": f.dsn, "REDIS_URL": testenv.RedisURL(), "ELASTICSEARCH_URL": url}

	ctx := context.Background()
	w := startBin(t, f.vars, "worker", "--config", f.config)
	eventually(t, "/readyz", func() bool { code, _ := httpGet("http://" + f.listen + "/readyz"); return code == 200 })
	if code, body := node.do(t, "GET", "/"+node.index+"/_mapping", ""); code != 200 || !strings.Contains(body, `"price":{"type":"byte"}`) {
		t.Fatalf("the worker did not create the index with its mapping: %d %s", code, body)
	}

	tea, cake, gone := product{Title: "tea", Price: 3}, product{Title: "cake", Price: 5}, product{Title: "gone", Price: 1}
	for _, p := range []*product{&tea, &cake, &gone} {
		if err := f.db.WithContext(ctx).Create(p).Error; err != nil {
			t.Fatal(err)
		}
	}
	if err := f.db.WithContext(ctx).Model(&tea).Update("title", "green tea").Error; err != nil {
		t.Fatal(err)
	}
	eventually(t, "the created and updated documents", func() bool {
		a, _ := node.title(t, tea.ID)
		b, _ := node.title(t, cake.ID)
		c, _ := node.title(t, gone.ID)
		return a == "green tea" && b == "cake" && c == "gone"
	})
	// version_column: the document's external version is the row's
	// updated_at (as stored, in microseconds).
	var stored product
	if err := f.db.WithContext(ctx).First(&stored, tea.ID).Error; err != nil {
		t.Fatal(err)
	}
	if d, _ := node.doc(t, tea.ID); d.Version != stored.UpdatedAt.UnixMicro() {
		t.Errorf("document %d has version %d, want updated_at in microseconds %d", tea.ID, d.Version, stored.UpdatedAt.UnixMicro())
	}
	if err := f.db.WithContext(ctx).Delete(&gone).Error; err != nil { // soft
		t.Fatal(err)
	}
	if err := f.db.WithContext(ctx).Unscoped().Delete(&cake).Error; err != nil { // hard
		t.Fatal(err)
	}
	eventually(t, "the soft- and hard-deleted documents to go", func() bool {
		_, soft := node.title(t, gone.ID)
		_, hard := node.title(t, cake.ID)
		return !soft && !hard
	})

	// A document the mapping refuses is dead-lettered; the stream goes on.
	worse, after := product{Title: "worse", Price: 1000}, product{Title: "after", Price: 7}
	for _, p := range []*product{&worse, &after} {
		if err := f.db.WithContext(ctx).Create(p).Error; err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "a dead letter in status", func() bool {
		st := f.status(t)
		return len(st) == 1 && len(st[0].Consumers) == 1 && st[0].Consumers[0].DeadLetters == 1
	})
	eventually(t, "the document after the poison one", func() bool { title, _ := node.title(t, after.ID); return title == "after" })
	if _, ok := node.title(t, worse.ID); ok {
		t.Fatalf("the refused document %d is indexed", worse.ID)
	}
	r := runBin(t, f.vars, "dlq", "list", "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "mapper_parsing_exception") || !strings.Contains(r.stdout, fmt.Sprintf(`{"id":%d}`, worse.ID)) {
		t.Fatalf("dlq list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Behind the worker's back: the poison row is fixed, a row is written
	// without the plugin, and a document without a row appears.
	plain := f.db.Session(&gorm.Session{NewDB: true})
	for _, q := range []string{
		fmt.Sprintf("UPDATE products SET price = 9, updated_at = now() WHERE id = %d", worse.ID),
		"INSERT INTO products (id, title, price, updated_at) VALUES (100, 'plain', 4, now())",
	} {
		if err := plain.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	if code, body := node.do(t, "PUT", "/"+node.index+"/_doc/999?refresh=true", `{"id":999,"title":"orphan","price":1}`); code >= 300 {
		t.Fatalf("PUT the orphan: %d %s", code, body)
	}
	node.do(t, "POST", "/"+node.index+"/_refresh", "")
	rep, r := f.verify(t)
	if r.code != exitFailure || rep.InSync || rep.Missing.Count != 2 || rep.Extra.Count != 1 || rep.Stale.Count != 0 ||
		sample(rep.Missing.First...) != sample(fmt.Sprint(worse.ID), "100") || sample(rep.Extra.First...) != "999" {
		t.Fatalf("verify: exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	rep, r = f.verify(t, "--repair")
	if r.code != exitFailure || rep.Queued != 3 || rep.DeadLettersResolved != 1 {
		t.Fatalf("verify --repair: exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	eventually(t, "verify to find the two in sync", func() bool {
		node.do(t, "POST", "/"+node.index+"/_refresh", "")
		rep, r := f.verify(t)
		return r.code == exitOK && rep.InSync && rep.Missing.Count == 0 && rep.Extra.Count == 0 && rep.Stale.Count == 0
	})
	if title, _ := node.title(t, worse.ID); title != "worse" {
		t.Errorf("the repaired document's title is %q", title)
	}
	if st := f.status(t); st[0].Consumers[0].DeadLetters != 0 {
		t.Errorf("dead letters after the repair: %d", st[0].Consumers[0].DeadLetters)
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d\n%s", code, w.stderr.String())
	}
}

// TestOpenSearchDeadLetters: the dead-letter commands on the node's
// dead letters. Two documents the mapping refuses are dead-lettered with
// OpenSearch's mapper_parsing_exception; one row is fixed behind the
// worker's back, and dlq replay --all sends both back through the worker:
// the fixed one is indexed, the other dead-lettered again, as a new entry
// with the engine's error. dlq drop then removes that one for good.
func TestOpenSearchDeadLetters(t *testing.T) {
	t.Parallel()
	f, node := newOSFixture(t, "    delay: 1h\n")
	// price is a byte: a price above 127 does not fit.
	writeFile(t, filepath.Dir(f.config), "bytes.json", `{"mappings":{"properties":{"id":{"type":"long"},"title":{"type":"text"},"price":{"type":"byte"}}}}`)
	f.editConfig(t, "    mapping: products.json\n", "    mapping: bytes.json\n")
	w := startBin(t, f.vars, "worker", "--config", f.config)
	waitReady(t, f.listen)

	fixed, dropped, fine := product{Title: "fixed", Price: 1000}, product{Title: "dropped", Price: 2000}, product{Title: "fine", Price: 1}
	f.create(t, &fixed, &dropped, &fine)
	eventually(t, "two dead letters", func() bool { return len(f.dlqEntries(t)) == 2 })
	eventually(t, "the document the mapping takes", func() bool { title, _ := node.title(t, fine.ID); return title == "fine" })
	dl := f.dlqEntries(t)
	for i, p := range []product{fixed, dropped} {
		if d := dl[i]; d.Attempts != "1" || !strings.Contains(d.Error, "mapper_parsing_exception") ||
			string(d.Payload) != fmt.Sprintf(`{"id":%d}`, p.ID) {
			t.Fatalf("dead letter %d: %+v; want product %d's, with mapper_parsing_exception", i, d, p.ID)
		}
	}

	first := []string{dl[0].DLQID, dl[1].DLQID}

	plain := f.db.Session(&gorm.Session{NewDB: true}) // no message queued
	if err := plain.Exec("UPDATE products SET price = 9, updated_at = now() WHERE id = ?", fixed.ID).Error; err != nil {
		t.Fatal(err)
	}
	r := runBin(t, f.vars, "dlq", "replay", "--all", "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "replayed 2 dead-lettered messages") {
		t.Fatalf("dlq replay --all: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	eventually(t, "the fixed row's document", func() bool { d, ok := node.doc(t, fixed.ID); return ok && d.Source.Price == 9 })
	eventually(t, "the still-refused document dead-lettered again", func() bool { dl = f.dlqEntries(t); return len(dl) == 1 })
	again := dl[0]
	if slices.Contains(first, again.DLQID) || !strings.Contains(again.Error, "mapper_parsing_exception") ||
		string(again.Payload) != fmt.Sprintf(`{"id":%d}`, dropped.ID) || again.Attempts != "1" {
		t.Fatalf("dead letter after the replay: %+v; want a new one for product %d, with mapper_parsing_exception", again, dropped.ID)
	}

	r = runBin(t, f.vars, "dlq", "drop", "--id", again.DLQID, "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "dropped 1 dead-lettered message") {
		t.Fatalf("dlq drop: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if dl := f.dlqEntries(t); len(dl) != 0 {
		t.Errorf("dead letters after the drop: %+v", dl)
	}
	if st := f.status(t); st[0].Consumers[0].DeadLetters != 0 {
		t.Errorf("status: %d dead letters after the drop", st[0].Consumers[0].DeadLetters)
	}
	if _, ok := node.doc(t, dropped.ID); ok {
		t.Errorf("the dropped document %d is indexed", dropped.ID)
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d\n%s", code, w.stderr.String())
	}
}

// TestOpenSearchEngineMismatch: a worker pointed at a cluster of the other
// engine stops at start with a message that names the line to change.
func TestOpenSearchEngineMismatch(t *testing.T) {
	t.Parallel()
	url := openSearchURL(t)
	f := newFixture(t, "")
	vars := map[string]string{"DATABASE_URL": f.dsn, "REDIS_URL": testenv.RedisURL(), "ELASTICSEARCH_URL": url}
	r := runBin(t, vars, "verify", "--config", f.config, "--stream", "products")
	if r.code == exitOK || !strings.Contains(r.stderr, "runs OpenSearch 2.") || !strings.Contains(r.stderr, "set elasticsearch.engine: opensearch") {
		t.Errorf("Elasticsearch configured, OpenSearch found: exit %d\n%s", r.code, r.stderr)
	}
	f.editConfig(t, "elasticsearch:\n", "elasticsearch:\n  engine: opensearch\n")
	r = runBin(t, f.vars, "verify", "--config", f.config, "--stream", "products")
	if r.code == exitOK || !strings.Contains(r.stderr, "runs Elasticsearch 8.") || !strings.Contains(r.stderr, "set elasticsearch.engine: elasticsearch") {
		t.Errorf("OpenSearch configured, Elasticsearch found: exit %d\n%s", r.code, r.stderr)
	}
}

// TestOpenSearchBackfill: backfill indexes a table written without the
// plugin into the OpenSearch node, soft-deleted rows left out, and verify
// then finds the two in sync.
func TestOpenSearchBackfill(t *testing.T) {
	t.Parallel()
	f, node := newOSFixture(t, "    soft_delete_column: deleted_at\n    version_column: updated_at\n    batch_size: 3\n")
	plain := f.insertRows(t, 10)
	if err := plain.Exec("UPDATE products SET deleted_at = now() WHERE id = 4").Error; err != nil {
		t.Fatal(err)
	}
	r := runBin(t, f.vars, "backfill", "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "backfill products: 10 rows") || !strings.Contains(r.stdout, "9 indexed, 1 deleted") {
		t.Fatalf("backfill: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for id := uint64(1); id <= 10; id++ {
		title, ok := node.title(t, id)
		if want := id != 4; ok != want || (ok && title != fmt.Sprint("p", id)) {
			t.Errorf("document %d: %q, indexed %v; want indexed %v", id, title, ok, want)
		}
	}
	if code, body := node.do(t, "GET", "/"+node.index+"/_mapping", ""); code != 200 || !strings.Contains(body, `"title":{"type":"text"}`) {
		t.Errorf("backfill did not create the index with its mapping: %d %s", code, body)
	}
	node.do(t, "POST", "/"+node.index+"/_refresh", "")
	rep, r := f.verify(t)
	if r.code != exitOK || !rep.InSync || rep.Rows != 10 || rep.Documents != 9 || !rep.Versioned {
		t.Fatalf("verify after backfill: exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
}

// TestOpenSearchAWSSigning checks the shape of the requests the binary
// sends with elasticsearch.aws set (no AWS endpoint can be reached here,
// so no server checks the signatures): each carries an AWS SigV4
// Authorization for the configured region and service, with the
// credentials of the environment, and the SHA-256 of its body.
func TestOpenSearchAWSSigning(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen []*http.Request
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/":
			_, _ = io.WriteString(w, `{"version":{"distribution":"opensearch","number":"2.19.6"}}`)
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusNotFound)
		default:
			_, _ = io.WriteString(w, `{"acknowledged":true}`)
		}
	}))
	defer srv.Close()
	f := newFixture(t, "")
	f.editConfig(t, "elasticsearch:\n", "elasticsearch:\n  engine: opensearch\n  aws:\n    region: eu-west-1\n    service: aoss\n")
	f.vars["ELASTICSEARCH_URL"] = srv.URL
	empty := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
		"AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty, "AWS_EC2_METADATA_DISABLED": "true",
	} {
		f.vars[k] = v
	}
	r := runBin(t, f.vars, "backfill", "--config", f.config, "--stream", "products")
	if r.code != 0 {
		t.Fatalf("backfill: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	var got []string
	auth := regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/aoss/aws4_request, SignedHeaders=\S*x-amz-date\S*, Signature=[0-9a-f]{64}$`)
	for _, req := range seen {
		got = append(got, req.Method+" "+req.URL.Path)
		if !auth.MatchString(req.Header.Get("Authorization")) || req.Header.Get("X-Amz-Content-Sha256") == "" {
			t.Errorf("%s %s is not signed for aoss in eu-west-1: %q", req.Method, req.URL.Path, req.Header.Get("Authorization"))
		}
	}
	// The engine check, then the index created behind its alias (checked
	// again under the creation lock).
	if want := regexp.MustCompile(`^GET /,HEAD /products,HEAD /products,PUT /products-\d{8}-\d{6}$`); !want.MatchString(strings.Join(got, ",")) {
		t.Errorf("requests %s, want %s", strings.Join(got, ","), want)
	}
}
