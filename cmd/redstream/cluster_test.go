package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic/estest"
	"github.com/redstream-go/redstream/internal/testenv"
)

// clusterStream is the stream name of the Redis Cluster tests: braced, so
// that all its keys share a hash slot.
const clusterStream = "{products}"

// clusterProduct is product, written to the stream "{products}".
type clusterProduct struct {
	ID        uint64
	Title     string
	Price     int64
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt
}

func (clusterProduct) TableName() string     { return "products" }
func (clusterProduct) RedstreamName() string { return clusterStream }

// clusterFixture is a fixture whose config names the test Redis Cluster
// (redis.cluster.addrs) and the stream "{products}". The embedded
// fixture's rdb is nil: use crdb.
type clusterFixture struct {
	*fixture
	crdb *redis.ClusterClient
	rec  *testenv.CrossSlotRecorder
	keys redstream.Keys
}

func newClusterFixture(t *testing.T, streamYAML string) *clusterFixture {
	t.Helper()
	f := &clusterFixture{fixture: &fixture{dsn: testenv.Schema(t), es: estest.New(t), listen: freeAddr(t)}}
	f.crdb, f.ns = testenv.RedisCluster(t)
	f.rec = testenv.RecordCrossSlot(t, f.crdb)
	t.Cleanup(func() { f.rec.Check(t) })
	f.keys = redstream.NewKeys(f.ns)
	f.db = pluginDB(t, f.dsn, f.crdb, f.ns, &clusterProduct{})
	dir := t.TempDir()
	writeMapping(t, dir)
	addrs, _ := json.Marshal(testenv.RedisClusterAddrs())
	f.config = writeFile(t, dir, "redstream.yaml", fmt.Sprintf(`
redis:
  cluster:
    addrs: %s
  namespace: %s
database:
  url: postgres://unused/db
elasticsearch:
  urls: [http://unused:9200]
worker:
  listen: %s
  stall_timeout: 1m
  shutdown_timeout: 30s
  lock_ttl: 2s
log:
  level: debug
streams:
  - name: "%s"
    table: products
    index: products
    mapping: products.json
%s`, addrs, f.ns, f.listen, clusterStream, streamYAML))
	// No REDIS_URL: it would replace redis.cluster.
	f.vars = map[string]string{"DATABASE_URL": f.dsn, "ELASTICSEARCH_URL": f.es.URL}
	return f
}

// run runs the binary to completion and fails the test unless it exits
// with code or its output mentions CROSSSLOT.
func (f *clusterFixture) run(t *testing.T, code int, args ...string) result {
	t.Helper()
	args = append(args, "--config", f.config)
	r := runBin(t, f.vars, args...)
	if r.code != code || strings.Contains(r.stdout+r.stderr, "CROSSSLOT") {
		t.Fatalf("redstream %v: exit %d, want %d\nstdout: %s\nstderr: %s", args, r.code, code, r.stdout, r.stderr)
	}
	return r
}

func (f *clusterFixture) create(t *testing.T, ps ...*clusterProduct) {
	t.Helper()
	createRows(t, f.db, ps...)
}

// indexed reports whether every product is in the index with its title.
func (f *clusterFixture) indexed(ps ...*clusterProduct) bool { return indexedRows(f.es, ps...) }

func (f *clusterFixture) deadLetters(t *testing.T) []deadLetter {
	t.Helper()
	r := f.run(t, exitOK, "dlq", "list", "--json", "--stream", clusterStream)
	var out []deadLetter
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		var d deadLetter
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("dlq list --json: %v\n%s", err, r.stdout)
		}
		out = append(out, d)
	}
	return out
}

func (f *clusterFixture) verifyReport(t *testing.T, code int, args ...string) verifyReport {
	t.Helper()
	f.esDo(t, "POST", "/_refresh", "")
	r := f.run(t, code, append([]string{"verify", "--json", "--stream", clusterStream}, args...)...)
	var rep verifyReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("verify --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	return rep
}

// TestClusterWorker runs the binary against a Redis Cluster: the worker
// syncs GORM writes, its delayer moves delay messages, a rejected document
// is dead-lettered; status, dlq list, drop and replay, verify (with
// --repair) and backfill work on the cluster; SIGTERM stops the worker and
// frees its leases. Neither the binary nor the test's own Redis commands
// meet a CROSSSLOT error.
func TestClusterWorker(t *testing.T) {
	t.Parallel()
	// A delay of 1s: every change reaches the stream twice, once after
	// its commit and once through the delayer.
	f := newClusterFixture(t, `    soft_delete_column: deleted_at
    version_column: updated_at
    delay: 1s
    trim_interval: 100ms
`)
	ctx := context.Background()
	w := startBin(t, f.vars, "worker", "--config", f.config)
	eventually(t, "/readyz", func() bool { code, _ := httpGet("http://" + f.listen + "/readyz"); return code == 200 })

	tea, cake, gone := clusterProduct{Title: "tea", Price: 3}, clusterProduct{Title: "cake", Price: 5}, clusterProduct{Title: "gone", Price: 1}
	f.create(t, &tea, &cake, &gone)
	if err := f.db.Model(&tea).Update("title", "green tea").Error; err != nil {
		t.Fatal(err)
	}
	tea.Title = "green tea"
	eventually(t, "the created and updated documents", func() bool { return f.indexed(&tea, &cake, &gone) })
	if err := f.db.Delete(&gone).Error; err != nil { // a soft delete
		t.Fatal(err)
	}
	eventually(t, "the soft-deleted document to go", func() bool { _, ok := docTitle(f.es, gone.ID); return !ok })

	// Documents Elasticsearch rejects are dead-lettered, once or twice
	// each (after the commit, and when the delayer delivers the change
	// again, unless both land in one batch). Ids are serial.
	bad1, bad2 := clusterProduct{Title: "bad 1", Price: 8}, clusterProduct{Title: "bad 2", Price: 9}
	for _, id := range []uint64{gone.ID + 1, gone.ID + 2} {
		f.es.FailItem("products", fmt.Sprint(id), 400, "document_parsing_exception", "failed to parse field [price]", -1)
	}
	f.create(t, &bad1, &bad2)
	if bad1.ID != gone.ID+1 || bad2.ID != gone.ID+2 {
		t.Fatalf("ids %d, %d, %d are not consecutive", gone.ID, bad1.ID, bad2.ID)
	}
	// With the delay stream empty and the stream trimmed, every message
	// has been delivered and committed: the dead letters are all written.
	var st []streamStatus
	eventually(t, "dead letters, no delay backlog and a trimmed stream in status", func() bool {
		st = f.status(t)
		return len(st) == 1 && len(st[0].Consumers) == 1 && st[0].Consumers[0].DeadLetters >= 2 &&
			st[0].Unconfirmed.Length == 0 && st[0].Length == 0
	})
	if s := st[0]; s.Stream != clusterStream || s.Consumers[0].Offset == "" || !s.Consumers[0].Lease.Held || !s.Delayer.Held {
		t.Errorf("status of a running worker: %+v", s)
	}
	for _, p := range []*clusterProduct{&bad1, &bad2} {
		f.es.FailItem("products", fmt.Sprint(p.ID), 0, "", "", 0)
		if _, ok := docTitle(f.es, p.ID); ok {
			t.Fatalf("the rejected document %d is indexed", p.ID)
		}
	}
	var of1, of2 []string // dead-letter ids of each product
	dl := f.deadLetters(t)
	for _, d := range dl {
		switch {
		case d.Stream != clusterStream || !strings.Contains(d.Error, "document_parsing_exception"):
			t.Fatalf("dead letter %+v", d)
		case string(d.Payload) == fmt.Sprintf(`{"id":%d}`, bad1.ID):
			of1 = append(of1, d.DLQID)
		case string(d.Payload) == fmt.Sprintf(`{"id":%d}`, bad2.ID):
			of2 = append(of2, d.DLQID)
		}
	}
	if len(of1) == 0 || len(of2) == 0 || len(of1)+len(of2) != len(dl) || int64(len(dl)) != st[0].Consumers[0].DeadLetters {
		t.Fatalf("dead letters %+v, status counts %d", dl, st[0].Consumers[0].DeadLetters)
	}
	if r := f.run(t, exitOK, "dlq", "drop", "--id", strings.Join(of1, ","), "--stream", clusterStream); !strings.Contains(r.stdout, fmt.Sprintf("dropped %d dead-lettered messages", len(of1))) {
		t.Fatalf("dlq drop: %s", r.stdout)
	}
	if r := f.run(t, exitOK, "dlq", "replay", "--all", "--stream", clusterStream); !strings.Contains(r.stdout, fmt.Sprintf("replayed %d dead-lettered messages", len(of2))) {
		t.Fatalf("dlq replay: %s", r.stdout)
	}
	eventually(t, "the replayed document", func() bool { return f.indexed(&bad2) })
	if dl := f.deadLetters(t); len(dl) != 0 {
		t.Errorf("dead letters after drop and replay: %+v", dl)
	}

	// verify: the dropped product is missing from the index; --repair
	// queues it on the cluster, and the worker indexes it.
	if rep := f.verifyReport(t, exitFailure); rep.InSync || rep.Rows != 5 || rep.Missing.Count != 1 || rep.Missing.First[0] != fmt.Sprint(bad1.ID) {
		t.Fatalf("verify with a missing document: %+v", rep)
	}
	if rep := f.verifyReport(t, exitFailure, "--repair"); rep.Queued != 1 {
		t.Fatalf("verify --repair queued %d, want 1: %+v", rep.Queued, rep)
	}
	eventually(t, "the repaired document", func() bool { return f.indexed(&bad1) })
	if rep := f.verifyReport(t, exitOK); !rep.InSync || rep.Rows != 5 || rep.Documents != 4 {
		t.Fatalf("verify after the repair: %+v", rep)
	}

	// backfill: rows written without the plugin.
	plain := f.db.Session(&gorm.Session{NewDB: true})
	for i := 1001; i <= 1005; i++ {
		if err := plain.Exec("INSERT INTO products (id, title, price, updated_at) VALUES (?, ?, ?, now())", i, fmt.Sprint("p", i), i).Error; err != nil {
			t.Fatal(err)
		}
	}
	r := f.run(t, exitOK, "backfill", "--stream", clusterStream, "--from", "1000")
	if !strings.Contains(r.stdout, "5 rows") || !strings.Contains(r.stdout, "5 indexed") {
		t.Fatalf("backfill: %s", r.stdout)
	}
	for i := uint64(1001); i <= 1005; i++ {
		if title, _ := docTitle(f.es, i); title != fmt.Sprint("p", i) {
			t.Errorf("after backfill, document %d has title %q", i, title)
		}
	}
	if n, err := f.crdb.Exists(ctx, f.keys.Backfill(clusterStream, "products")).Result(); err != nil || n != 0 {
		t.Errorf("backfill cursor left after a finished run: %d, %v", n, err)
	}
	if rep := f.verifyReport(t, exitOK); !rep.InSync || rep.Rows != 10 || rep.Documents != 9 {
		t.Fatalf("verify at the end: %+v", rep)
	}

	if code := w.stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d\n%s", code, w.stderr.String())
	}
	out := w.stderr.String()
	if !strings.Contains(out, "redstream: stopped") || strings.Contains(out, "CROSSSLOT") {
		t.Errorf("the worker's log has no clean stop, or a CROSSSLOT error:\n%s", out)
	}
	st = f.status(t)
	if s := st[0]; s.Consumers[0].Lease.Held || s.Delayer.Held || s.Trimmer.Held {
		t.Errorf("leases still held after the worker stopped: %+v", s)
	}
}

// TestClusterConfigNeedsBraces: with redis.cluster, a stream name whose
// keys would not share a hash slot is refused with exit code 2, naming the
// field and the fix, before anything connects.
func TestClusterConfigNeedsBraces(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clusterConfig := strings.Replace(validConfig, "  url: redis://127.0.0.1:6379/0\n",
		"  cluster:\n    addrs: [127.0.0.1:1]\n", 1)
	path := writeFile(t, dir, "unbraced.yaml", clusterConfig+validStream)
	const want = "streams[0].name: stream \"products\" cannot be used on Redis Cluster"
	const fix = "wrap the stream name in braces, e.g. {products}"
	for _, cmd := range []string{"worker", "status"} {
		r := runBin(t, nil, cmd, "--config", path)
		if r.code != exitUsage || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, fix) {
			t.Errorf("%s: exit %d, stderr %q; want %d, %q and %q", cmd, r.code, r.stderr, exitUsage, want, fix)
		}
	}

	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		ok         bool
	}{
		{"braced", clusterConfig + "  - name: \"{products}\"\n    table: products\n    index: products\n", nil, true},
		{"braced and sharded", clusterConfig + "  - name: \"{products}\"\n    table: products\n    index: products\n    shards: 4\n", nil, true},
		{"tagged namespace", strings.Replace(clusterConfig, "redis:\n", "redis:\n  namespace: \"{shop}\"\n", 1) + validStream, nil, true},
		{"REDIS_URL replaces the cluster", clusterConfig + validStream, map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0"}, true},
		{"a sharded unbraced name", clusterConfig + validStream + "    shards: 2\n", nil, false},
		{"braces in the consumer name", clusterConfig + "  - name: \"{products}\"\n    table: products\n    index: products\n    consumer: \"{idx}\"\n", nil, true},
	} {
		p := writeFile(t, dir, "c.yaml", tc.yaml)
		_, err := loadConfig(p, func(k string) string { return tc.env[k] })
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), fix)) {
			t.Errorf("%s: loadConfig = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
