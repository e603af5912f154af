package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// The search engines a worker can sync to, as latencyES takes them.
const (
	engineES         = "elasticsearch" // the test server, or ELASTICSEARCH_URL
	engineOpenSearch = "opensearch"    // the node at OPENSEARCH_URL
)

var engines = []string{engineES, engineOpenSearch}

// runEngines measures the sync into each engine in the same run, engines
// alternating which goes first: the Elasticsearch test server (or the
// cluster at ELASTICSEARCH_URL) and the OpenSearch node at OPENSEARCH_URL
// (make opensearch starts one).
//
// For each engine, a drain and an end-to-end run, each in a fresh space:
//   - drain: -engine-rows rows and as many messages, one per row, drained
//     by a Consumer with the Elasticsearch handler (batches of 1,000: one
//     SELECT and one _bulk each); messages per second from the consumer's
//     start to its commit of the last message, and the machine's busy CPU
//     per message (the node is a process of its own, the test server runs
//     in this one: only the whole machine compares the two);
//   - end to end: the e2e scenario's run in the default mode (delay
//     messages acknowledged): creates through GORM with the plugin offered
//     at -e2e-rate for -e2e-duration, synced by a Consumer, a Delayer and a
//     Trimmer in this process; changes synced per second.
func runEngines(ctx context.Context, cfg *config, rep *report) error {
	if os.Getenv("OPENSEARCH_URL") == "" {
		return fmt.Errorf("OPENSEARCH_URL is not set (make opensearch starts a node and prints it)")
	}
	for _, e := range engines {
		rep.declare(figure{name: "drain/" + e, unit: "msg/s", higherBetter: true,
			desc: fmt.Sprintf("%d messages drained by a Consumer, re-read + bulk, into %s", cfg.engineRows, engineName(e))})
		rep.declare(figure{name: "drain-cpu/" + e, unit: "µs/msg", desc: "busy CPU time of the whole machine per message of the drain, " + engineName(e)})
		declareE2E(rep, cfg, e, ", into "+engineName(e))
	}
	rep.declare(figure{name: "drain opensearch/es", unit: "×", higherBetter: true, desc: "drain msg/s, OpenSearch over the Elasticsearch target, run by run"})
	rep.declare(figure{name: "rate opensearch/es", unit: "×", higherBetter: true, desc: "changes synced per second end to end, OpenSearch over the Elasticsearch target, run by run"})
	var loads []string
	for run := range cfg.runs {
		err := rep.run(run, func() error {
			for _, i := range modeOrder(run) {
				e := engines[i]
				before := loadAvg()
				if err := engineDrain(ctx, cfg, rep, e); err != nil {
					return fmt.Errorf("drain into %s: %w", e, err)
				}
				if err := e2eRun(ctx, cfg, rep, e, false, e); err != nil {
					return fmt.Errorf("end to end into %s: %w", e, err)
				}
				loads = append(loads, fmt.Sprintf("run %d %s %.2f→%.2f", run+1, e, before, loadAvg()))
			}
			last := func(name string) float64 { v := rep.byName[name].values; return v[len(v)-1] }
			rep.add("drain opensearch/es", last("drain/"+engineOpenSearch)/last("drain/"+engineES))
			rep.add("rate opensearch/es", last("rate/"+engineOpenSearch)/last("rate/"+engineES))
			return nil
		})
		if err != nil {
			return err
		}
	}
	rep.note("Elasticsearch target: %s; OpenSearch: the node at OPENSEARCH_URL. End to end: creates offered at %d/s for %s after %s warm-up, %d writers, a Delayer of %s.",
		engineName(engineES), cfg.e2eRate, cfg.e2eDuration, cfg.warmup, cfg.writers, cfg.e2eDelay)
	rep.note("load average (1 min) before→after each engine: %s", strings.Join(loads, ", "))
	return nil
}

func engineName(e string) string {
	switch {
	case e == engineOpenSearch:
		return "the OpenSearch node"
	case os.Getenv("ELASTICSEARCH_URL") != "":
		return "Elasticsearch at ELASTICSEARCH_URL"
	}
	return "the project's ES test server, in process"
}

// engineDrain drains a backlog of cfg.engineRows messages into engine.
func engineDrain(ctx context.Context, cfg *config, rep *report, engine string) error {
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
	if err := createItems(ctx, db, cfg.engineRows); err != nil {
		return err
	}
	last, err := s.fillStream(ctx, "items", cfg.engineRows)
	if err != nil {
		return err
	}
	es, index, esClose, err := latencyES(engine)
	if err != nil {
		return err
	}
	defer esClose()
	loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "items"})
	if err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h, err := elastic.NewHandler(es, loader, &elastic.Options{Index: index, Logger: quiet})
	if err != nil {
		return err
	}
	c, err := redstream.NewConsumer(s.rdb, "items", "indexer", h, &redstream.ConsumerOptions{Namespace: s.ns, Logger: quiet})
	if err != nil {
		return err
	}
	if err := s.rdb.Set(ctx, s.keys.Offset("items", "indexer"), "0-0", 0).Err(); err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	cpu0, start := cpuTimes(), time.Now()
	go func() { done <- c.Run(cctx) }()
	for c.Stats().Committed.Less(last) {
		select {
		case err := <-done:
			return fmt.Errorf("the consumer stopped: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	took, cpu1 := time.Since(start), cpuTimes()
	cancel()
	if err := <-done; err != nil {
		return err
	}
	if st := h.Stats(); st.Indexed != int64(cfg.engineRows) || st.DeadLettered > 0 {
		return fmt.Errorf("indexed %d and dead-lettered %d of %d", st.Indexed, st.DeadLettered, cfg.engineRows)
	}
	tick := 1e6 / float64(clockTicks)
	rep.add("drain/"+engine, float64(cfg.engineRows)/took.Seconds())
	rep.add("drain-cpu/"+engine, float64((cpu1[1]-cpu1[0])-(cpu0[1]-cpu0[0]))*tick/float64(cfg.engineRows))
	return nil
}
