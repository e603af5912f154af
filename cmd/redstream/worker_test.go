package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic/estest"
	"github.com/redstream-go/redstream/internal/testenv"
)

// product is the model the tests write through GORM.
type product struct {
	ID        uint64
	Title     string
	Price     int64
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt
}

func (product) TableName() string { return "products" }

// fixture is a schema, a Redis namespace, an Elasticsearch test server and
// a GORM database with the redstream plugin, plus a config file for them.
type fixture struct {
	db     *gorm.DB
	rdb    *redis.Client
	ns     string
	dsn    string
	mysql  bool // the database is MariaDB, dsn a go-sql-driver/mysql DSN
	es     *estest.Server
	config string
	listen string
	vars   map[string]string
}

// newFixture prepares the services; streamYAML is appended to the config
// (indented as one entry of streams).
func newFixture(t *testing.T, streamYAML string) *fixture {
	t.Helper()
	f := &fixture{dsn: testenv.Schema(t)}
	f.rdb, f.ns = testenv.Redis(t)
	f.db = pluginDB(t, f.dsn, f.rdb, f.ns, &product{})
	return f.configure(t, streamYAML)
}

// configure starts the fixture's test server and writes its config, for
// the database and Redis namespace the fixture has.
func (f *fixture) configure(t *testing.T, streamYAML string) *fixture {
	t.Helper()
	f.es, f.listen = estest.New(t), freeAddr(t)
	dir := t.TempDir()
	writeMapping(t, dir)
	f.config = writeFile(t, dir, "redstream.yaml", fmt.Sprintf(`
redis:
  url: redis://unused:6379/0
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
  - name: products
    table: products
    index: products
    mapping: products.json
%s`, f.ns, f.listen, streamYAML))
	// The environment overrides the file, as in production.
	f.vars = map[string]string{"DATABASE_URL": f.dsn, "REDIS_URL": testenv.RedisURL(), "ELASTICSEARCH_URL": f.es.URL}
	return f
}

// addWorkerOption adds a line to the config's worker section, e.g.
// "balance: false".
func (f *fixture) addWorkerOption(t *testing.T, line string) {
	t.Helper()
	f.editConfig(t, "  lock_ttl: 2s\n", "  lock_ttl: 2s\n  "+line+"\n")
}

// pluginDB opens dsn with GORM, migrates model and installs the plugin
// with a producer on rdb in namespace ns.
func pluginDB(t *testing.T, dsn string, rdb redis.UniversalClient, ns string, model any) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	if err := db.AutoMigrate(model); err != nil {
		t.Fatal(err)
	}
	producer := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns})
	if err := db.Use(redstream.NewPlugin(producer)); err != nil {
		t.Fatal(err)
	}
	return db
}

// writeMapping writes the products index's mapping to dir/products.json.
func writeMapping(t *testing.T, dir string) {
	t.Helper()
	writeFile(t, dir, "products.json", `{"mappings":{"properties":{"id":{"type":"long"},"title":{"type":"text"},"price":{"type":"long"}}}}`)
}

func (f *fixture) status(t *testing.T) []streamStatus {
	t.Helper()
	r := runBin(t, f.vars, "status", "--json", "--config", f.config)
	if r.code != 0 {
		t.Fatalf("status: exit %d: %s", r.code, r.stderr)
	}
	var out struct{ Streams []streamStatus }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return out.Streams
}

func docTitle(es *estest.Server, id uint64) (string, bool) {
	src, _, ok := es.Doc("products", fmt.Sprint(id))
	if !ok {
		return "", false
	}
	var d struct{ Title string }
	_ = json.Unmarshal(src, &d)
	return d.Title, true
}

// TestWorker runs the binary as a user does: changes written through GORM
// reach the index; a rejected document is dead-lettered, shown by status and
// replayed by dlq; SIGTERM stops the worker cleanly and releases its leases.
func TestWorker(t *testing.T) {
	t.Parallel()
	// A long delay keeps delay messages out of the way: each change is
	// delivered once, through the main stream.
	f := newFixture(t, `    soft_delete_column: deleted_at
    version_column: updated_at
    delay: 1h
    trim_interval: 100ms
`)
	ctx := context.Background()
	w := startBin(t, f.vars, "worker", "--config", f.config)
	eventually(t, "/readyz", func() bool { code, _ := httpGet("http://" + f.listen + "/readyz"); return code == 200 })

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
		a, _ := docTitle(f.es, tea.ID)
		b, _ := docTitle(f.es, cake.ID)
		c, _ := docTitle(f.es, gone.ID)
		return a == "green tea" && b == "cake" && c == "gone"
	})
	if err := f.db.WithContext(ctx).Delete(&gone).Error; err != nil { // a soft delete
		t.Fatal(err)
	}
	eventually(t, "the soft-deleted document to go", func() bool { _, ok := docTitle(f.es, gone.ID); return !ok })

	// A document Elasticsearch rejects is dead-lettered; the stream goes on.
	// Ids are serial: the next product gets gone.ID+1.
	worse := product{Title: "worse", Price: 8}
	f.es.FailItem("products", fmt.Sprint(gone.ID+1), 400, "document_parsing_exception", "failed to parse field [price]", 1)
	if err := f.db.WithContext(ctx).Create(&worse).Error; err != nil {
		t.Fatal(err)
	}
	if worse.ID != gone.ID+1 {
		t.Fatalf("ids %d, %d are not consecutive", gone.ID, worse.ID)
	}
	var st []streamStatus
	eventually(t, "a dead letter in status", func() bool {
		st = f.status(t)
		return len(st) == 1 && len(st[0].Consumers) == 1 && st[0].Consumers[0].DeadLetters == 1
	})
	c := st[0].Consumers[0]
	if c.Offset == "" || !c.Lease.Held || !st[0].Delayer.Held {
		t.Errorf("status of a running worker: %+v", st[0])
	}
	// The leases name the worker process.
	host, _ := os.Hostname()
	if want := fmt.Sprintf("%s:%d", host, w.cmd.Process.Pid); c.Lease.Holder != want || st[0].Delayer.Holder != want {
		t.Errorf("lease holders %q, %q; want %q", c.Lease.Holder, st[0].Delayer.Holder, want)
	}
	if _, ok := docTitle(f.es, worse.ID); ok {
		t.Fatalf("the rejected document %d is indexed", worse.ID)
	}
	r := runBin(t, f.vars, "dlq", "list", "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "document_parsing_exception") || !strings.Contains(r.stdout, fmt.Sprintf(`{"id":%d}`, worse.ID)) {
		t.Fatalf("dlq list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, f.vars, "dlq", "replay", "--all", "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "replayed 1 dead-lettered messages") {
		t.Fatalf("dlq replay: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	eventually(t, "the replayed document", func() bool { title, _ := docTitle(f.es, worse.ID); return title == "worse" })
	eventually(t, "the trimmer to empty the stream", func() bool { return f.status(t)[0].Length == 0 })

	// Metrics and health.
	code, body := httpGet("http://" + f.listen + "/metrics")
	for _, want := range []string{
		`redstream_consumer_messages_total{consumer="indexer",stream="products"}`,
		`redstream_batch_duration_seconds_bucket{consumer="indexer",result="ok",stream="products"`,
		`redstream_bulk_items_total{index="products",outcome="dead_lettered"} 1`,
		`redstream_lease_held{stream="products",worker="consumer:indexer"} 1`,
		`redstream_dead_letter_messages{consumer="indexer",stream="products"} 0`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %s", code, want)
		}
	}
	if code, body := httpGet("http://" + f.listen + "/healthz"); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}

	if code := w.stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d\n%s", code, w.stderr.String())
	}
	if out := w.stderr.String(); !strings.Contains(out, "redstream: stopped") {
		t.Errorf("no clean stop in the log:\n%s", out)
	}
	st = f.status(t)
	if s := st[0]; s.Consumers[0].Lease.Held || s.Delayer.Held || s.Trimmer.Held {
		t.Errorf("leases still held after the worker stopped: %+v", s)
	}
	if s := st[0]; s.Consumers[0].LagSeconds != 0 || s.Consumers[0].DeadLetters != 0 {
		t.Errorf("after the worker stopped: lag %v, dead letters %d; want 0, 0", s.Consumers[0].LagSeconds, s.Consumers[0].DeadLetters)
	}
}

// TestBackfill indexes a table written without the plugin, resumes from a
// stored cursor, and indexes a key range.
func TestBackfill(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "    soft_delete_column: deleted_at\n    batch_size: 3\n")
	ctx := context.Background()
	plain := f.db.Session(&gorm.Session{NewDB: true})
	var rows []product
	for i := 1; i <= 10; i++ {
		rows = append(rows, product{ID: uint64(i), Title: fmt.Sprint("p", i), Price: int64(i)})
	}
	// Raw inserts: no plugin, so nothing is queued; the index is empty.
	for _, p := range rows {
		if err := plain.Exec("INSERT INTO products (id, title, price, updated_at) VALUES (?, ?, ?, now())", p.ID, p.Title, p.Price).Error; err != nil {
			t.Fatal(err)
		}
	}
	if err := plain.Exec("UPDATE products SET deleted_at = now() WHERE id = 10").Error; err != nil {
		t.Fatal(err)
	}

	// An interrupted run left its cursor after key 4: only 5..10 are done.
	cfg, err := loadConfig(f.config, func(k string) string { return f.vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	key := backfillCursorKey(redstream.NewKeys(f.ns), &cfg.Streams[0])
	if err := f.rdb.Set(ctx, key, "4", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, f.vars, "backfill", "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stderr, "resuming an interrupted run after key 4") ||
		!strings.Contains(r.stdout, "backfill products: 6 rows") || !strings.Contains(r.stdout, "5 indexed, 1 deleted") {
		t.Fatalf("resumed backfill: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for id := uint64(1); id <= 10; id++ {
		_, ok := docTitle(f.es, id)
		if want := id >= 5 && id < 10; ok != want {
			t.Errorf("after the resumed run, document %d indexed = %v, want %v", id, ok, want)
		}
	}
	if n, err := f.rdb.Exists(ctx, key).Result(); err != nil || n != 0 {
		t.Errorf("cursor left after a finished run: %d, %v", n, err)
	}

	// A range: keys above 1 up to 3.
	r = runBin(t, f.vars, "backfill", "--config", f.config, "--stream", "products", "--from", "1", "--to", "3")
	if r.code != 0 || !strings.Contains(r.stdout, "backfill products: 2 rows") {
		t.Fatalf("range backfill: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for id, want := range map[uint64]bool{1: false, 2: true, 3: true, 4: false} {
		if _, ok := docTitle(f.es, id); ok != want {
			t.Errorf("after the range run, document %d indexed = %v, want %v", id, ok, want)
		}
	}
	if r := runBin(t, f.vars, "backfill", "--config", f.config, "--stream", "nope"); r.code != exitUsage {
		t.Errorf("unknown stream: exit %d, want %d", r.code, exitUsage)
	}
}

// mustProducer returns a producer, or panics on options the test got wrong.
func mustProducer(rdb redis.UniversalClient, opts *redstream.ProducerOptions) *redstream.Producer {
	p, err := redstream.NewProducer(rdb, opts)
	if err != nil {
		panic(err)
	}
	return p
}

// TestWorkerStopsWithSilentHTTPClient: a connection to the metrics port
// that never sends a request (a stuck probe, a port scanner) holds up
// the HTTP server's graceful shutdown, which gives up after 5 s. The
// worker closes it and still exits 0: the endpoints are not the sync.
func TestWorkerStopsWithSilentHTTPClient(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	w := startBin(t, f.vars, "worker", "--config", f.config)
	eventually(t, "/readyz", func() bool { code, _ := httpGet("http://" + f.listen + "/readyz"); return code == 200 })
	conn, err := net.Dial("tcp", f.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The server accepts connections in the order they were made: once a
	// request on a later connection is answered, the silent one has been
	// accepted (and is tracked by the server), not left in the listener's
	// backlog, which a stop would merely reset.
	if code, _ := httpGet("http://" + f.listen + "/readyz"); code != 200 {
		t.Fatalf("/readyz: %d", code)
	}
	if code := w.stop(t); code != 0 {
		t.Errorf("exit code after SIGTERM with a silent HTTP client: %d\n%s", code, w.stderr.String())
	}
	if !strings.Contains(w.stderr.String(), "closing the HTTP connections still open") {
		t.Errorf("no line about the connection closed; stderr:\n%s", w.stderr.String())
	}
}
