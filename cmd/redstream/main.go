// Command redstream keeps Elasticsearch indexes in sync with PostgreSQL
// tables over Redis streams, from a configuration file, and offers the
// commands an operator needs around it.
//
// Usage:
//
//	redstream worker   --config FILE   run consumers, delayers and trimmers
//	redstream status   --config FILE   streams, offsets, lag, leases, dead letters
//	redstream backfill --config FILE --stream NAME   index a table from PostgreSQL
//	redstream verify   --config FILE --stream NAME [--repair]   compare a table with its index
//	redstream dlq      list|replay|drop --config FILE --stream NAME
//	redstream version
//
// Exit codes: 0 success; 1 a runtime failure; 2 a usage or configuration
// error. docs/OPERATIONS.md describes the configuration and every command.
//
// Unless GOGC is set, the garbage collector runs with GOGC=200.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// defaultGCPercent is the garbage collector's target when GOGC is not set.
// The worker's live heap is small (tens of MB) and its allocation rate
// high (every batch's replies, rows and bulk body), so at Go's default of
// 100 it collects every few batches. At 200 it drains and backfills 10–20%
// faster for about 4 MB more peak RSS (docs/BENCHMARKS.md).
const defaultGCPercent = 200

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal asks the command to stop; a second one gets the
	// default handling back and ends the process at once, should a stop
	// hang.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env is how the commands read the environment (os.Getenv in main).
type env struct {
	getenv         func(string) string
	stdout, stderr io.Writer
}

// command is one subcommand: it parses its own flags from args and returns
// an exit code.
type command struct {
	name, summary string
	run           func(ctx context.Context, e *env, args []string) int
}

func commands() []command {
	return []command{
		{"worker", "run the sync workers of every configured stream", runWorker},
		{"status", "show streams, consumer offsets and lag, leases and dead letters", runStatus},
		{"backfill", "index a whole table (or a key range) straight from PostgreSQL", runBackfill},
		{"verify", "compare a table with its index; --repair queues the differences", runVerify},
		{"dlq", "list, replay or drop dead-lettered messages", runDLQ},
		{"version", "print the version", runVersion},
	}
}

// run is the whole program but for the process: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	e := &env{getenv: getenv, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(stderr, "redstream: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: redstream <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "redstream <command> -h" for a command's flags.`)
}

// flagSet returns a FlagSet for a subcommand that prints its errors and
// usage to e.stderr.
func (e *env) flagSet(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet("redstream "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: redstream %s %s\n\nFlags:\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args into fs; it returns false and the exit code when the
// command must stop (help asked, or a usage error).
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}

// configFlag registers --config, defaulting to $REDSTREAM_CONFIG.
func (e *env) configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", e.getenv("REDSTREAM_CONFIG"), "configuration `file` (default $REDSTREAM_CONFIG)")
}

// loadConfig loads the configuration or reports why not; ok is false with
// the exit code to return.
func (e *env) loadConfig(path string) (*Config, int, bool) {
	cfg, err := loadConfig(path, e.getenv)
	if err != nil {
		fmt.Fprintf(e.stderr, "redstream: %v\n", err)
		return nil, exitUsage, false
	}
	return cfg, 0, true
}

// fail reports a runtime error and returns exitFailure.
func (e *env) fail(err error) int {
	fmt.Fprintf(e.stderr, "redstream: %v\n", err)
	return exitFailure
}
