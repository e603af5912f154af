package main

import (
	"bufio"
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redstream-go/redstream"
)

// countingProxy forwards requests to an Elasticsearch server and counts the
// bulk requests that go through it, so a test can tell which worker wrote.
type countingProxy struct {
	URL  string
	bulk atomic.Int64
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/_bulk") {
			p.bulk.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// metric returns the value of the sample named series (name plus labels,
// exactly as exposed) on the worker's /metrics, or -1 when it is absent.
func metric(t *testing.T, addr, series string) float64 {
	t.Helper()
	code, body := httpGet("http://" + addr + "/metrics")
	if code != 200 {
		t.Fatalf("/metrics of %s: %d", addr, code)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	return -1
}

// lockHolder returns the holder named by the lock's value, or "" when the
// lock is free.
func (f *fixture) lockHolder(t *testing.T, lockname string) string {
	t.Helper()
	v, err := f.rdb.Get(context.Background(), redstream.NewKeys(f.ns).Lock(lockname)).Result()
	if err != nil {
		return ""
	}
	return redstream.LockHolder(v)
}

// TestSIGSTOPFencing stops the worker holding the leases with SIGSTOP past
// the lease TTL. Another worker process takes over within TTL + 1 s and
// indexes what was written meanwhile. After SIGCONT, the deposed worker
// notices it lost its leases without committing an offset or sending a
// bulk request, although Redis had already answered its blocked read with
// the new entries.
func TestSIGSTOPFencing(t *testing.T) {
	t.Parallel()
	const lockTTL = 2 * time.Second // worker.lock_ttl in newFixture
	f := newFixture(t, "    delay: 1h\n")
	// Hot standby: the second worker waits on the lease itself, so it
	// takes over within the lease TTL (a balancing group adds its
	// adoption delay; see TestGroupKill).
	f.addWorkerOption(t, "balance: false")
	lockname := redstream.ConsumerLockName("products", "indexer")
	host, _ := os.Hostname()

	// Worker a writes to Elasticsearch through its own proxy.
	proxy := newCountingProxy(t, f.es.URL)
	varsA := maps.Clone(f.vars)
	varsA["ELASTICSEARCH_URL"] = proxy.URL
	a := startBin(t, varsA, "worker", "--config", f.config)
	waitReady(t, f.listen)
	holderA := host + ":" + strconv.Itoa(a.cmd.Process.Pid)
	first := []*product{{ID: 1, Title: "one"}, {ID: 2, Title: "two"}}
	f.create(t, first...)
	eventually(t, "the first documents", func() bool { return f.indexed(first...) })
	if h := f.lockHolder(t, lockname); h != holderA {
		t.Fatalf("consumer lease holder %q, want the first worker %q", h, holderA)
	}

	listenB := freeAddr(t)
	b := startBin(t, f.vars, "worker", "--config", f.config, "--listen", listenB)
	waitReady(t, listenB)
	holderB := host + ":" + strconv.Itoa(b.cmd.Process.Pid)

	messages := `redstream_consumer_messages_total{consumer="indexer",stream="products"}`
	committedA := metric(t, f.listen, messages)
	if committedA < 2 {
		t.Fatalf("first worker committed %v messages, want at least 2", committedA)
	}
	bulkA := proxy.bulk.Load()

	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	// Redis answers the stopped worker's blocked XREAD with these at once;
	// the reply waits in its socket until it resumes.
	second := []*product{{ID: 3, Title: "three"}, {ID: 4, Title: "four"}}
	f.create(t, second...)
	within(t, lockTTL+time.Second, "the second worker to take the consumer lease over", func() bool {
		return f.lockHolder(t, lockname) == holderB
	})
	t.Logf("takeover %.2fs after SIGSTOP (lease TTL %v)", time.Since(stopped).Seconds(), lockTTL)
	eventually(t, "the second worker to index what was written meanwhile", func() bool { return f.indexed(second...) })
	time.Sleep(lockTTL) // well past the TTL, as after a long pause

	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// It notices through its lease check or through its group, which
	// stops the unit another holder serves: either way it stops serving.
	eventually(t, "the resumed worker to notice it lost its consumer lease", func() bool {
		return metric(t, f.listen, `redstream_lease_held{stream="products",worker="consumer:indexer"}`) == 0
	})
	third := []*product{{ID: 5, Title: "five"}}
	f.create(t, third...)
	eventually(t, "the third document", func() bool { return f.indexed(third...) })
	time.Sleep(500 * time.Millisecond)

	if n := proxy.bulk.Load() - bulkA; n != 0 {
		t.Errorf("the deposed worker sent %d bulk requests after it was stopped", n)
	}
	if got := metric(t, f.listen, messages); got != committedA {
		t.Errorf("the deposed worker committed %v messages after it was stopped", got-committedA)
	}
	if h := f.lockHolder(t, lockname); h != holderB {
		t.Errorf("consumer lease holder %q after SIGCONT, want %q", h, holderB)
	}
	select {
	case <-a.done:
		t.Fatalf("the deposed worker exited: %v\n%s", a.err, a.stderr.String())
	default:
	}
	if !f.indexed(append(append(first, second...), third...)...) {
		t.Error("an index document is missing or wrong")
	}
	for _, p := range []*process{a, b} {
		if code := p.stop(t); code != 0 {
			t.Errorf("exit code after SIGTERM: %d", code)
		}
	}
}
