package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/redstream-go/redstream/elastic/estest"
)

// within polls cond until it holds, failing the test after d.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// setWorkerOption replaces the value of a worker option in the fixture's
// config file.
func (f *fixture) setWorkerOption(t *testing.T, key, from, to string) {
	t.Helper()
	f.editConfig(t, "  "+key+": "+from+"\n", "  "+key+": "+to+"\n")
}

// editConfig replaces the first old in the fixture's config file by repl.
func (f *fixture) editConfig(t *testing.T, old, repl string) {
	t.Helper()
	b, err := os.ReadFile(f.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("config has no %q", old)
	}
	if err := os.WriteFile(f.config, []byte(strings.Replace(string(b), old, repl, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// productModel is a product model: product, or clusterProduct, which is
// written to the Redis Cluster's braced stream name.
type productModel interface {
	~struct {
		ID        uint64
		Title     string
		Price     int64
		UpdatedAt time.Time
		DeletedAt gorm.DeletedAt
	}
}

// createRows creates each row through db.
func createRows[M productModel](t *testing.T, db *gorm.DB, ps ...*M) {
	t.Helper()
	for _, p := range ps {
		if err := db.WithContext(context.Background()).Create(p).Error; err != nil {
			t.Fatal(err)
		}
	}
}

// indexedRows reports whether every row is in the products index with its
// title.
func indexedRows[M productModel](es *estest.Server, ps ...*M) bool {
	for _, m := range ps {
		p := product(*m)
		if title, _ := docTitle(es, p.ID); title != p.Title {
			return false
		}
	}
	return true
}

func (f *fixture) create(t *testing.T, ps ...*product) {
	t.Helper()
	createRows(t, f.db, ps...)
}

// indexed reports whether every product is in the index with its title.
func (f *fixture) indexed(ps ...*product) bool { return indexedRows(f.es, ps...) }

func waitReady(t *testing.T, addr string) {
	t.Helper()
	eventually(t, "/readyz of "+addr, func() bool { code, _ := httpGet("http://" + addr + "/readyz"); return code == 200 })
}

// dlqEntries returns the dead letters `dlq list --json` prints.
func (f *fixture) dlqEntries(t *testing.T) []deadLetter {
	t.Helper()
	r := runBin(t, f.vars, "dlq", "list", "--json", "--config", f.config, "--stream", "products")
	if r.code != 0 {
		t.Fatalf("dlq list: exit %d: %s", r.code, r.stderr)
	}
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

// TestHealthzStall stalls the consumer by failing every bulk request:
// /healthz turns 503 once the lag has grown past worker.stall_timeout with
// nothing committed, and 200 again once the consumer makes progress.
func TestHealthzStall(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "    delay: 1h\n")
	f.setWorkerOption(t, "stall_timeout", "1m", "1s")
	w := startBin(t, f.vars, "worker", "--config", f.config)
	waitReady(t, f.listen)
	healthz := "http://" + f.listen + "/healthz"

	first := product{ID: 1, Title: "first", Price: 1}
	f.create(t, &first)
	eventually(t, "the first document", func() bool { return f.indexed(&first) })
	if code, body := httpGet(healthz); code != 200 {
		t.Fatalf("/healthz of a worker that keeps up: %d %s", code, body)
	}

	// Every request fails from now on: messages pile up.
	f.es.FailNext(1<<30, 503)
	stuck := []*product{{ID: 2, Title: "a", Price: 2}, {ID: 3, Title: "b", Price: 3}, {ID: 4, Title: "c", Price: 4}}
	f.create(t, stuck...)
	var body string
	eventually(t, "/healthz to report the stall", func() bool {
		var code int
		code, body = httpGet(healthz)
		return code == 503
	})
	var report struct {
		Status  string
		Stalled []stalledConsumer
	}
	if err := json.Unmarshal([]byte(body), &report); err != nil {
		t.Fatalf("/healthz body: %v\n%s", err, body)
	}
	if report.Status != "stalled" || len(report.Stalled) != 1 {
		t.Fatalf("/healthz body: %s", body)
	}
	if s := report.Stalled[0]; s.Stream != "products" || s.Consumer != "indexer" || s.LagSeconds <= 1 || s.IdleSeconds < 1 || s.StallTimeout != "1s" {
		t.Errorf("stalled consumer: %+v", s)
	}
	if f.indexed(stuck...) {
		t.Fatal("documents indexed while every bulk request fails")
	}
	// Readiness does not follow health.
	if code, _ := httpGet("http://" + f.listen + "/readyz"); code != 200 {
		t.Errorf("/readyz of a stalled worker: %d", code)
	}

	f.es.FailNext(0, 503)
	eventually(t, "the piled-up documents", func() bool { return f.indexed(stuck...) })
	eventually(t, "/healthz to recover", func() bool { code, _ := httpGet(healthz); return code == 200 })

	if code := w.stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d", code)
	}
}

// TestTwoWorkersFailover runs two workers with the same configuration: one
// holds the consumer lease and the index follows; when it is killed the
// other takes the lease over within the lease TTL and the index follows
// again.
func TestTwoWorkersFailover(t *testing.T) {
	t.Parallel()
	const lockTTL = 2 * time.Second // worker.lock_ttl in newFixture
	f := newFixture(t, "    delay: 1h\n")
	listen2 := freeAddr(t)
	w1 := startBin(t, f.vars, "worker", "--config", f.config)
	w2 := startBin(t, f.vars, "worker", "--config", f.config, "--listen", listen2)
	waitReady(t, f.listen)
	waitReady(t, listen2)

	host, _ := os.Hostname()
	byHolder := map[string]*process{
		fmt.Sprintf("%s:%d", host, w1.cmd.Process.Pid): w1,
		fmt.Sprintf("%s:%d", host, w2.cmd.Process.Pid): w2,
	}
	ps := []*product{{ID: 1, Title: "one"}, {ID: 2, Title: "two"}, {ID: 3, Title: "three"}}
	f.create(t, ps...)
	eventually(t, "the documents", func() bool { return f.indexed(ps...) })

	var st []streamStatus
	// The trimmer's lease is held only while trimming.
	eventually(t, "the consumer and delayer leases held", func() bool {
		st = f.status(t)
		s := st[0]
		return len(s.Consumers) == 1 && s.Consumers[0].Lease.Held && s.Delayer.Held
	})
	s := st[0]
	for _, l := range []leaseStatus{s.Consumers[0].Lease, s.Delayer} {
		if byHolder[l.Holder] == nil {
			t.Fatalf("lease holder %q is neither worker (%v)", l.Holder, byHolder)
		}
	}
	holder := s.Consumers[0].Lease.Holder
	killed := byHolder[holder]
	survivor, survivorAddr := w2, listen2
	if killed == w2 {
		survivor, survivorAddr = w1, f.listen
	}
	if err := killed.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-killed.done

	more := []*product{{ID: 4, Title: "four"}, {ID: 5, Title: "five"}}
	f.create(t, more...)
	if err := f.db.Model(ps[0]).Update("title", "uno").Error; err != nil {
		t.Fatal(err)
	}
	ps[0].Title = "uno"
	// The killed worker's lease expires after the TTL; the survivor waits
	// on it and takes it over.
	within(t, lockTTL+20*time.Second, "the survivor to index the new changes", func() bool {
		return f.indexed(append(more, ps...)...)
	})
	var want string
	for h, p := range byHolder {
		if p == survivor {
			want = h
		}
	}
	eventually(t, "the survivor to hold the consumer and delayer leases", func() bool {
		s := f.status(t)[0]
		return s.Consumers[0].Lease.Holder == want && s.Delayer.Holder == want
	})
	if code, body := httpGet("http://" + survivorAddr + "/healthz"); code != 200 {
		t.Errorf("/healthz of the survivor: %d %s", code, body)
	}
	if code := survivor.stop(t); code != 0 {
		t.Fatalf("survivor: exit code after SIGTERM: %d", code)
	}
	st = f.status(t)
	if s := st[0]; s.Consumers[0].Lease.Held || s.Delayer.Held || s.Trimmer.Held {
		t.Errorf("leases held after both workers ended: %+v", s)
	}
}

// TestTwoWorkersStop checks that a standby worker, waiting for leases the
// other holds, stops cleanly on SIGTERM, as the holder does.
func TestTwoWorkersStop(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "    delay: 1h\n")
	listen2 := freeAddr(t)
	w1 := startBin(t, f.vars, "worker", "--config", f.config)
	w2 := startBin(t, f.vars, "worker", "--config", f.config, "--listen", listen2)
	waitReady(t, f.listen)
	waitReady(t, listen2)
	p := product{ID: 1, Title: "one"}
	f.create(t, &p)
	eventually(t, "the document", func() bool { return f.indexed(&p) })
	for i, w := range []*process{w1, w2} {
		if code := w.stop(t); code != 0 {
			t.Errorf("worker %d: exit code after SIGTERM: %d", i+1, code)
		}
	}
}

// TestReadyzAfterSIGTERM checks /readyz around a stop. The worker marks
// itself not ready and closes its HTTP server at the same moment, so a
// 503 (rather than a refused connection) after SIGTERM is not reliably
// observable; what is: /readyz answers 200 while running, never again
// once it has failed after SIGTERM, and the worker exits 0.
func TestReadyzAfterSIGTERM(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "    delay: 1h\n")
	w := startBin(t, f.vars, "worker", "--config", f.config)
	readyz := "http://" + f.listen + "/readyz"
	waitReady(t, f.listen)
	if code, body := httpGet(readyz); code != 200 || !strings.Contains(body, `"ready"`) {
		t.Fatalf("/readyz of a running worker: %d %s", code, body)
	}
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	failed := false
	deadline := time.Now().Add(time.Minute)
	for {
		if time.Now().After(deadline) {
			t.Fatal("the worker did not exit within a minute of SIGTERM")
		}
		select {
		case <-w.done:
			if code := w.cmd.ProcessState.ExitCode(); code != 0 {
				t.Fatalf("exit code after SIGTERM: %d", code)
			}
			if !strings.Contains(w.stderr.String(), "redstream: stopping") {
				t.Errorf("no stop in the log:\n%s", w.stderr.String())
			}
			if code, _ := httpGet(readyz); code == 200 {
				t.Error("/readyz answers 200 after the worker exited")
			}
			return
		default:
		}
		code, body := httpGet(readyz)
		switch {
		case code == 200 && failed:
			t.Fatal("/readyz answered 200 again after failing during the stop")
		case code == 503 && !strings.Contains(body, "not ready"):
			t.Errorf("/readyz 503 body: %s", body)
		case code != 200:
			failed = true
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDLQDrop makes two dead letters and drops them, one by id and the
// rest with --all; dropped letters are gone from dlq list and status and
// are not indexed.
func TestDLQDrop(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "    delay: 1h\n")
	w := startBin(t, f.vars, "worker", "--config", f.config)
	waitReady(t, f.listen)

	good := product{ID: 1, Title: "good"}
	bad1, bad2 := product{ID: 2, Title: "bad one"}, product{ID: 3, Title: "bad two"}
	f.es.FailItem("products", "2", 400, "document_parsing_exception", "failed to parse field [price]", 1)
	f.es.FailItem("products", "3", 400, "document_parsing_exception", "failed to parse field [title]", 1)
	f.create(t, &good, &bad1, &bad2)
	eventually(t, "the good document", func() bool { return f.indexed(&good) })
	eventually(t, "two dead letters in status", func() bool { return f.status(t)[0].Consumers[0].DeadLetters == 2 })
	dl := f.dlqEntries(t)
	if len(dl) != 2 {
		t.Fatalf("dlq list: %d entries, want 2: %+v", len(dl), dl)
	}
	var first deadLetter
	for _, d := range dl {
		if !strings.Contains(d.Error, "document_parsing_exception") || d.Stream != "products" || d.Consumer != "indexer" {
			t.Errorf("dead letter: %+v", d)
		}
		if strings.Contains(string(d.Payload), `"id":2`) {
			first = d
		}
	}
	if first.DLQID == "" {
		t.Fatalf("no dead letter of product 2: %+v", dl)
	}

	// An id that is not there is reported and drops nothing.
	r := runBin(t, f.vars, "dlq", "drop", "--id", "1-1", "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "dropped 0 dead-lettered messages") || !strings.Contains(r.stderr, "has no entry 1-1") {
		t.Errorf("dlq drop of a missing id: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, f.vars, "dlq", "drop", "--config", f.config, "--stream", "products")
	if r.code != exitUsage || !strings.Contains(r.stderr, "give --id or --all") {
		t.Errorf("dlq drop without --id or --all: exit %d\n%s", r.code, r.stderr)
	}

	r = runBin(t, f.vars, "dlq", "drop", "--id", first.DLQID, "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "dropped 1 dead-lettered messages") {
		t.Fatalf("dlq drop --id: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	dl = f.dlqEntries(t)
	if len(dl) != 1 || dl[0].DLQID == first.DLQID || !strings.Contains(string(dl[0].Payload), `"id":3`) {
		t.Fatalf("dlq list after dropping %s: %+v", first.DLQID, dl)
	}
	if n := f.status(t)[0].Consumers[0].DeadLetters; n != 1 {
		t.Errorf("status: %d dead letters, want 1", n)
	}

	r = runBin(t, f.vars, "dlq", "drop", "--all", "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "dropped 1 dead-lettered messages") {
		t.Fatalf("dlq drop --all: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if dl := f.dlqEntries(t); len(dl) != 0 {
		t.Fatalf("dlq list after drop --all: %+v", dl)
	}
	if n := f.status(t)[0].Consumers[0].DeadLetters; n != 0 {
		t.Errorf("status: %d dead letters, want 0", n)
	}
	r = runBin(t, f.vars, "dlq", "drop", "--all", "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "dropped 0 dead-lettered messages") {
		t.Errorf("dlq drop --all of an empty dead-letter stream: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Dropped, not replayed: neither document reaches the index, while the
	// stream goes on.
	next := product{ID: 4, Title: "next"}
	f.create(t, &next)
	eventually(t, "a later document", func() bool { return f.indexed(&next) })
	for _, id := range []uint64{bad1.ID, bad2.ID} {
		if _, ok := docTitle(f.es, id); ok {
			t.Errorf("dropped document %d is indexed", id)
		}
	}
	if code := w.stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d", code)
	}
}
