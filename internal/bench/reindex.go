package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/internal/testenv"
)

// runReindex measures `redstream reindex` of a table of cfg.rows rows
// while updates go on at cfg.reindexRate per second and a worker process
// syncs them. Per run, into a fresh test server process:
//
//  1. a worker process with a mapping file creates items-<time> behind the
//     alias items; `redstream backfill` fills it (not measured);
//  2. updates start, offered at the rate on an open-loop schedule to a pool
//     of writers (see updates): each one an UPDATE of a row and its
//     message queued with Producer.Queue; the worker syncs them;
//  3. `redstream reindex` rebuilds the index behind the alias with a new
//     mapping: its wall time and phases, its peak RSS, its verification,
//     the live consumer's lag (the age of the oldest message after its
//     offset) sampled every 100 ms from the reindex's start to its end,
//     and what a reader polling the alias saw.
func runReindex(ctx context.Context, cfg *config, rep *report) error {
	bin, err := buildBinaries(ctx)
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	for _, m := range []struct{ name, body string }{
		{"v1.json", `{"settings":{"number_of_shards":1},"mappings":{"properties":{"id":{"type":"long"},"title":{"type":"text"},"price":{"type":"long"}}}}`},
		{"v2.json", `{"settings":{"number_of_shards":1},"mappings":{"properties":{"id":{"type":"long"},"title":{"type":"text","fields":{"raw":{"type":"keyword"}}},"price":{"type":"long"}}}}`},
	} {
		if err := os.WriteFile(filepath.Join(bin, m.name), []byte(m.body), 0o600); err != nil {
			return err
		}
	}
	rep.declare(figure{name: "reindex/time", unit: "s", desc: fmt.Sprintf("reindex of %d rows under %d updates/s offered: wall time of the command", cfg.rows, cfg.reindexRate)})
	rep.declare(figure{name: "reindex/rate", unit: "rows/s", desc: "rows / wall time", higherBetter: true})
	rep.declare(figure{name: "reindex/backfill", unit: "rows/s", desc: "rows / time from the start to the replay phase (index created and filled)", higherBetter: true})
	rep.declare(figure{name: "reindex/replay", unit: "s", desc: "replay phase: catching up with the changes made since the start"})
	rep.declare(figure{name: "reindex/verify", unit: "s", desc: "verify phase: the new index compared with the table"})
	rep.declare(figure{name: "reindex/swap", unit: "s", desc: "swap phase: last replay pass, refresh, alias moved (phases sampled every 100 ms)"})
	rep.declare(figure{name: "reindex/replay-lag", unit: "s", desc: "replay lag (age of the oldest change not replayed), maximum sampled"})
	rep.declare(figure{name: "reindex/rss", unit: "MB", desc: "reindex peak RSS (VmHWM)", target: "≤ 100"})
	rep.declare(figure{name: "reindex/replayed", unit: "msgs", desc: "changes the reindex replayed"})
	rep.declare(figure{name: "reindex/differing", unit: "docs", desc: "documents the verification before the swap found differing", target: "0 unexplained"})
	rep.declare(figure{name: "reader/gap", unit: "s", desc: "a reader polling _count on the alias: longest time between two answers (it saw no error, no count below the rows)"})
	rep.declare(figure{name: "reader/answers", unit: "", desc: "the reader's answers during the reindex", higherBetter: true})
	rep.declare(figure{name: "lag/max", unit: "s", desc: "the live consumer's lag during the reindex: maximum"})
	rep.declare(figure{name: "lag/p50", unit: "s", desc: "the live consumer's lag during the reindex: median of the samples"})
	rep.declare(figure{name: "updates/offered", unit: "/s", desc: "updates offered per second during the reindex (open loop)"})
	rep.declare(figure{name: "updates", unit: "/s", desc: "updates done per second during the reindex", higherBetter: true, limit: "updates/offered"})
	rep.declare(figure{name: "updates/behind", unit: "", desc: "updates offered but not done when the reindex ended"})
	rep.declare(figure{name: "updates/p50", unit: "ms", desc: "time of one update (UPDATE committed, message queued) during the reindex: median"})
	rep.declare(figure{name: "updates/p99", unit: "ms", desc: "the same: 99th percentile"})
	for run := range cfg.runs {
		if err := rep.run(run, func() error { return reindexRun(ctx, cfg, rep, bin) }); err != nil {
			return err
		}
	}
	rep.note("The worker runs in its own process, as does the test server; the old index is filled by `redstream backfill` before the updates start (not measured). Updates are offered on an open-loop schedule to %d writers. Lag and phases sampled every 100 ms, the lag by the Redis server's clock against this machine's.", updateWriters)
	return nil
}

func reindexRun(ctx context.Context, cfg *config, rep *report, bin string) error {
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
	n := cfg.rows
	if err := createItems(ctx, db, n); err != nil {
		return err
	}
	srv, err := startServer(ctx, bin)
	if err != nil {
		return err
	}
	defer srv.stop()
	config := filepath.Join(bin, "reindex-"+s.ns+".yaml")
	yaml := itemsConfig(testenv.RedisURL(), s.ns, s.dsn, srv.url, "items", "", "    mapping: v1.json\n    version_column: updated_at\n")
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		return err
	}
	red := filepath.Join(bin, "redstream")
	fill, err := startProc(ctx, red, "backfill", "--config", config, "--stream", "items")
	if err != nil {
		return err
	}
	if err := fill.wait(30 * time.Minute); err != nil {
		return fmt.Errorf("backfill: %w\n%s", err, fill.output())
	}
	worker, err := startProc(ctx, red, "worker", "--config", config)
	if err != nil {
		return err
	}
	defer worker.stop()

	producer, err := redstream.NewProducer(s.rdb, &redstream.ProducerOptions{Namespace: s.ns})
	if err != nil {
		return err
	}
	uctx, stopUpdates := context.WithCancel(ctx)
	defer stopUpdates()
	w := startUpdates(uctx, db, producer, cfg.reindexRate, n)
	// Let the worker reach a steady state first.
	time.Sleep(3 * time.Second)

	// Sampled every 100 ms from the reindex's start to its end: the live
	// consumer's lag, and the reindex's phase and replay lag. A reader
	// polls _count on the alias meanwhile.
	var lags []float64
	var replayLag float64
	phases := map[string]time.Time{}
	lagDone := make(chan struct{})
	lagCtx, stopLag := context.WithCancel(ctx)
	go func() {
		defer close(lagDone)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-lagCtx.Done():
				return
			case <-t.C:
			}
			st, err := redstream.ReadStatus(lagCtx, s.rdb, s.keys, "items", "indexer")
			if err == nil && len(st.Consumers) == 1 {
				lags = append(lags, st.Consumers[0].Lag.Seconds())
			}
			rs, err := elastic.ReadReindexStatus(lagCtx, s.rdb, s.keys, "items", []string{"items"})
			if err == nil && rs != nil {
				if _, ok := phases[rs.Phase]; !ok {
					phases[rs.Phase] = time.Now()
				}
				replayLag = max(replayLag, rs.ReplayLag.Seconds())
			}
		}
	}()
	rd := startReader(lagCtx, srv.url+"/items/_count")
	offered0, done0 := w.offered(), w.done.Load()
	p, err := startProc(ctx, red, "reindex", "--config", config, "--stream", "items", "--mapping", filepath.Join(bin, "v2.json"))
	if err != nil {
		stopLag()
		return err
	}
	err = p.wait(60 * time.Minute)
	offered1, done1 := w.offered(), w.done.Load()
	stopLag()
	<-lagDone
	<-rd.stopped
	stopUpdates()
	w.wg.Wait()
	if err != nil {
		return fmt.Errorf("reindex: %w\n%s", err, p.output())
	}
	if e := w.err(); e != nil {
		return fmt.Errorf("updates: %w", e)
	}
	took := p.ended.Sub(p.started)
	if got, err := srv.count(ctx, "items"); err != nil || got != n {
		return fmt.Errorf("the new index holds %d documents, want %d (%v)", got, n, err)
	}
	out := p.output()
	replayed, differing := 0.0, -1.0
	// "… this run: N rows backfilled, M changes replayed; verify: R rows, D
	// documents, K differing (U unexplained); …"
	if i := strings.Index(out, "this run: "); i >= 0 {
		var rows, msgs int
		if _, err := fmt.Sscanf(out[i:], "this run: %d rows backfilled, %d changes", &rows, &msgs); err == nil {
			replayed = float64(msgs)
		}
	}
	if i := strings.Index(out, "verify: "); i >= 0 {
		var rows, docs, k, u int
		if _, err := fmt.Sscanf(out[i:], "verify: %d rows, %d documents, %d differing (%d unexplained)", &rows, &docs, &k, &u); err == nil {
			differing = float64(k)
		}
	}
	if differing < 0 {
		return fmt.Errorf("reindex: no verification in its output\n%s", out)
	}
	if rd.errors > 0 || rd.min < n {
		return fmt.Errorf("the reader on the alias saw %d errors (first: %v) and counts down to %d of %d", rd.errors, rd.firstErr, rd.min, n)
	}
	// at returns when the reindex entered phase: the first sample in it,
	// or in a later phase when no sample fell in it; "" is the start.
	order := []string{elastic.PhaseBackfill, elastic.PhaseReplay, elastic.PhaseVerify, elastic.PhaseSwap, elastic.PhaseSwapped}
	at := func(phase string) time.Time {
		if phase == "" {
			return p.started
		}
		for _, ph := range order[slices.Index(order, phase):] {
			if t, ok := phases[ph]; ok {
				return t
			}
		}
		return p.ended
	}
	since := func(from, to string) float64 { return at(to).Sub(at(from)).Seconds() }
	slices.Sort(lags)
	rep.add("reindex/time", took.Seconds())
	rep.add("reindex/rate", float64(n)/took.Seconds())
	rep.add("reindex/backfill", float64(n)/since("", elastic.PhaseReplay))
	rep.add("reindex/replay", since(elastic.PhaseReplay, elastic.PhaseVerify))
	rep.add("reindex/verify", since(elastic.PhaseVerify, elastic.PhaseSwap))
	rep.add("reindex/swap", since(elastic.PhaseSwap, elastic.PhaseSwapped))
	rep.add("reindex/replay-lag", replayLag)
	rep.add("reindex/rss", p.peak())
	rep.add("reindex/replayed", replayed)
	rep.add("reindex/differing", differing)
	rep.add("reader/gap", rd.maxGap.Seconds())
	rep.add("reader/answers", float64(rd.answers))
	if len(lags) > 0 {
		rep.add("lag/max", lags[len(lags)-1])
		rep.add("lag/p50", median(lags))
	}
	rep.add("updates/offered", float64(offered1-offered0)/took.Seconds())
	rep.add("updates", float64(done1-done0)/took.Seconds())
	rep.add("updates/behind", float64(offered1-done1))
	if lat := w.latency(p.started, p.ended); len(lat) > 0 {
		rep.add("updates/p50", lat[len(lat)/2].Seconds()*1000)
		rep.add("updates/p99", percentile(lat, 0.99).Seconds()*1000)
	}
	return nil
}

// updates is the write load of the reindex scenario: an open-loop
// schedule, update i due at start + i/rate. A scheduler hands each update
// as it comes due to a pool of writers through a queue that never blocks
// it, so a slow commit delays no other update: the rate offered is the
// rate asked for, and what the writers achieve is measured against it.
// Each update is an UPDATE of a row (committed) and its message queued
// with Producer.Queue.
type updates struct {
	start time.Time
	rate  int
	wg    sync.WaitGroup
	done  atomic.Int64

	mu       sync.Mutex
	firstErr error
	took     []timedUpdate
}

// timedUpdate is when an update started and how long it took (the UPDATE
// committed and its message queued).
type timedUpdate struct {
	start time.Time
	took  time.Duration
}

// latency returns the times of the updates started in [from, to], sorted.
func (u *updates) latency(from, to time.Time) []time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []time.Duration
	for _, t := range u.took {
		if !t.start.Before(from) && !t.start.After(to) {
			out = append(out, t.took)
		}
	}
	slices.Sort(out)
	return out
}

// updateWriters is the writers of the pool: enough that the commit
// latency of a loaded machine (tens of ms) does not bound the rate.
const updateWriters = 32

func startUpdates(ctx context.Context, db *sql.DB, producer *redstream.Producer, rate, rows int) *updates {
	db.SetMaxOpenConns(updateWriters + 2)
	db.SetMaxIdleConns(updateWriters + 2)
	u := &updates{start: time.Now(), rate: rate}
	jobs := make(chan int64, 1<<20)
	for range updateWriters {
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			for i := range jobs {
				start := time.Now()
				id := 1 + (i*7919)%int64(rows)
				if _, err := db.ExecContext(ctx, `UPDATE items SET price = price + 1, updated_at = clock_timestamp() WHERE id = $1`, id); err != nil {
					u.fail(ctx, err)
					continue
				}
				if err := producer.Queue(ctx, redstream.Ref{Stream: "items", ID: id}); err != nil {
					u.fail(ctx, err)
					continue
				}
				u.done.Add(1)
				u.mu.Lock()
				u.took = append(u.took, timedUpdate{start: start, took: time.Since(start)})
				u.mu.Unlock()
			}
		}()
	}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer close(jobs)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		var sent int64
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for due := u.offered(); sent < due; sent++ {
				select {
				case jobs <- sent:
				default:
					u.fail(ctx, fmt.Errorf("%d updates queued: the writers are far behind", cap(jobs)))
					return
				}
			}
		}
	}()
	return u
}

// offered returns the updates due so far.
func (u *updates) offered() int64 {
	return int64(time.Since(u.start) * time.Duration(u.rate) / time.Second)
}

func (u *updates) fail(ctx context.Context, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.firstErr == nil && ctx.Err() == nil {
		u.firstErr = err
	}
}

func (u *updates) err() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.firstErr
}

// reader polls a count on the alias, one request at a time, until its
// context ends: the errors it met, the lowest count it saw, and the
// longest time between two answers (what a reader waits across the swap).
type reader struct {
	stopped  chan struct{}
	answers  int
	errors   int
	firstErr error
	min      int
	maxGap   time.Duration
}

func startReader(ctx context.Context, url string) *reader {
	r := &reader{stopped: make(chan struct{}), min: math.MaxInt}
	go func() {
		defer close(r.stopped)
		last := time.Now()
		for ctx.Err() == nil {
			count, err := countAt(ctx, url)
			if ctx.Err() != nil {
				return
			}
			now := time.Now()
			if err != nil {
				r.errors++
				if r.firstErr == nil {
					r.firstErr = err
				}
				continue
			}
			r.answers++
			r.min = min(r.min, count)
			r.maxGap = max(r.maxGap, now.Sub(last))
			last = now
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return r
}

// countAt returns the count a GET of url (a _count) answers.
func countAt(ctx context.Context, url string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s %.200s", url, res.Status, b)
	}
	var c struct {
		Count int `json:"count"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return 0, err
	}
	return c.Count, nil
}
