package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/internal/testenv"
)

// runWorker measures the redstream binary. Per run:
//
//  1. the raw drain loop (XRANGE pages of 1,000, one SELECT … WHERE id =
//     ANY($1) per page, the bulk body encoded and sent) over the backlog,
//     from this process, into a fresh test server process;
//  2. `redstream worker` draining the backlog of cfg.rows messages into a
//     fresh test server process: time from the process start to the last
//     offset committed, and its peak RSS (VmHWM);
//  3. `redstream backfill` indexing the table's cfg.rows rows into a fresh
//     test server process: wall time and peak RSS;
//  4. the raw backfill loop (keyset pages of 1,000 rows with row_to_json,
//     the bulk body encoded and sent) into a fresh test server process.
//
// The test server (cmd/estest-server) always runs as its own process, so
// its memory is not the worker's.
func runWorker(ctx context.Context, cfg *config, rep *report) error {
	bin, err := buildBinaries(ctx)
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	s, err := newSpace(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	db, err := s.openDB(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := createItems(ctx, db, cfg.rows); err != nil {
		return err
	}

	rep.declare(figure{name: "drain/rss", unit: "MB", desc: fmt.Sprintf("worker peak RSS (VmHWM) draining %d messages", cfg.rows), target: "≤ 100"})
	rep.declare(figure{name: "drain/rate", unit: "msg/s", desc: "worker drain: messages / (last commit − process start)", higherBetter: true, limit: "raw/drain"})
	rep.declare(figure{name: "raw/drain", unit: "msg/s", desc: "XRANGE + SELECT … ANY($1) + bulk, no framework", higherBetter: true})
	rep.declare(figure{name: "backfill/rss", unit: "MB", desc: fmt.Sprintf("backfill peak RSS (VmHWM) indexing %d rows", cfg.rows), target: "≤ 100"})
	rep.declare(figure{name: "backfill/rate", unit: "rows/s", desc: "backfill: rows / process wall time", higherBetter: true, limit: "raw/backfill"})
	rep.declare(figure{name: "raw/backfill", unit: "rows/s", desc: "keyset SELECT row_to_json pages + bulk, no framework", higherBetter: true})
	rep.declare(figure{name: "server/rss", unit: "MB", desc: "the test server process's peak RSS after the drain (not counted above)"})

	w := &workerBench{cfg: cfg, s: s, db: db, bin: bin}
	for run := range cfg.runs {
		if err := rep.run(run, func() error { return w.run(ctx, rep, run) }); err != nil {
			return err
		}
	}
	rep.note("RSS is VmHWM from /proc/<pid>/status, read every %s while the process runs and, for the worker, once more before it is stopped. Rates include process start-up.", sampleEvery)
	return nil
}

type workerBench struct {
	cfg *config
	s   *space
	db  *sql.DB
	bin string
}

func (w *workerBench) run(ctx context.Context, rep *report, run int) error {
	s, n := w.s, w.cfg.rows
	if err := s.rdb.Del(ctx, s.keys.Stream("items")).Err(); err != nil {
		return err
	}
	last, err := s.fillStream(ctx, "items", n)
	if err != nil {
		return err
	}

	// 1. The raw drain loop.
	srv, err := startServer(ctx, w.bin)
	if err != nil {
		return err
	}
	rate, err := rawDrain(ctx, s, w.db, srv.url, fmt.Sprint("raw-", run), n)
	srv.stop()
	if err != nil {
		return fmt.Errorf("raw drain: %w", err)
	}
	rep.add("raw/drain", rate)

	// 2. The worker.
	if srv, err = startServer(ctx, w.bin); err != nil {
		return err
	}
	defer func() { srv.stop() }()
	consumer := fmt.Sprint("indexer", run)
	config, err := w.writeConfig(srv.url, fmt.Sprint("items-", run), consumer)
	if err != nil {
		return err
	}
	p, err := startProc(ctx, filepath.Join(w.bin, "redstream"), "worker", "--config", config)
	if err != nil {
		return err
	}
	offsetKey := s.keys.Offset("items", consumer)
	deadline := time.Now().Add(30 * time.Minute)
	for {
		v, err := s.rdb.Get(ctx, offsetKey).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			p.stop()
			return err
		}
		if v != "" {
			if id, err := redstream.ParseID(v); err == nil && !id.Less(last) {
				break
			}
		}
		if p.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return fmt.Errorf("the worker did not drain the backlog (offset %q)\n%s", v, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	drained := time.Since(p.started)
	hwm := p.peak()
	if err := p.stop(); err != nil {
		return fmt.Errorf("worker: %w\n%s", err, p.output())
	}
	if got, err := srv.count(ctx, fmt.Sprint("items-", run)); err != nil || got != n {
		return fmt.Errorf("the worker indexed %d documents, want %d (%v)", got, n, err)
	}
	rep.add("drain/rss", hwm)
	rep.add("drain/rate", float64(n)/drained.Seconds())
	rep.add("server/rss", srv.proc.peak())
	srv.stop()

	// 3. Backfill.
	if srv, err = startServer(ctx, w.bin); err != nil {
		return err
	}
	index := fmt.Sprint("backfill-", run)
	if config, err = w.writeConfig(srv.url, index, consumer); err != nil {
		return err
	}
	p, err = startProc(ctx, filepath.Join(w.bin, "redstream"), "backfill", "--config", config, "--stream", "items", "--restart")
	if err != nil {
		return err
	}
	if err := p.wait(30 * time.Minute); err != nil {
		return fmt.Errorf("backfill: %w\n%s", err, p.output())
	}
	took := p.ended.Sub(p.started)
	if got, err := srv.count(ctx, index); err != nil || got != n {
		return fmt.Errorf("backfill indexed %d documents, want %d (%v)", got, n, err)
	}
	rep.add("backfill/rss", p.peak())
	rep.add("backfill/rate", float64(n)/took.Seconds())
	srv.stop()

	// 4. The raw backfill loop.
	if srv, err = startServer(ctx, w.bin); err != nil {
		return err
	}
	rate, err = rawBackfill(ctx, w.db, srv.url, fmt.Sprint("rawbackfill-", run), n)
	if err != nil {
		return fmt.Errorf("raw backfill: %w", err)
	}
	rep.add("raw/backfill", rate)
	return nil
}

// writeConfig writes a worker configuration for stream items into index
// and returns its path.
func (w *workerBench) writeConfig(esURL, index, consumer string) (string, error) {
	cfg := itemsConfig(testenv.RedisURL(), w.s.ns, w.s.dsn, esURL, index, "", "    consumer: "+strconv.Quote(consumer)+"\n")
	path := filepath.Join(w.bin, "redstream-"+index+".yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// rawDrain reads the backlog of stream items in XRANGE pages of 1,000,
// loads each page's rows with one SELECT and sends them in one bulk
// request: the sync's work with no framework. It returns messages/s.
func rawDrain(ctx context.Context, s *space, db *sql.DB, esURL, index string, n int) (float64, error) {
	key := s.keys.Stream("items")
	hc := &http.Client{}
	start := time.Now()
	from, seen := "-", 0
	var body bytes.Buffer
	for {
		msgs, err := s.rdb.XRangeN(ctx, key, from, "+", 1000).Result()
		if err != nil {
			return 0, err
		}
		if len(msgs) == 0 {
			break
		}
		from = "(" + msgs[len(msgs)-1].ID
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			p, _ := m.Values["payload"].(string)
			if ids[i], err = elastic.MessageID([]byte(p)); err != nil {
				return 0, err
			}
		}
		rows, err := db.QueryContext(ctx, `SELECT t.id::text, row_to_json(t)::text FROM items t WHERE t.id = ANY($1::text[]::bigint[])`, ids)
		if err != nil {
			return 0, err
		}
		body.Reset()
		if err := appendBulk(&body, rows, index); err != nil {
			return 0, err
		}
		if err := postBulk(ctx, hc, esURL, body.Bytes()); err != nil {
			return 0, err
		}
		seen += len(msgs)
	}
	if seen != n {
		return 0, fmt.Errorf("read %d messages, want %d", seen, n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// rawBackfill walks table items in keyset pages of 1,000 rows as JSON
// and sends each page in one bulk request. It returns rows/s.
func rawBackfill(ctx context.Context, db *sql.DB, esURL, index string, n int) (float64, error) {
	hc := &http.Client{}
	start := time.Now()
	var after int64
	seen := 0
	var body bytes.Buffer
	for {
		rows, err := db.QueryContext(ctx, `SELECT t.id::text, row_to_json(t)::text FROM items t WHERE t.id > $1 ORDER BY t.id LIMIT 1000`, after)
		if err != nil {
			return 0, err
		}
		body.Reset()
		lastID := ""
		k := 0
		err = appendBulkFn(&body, rows, index, func(id string) { lastID = id; k++ })
		if err != nil {
			return 0, err
		}
		if k == 0 {
			break
		}
		if after, err = strconv.ParseInt(lastID, 10, 64); err != nil {
			return 0, err
		}
		if err := postBulk(ctx, hc, esURL, body.Bytes()); err != nil {
			return 0, err
		}
		seen += k
	}
	if seen != n {
		return 0, fmt.Errorf("read %d rows, want %d", seen, n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

func appendBulk(body *bytes.Buffer, rows *sql.Rows, index string) error {
	return appendBulkFn(body, rows, index, func(string) {})
}

// appendBulkFn appends an index action per row (id, doc) to body and
// closes rows.
func appendBulkFn(body *bytes.Buffer, rows *sql.Rows, index string, each func(id string)) error {
	defer rows.Close()
	for rows.Next() {
		var id string
		var doc sql.RawBytes
		if err := rows.Scan(&id, &doc); err != nil {
			return err
		}
		body.WriteString(`{"index":{"_index":"` + index + `","_id":"` + id + `"}}` + "\n")
		body.Write(doc)
		body.WriteByte('\n')
		each(id)
	}
	return rows.Err()
}

func postBulk(ctx context.Context, hc *http.Client, esURL string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, esURL+"/_bulk", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK || !bytes.Contains(b[:min(len(b), 64)], []byte(`"errors":false`)) {
		return fmt.Errorf("bulk: %s %.200s", res.Status, b)
	}
	return nil
}

// server is a test server process.
type server struct {
	url  string
	proc *proc
}

// startServer starts cmd/estest-server on a free loopback port.
func startServer(ctx context.Context, bin string) (*server, error) {
	f := filepath.Join(bin, "estest-url-"+testenv.RandomHex(4))
	p, err := startProc(ctx, filepath.Join(bin, "estest-server"), "-listen", "127.0.0.1:0", "-url-file", f)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(f); err == nil && len(b) > 0 {
			os.Remove(f)
			return &server{url: strings.TrimSpace(string(b)), proc: p}, nil
		}
		if p.exited() || time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("estest-server did not start\n%s", p.output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *server) stop() {
	if s != nil {
		_ = s.proc.stop()
	}
}

// count returns the number of documents in index, after a refresh.
func (s *server) count(ctx context.Context, index string) (int, error) {
	for _, u := range []string{s.url + "/" + index + "/_refresh", s.url + "/" + index + "/_count"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("%s: %s %s", u, res.Status, b)
		}
		if strings.HasSuffix(u, "_count") {
			var c struct {
				Count int `json:"count"`
			}
			if err := json.Unmarshal(b, &c); err != nil {
				return 0, err
			}
			return c.Count, nil
		}
	}
	return 0, nil
}

// sampleEvery is how often a child's VmHWM is read. VmHWM only grows, so
// a sample holds the peak so far; what a process adds in its last few
// milliseconds before exiting may be missed.
const sampleEvery = 20 * time.Millisecond

// proc is a child process whose peak RSS is sampled while it runs.
type proc struct {
	cmd     *exec.Cmd
	out     *lockedBuffer
	started time.Time
	ended   time.Time

	mu      sync.Mutex
	hwm     float64 // MB
	done    chan struct{}
	waitErr error
}

func startProc(ctx context.Context, path string, args ...string) (*proc, error) {
	cmd := exec.Command(path, args...)
	// Only what the process needs, and the Go runtime's settings: no
	// DATABASE_URL, REDIS_URL or ELASTICSEARCH_URL overriding its
	// configuration.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for _, k := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT"} {
		if v := os.Getenv(k); v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	p := &proc{cmd: cmd, out: out, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-ctx.Done():
				_ = cmd.Process.Signal(syscall.SIGTERM)
				return
			case <-t.C:
				p.sample()
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		// Not ru_maxrss: Go starts children with vfork, and Linux counts
		// the parent's peak, from before the exec, in the child's.
		p.mu.Lock()
		p.ended = time.Now()
		p.waitErr = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// sample reads VmHWM, the process's peak resident set so far.
func (p *proc) sample() {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err == nil {
				p.mu.Lock()
				p.hwm = max(p.hwm, kb/1024)
				p.mu.Unlock()
			}
			return
		}
	}
}

// peak returns the peak RSS in MB (MiB) seen so far.
func (p *proc) peak() float64 {
	select {
	case <-p.done:
	default:
		p.sample()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hwm
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit on its own.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.stop()
		return errors.New("timed out")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

// stop sends SIGTERM (then SIGKILL after 30 s) and waits for the exit.
func (p *proc) stop() error {
	if p.exited() {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.waitErr
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waitErr
}

func (p *proc) output() string { return p.out.String() }

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		return len(p), nil // keep the first MiB
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// moduleRoot finds the directory of this module's go.mod, from the working
// directory up.
// buildBinaries builds the redstream binary and the test server into a
// new temporary directory, which the caller removes.
func buildBinaries(ctx context.Context) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin, err := os.MkdirTemp("", "redstream-bench-")
	if err != nil {
		return "", err
	}
	for _, c := range []string{"redstream", "estest-server"} {
		build := exec.CommandContext(ctx, goTool(), "build", "-o", filepath.Join(bin, c), "./cmd/"+c)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			os.RemoveAll(bin)
			return "", fmt.Errorf("build cmd/%s: %v\n%s", c, err, out)
		}
	}
	return bin, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/redstream-go/redstream\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run it from inside the redstream module (no go.mod found)")
		}
		dir = parent
	}
}

// goTool returns the go command: $GO, else "go".
func goTool() string {
	if g := os.Getenv("GO"); g != "" {
		return g
	}
	return "go"
}
