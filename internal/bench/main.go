// Command bench measures the figures of docs/BENCHMARKS.md that a Go
// benchmark cannot measure well: end-to-end latency and throughput at a
// paced write rate, the worker binary's peak memory, the single-row create
// beside its raw limits, and the delay stream's memory under a long load. Every scenario runs several times and reports medians, and every
// raw limit is measured in the same run as the figure it bounds.
//
// Usage (from the module root):
//
//	go run ./internal/bench [flags] <scenario>...
//
// Scenarios:
//
//	create    single-row create: plain database/sql, the same with the two
//	          Redis writes and no framework (the raw limit), GORM without
//	          and with the plugin (sync, AsyncPublish and KeepDelayMessages),
//	          interleaved
//	latency   commit → Elasticsearch bulk acknowledged, at a paced write rate
//	worker    peak RSS and throughput of the redstream binary draining a
//	          backlog and running backfill, beside raw loops doing the same
//	e2e       changes synced per second end to end at a paced create rate,
//	          with ES document writes, bulk requests and CPU per change,
//	          delay messages kept (KeepDelayMessages) vs acknowledged
//	engines   the sync into the Elasticsearch target and into the
//	          OpenSearch node at OPENSEARCH_URL, alternately in each run:
//	          a backlog drained (msg/s, machine CPU per message) and the
//	          e2e scenario's changes synced per second
//	reindex   `redstream reindex` of -rows rows while -reindex-rate updates
//	          per second go on and a worker syncs them: wall time, peak RSS,
//	          the live consumer's lag during it
//	delaymem  MEMORY USAGE and XLEN of the delay stream after a long paced
//	          create load (5 minutes at 2,000/s per mode), kept vs
//	          acknowledged; -mem-runs runs (default 1: 10 minutes)
//	scale     a stream of 6 shards drained by 1, 2 and 3 worker processes
//	          of one group, alternately, with the CPU time per message of
//	          the workers, Redis, PostgreSQL and the test server; the time
//	          the group takes to spread the units again after a join, a
//	          SIGTERM and a SIGKILL
//	all       all of the above
//
// Each scenario prints a table, then one line per figure for machines:
//
//	RESULT {"scenario":"latency","figure":"p99","unit":"ms","median":…,"runs":[…],…}
//
// The servers are found through DATABASE_URL and REDIS_URL (the test
// defaults otherwise), ELASTICSEARCH_URL for the latency, e2e and engines
// scenarios (the project's ES test server otherwise), and OPENSEARCH_URL
// for engines. Every run works in its own PostgreSQL schema and Redis key
// namespace and removes them at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config holds the flags of every scenario.
type config struct {
	runs  int
	short bool

	createN int // creates per variant per run

	rate         int           // latency: writes per second
	duration     time.Duration // latency: measured seconds per run
	warmup       time.Duration // latency, e2e: unmeasured lead-in per run
	writers      int           // latency, e2e, delaymem: writer goroutines
	updates      float64       // latency: fraction of writes that update an existing row
	asyncPublish bool          // latency: ProducerOptions.AsyncPublish

	rows int // worker: rows in the table and messages in the backlog

	e2eRate     int           // e2e: creates per second
	e2eDuration time.Duration // e2e: measured seconds per mode and run
	e2eDelay    time.Duration // e2e: the Delayer's delay

	memRuns     int           // delaymem: runs (each mode memDuration long)
	memRate     int           // delaymem: creates per second
	memDuration time.Duration // delaymem: how long each mode writes
	memDelay    time.Duration // delaymem: the Delayer's delay

	scaleRows   int // scale: messages in the backlog of each drain
	reindexRate int // reindex: updates per second during the reindex

	engineRows int // engines: messages in the backlog of each drain
}

var scenarios = []struct {
	name, summary string
	run           func(ctx context.Context, cfg *config, out *report) error
	runs          func(cfg *config) int // how many runs; nil: -runs
}{
	{"create", "single-row create: raw limits beside the plugin", runCreate, nil},
	{"latency", "commit → Elasticsearch bulk acknowledged at a paced write rate", runLatency, nil},
	{"worker", "redstream binary: peak RSS and throughput of drain and backfill", runWorker, nil},
	{"e2e", "changes synced per second end to end, and ES writes per change, delay messages kept vs acknowledged", runE2E, nil},
	{"delaymem", "Redis memory of the delay stream after a long paced load, delay messages kept vs acknowledged", runDelayMem,
		func(cfg *config) int { return cfg.memRuns }},
	{"scale", "a stream of 6 shards drained by 1, 2 and 3 worker processes of a group, CPU per message, rebalance times", runScale, nil},
	{"engines", "sync into the Elasticsearch target and the OpenSearch node in the same run: drain msg/s and end-to-end changes/s", runEngines, nil},
	{"reindex", "redstream reindex of -rows rows under -reindex-rate updates/s: time, peak RSS, the live consumer's lag", runReindex, nil},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.IntVar(&cfg.runs, "runs", 5, "runs per scenario; the figures are their medians")
	fs.BoolVar(&cfg.short, "short", false, "a quick pass: smaller sizes and shorter runs (and -runs 3 unless set)")
	fs.IntVar(&cfg.createN, "create-n", 2000, "create: creates per variant per run")
	fs.IntVar(&cfg.rate, "rate", 2000, "latency: target writes per second")
	fs.DurationVar(&cfg.duration, "duration", 20*time.Second, "latency: measured time per run")
	fs.DurationVar(&cfg.warmup, "warmup", 3*time.Second, "latency, e2e: unmeasured lead-in per run")
	fs.IntVar(&cfg.writers, "writers", 16, "latency, e2e, delaymem: writer goroutines, the application's concurrency (the schedule never waits for them)")
	fs.Float64Var(&cfg.updates, "updates", 0.5, "latency: fraction of writes that update an existing row instead of creating one")
	fs.BoolVar(&cfg.asyncPublish, "async", false, "latency: use ProducerOptions.AsyncPublish")
	fs.IntVar(&cfg.rows, "rows", 1_000_000, "worker: rows in the table and messages in the backlog")
	fs.IntVar(&cfg.e2eRate, "e2e-rate", 4000, "e2e: offered creates per second (above what the machine sustains, the figure is its capacity)")
	fs.DurationVar(&cfg.e2eDuration, "e2e-duration", 20*time.Second, "e2e: measured time per mode and run (after -warmup)")
	fs.DurationVar(&cfg.e2eDelay, "e2e-delay", 5*time.Second, "e2e: the Delayer's delay (shorter than the run, so that kept delay messages are re-sent within it)")
	fs.IntVar(&cfg.memRuns, "mem-runs", 1, "delaymem: runs (each one writes -mem-duration in each mode)")
	fs.IntVar(&cfg.memRate, "mem-rate", 2000, "delaymem: target creates per second")
	fs.DurationVar(&cfg.memDuration, "mem-duration", 5*time.Minute, "delaymem: how long each mode writes")
	fs.IntVar(&cfg.scaleRows, "scale-rows", 300_000, "scale: messages in the backlog each drain works through")
	fs.DurationVar(&cfg.memDelay, "mem-delay", 0, "delaymem: the Delayer's delay; 0 is -mem-duration, so that it moves nothing during the run")
	fs.IntVar(&cfg.engineRows, "engine-rows", 100_000, "engines: rows in the table and messages in the backlog of each drain")
	fs.IntVar(&cfg.reindexRate, "reindex-rate", 500, "reindex: updates per second while the reindex runs")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: go run ./internal/bench [flags] <scenario>...")
		fmt.Fprintln(stderr, "\nScenarios:")
		for _, s := range scenarios {
			fmt.Fprintf(stderr, "  %-9s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(stderr, "  %-9s %s\n", "all", "every scenario")
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if cfg.short {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		shorten(&cfg, set)
	}
	if cfg.runs < 1 || cfg.createN < 10 || cfg.rate < 1 || cfg.duration <= 0 || cfg.writers < 1 ||
		cfg.updates < 0 || cfg.updates > 1 || cfg.rows < 1000 ||
		cfg.e2eRate < 1 || cfg.e2eDuration <= 0 || cfg.e2eDelay < 0 ||
		cfg.memRuns < 1 || cfg.memRate < 1 || cfg.memDuration <= 0 || cfg.memDelay < 0 || cfg.scaleRows < 1000 ||
		cfg.reindexRate < 1 || cfg.engineRows < 1000 {
		fmt.Fprintln(stderr, "bench: a flag is out of range (see -h)")
		return 2
	}
	if cfg.memDelay == 0 {
		cfg.memDelay = cfg.memDuration
	}
	names := fs.Args()
	if len(names) == 0 {
		fs.Usage()
		return 2
	}
	var todo []int
	for _, n := range names {
		found := false
		for i, s := range scenarios {
			if n == s.name || n == "all" {
				todo = append(todo, i)
				found = true
			}
		}
		if !found {
			fmt.Fprintf(stderr, "bench: unknown scenario %q\n", n)
			return 2
		}
	}

	m, err := machineInfo(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	m.print(stdout)
	failed := false
	for _, i := range todo {
		s := scenarios[i]
		runs := cfg.runs
		if s.runs != nil {
			runs = s.runs(&cfg)
		}
		rep := newReport(s.name, runs)
		fmt.Fprintf(stdout, "\n== %s: %s (%d runs)\n", s.name, s.summary, runs)
		if err := s.run(ctx, &cfg, rep); err != nil {
			fmt.Fprintf(stderr, "bench: %s: %v\n", s.name, err)
			failed = true
			if ctx.Err() != nil {
				break
			}
			continue
		}
		rep.print(stdout)
	}
	if failed {
		return 1
	}
	return 0
}

// shorten scales the sizes down for -short, leaving flags given
// explicitly alone.
func shorten(cfg *config, set map[string]bool) {
	if !set["runs"] {
		cfg.runs = 3
	}
	if !set["create-n"] {
		cfg.createN = 400
	}
	if !set["duration"] {
		cfg.duration = 5 * time.Second
	}
	if !set["warmup"] {
		cfg.warmup = time.Second
	}
	if !set["rows"] {
		cfg.rows = 100_000
	}
	if !set["engine-rows"] {
		cfg.engineRows = 20_000
	}
	if !set["e2e-duration"] {
		cfg.e2eDuration = 8 * time.Second
	}
	if !set["e2e-delay"] {
		cfg.e2eDelay = 2 * time.Second
	}
	if !set["mem-duration"] {
		cfg.memDuration = 15 * time.Second
	}
	if !set["scale-rows"] {
		cfg.scaleRows = 60_000
	}

}
