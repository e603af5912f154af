package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic/estest"
	"github.com/redstream-go/redstream/internal/testenv"
)

// The fault tests run the worker binary under a mixed write load, inject
// one fault for a few seconds, and check that the worker recovers without
// help (the process stays up and /healthz answers 200 again), that nothing
// is lost (`redstream verify` finds no missing, extra or stale document)
// and how long recovery took. Each logs one line:
//
//	recovery: fault=<name> seconds=<fault end to a marker row written after it being indexed> verify_seconds=<fault end to verify in sync> …

// faultDuration is how long each fault lasts.
const faultDuration = 3 * time.Second

// faultStreamYAML is the stream of every fault test: soft deletes,
// versions (so verify finds stale documents too) and a short delay, so the
// Delayer delivers what a failed main-stream write lost within the test.
const faultStreamYAML = `    soft_delete_column: deleted_at
    version_column: updated_at
    delay: 2s
    trim_interval: 1s
`

// needFaultServer skips a test that injects Elasticsearch faults when the
// tests are pointed at a real cluster, which cannot fail on demand.
func needFaultServer(t *testing.T) {
	t.Helper()
	if os.Getenv("ELASTICSEARCH_URL") != "" {
		t.Skip("injects faults with the test server (elastic/estest), which a real cluster (ELASTICSEARCH_URL) cannot do")
	}
}

// faultSetup chooses the services of a fault test.
type faultSetup struct {
	redisURL string // "" means a fresh namespace of the shared test Redis
	dsn      string // "" means a fresh schema of the shared test database
	esYAML   string // more elasticsearch options, indented by two spaces
	worker   string // more worker options, indented by two spaces
	stream   string // more options of the stream, indented by four spaces
}

// newFaultFixture is newFixture for the fault tests: services of the
// caller's choosing, a stall timeout of 2s so that /healthz reacts within
// a fault, and faultStreamYAML.
func newFaultFixture(t *testing.T, s faultSetup) *fixture {
	t.Helper()
	f := &fixture{dsn: s.dsn, es: estest.New(t), listen: freeAddr(t)}
	if f.dsn == "" {
		f.dsn = testenv.Schema(t)
	}
	redisURL := s.redisURL
	if redisURL == "" {
		f.rdb, f.ns = testenv.Redis(t)
		redisURL = testenv.RedisURL()
	} else {
		opts, err := redis.ParseURL(redisURL)
		if err != nil {
			t.Fatal(err)
		}
		f.rdb, f.ns = redis.NewClient(opts), "faults"
		t.Cleanup(func() { _ = f.rdb.Close() })
	}
	f.db = pluginDB(t, f.dsn, f.rdb, f.ns, &product{})
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
%sworker:
  listen: %s
  stall_timeout: 2s
  shutdown_timeout: 30s
  lock_ttl: 2s
%sstreams:
  - name: products
    table: products
    index: products
    mapping: products.json
%s%s`, f.ns, s.esYAML, f.listen, s.worker, faultStreamYAML, s.stream))
	f.vars = map[string]string{"DATABASE_URL": f.dsn, "REDIS_URL": redisURL, "ELASTICSEARCH_URL": f.es.URL}
	return f
}

// writeLoad writes through GORM, until stopped, a mix of creates (one row,
// or three in a transaction that also updates a row), updates (one column
// or two), soft deletes and hard deletes. A write that fails (a service is
// down) is counted, and the load goes on.
type writeLoad struct {
	db         *gorm.DB
	stop       chan struct{}
	done       chan struct{}
	once       sync.Once
	next       uint64
	ok, failed atomic.Int64
	mu         sync.Mutex
	lastErr    error
	slowest    time.Duration // the longest write, failed or not
}

// felt reports whether the load noticed an outage: a write failed, or one
// waited at least a second (go-redis retries a refused dial for a while).
func (l *writeLoad) felt() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed.Load() > 0 || l.slowest >= time.Second
}

// startLoad starts the load on db; the test's cleanup stops it.
func startLoad(t *testing.T, db *gorm.DB) *writeLoad {
	t.Helper()
	l := &writeLoad{db: db, stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	t.Cleanup(l.halt)
	return l
}

// halt stops the load and waits for its last write.
func (l *writeLoad) halt() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

func (l *writeLoad) run() {
	defer close(l.done)
	rng := rand.New(rand.NewPCG(1, 2))
	var ids []uint64
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		began := time.Now()
		err := l.step(ctx, i, rng, &ids)
		took := time.Since(began)
		cancel()
		l.mu.Lock()
		l.slowest = max(l.slowest, took)
		if err != nil {
			l.lastErr = err
		}
		l.mu.Unlock()
		if err != nil {
			l.failed.Add(1)
			continue
		}
		l.ok.Add(1)
	}
}

func (l *writeLoad) step(ctx context.Context, i int, rng *rand.Rand, ids *[]uint64) error {
	db := l.db.WithContext(ctx)
	newRow := func() *product {
		l.next++
		return &product{ID: l.next, Title: fmt.Sprint("p", l.next), Price: int64(i)}
	}
	pick := func() uint64 { return (*ids)[rng.IntN(len(*ids))] }
	switch op := i % 10; {
	case op < 4 || len(*ids) == 0:
		p := newRow()
		if err := db.Create(p).Error; err != nil {
			return err
		}
		*ids = append(*ids, p.ID)
	case op == 4:
		ps := []*product{newRow(), newRow(), newRow()}
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Create(&ps).Error; err != nil {
				return err
			}
			return tx.Model(&product{ID: pick()}).Update("title", fmt.Sprint("tx", i)).Error
		})
		if err != nil {
			return err
		}
		for _, p := range ps {
			*ids = append(*ids, p.ID)
		}
	case op == 5 || op == 6:
		return db.Model(&product{ID: pick()}).Update("title", fmt.Sprint("u", i)).Error
	case op == 7:
		return db.Model(&product{ID: pick()}).Updates(map[string]any{"title": fmt.Sprint("v", i), "price": i}).Error
	case op == 8:
		return db.Delete(&product{ID: pick()}).Error // soft
	default:
		return db.Unscoped().Delete(&product{ID: pick()}).Error
	}
	return nil
}

// faultRun is one fault test's worker, load and measurements.
type faultRun struct {
	name string
	f    *fixture
	w    *process
	load *writeLoad
	// healthzWorst is the highest /healthz status seen since the run
	// started: 503 when the worker reported a stall.
	healthzWorst atomic.Int64
	pollStop     chan struct{}
	pollDone     chan struct{}
}

// startFaultRun starts the worker, waits until it is ready and indexing,
// and starts the write load and a /healthz poller.
func startFaultRun(t *testing.T, name string, f *fixture) *faultRun {
	t.Helper()
	r := &faultRun{name: name, f: f, pollStop: make(chan struct{}), pollDone: make(chan struct{})}
	r.w = startBin(t, f.vars, "worker", "--config", f.config)
	waitReady(t, f.listen)
	warm := product{ID: 900_000, Title: "warm"}
	f.create(t, &warm)
	within(t, 30*time.Second, "the first document", func() bool { return f.indexed(&warm) })
	r.load = startLoad(t, f.db)
	go r.pollHealthz()
	t.Cleanup(r.stopPolling)
	// Some load before the fault.
	within(t, 30*time.Second, "the load to write", func() bool { return r.load.ok.Load() >= 20 })
	return r
}

func (r *faultRun) pollHealthz() {
	defer close(r.pollDone)
	for {
		select {
		case <-r.pollStop:
			return
		case <-time.After(100 * time.Millisecond):
		}
		if code, _ := httpGet("http://" + r.f.listen + "/healthz"); int64(code) > r.healthzWorst.Load() {
			r.healthzWorst.Store(int64(code))
		}
	}
}

func (r *faultRun) stopPolling() {
	select {
	case <-r.pollStop:
	default:
		close(r.pollStop)
	}
	<-r.pollDone
}

// alive fails the test when the worker has exited.
func (r *faultRun) alive(t *testing.T, when string) {
	t.Helper()
	select {
	case <-r.w.done:
		t.Fatalf("the worker exited %s: %v\n%s", when, r.w.err, r.w.stderr.String())
	default:
	}
}

// recovered checks everything after the fault ended at end: a marker row
// written now is indexed, the load is stopped, verify finds the index in
// sync, the worker is the one process started, and /healthz answers 200.
// It logs the recovery line.
func (r *faultRun) recovered(t *testing.T, end time.Time) {
	t.Helper()
	f := r.f
	r.alive(t, "during the fault")
	// A marker row written after the fault; its write is retried while a
	// restarted service comes back.
	marker := product{ID: 1_000_000, Title: "marker"}
	within(t, 30*time.Second, "the marker row to be written", func() bool {
		err := f.db.Create(&marker).Error
		if err == nil {
			return true
		}
		// A create whose commit was acknowledged too late still counts.
		var n int64
		return redstream.SkipCapture(f.db).Model(&product{}).Where("id = ?", marker.ID).Count(&n).Error == nil && n == 1
	})
	within(t, 60*time.Second, "the marker document", func() bool { return f.indexed(&marker) })
	markerSeconds := time.Since(end).Seconds()

	r.load.halt()
	var rep verifyReport
	within(t, 60*time.Second, "verify to find the index in sync", func() bool {
		var res result
		rep, res = f.verify(t)
		return res.code == exitOK
	})
	verifySeconds := time.Since(end).Seconds()
	if rep.Missing.Count != 0 || rep.Extra.Count != 0 || rep.Stale.Count != 0 || !rep.InSync || !rep.Versioned || rep.Rows == 0 || rep.Documents == 0 {
		t.Fatalf("verify: %+v", rep)
	}
	within(t, 30*time.Second, "/healthz to answer 200", func() bool {
		code, _ := httpGet("http://" + f.listen + "/healthz")
		return code == 200
	})
	r.stopPolling()
	r.alive(t, "after the fault")
	out := r.w.stderr.String()
	if n := strings.Count(out, "redstream: worker started"); n != 1 {
		t.Errorf("the worker started %d times", n)
	}
	if strings.Contains(out, "panic") {
		t.Errorf("a panic in the worker's output:\n%s", out)
	}
	r.load.mu.Lock()
	lastErr, slowest := r.load.lastErr, r.load.slowest
	r.load.mu.Unlock()
	t.Logf("recovery: fault=%s seconds=%.2f verify_seconds=%.2f writes=%d failed_writes=%d slowest_write=%.2fs rows=%d healthz_worst=%d",
		r.name, markerSeconds, verifySeconds, r.load.ok.Load(), r.load.failed.Load(), slowest.Seconds(), rep.Rows, r.healthzWorst.Load())
	if lastErr != nil {
		t.Logf("last failed write: %v", lastErr)
	}
	if code := r.w.stop(t); code != 0 {
		t.Errorf("exit code after SIGTERM: %d", code)
	}
}

// faultMetric returns the value of the first /metrics sample that starts
// with prefix, or -1.
func faultMetric(listen, prefix string) float64 {
	_, body := httpGet("http://" + listen + "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			v, err := strconv.ParseFloat(strings.TrimSpace(line[len(prefix):]), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// TestFaultsElasticsearch injects each Elasticsearch fault into a worker's
// test server for faultDuration while the load runs.
func TestFaultsElasticsearch(t *testing.T) {
	t.Parallel()
	needFaultServer(t)
	for _, tc := range []struct {
		name   string
		esYAML string
		// on starts the fault; off ends it.
		on, off func(s *estest.Server, r *faultRun)
		// hit reports, from the worker's log, that the fault was felt.
		hit string
	}{
		{
			// Every request refused as under indexing pressure: the client
			// retries (twice, so that its retries run out within the
			// fault), the handler fails, the consumer backs off.
			name:   "es-429-storm",
			esYAML: "  max_retries: 2\n",
			on:     func(s *estest.Server, _ *faultRun) { s.RejectNext(1 << 30) },
			off:    func(s *estest.Server, _ *faultRun) { s.RejectNext(0) },
			hit:    "bulk request failed: 429",
		},
		{
			// 500 (not retried by the client) for half the fault, then 503
			// (retried by the client first).
			name: "es-5xx",
			on: func(s *estest.Server, _ *faultRun) {
				s.FailNext(1<<30, 500)
				time.AfterFunc(faultDuration/2, func() { s.FailNext(1<<30, 503) })
			},
			off: func(s *estest.Server, _ *faultRun) { s.FailNext(0, 500) },
			hit: "bulk request failed: 500",
		},
		{
			// Every answer comes after elasticsearch.timeout: the attempts
			// time out (and the server applies them late, as Elasticsearch
			// goes on with a request its client gave up on).
			name:   "es-timeout",
			esYAML: "  timeout: 500ms\n  max_retries: 1\n",
			on:     func(s *estest.Server, _ *faultRun) { s.SetLatency(time.Second) },
			off:    func(s *estest.Server, _ *faultRun) { s.SetLatency(0) },
			hit:    "no answer within elasticsearch.timeout (500ms)",
		},
		{
			// Every bulk request half applied, then the connection closed
			// without an answer; the client retries (twice), then the
			// consumer.
			name:   "es-dropped-bulk",
			esYAML: "  max_retries: 2\n",
			on:     func(s *estest.Server, _ *faultRun) { s.DropBulkNext(1 << 30) },
			off:    func(s *estest.Server, _ *faultRun) { s.DropBulkNext(0) },
			hit:    "elastic: bulk request:",
		},
		{
			// Item-level failures in otherwise successful bulks: each of the
			// next rows the load creates, and some older ones, fails twice
			// with 429 or 503 before it is written.
			name: "es-partial-bulk",
			on: func(s *estest.Server, r *faultRun) {
				for id := uint64(1); id <= 400; id++ {
					if id%3 == 0 {
						s.FailItem("products", fmt.Sprint(id), 429, "es_rejected_execution_exception",
							"rejected execution of primary operation [coordinating_and_primary_bytes=0]", 2)
					} else if id%3 == 1 {
						s.FailItem("products", fmt.Sprint(id), 503, "unavailable_shards_exception",
							"[products][0] primary shard is not active Timeout: [1m]", 2)
					}
				}
			},
			off: func(s *estest.Server, _ *faultRun) {
				for id := uint64(1); id <= 400; id++ {
					s.FailItem("products", fmt.Sprint(id), 0, "", "", 0)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFaultFixture(t, faultSetup{esYAML: tc.esYAML})
			r := startFaultRun(t, tc.name, f)
			tc.on(f.es, r)
			time.Sleep(faultDuration)
			tc.off(f.es, r)
			end := time.Now()
			if tc.name == "es-partial-bulk" {
				if n := faultMetric(f.listen, `redstream_bulk_items_total{index="products",outcome="retried"} `); n <= 0 {
					t.Errorf("no bulk item was retried (metric %v)", n)
				}
			}
			r.recovered(t, end)
			if tc.hit != "" && !strings.Contains(r.w.stderr.String(), tc.hit) {
				t.Errorf("the worker's log does not show the fault (%q):\n%s", tc.hit, r.w.stderr.String())
			}
		})
	}
}

// redisServer is a private redis-server with an append-only file that is
// fsynced on every write, so it can be killed and restarted without losing
// an acknowledged write.
type redisServer struct {
	addr, dir string
	cmd       *exec.Cmd
	done      chan struct{}
}

func startRedisServer(t *testing.T, addr, dir string) *redisServer {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	s := &redisServer{addr: addr, dir: dir, done: make(chan struct{})}
	s.cmd = exec.Command("redis-server", "--port", port, "--bind", host, "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", filepath.Join(dir, "redis.log"))
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server (it must be installed): %v", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() { s.kill() })
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	within(t, 30*time.Second, "redis-server on "+addr, func() bool {
		select {
		case <-s.done:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server exited:\n%s", log)
		default:
		}
		return c.Ping(context.Background()).Err() == nil
	})
	return s
}

// kill ends the server with SIGKILL: no shutdown, no final save.
func (s *redisServer) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// TestFaultRedisRestart kills the worker's and the writers' Redis (a
// private server) in the middle of a run and restarts it on the same port
// after two seconds.
func TestFaultRedisRestart(t *testing.T) {
	t.Parallel()
	addr, dir := freeAddr(t), t.TempDir()
	srv := startRedisServer(t, addr, dir)
	f := newFaultFixture(t, faultSetup{redisURL: "redis://" + addr + "/0"})
	r := startFaultRun(t, "redis-restart", f)
	srv.kill()
	time.Sleep(2 * time.Second)
	startRedisServer(t, addr, dir)
	end := time.Now()
	r.recovered(t, end)
	if !r.load.felt() { // the load has stopped: its last write is counted
		t.Error("no write failed or waited while Redis was down")
	}
}

// postgresServer is a private PostgreSQL cluster (initdb, pg_ctl) in a
// temporary directory, run as the postgres user when the tests run as
// root.
type postgresServer struct {
	bin, dir, port string
	asUser         []string // runuser prefix, when root
}

// startPostgres creates and starts a private cluster on a free port. It
// fails the test when PostgreSQL's server binaries are missing.
func startPostgres(t *testing.T) *postgresServer {
	t.Helper()
	bin := postgresBin(t)
	dir, err := os.MkdirTemp("", "redstream-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	_, port, _ := strings.Cut(freeAddr(t), ":")
	s := &postgresServer{bin: bin, dir: dir, port: port}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: the cluster belongs to postgres.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, the private PostgreSQL needs the postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		s.asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	s.run(t, "initdb", "-D", s.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	s.start(t)
	t.Cleanup(func() {
		cmd := s.command("pg_ctl", "-D", s.data(), "stop", "-m", "immediate")
		_ = cmd.Run()
	})
	return s
}

// postgresBin returns the directory of initdb and pg_ctl: the newest
// /usr/lib/postgresql/<version>/bin, or the PATH's.
func postgresBin(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p)
	}
	t.Fatal("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: not under /usr/lib/postgresql/*/bin nor on PATH")
	return ""
}

func (s *postgresServer) data() string { return filepath.Join(s.dir, "data") }

// dsn is the URL of the cluster's postgres database.
func (s *postgresServer) dsn() string {
	return "postgres://postgres@127.0.0.1:" + s.port + "/postgres?sslmode=disable"
}

func (s *postgresServer) command(name string, args ...string) *exec.Cmd {
	argv := append(append(append([]string(nil), s.asUser...), filepath.Join(s.bin, name)), args...)
	return exec.Command(argv[0], argv[1:]...)
}

func (s *postgresServer) run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := s.command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

// start starts the cluster and waits until it accepts connections. fsync
// is off: a killed server keeps what it wrote in the page cache, and the
// disk of a shared test machine is slow.
func (s *postgresServer) start(t *testing.T) {
	t.Helper()
	opts := fmt.Sprintf("-c port=%s -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off -c max_connections=50",
		s.port, s.dir)
	s.run(t, "pg_ctl", "-D", s.data(), "-o", opts, "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60", "start")
}

// crash stops the cluster the way a crash does: every process killed, no
// checkpoint; the next start recovers from the WAL.
func (s *postgresServer) crash(t *testing.T) {
	t.Helper()
	s.run(t, "pg_ctl", "-D", s.data(), "-m", "immediate", "stop")
}

// TestFaultPostgresRestart crashes the worker's and the writers' PostgreSQL
// (a private cluster) in the middle of a run and starts it again after two
// seconds.
func TestFaultPostgresRestart(t *testing.T) {
	t.Parallel()
	pg := startPostgres(t)
	f := newFaultFixture(t, faultSetup{dsn: pg.dsn()})
	r := startFaultRun(t, "postgres-restart", f)
	pg.crash(t)
	time.Sleep(2 * time.Second)
	pg.start(t)
	end := time.Now()
	r.recovered(t, end)
	if !r.load.felt() { // the load has stopped: its last write is counted
		t.Error("no write failed or waited while PostgreSQL was down")
	}
}

// TestFaultBadInput adds bad entries to the stream a running worker reads,
// between changes written through GORM: each is dead-lettered with its
// reason, shown by `dlq list`, the good changes around them are indexed,
// and the worker goes on (streams[].max_payload_bytes bounds payloads).
func TestFaultBadInput(t *testing.T) {
	t.Parallel()
	f := newFaultFixture(t, faultSetup{stream: "    max_payload_bytes: 4096\n"})
	w := startBin(t, f.vars, "worker", "--config", f.config)
	waitReady(t, f.listen)
	ctx := context.Background()
	stream := redstream.NewKeys(f.ns).Stream("products")
	huge := `{"id":1,"pad":"` + strings.Repeat("x", 5000) + `"}`
	bad := []struct {
		values []any
		reason string
	}{
		{[]any{"payload", "{not json"}, "redstream: invalid message: payload is not JSON"},
		{[]any{"other", "x"}, "redstream: invalid message: no payload field"},
		{[]any{"payload", `{"title":"tea"}`}, `elastic: payload has no "id" that is a number or a string`},
		{[]any{"payload", `{"id":{"a":1}}`}, "the id is an object"},
		{[]any{"payload", `{"id":2.5}`}, "2.5 is not an integer"},
		{[]any{"payload", `{"id":"two"}`}, `elastic: id "two" cannot be looked up: not a bigint (the primary key's type)`},
		{[]any{"payload", huge}, fmt.Sprintf("payload of %d bytes exceeds the limit of 4096 bytes", len(huge))},
	}
	var good []*product
	for i, b := range bad {
		p := &product{ID: uint64(i + 1), Title: fmt.Sprint("good", i)}
		f.create(t, p)
		good = append(good, p)
		if err := f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: b.values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	last := &product{ID: 100, Title: "last"}
	f.create(t, last)
	good = append(good, last)
	within(t, 30*time.Second, "the good changes", func() bool { return f.indexed(good...) })
	var dead []deadLetter
	within(t, 30*time.Second, "the dead letters", func() bool {
		dead = f.dlqEntries(t)
		return len(dead) >= len(bad)
	})
	if len(dead) != len(bad) {
		t.Fatalf("%d dead letters, want %d: %+v", len(dead), len(bad), dead)
	}
	for i, b := range bad {
		if !strings.Contains(dead[i].Error, b.reason) {
			t.Errorf("dead letter %d: reason %q lacks %q", i, dead[i].Error, b.reason)
		}
	}
	text := runBin(t, f.vars, "dlq", "list", "--config", f.config, "--stream", "products")
	for _, b := range bad {
		if !strings.Contains(text.stdout, b.reason) {
			t.Errorf("dlq list does not show %q:\n%s", b.reason, text.stdout)
		}
	}
	rep, res := f.verify(t)
	if res.code != exitOK || !rep.InSync {
		t.Errorf("verify: exit %d, %+v", res.code, rep)
	}
	if code, body := httpGet("http://" + f.listen + "/healthz"); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if out := w.stderr.String(); strings.Contains(out, "panic") || strings.Contains(out, "handler failed") {
		t.Errorf("the worker failed a batch or panicked:\n%s", out)
	}
	if code := w.stop(t); code != 0 {
		t.Errorf("exit code after SIGTERM: %d", code)
	}
}
