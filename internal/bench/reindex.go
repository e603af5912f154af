package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// runReindex measures `redstream reindex` of a table of cfg.rows rows
// while updates go on at cfg.reindexRate per second and a worker process
// syncs them. Per run, into a fresh test server process:
//
//  1. a worker process with a mapping file creates items-<time> behind the
//     alias items; `redstream backfill` fills it (not measured);
//  2. updates start, paced at the rate by four writers: each one an UPDATE
//     of a row and its message queued with Producer.Queue; the worker
//     syncs them;
//  3. `redstream reindex` rebuilds the index behind the alias with a new
//     mapping: its wall time, its peak RSS, and the live consumer's lag
//     (the age of the oldest message after its offset) sampled every
//     100 ms from the reindex's start to its end.
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
	rep.declare(figure{name: "reindex/time", unit: "s", desc: fmt.Sprintf("reindex of %d rows under %d updates/s: wall time of the command", cfg.rows, cfg.reindexRate)})
	rep.declare(figure{name: "reindex/rate", unit: "rows/s", desc: "rows / wall time", higherBetter: true})
	rep.declare(figure{name: "reindex/rss", unit: "MB", desc: "reindex peak RSS (VmHWM)", target: "≤ 100"})
	rep.declare(figure{name: "reindex/replayed", unit: "msgs", desc: "changes the reindex replayed"})
	rep.declare(figure{name: "lag/max", unit: "s", desc: "the live consumer's lag during the reindex: maximum"})
	rep.declare(figure{name: "lag/p50", unit: "s", desc: "the live consumer's lag during the reindex: median of the samples"})
	rep.declare(figure{name: "updates", unit: "/s", desc: "updates done per second during the reindex", higherBetter: true})
	for run := range cfg.runs {
		if err := rep.run(run, func() error { return reindexRun(ctx, cfg, rep, bin) }); err != nil {
			return err
		}
	}
	rep.note("The worker runs in its own process, as does the test server; the old index is filled by `redstream backfill` before the updates start (not measured). Lag samples every 100 ms, by the Redis server's clock against this machine's.")
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
	for _, q := range []string{
		`CREATE TABLE items (id bigint PRIMARY KEY, title text, price int, updated_at timestamptz)`,
		fmt.Sprintf(`INSERT INTO items SELECT g, 'item ' || g, g %% 100, now() FROM generate_series(1, %d) g`, n),
		`ANALYZE items`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	srv, err := startServer(ctx, bin)
	if err != nil {
		return err
	}
	defer srv.stop()
	q := strconv.Quote
	config := filepath.Join(bin, "reindex-"+s.ns+".yaml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(`redis:
  url: %s
  namespace: %s
database:
  url: %s
elasticsearch:
  urls: [%s]
worker:
  listen: 127.0.0.1:0
log:
  level: warn
streams:
  - name: items
    table: items
    index: items
    mapping: v1.json
    version_column: updated_at
`, q(testenv.RedisURL()), q(s.ns), q(s.dsn), q(srv.url))), 0o600); err != nil {
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
	var updates atomic.Int64
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var updateErr error
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if updateErr == nil && uctx.Err() == nil {
			updateErr = err
		}
	}
	// Four writers share the rate: one UPDATE commits (fsync) and queues
	// at a time each.
	const writers = 4
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(writers * time.Second / time.Duration(cfg.reindexRate))
			defer tick.Stop()
			for i := int64(w); ; i += writers {
				select {
				case <-uctx.Done():
					return
				case <-tick.C:
				}
				id := 1 + (i*7919)%int64(n)
				if _, err := db.ExecContext(uctx, `UPDATE items SET price = price + 1, updated_at = clock_timestamp() WHERE id = $1`, id); err != nil {
					fail(err)
					return
				}
				if err := producer.Queue(uctx, redstream.Ref{Stream: "items", ID: id}); err != nil {
					fail(err)
					return
				}
				updates.Add(1)
			}
		}()
	}
	// Let the worker reach a steady state first.
	time.Sleep(3 * time.Second)

	var lags []float64
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
		}
	}()
	before := updates.Load()
	p, err := startProc(ctx, red, "reindex", "--config", config, "--stream", "items", "--mapping", filepath.Join(bin, "v2.json"))
	if err != nil {
		stopLag()
		return err
	}
	err = p.wait(60 * time.Minute)
	stopLag()
	<-lagDone
	stopUpdates()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("reindex: %w\n%s", err, p.output())
	}
	if updateErr != nil {
		return fmt.Errorf("updates: %w", updateErr)
	}
	took := p.ended.Sub(p.started)
	if got, err := srv.count(ctx, "items"); err != nil || got != n {
		return fmt.Errorf("the new index holds %d documents, want %d (%v)", got, n, err)
	}
	replayed := 0.0
	// "… this run: N rows backfilled, M changes replayed; …"
	if out := p.output(); strings.Contains(out, "this run: ") {
		var rows, msgs int
		if _, err := fmt.Sscanf(out[strings.Index(out, "this run: "):], "this run: %d rows backfilled, %d changes", &rows, &msgs); err == nil {
			replayed = float64(msgs)
		}
	}
	slices.Sort(lags)
	rep.add("reindex/time", took.Seconds())
	rep.add("reindex/rate", float64(n)/took.Seconds())
	rep.add("reindex/rss", p.peak())
	rep.add("reindex/replayed", replayed)
	if len(lags) > 0 {
		rep.add("lag/max", lags[len(lags)-1])
		rep.add("lag/p50", median(lags))
	}
	rep.add("updates", float64(updates.Load()-before)/took.Seconds())
	return nil
}
