package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/redstream-go/redstream/internal/testenv"
)

// bin is the redstream binary the tests run, built once by TestMain.
var bin string

// TestMain builds the binary as a user gets it, runs the tests, and fails
// the run when a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	for _, a := range os.Args {
		if strings.HasPrefix(a, "-test.fuzzworker") {
			// A fuzzing worker runs only the fuzz target: no binary needed.
			os.Exit(m.Run())
		}
	}
	dir, err := os.MkdirTemp("", "redstream-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "redstream")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build redstream:", err)
		os.Exit(1)
	}
	code := 0
	func() {
		defer os.RemoveAll(dir)
		defer func() {
			if err := goleak.Find(goleak.IgnoreTopFunction("gorm.io/gorm/internal/lru.NewLRU[...].func1")); err != nil && code == 0 {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				code = 1
			}
		}()
		code = m.Run()
	}()
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a process to write while a test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testEnv returns the process environment with the service variables set
// to vars (and every other redstream/Elasticsearch variable removed).
func testEnv(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "ELASTICSEARCH_") || strings.HasPrefix(k, "REDSTREAM_") ||
			k == "DATABASE_URL" || k == "REDIS_URL" || k == "REDIS_PASSWORD" {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// result is a finished run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// runBin runs the binary to completion with args and vars.
func runBin(t *testing.T, vars map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = testEnv(vars)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run redstream %v: %v", args, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// process is a running binary.
type process struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

// startBin starts the binary with args and vars; the test kills it on
// cleanup if it still runs.
func startBin(t *testing.T, vars map[string]string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = testEnv(vars)
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start redstream %v: %v", args, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("redstream %v output:\n%s", args, p.stderr.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits for the exit, failing the test when the
// process has not exited within a generous deadline.
func (p *process) stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("redstream did not exit within a minute of SIGTERM; output:\n%s", p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

// eventually polls cond until it holds, failing the test at the deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// httpGet returns the status and body of GET url, or 0 when it fails.
func httpGet(url string) (int, string) {
	res, err := http.Get(url)
	if err != nil {
		return 0, ""
	}
	defer res.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(res.Body)
	return res.StatusCode, b.String()
}

func TestUsageAndVersion(t *testing.T) {
	t.Parallel()
	if r := runBin(t, nil); r.code != exitUsage || !strings.Contains(r.stderr, "Usage: redstream") {
		t.Errorf("no command: exit %d, stderr %q; want %d and the usage", r.code, r.stderr, exitUsage)
	}
	if r := runBin(t, nil, "frobnicate"); r.code != exitUsage || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runBin(t, nil, "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "redstream ") {
		t.Errorf("version: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := runBin(t, nil, "worker", "--no-such-flag"); r.code != exitUsage {
		t.Errorf("bad flag: exit %d, want %d", r.code, exitUsage)
	}
}

func TestBadConfigExits2(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeFile(t, dir, "bad.yaml", validConfig+validStream+"  - name: orders\n    index: orders\n")
	for _, cmd := range []string{"worker", "status"} {
		r := runBin(t, nil, cmd, "--config", path)
		if r.code != exitUsage {
			t.Errorf("%s: exit code %d, want %d; stderr %q", cmd, r.code, exitUsage, r.stderr)
		}
		if !strings.Contains(r.stderr, "streams[1].table: required") {
			t.Errorf("%s: stderr %q does not name streams[1].table", cmd, r.stderr)
		}
	}
	r := runBin(t, map[string]string{"REDSTREAM_CONFIG": path}, "worker")
	if r.code != exitUsage || !strings.Contains(r.stderr, "streams[1].table: required") {
		t.Errorf("REDSTREAM_CONFIG: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runBin(t, nil, "worker"); r.code != exitUsage || !strings.Contains(r.stderr, "--config: required") {
		t.Errorf("no config: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestWorkerHardStop stops a worker whose Redis has stalled, with a short
// worker.shutdown_timeout: its workers cannot finish (their reads and
// lease releases hang), so past the timeout it closes the connections
// under them, and it returns only once every goroutine it started has
// ended, their last log lines written. It runs the worker in the test
// process to see its goroutines.
func TestWorkerHardStop(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "    delay: 1h\n")
	f.setWorkerOption(t, "shutdown_timeout", "30s", "300ms")
	u, err := url.Parse(f.vars["REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	u.Host = proxy.Addr()
	vars := maps.Clone(f.vars)
	vars["REDIS_URL"] = u.String()
	cfg, err := loadConfig(f.config, func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	h := slowHandler{Handler: slog.NewTextHandler(&logs, nil), slow: new(atomic.Bool)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- worker(ctx, cfg, slog.New(h)) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	waitReady(t, f.listen)
	p := product{ID: 1, Title: "one"}
	f.create(t, &p)
	eventually(t, "the document", func() bool { return f.indexed(&p) })

	proxy.Stall()
	h.slow.Store(true) // the workers' last lines, their failed lease releases, take a while
	cancel()
	start := time.Now()
	select {
	case err = <-stopped:
	case <-time.After(time.Minute):
		t.Fatal("worker did not return within a minute of its context's end")
	}
	// Without the hard stop, the workers wait out the timeouts of their
	// stalled Redis calls, with retries: about 20s.
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("worker returned %v after its context's end", took)
	}
	if err == nil || !strings.Contains(err.Error(), "workers did not stop within worker.shutdown_timeout (300ms)") {
		t.Errorf("worker returned %v, want the shutdown timeout", err)
	}
	if !strings.Contains(logs.String(), "closing the connections to end the workers") {
		t.Errorf("no hard stop in the log:\n%s", logs.String())
	}
	// The goroutine that hands worker the group's result may not have
	// quite ended when worker returns; nothing else may be left.
	var left string
	for deadline := time.Now().Add(100 * time.Millisecond); ; {
		left = goroutinesOf(regexp.MustCompile(`cmd/redstream\.worker(\(|\.func| in goroutine)`))
		if left == "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if left != "" {
		t.Errorf("goroutines that worker started still run after it returned:\n%s", left)
	}
}

// slowHandler is a log handler that, once slow is set, takes half a
// second over each record, as a stderr pipe read slowly would.
type slowHandler struct {
	slog.Handler
	slow *atomic.Bool
}

func (h slowHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.slow.Load() {
		time.Sleep(500 * time.Millisecond)
	}
	return h.Handler.Handle(ctx, r)
}

func (h slowHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return slowHandler{Handler: h.Handler.WithAttrs(as), slow: h.slow}
}

func (h slowHandler) WithGroup(name string) slog.Handler {
	return slowHandler{Handler: h.Handler.WithGroup(name), slow: h.slow}
}

// goroutinesOf returns the stacks of the goroutines that have a line
// matching re.
func goroutinesOf(re *regexp.Regexp) string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if re.MatchString(g) {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
