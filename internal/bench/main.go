// Command bench measures the figures of docs/BENCHMARKS.md that a Go
// benchmark cannot measure well: end-to-end latency at a paced write rate,
// the worker binary's peak memory, and the single-row create beside its raw
// limits. Every scenario runs several times and reports medians, and every
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
//	          and with the plugin (sync and AsyncPublish), interleaved
//	latency   commit → Elasticsearch bulk acknowledged, at a paced write rate
//	worker    peak RSS and throughput of the redstream binary draining a
//	          backlog and running backfill, beside raw loops doing the same
//	all       all of the above
//
// Each scenario prints a table, then one line per figure for machines:
//
//	RESULT {"scenario":"latency","figure":"p99","unit":"ms","median":…,"runs":[…],…}
//
// The servers are found through DATABASE_URL and REDIS_URL (the test
// defaults otherwise), and ELASTICSEARCH_URL for the latency scenario
// (the project's ES test server otherwise). Every run works in its own
// PostgreSQL schema and Redis key namespace and removes them at the end.
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
	warmup       time.Duration // latency: unmeasured lead-in per run
	writers      int           // latency: writer goroutines
	updates      float64       // latency: fraction of writes that update an existing row
	asyncPublish bool          // latency: ProducerOptions.AsyncPublish

	rows int // worker: rows in the table and messages in the backlog
}

var scenarios = []struct {
	name, summary string
	run           func(ctx context.Context, cfg *config, out *report) error
}{
	{"create", "single-row create: raw limits beside the plugin", runCreate},
	{"latency", "commit → Elasticsearch bulk acknowledged at a paced write rate", runLatency},
	{"worker", "redstream binary: peak RSS and throughput of drain and backfill", runWorker},
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
	fs.DurationVar(&cfg.warmup, "warmup", 3*time.Second, "latency: unmeasured lead-in per run")
	fs.IntVar(&cfg.writers, "writers", 16, "latency: writer goroutines, the application's concurrency (the schedule never waits for them)")
	fs.Float64Var(&cfg.updates, "updates", 0.5, "latency: fraction of writes that update an existing row instead of creating one")
	fs.BoolVar(&cfg.asyncPublish, "async", false, "latency: use ProducerOptions.AsyncPublish")
	fs.IntVar(&cfg.rows, "rows", 1_000_000, "worker: rows in the table and messages in the backlog")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: go run ./internal/bench [flags] <scenario>...")
		fmt.Fprintln(stderr, "\nScenarios:")
		for _, s := range scenarios {
			fmt.Fprintf(stderr, "  %-8s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(stderr, "  %-8s %s\n", "all", "every scenario")
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
		cfg.updates < 0 || cfg.updates > 1 || cfg.rows < 1000 {
		fmt.Fprintln(stderr, "bench: a flag is out of range (see -h)")
		return 2
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
		rep := newReport(s.name, cfg.runs)
		fmt.Fprintf(stdout, "\n== %s: %s (%d runs)\n", s.name, s.summary, cfg.runs)
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
}
