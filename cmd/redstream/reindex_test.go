package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
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

// killProxy serves the test server, and stops at one chosen request of a
// reindex to let the test kill the reindex there.
type killProxy struct {
	f       *fixture
	mode    atomic.Value // string: the kill point armed, "" for none
	hit     chan string
	release chan struct{}
}

func newKillProxy(t *testing.T, f *fixture) (*killProxy, string) {
	p := &killProxy{f: f, hit: make(chan string, 1), release: make(chan struct{})}
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
		p.f.es.ServeHTTP(w, r)
		return
	}
	if mode == "after swap" {
		p.f.es.ServeHTTP(httptest.NewRecorder(), r) // applied, never answered
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
// streamYAML while two worker processes sync a mixed write load and a
// reader polls the alias; the reindex is killed with SIGKILL at each step
// (during the backfill, during the replay, just before and just after the
// swap) and run again each time, then to its end.
func runReindexUnderLoad[M productModel](t *testing.T, streamYAML string) {
	f := newFixture(t, streamYAML+"    batch_size: 40\n")
	f.setWorkerOption(t, "level", "debug", "info")
	mapping := writeFile(t, t.TempDir(), "products-v2.json", newMappingJSON)
	ctx := context.Background()
	listens := [2]string{f.listen, freeAddr(t)}
	for _, l := range listens {
		startBin(t, f.vars, "worker", "--config", f.config, "--listen", l)
	}
	waitReady(t, listens[0])
	waitReady(t, listens[1])
	old := aliasOf(t, f.es.URL, "products")
	if len(old) != 1 {
		t.Fatalf("alias products points at %v", old)
	}

	producer := mustProducer(f.rdb, &redstream.ProducerOptions{Namespace: f.ns})
	w := &chaosWriter[M]{db: f.db, producer: producer, rng: rand.New(rand.NewPCG(7, uint64(len(streamYAML)))), counts: map[string]int{}}
	for range 400 {
		if err := w.step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	within(t, 2*time.Minute, "the index in sync before the reindex", func() bool { return chaosVerify(t, f, "products").InSync })
	// Search sees the last refresh: the reader's floor below counts the
	// rows at the start, so they are made searchable first (a run quicker
	// than refresh_interval would otherwise find an older count).
	if res, err := http.Post(f.es.URL+"/products/_refresh", "", nil); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("refresh products: %v %v", res, err)
	} else {
		res.Body.Close()
	}
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
			res, err := http.Get(f.es.URL + "/products/_search?size=0&track_total_hits=true")
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

	proxy, proxyURL := newKillProxy(t, f)
	vars := map[string]string{}
	for k, v := range f.vars {
		vars[k] = v
	}
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
		if got := aliasOf(t, f.es.URL, "products"); len(got) != 1 {
			t.Fatalf("after a kill %s: alias products points at %v", point, got)
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
			if want := "reindex products: phase backfill, products -> " + st[0].Index + ", rows " + strconv.FormatInt(st[0].Rows, 10) + "/"; !strings.Contains(r.stdout, want) ||
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

	now := aliasOf(t, f.es.URL, "products")
	if len(now) != 1 || now[0] == old[0] || !physicalName.MatchString(now[0]) {
		t.Fatalf("alias products points at %v, was %v", now, old)
	}
	if got := aliasOf(t, f.es.URL, old[0]); got != nil {
		t.Errorf("old index %s still there", old[0])
	}
	res, err := http.Get(f.es.URL + "/products/_mapping")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(m), `"raw":{"type":"keyword"}`) {
		t.Fatalf("new mapping not in effect: %s", m)
	}
	var rows []product
	if err := f.db.Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		src, _, ok := f.es.Doc("products", strconv.FormatUint(row.ID, 10))
		if !ok || !containsAll(string(src), fmt.Sprintf(`"title":%q`, row.Title), fmt.Sprintf(`"price":%d`, row.Price)) {
			t.Fatalf("document %d = %s; row %+v", row.ID, src, row)
		}
	}
	if n := f.es.Count("products"); n != len(rows) {
		t.Fatalf("%d documents for %d live rows", n, len(rows))
	}
	if st := f.reindexes(t); len(st) != 0 {
		t.Errorf("a reindex still in status: %+v", st)
	}
	t.Logf("%d rows at the start; writer %v; %d searches on the alias; %s", startRows, w.counts, reads.Load(), strings.TrimSpace(r.stdout))
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

// TestReindexUnderLoad: see runReindexUnderLoad; with a version column.
func TestReindexUnderLoad(t *testing.T) {
	t.Parallel()
	runReindexUnderLoad[product](t, chaosStreamYAML)
}

// TestReindexUnderLoadWithoutVersion: the same without a version column,
// where only the order of backfill and replay keeps an older state from
// overwriting a newer one.
func TestReindexUnderLoadWithoutVersion(t *testing.T) {
	t.Parallel()
	runReindexUnderLoad[product](t, strings.Replace(chaosStreamYAML, "    version_column: updated_at\n", "", 1))
}

// TestReindexSharded: the same on a stream of several shards, whose
// changes the reindex replays from each shard.
func TestReindexSharded(t *testing.T) {
	t.Parallel()
	runReindexUnderLoad[shardedProduct](t, chaosStreamYAML+fmt.Sprintf("    shards: %d\n", groupShards))
}
