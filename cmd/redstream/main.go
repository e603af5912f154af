// Command redstream keeps Elasticsearch indexes in sync with PostgreSQL, MySQL or MariaDB
// tables over Redis streams, from a configuration file, and offers the
// commands an operator needs around it.
//
// Usage:
//
//	redstream worker   --config FILE   run consumers, delayers and trimmers
//	redstream status   --config FILE   streams, offsets, lag, leases, dead letters
//	redstream backfill --config FILE --stream NAME   index a table from the database
//	redstream verify   --config FILE --stream NAME [--repair]   compare a table with its index
//	redstream dlq      list|replay|drop --config FILE --stream NAME
//	redstream version  (also --version)
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
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
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
		{"backfill", "index a whole table (or a key range) straight from the database", runBackfill},
		{"verify", "compare a table with its index; --repair queues the differences", runVerify},
		{"reindex", "rebuild a stream's index behind its alias with no downtime", runReindex},
		{"dlq", "list, replay or drop dead-lettered messages", runDLQ},
		{"version", "print the version", runVersion},
	}
}

// run is the whole program but for the process: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	e := &env{getenv: getenv, stdout: stdout, stderr: stderr}
	// go-redis logs some failures itself (a pool that cannot dial, a
	// cluster or sentinel lookup that fails) before the call returns the
	// error we report: its lines go to our log, at debug level, until a
	// configuration says how to log.
	routeRedisLog(newLogger(LogConfig{}, stderr))
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	case "-version", "--version":
		return runVersion(ctx, e, args[1:])
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
	fmt.Fprintln(w, `Run "redstream <command> -h" for a command's flags; "redstream --version" prints the version.`)
}

// flagSet returns a FlagSet for a subcommand that prints its errors and
// usage to e.stderr. Its name is "redstream <name>".
func (e *env) flagSet(name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet("redstream "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: %s\n", strings.TrimSpace(fs.Name()+" "+args))
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(e.stderr, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse parses args into fs; it returns false and the exit code when the
// command must stop (help asked, or a usage error). No command takes
// arguments after its flags: one is a usage error, never ignored, since
// it is most often a flag that came too late (after a word the flag
// package stops at) or a typo.
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q (flags come as --name value; -h lists them)\n", fs.Name(), fs.Arg(0))
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
	routeRedisLog(newLogger(cfg.Log, e.stderr))
	return cfg, 0, true
}

// fail reports a runtime error and returns exitFailure.
func (e *env) fail(err error) int {
	fmt.Fprintf(e.stderr, "redstream: %v\n", err)
	return exitFailure
}

// routeRedisLog sends go-redis's own log lines to logger, at debug level:
// they come in another format, and what they say (a pool that cannot
// dial, a node that does not answer) the error of the call that failed
// says again, in the command's error or the worker's rate-limited log.
// go-redis has one logger per process, so the last call wins.
func routeRedisLog(logger *slog.Logger) {
	redis.SetLogger(redisLogger{logger.With("logger", "go-redis")})
}

// redisLogger adapts a *slog.Logger to go-redis's logging interface.
type redisLogger struct{ log *slog.Logger }

// Printf logs one go-redis line at debug level.
func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if !l.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	l.log.DebugContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)))
}
