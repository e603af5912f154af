package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// newMappingJSON is the mapping a reindex moves to: title gains a keyword
// sub-field.
const newMappingJSON = `{"mappings":{"properties":{"id":{"type":"long"},"title":{"type":"text","fields":{"raw":{"type":"keyword"}}},"price":{"type":"long"}}}}`

// aliasOf returns the indexes the alias points at, over HTTP.
func aliasOf(t *testing.T, url, alias string) []string {
	t.Helper()
	res, err := http.Get(url + "/_alias/" + alias)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return nil
	}
	var body map[string]any
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	var out []string
	for ix := range body {
		out = append(out, ix)
	}
	slices.Sort(out)
	return out
}

var physicalName = regexp.MustCompile(`^products-\d{8}-\d{6}(-\d+)?$`)

// TestWorkerCreatesAliasedIndex: a worker with a mapping file creates
// products-<time> and the alias products; two workers starting together
// create one index.
func TestWorkerCreatesAliasedIndex(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	a := startBin(t, f.vars, "worker", "--config", f.config)
	second := freeAddr(t)
	b := startBin(t, f.vars, "worker", "--config", f.config, "--listen", second)
	waitReady(t, f.listen)
	waitReady(t, second)
	got := aliasOf(t, f.es.URL, "products")
	if len(got) != 1 || !physicalName.MatchString(got[0]) {
		t.Fatalf("alias products points at %v, want one products-<time>", got)
	}
	p := product{Title: "through the alias", Price: 1}
	f.create(t, &p)
	eventually(t, "the document", func() bool { return f.indexed(&p) })
	if src, _, ok := f.es.Doc(got[0], fmt.Sprint(p.ID)); !ok || !strings.Contains(string(src), "through the alias") {
		t.Fatalf("document not in %s: %s", got[0], src)
	}
	a.stop(t)
	b.stop(t)
}

// cluster is the search engine a reindex test of the binary writes to,
// and the alias it rebuilds there (a name of the test's own, since a real
// cluster is shared).
type cluster struct {
	engine elastic.Engine
	url    string
	alias  string
	client *http.Client
}

// esCluster returns the Elasticsearch the fixture's tests use: the cluster
// at ELASTICSEARCH_URL when set, as every Elasticsearch test does, else the
// fixture's test server.
func esCluster(t *testing.T, f *fixture) *cluster {
	t.Helper()
	return newCluster(t, f, elastic.Elasticsearch, cmp.Or(os.Getenv("ELASTICSEARCH_URL"), f.es.URL))
}

// osCluster returns the OpenSearch node make test starts.
func osCluster(t *testing.T, f *fixture) *cluster {
	t.Helper()
	return newCluster(t, f, elastic.OpenSearch, openSearchURL(t))
}

// newCluster points the fixture's config and environment at the cluster
// at url, with its stream's index an alias of the test's own, deleted with
// the indexes behind it when the test ends.
func newCluster(t *testing.T, f *fixture, engine elastic.Engine, url string) *cluster {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	c := &cluster{engine: engine, url: url, alias: "rx-" + strings.ToLower(f.ns), client: &http.Client{Transport: tr}}
	f.editConfig(t, "    index: products\n", "    index: "+c.alias+"\n")
	if engine == elastic.OpenSearch {
		f.editConfig(t, "elasticsearch:\n", "elasticsearch:\n  engine: opensearch\n")
	}
	f.vars["ELASTICSEARCH_URL"] = url
	t.Cleanup(func() {
		code, body := c.do(t, "GET", "/"+c.alias+"-*", "")
		var ixs map[string]json.RawMessage
		if code != http.StatusOK || json.Unmarshal([]byte(body), &ixs) != nil || len(ixs) == 0 {
			return
		}
		// By name: a real cluster may refuse wildcards in deletes.
		c.do(t, "DELETE", "/"+strings.Join(slices.Sorted(maps.Keys(ixs)), ","), "")
	})
	return c
}

// eachCluster runs fn as a subtest per engine, in parallel, each with a
// fixture of newF pointed at that engine's cluster.
func eachCluster(t *testing.T, newF func(t *testing.T) *fixture, fn func(t *testing.T, f *fixture, c *cluster)) {
	for _, tc := range []struct {
		engine elastic.Engine
		get    func(*testing.T, *fixture) *cluster
	}{{elastic.Elasticsearch, esCluster}, {elastic.OpenSearch, osCluster}} {
		t.Run(string(tc.engine), func(t *testing.T) {
			t.Parallel()
			f := newF(t)
			fn(t, f, tc.get(t, f))
		})
	}
}

// do sends a request to the cluster and returns its status and body.
func (c *cluster) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	return httpDo(t, c.client, c.url, method, path, body)
}

// refresh makes what was written behind the alias searchable.
func (c *cluster) refresh(t *testing.T) {
	t.Helper()
	if code, body := c.do(t, "POST", "/"+c.alias+"/_refresh", ""); code != http.StatusOK {
		t.Fatalf("refresh %s: %d %s", c.alias, code, body)
	}
}

// exists reports whether the index (or alias) name exists.
func (c *cluster) exists(t *testing.T, name string) bool {
	t.Helper()
	code, _ := c.do(t, "HEAD", "/"+name, "")
	return code == http.StatusOK
}

// doc returns the title and price of document id behind the alias
// (realtime GET), and whether it exists.
func (c *cluster) doc(t *testing.T, id uint64) (title string, price int64, ok bool) {
	t.Helper()
	code, body := c.do(t, "GET", fmt.Sprintf("/%s/_doc/%d", c.alias, id), "")
	if code == http.StatusNotFound {
		return "", 0, false
	}
	var d struct {
		Source struct {
			Title string
			Price int64
		} `json:"_source"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &d) != nil {
		t.Fatalf("GET document %d: %d %s", id, code, body)
	}
	return d.Source.Title, d.Source.Price, true
}

// count returns the documents searchable behind the alias.
func (c *cluster) count(t *testing.T) int64 {
	t.Helper()
	code, body := c.do(t, "GET", "/"+c.alias+"/_count", "")
	var r struct{ Count int64 }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &r) != nil {
		t.Fatalf("count %s: %d %s", c.alias, code, body)
	}
	return r.Count
}

// killProxy serves the cluster, and stops at one chosen request of a
// reindex to let the test kill the reindex there.
type killProxy struct {
	f       *fixture
	next    http.Handler
	mode    atomic.Value // string: the kill point armed, "" for none
	hit     chan string
	release chan struct{}
}

func newKillProxy(t *testing.T, f *fixture, c *cluster) (*killProxy, string) {
	u, err := neturl.Parse(c.url)
	if err != nil {
		t.Fatal(err)
	}
	next := httputil.NewSingleHostReverseProxy(u)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	next.Transport = tr
	p := &killProxy{f: f, next: next, hit: make(chan string, 1), release: make(chan struct{})}
	p.mode.Store("")
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		select {
		case <-p.release:
		default:
			close(p.release)
		}
		srv.Close()
	})
	return p, srv.URL
}

func (p *killProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	mode := p.mode.Load().(string)
	hit := false
	if mode != "" {
		ctx := context.Background()
		st := p.f.rdb.HGetAll(ctx, redstream.NewKeys(p.f.ns).Reindex("products")).Val()
		bulk := strings.HasSuffix(r.URL.Path, "/_bulk") && st["index"] != "" && bytes.Contains(body, []byte(`"_index":"`+st["index"]+`"`))
		swap := r.Method == http.MethodPost && r.URL.Path == "/_aliases"
		switch mode {
		case "backfill": // after a page or two
			hit = bulk && st["phase"] == mode && st["rows"] != "" && st["rows"] != "0"
		case "replay":
			hit = bulk && st["phase"] == mode
		case "before swap", "after swap":
			hit = swap
		}
	}
	if !hit || !p.mode.CompareAndSwap(mode, "") {
		p.next.ServeHTTP(w, r)
		return
	}
	if mode == "after swap" {
		p.next.ServeHTTP(httptest.NewRecorder(), r) // applied, never answered
	}
	p.hit <- mode
	<-p.release
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
		}
	}
}

// runReindexUnderLoad rebuilds the index of a fixture whose stream has
// the config lines of newFixture, on cluster c, while two worker processes
// sync a mixed write load and a reader polls the alias; the reindex is
// killed with SIGKILL at each step (during the backfill, during the
// replay, just before and just after the swap) and run again each time,
// then to its end.
func runReindexUnderLoad[M productModel](t *testing.T, f *fixture, c *cluster) {
	f.setWorkerOption(t, "level", "debug", "info")
	mapping := writeFile(t, t.TempDir(), "products-v2.json", newMappingJSON)
	ctx := context.Background()
	listens := [2]string{f.listen, freeAddr(t)}
	for _, l := range listens {
		startBin(t, f.vars, "worker", "--config", f.config, "--listen", l)
	}
	waitReady(t, listens[0])
	waitReady(t, listens[1])
	physical := regexp.MustCompile(`^` + regexp.QuoteMeta(c.alias) + `-\d{8}-\d{6}(-\d+)?$`)
	old := aliasOf(t, c.url, c.alias)
	if len(old) != 1 || !physical.MatchString(old[0]) {
		t.Fatalf("alias %s points at %v", c.alias, old)
	}

	producer := mustProducer(f.rdb, &redstream.ProducerOptions{Namespace: f.ns})
	w := &chaosWriter[M]{db: f.db, producer: producer, rng: rand.New(rand.NewPCG(7, uint64(len(f.config)))), counts: map[string]int{}}
	if f.mysql {
		w.now = "UTC_TIMESTAMP(6)" // a DATETIME holds UTC, as GORM writes it
	}
	for range 400 {
		if err := w.step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	within(t, 2*time.Minute, "the index in sync before the reindex", func() bool { return chaosVerify(t, f, "products").InSync })
	// Search sees the last refresh: the reader's floor below counts the
	// rows at the start, so they are made searchable first (a run quicker
	// than refresh_interval would otherwise find an older count).
	c.refresh(t)
	var startRows int64
	if err := f.db.Model(&product{}).Count(&startRows).Error; err != nil {
		t.Fatal(err)
	}

	// The write load, and the deletes it made so far.
	var deletes atomic.Int64
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				writerDone <- nil
				return
			case <-tick.C:
			}
			if err := w.step(ctx); err != nil {
				writerDone <- err
				return
			}
			deletes.Store(int64(w.counts["delete"] + w.counts["soft delete"]))
		}
	}()
	// A reader searching the alias: never an error, never fewer documents
	// than the rows at the start minus the deletes since.
	var reads atomic.Int64
	readerErr := make(chan error, 1)
	readerStop := make(chan struct{})
	go func() {
		for {
			select {
			case <-readerStop:
				readerErr <- nil
				return
			default:
			}
			res, err := c.client.Get(c.url + "/" + c.alias + "/_search?size=0&track_total_hits=true")
			if err != nil {
				readerErr <- err
				return
			}
			var r struct {
				Hits struct{ Total struct{ Value int64 } }
			}
			err = json.NewDecoder(res.Body).Decode(&r)
			res.Body.Close()
			if err != nil || res.StatusCode != http.StatusOK {
				readerErr <- fmt.Errorf("search on the alias: %d %v", res.StatusCode, err)
				return
			}
			// The writer counts a delete once its step returns: one more
			// may be committed, and synced, already.
			if floor := startRows - deletes.Load() - 1; r.Hits.Total.Value < floor {
				readerErr <- fmt.Errorf("search on the alias found %d documents, fewer than %d rows at the start minus %d deletes (and one in flight)",
					r.Hits.Total.Value, startRows, deletes.Load())
				return
			}
			reads.Add(1)
			time.Sleep(10 * time.Millisecond)
		}
	}()

	proxy, proxyURL := newKillProxy(t, f, c)
	vars := maps.Clone(f.vars)
	vars["ELASTICSEARCH_URL"] = proxyURL
	lock := redstream.NewKeys(f.ns).Lock(redstream.ReindexLockName("products"))
	args := []string{"reindex", "--config", f.config, "--stream", "products", "--mapping", mapping}
	for _, point := range []string{"backfill", "replay", "before swap", "after swap"} {
		// A killed reindex leaves its lock to expire (worker.lock_ttl).
		within(t, time.Minute, "the reindex lock to expire", func() bool { return f.rdb.Exists(ctx, lock).Val() == 0 })
		proxy.mode.Store(point)
		p := startBin(t, vars, args...)
		select {
		case got := <-proxy.hit:
			if got != point {
				t.Fatalf("stopped at %q, want %q", got, point)
			}
		case <-p.done:
			t.Fatalf("reindex ended before %s: %v\n%s", point, p.err, p.stderr.String())
		case <-time.After(2 * time.Minute):
			t.Fatalf("reindex never reached %s\n%s", point, p.stderr.String())
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		proxy.release <- struct{}{}
		if got := aliasOf(t, c.url, c.alias); len(got) != 1 {
			t.Fatalf("after a kill %s: alias %s points at %v", point, c.alias, got)
		}
		if point == "before swap" {
			// verify --index checks the new index before its swap.
			st := f.reindexes(t)
			r := runBin(t, f.vars, "verify", "--json", "--config", f.config, "--stream", "products", "--index", st[0].Index)
			var rep verifyReport
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || (r.code != exitOK && r.code != exitFailure) {
				t.Fatalf("verify --index: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
			}
			if rep.Index != st[0].Index || rep.Documents < startRows/2 {
				t.Fatalf("verify --index %s: %+v", st[0].Index, rep)
			}
		}
		if point == "backfill" {
			st := f.reindexes(t)
			if len(st) != 1 || st[0].Phase != elastic.PhaseBackfill || st[0].Rows == 0 || st[0].Index == "" {
				t.Fatalf("status after a kill during the backfill: %+v", st)
			}
			// Once the killed reindex's lock expires, status says nobody runs it.
			within(t, time.Minute, "the reindex lock to expire", func() bool { return f.rdb.Exists(ctx, lock).Val() == 0 })
			r := runBin(t, f.vars, "status", "--config", f.config)
			if want := "reindex products: phase backfill, " + c.alias + " -> " + st[0].Index + ", rows " + strconv.FormatInt(st[0].Rows, 10) + "/"; !strings.Contains(r.stdout, want) ||
				!strings.Contains(r.stdout, "run by nobody (interrupted") {
				t.Fatalf("status lacks %q: exit %d\n%s%s", want, r.code, r.stdout, r.stderr)
			}
		}
	}
	within(t, time.Minute, "the reindex lock to expire", func() bool { return f.rdb.Exists(ctx, lock).Val() == 0 })
	r := runBin(t, f.vars, args...)
	if r.code != exitOK || !strings.Contains(r.stdout, "(resumed)") {
		t.Fatalf("reindex: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatalf("writer: %v", err)
	}
	within(t, 2*time.Minute, "the index in sync after the reindex", func() bool { return chaosVerify(t, f, "products").InSync })
	close(readerStop)
	if err := <-readerErr; err != nil {
		t.Fatal(err)
	}

	now := aliasOf(t, c.url, c.alias)
	if len(now) != 1 || now[0] == old[0] || !physical.MatchString(now[0]) {
		t.Fatalf("alias %s points at %v, was %v", c.alias, now, old)
	}
	if c.exists(t, old[0]) {
		t.Errorf("old index %s still there", old[0])
	}
	if code, m := c.do(t, "GET", "/"+c.alias+"/_mapping", ""); code != http.StatusOK || !strings.Contains(m, `"raw":{"type":"keyword"}`) {
		t.Fatalf("new mapping not in effect: %d %s", code, m)
	}
	var rows []product
	if err := f.db.Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		if title, price, ok := c.doc(t, row.ID); !ok || title != row.Title || price != row.Price {
			t.Fatalf("document %d = %q, %d, %v; row %+v", row.ID, title, price, ok, row)
		}
	}
	c.refresh(t)
	if n := c.count(t); n != int64(len(rows)) {
		t.Fatalf("%d documents for %d live rows", n, len(rows))
	}
	if st := f.reindexes(t); len(st) != 0 {
		t.Errorf("a reindex still in status: %+v", st)
	}
	t.Logf("%s at %s: %d rows at the start; writer %v; %d searches on the alias; %s", c.engine, c.url, startRows, w.counts, reads.Load(), strings.TrimSpace(r.stdout))
}

// reindexes returns the reindexes status --json reports.
func (f *fixture) reindexes(t *testing.T) []elastic.ReindexStatus {
	t.Helper()
	r := runBin(t, f.vars, "status", "--json", "--config", f.config)
	if r.code != 0 {
		t.Fatalf("status: exit %d: %s", r.code, r.stderr)
	}
	var out struct{ Reindexes []elastic.ReindexStatus }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return out.Reindexes
}

// TestReindexUnderLoad: see runReindexUnderLoad; with a version column, on
// each engine.
func TestReindexUnderLoad(t *testing.T) {
	t.Parallel()
	eachCluster(t, func(t *testing.T) *fixture { return newFixture(t, chaosStreamYAML+"    batch_size: 40\n") }, runReindexUnderLoad[product])
}

// TestReindexUnderLoadWithoutVersion: the same without a version column,
// where only the order of backfill and replay keeps an older state from
// overwriting a newer one.
func TestReindexUnderLoadWithoutVersion(t *testing.T) {
	t.Parallel()
	yaml := strings.Replace(chaosStreamYAML, "    version_column: updated_at\n", "", 1) + "    batch_size: 40\n"
	eachCluster(t, func(t *testing.T) *fixture { return newFixture(t, yaml) }, runReindexUnderLoad[product])
}

// TestReindexSharded: the same on a stream of several shards, whose
// changes the reindex replays from each shard (a matter of the streams,
// the same for either engine: run on Elasticsearch).
func TestReindexSharded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, chaosStreamYAML+fmt.Sprintf("    shards: %d\n", groupShards)+"    batch_size: 40\n")
	runReindexUnderLoad[shardedProduct](t, f, esCluster(t, f))
}

// TestMySQLReindexUnderLoad: the same on MariaDB, the database given to
// the binary as a mysql:// URL (the library's TestMySQLReindexUnderLoad
// runs MariaDB with either engine).
func TestMySQLReindexUnderLoad(t *testing.T) {
	t.Parallel()
	f := newMySQLFixture(t, chaosStreamYAML+"    batch_size: 40\n")
	f.vars["DATABASE_URL"] = mysqlURL(t, f.dsn)
	runReindexUnderLoad[product](t, f, esCluster(t, f))
}
