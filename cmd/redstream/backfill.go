package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// How often the backfill progress shows.
const (
	progressEvery = 5 * time.Second // plain progress lines
	barEvery      = 200 * time.Millisecond
)

func runBackfill(ctx context.Context, e *env, args []string) int {
	fs := e.flagSet("backfill", "--config FILE --stream NAME [--from ID] [--to ID] [--page N] [--restart]")
	path := e.configFlag(fs)
	name := fs.String("stream", "", "configured stream `name` whose table to index; required")
	from := fs.String("from", "", "index rows whose key is above this `id` (default: from the first row)")
	to := fs.String("to", "", "index rows whose key is at most this `id` (default: to the last row)")
	page := fs.Int("page", 0, fmt.Sprintf("rows per page (default: the stream's batch_size, else %d)", elastic.DefaultPageSize))
	restart := fs.Bool("restart", false, "ignore the cursor of an interrupted run and start over")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, code, ok := e.loadConfig(*path)
	if !ok {
		return code
	}
	if *name == "" {
		fmt.Fprintln(e.stderr, "redstream backfill: --stream: required")
		return exitUsage
	}
	s := streamByName(cfg, *name)
	if s == nil {
		fmt.Fprintf(e.stderr, "redstream backfill: --stream: no configured stream is named %q\n", *name)
		return exitUsage
	}
	if *page < 0 {
		fmt.Fprintln(e.stderr, "redstream backfill: --page: must not be negative")
		return exitUsage
	}
	// fail reports err, or, when a signal ended ctx, that the run
	// stopped and how to go on; res is what the run did.
	var res elastic.BackfillResult
	fail := func(err error) int {
		if ctx.Err() != nil {
			e.backfillStopped(res)
			return exitFailure
		}
		return e.fail(err)
	}
	svc, err := connect(ctx, cfg, need{redis: true, db: true, es: true}, 0)
	if err != nil {
		return fail(err)
	}
	defer svc.close()
	log := newLogger(cfg.Log, e.stderr)
	if err := ensureIndex(ctx, svc, redstream.NewKeys(cfg.Redis.Namespace), s); err != nil {
		return fail(fmt.Errorf("index %s: %w", s.Index, err))
	}
	h, err := newHandler(ctx, svc, cfg, s, log)
	if err != nil {
		return fail(fmt.Errorf("stream %s (table %s): %w", s.Name, s.Table, err))
	}
	cursor := elastic.RedisCursor(svc.rdb, backfillCursorKey(redstream.NewKeys(cfg.Redis.Namespace), s))
	if *restart {
		if err := cursor.Clear(ctx); err != nil {
			return fail(err)
		}
	} else if c, ok, err := cursor.Load(ctx); err != nil {
		return fail(err)
	} else if ok {
		res.Last = c
		fmt.Fprintf(e.stderr, "redstream backfill: resuming an interrupted run after key %s (--restart starts over)\n", c)
	}
	// A worker may be writing the same index: the rows changed while a
	// page was in flight are queued again after it, so that the worker
	// writes them last (a version column alone does not order a soft
	// delete that leaves the version as it was).
	bh := elastic.RequeueChanged(h, svc.rdb, redstream.NewKeys(cfg.Redis.Namespace), s.Streams())
	prog := newProgressBar(e.stderr, "backfill "+s.Name)
	start := time.Now()
	before := h.Stats()
	res, err = elastic.Backfill(ctx, svc.db, bh, elastic.BackfillOptions{
		Table:      s.Table,
		PrimaryKey: s.PrimaryKey,
		Stream:     s.Name,
		PageSize:   cmp.Or(*page, s.BatchSize), // else elastic.DefaultPageSize
		From:       *from,
		To:         *to,
		Cursor:     cursor,
		Progress:   prog.update,
		Logger:     log,
	})
	if err != nil {
		prog.end()
		return fail(err)
	}
	prog.done(res.Rows)
	st := h.Stats()
	fmt.Fprintf(e.stdout, "backfill %s: %d rows in %s: %d indexed, %d deleted (soft-deleted rows), %d rejected (see the log)\n",
		s.Name, res.Rows, time.Since(start).Round(time.Millisecond),
		st.Indexed-before.Indexed, st.Deleted-before.Deleted, st.DeadLettered-before.DeadLettered)
	if st.DeadLettered > before.DeadLettered {
		return exitFailure
	}
	return exitOK
}

// backfillStopped says that a backfill stopped on a signal, after res,
// and how to go on: the cursor holds the last key of the last page
// finished, so the same command resumes after it.
func (e *env) backfillStopped(res elastic.BackfillResult) {
	switch {
	case res.Rows > 0:
		fmt.Fprintf(e.stderr, "redstream backfill: stopped after %d rows (interrupted), up to key %s; "+
			"run the same command again to resume after key %s, or add --restart to start over\n", res.Rows, res.Last, res.Last)
	case res.Last != "":
		fmt.Fprintf(e.stderr, "redstream backfill: stopped (interrupted) before this run finished a page; "+
			"run the same command again to resume after key %s, or add --restart to start over\n", res.Last)
	default:
		fmt.Fprintln(e.stderr, "redstream backfill: stopped (interrupted) before any row was indexed; run the same command again to start")
	}
}

func streamByName(cfg *Config, name string) *StreamConfig {
	for i := range cfg.Streams {
		if cfg.Streams[i].Name == name {
			return &cfg.Streams[i]
		}
	}
	return nil
}

// backfillCursorKey is where an interrupted backfill of s leaves the last
// key it finished: "<namespace>:redstream:backfill:<stream>:<index>".
func backfillCursorKey(keys redstream.Keys, s *StreamConfig) string {
	return keys.Backfill(s.Name, s.Index)
}

// progressBar shows rows done, rate and ETA: a redrawn bar on a terminal,
// a line every few seconds otherwise.
type progressBar struct {
	w     io.Writer
	label string
	total int64
	tty   bool
	start time.Time
	last  time.Time
}

func newProgressBar(w io.Writer, label string) *progressBar {
	now := time.Now()
	return &progressBar{w: w, label: label, total: -1, tty: isTerminal(w), start: now, last: now}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// update shows done rows of total (-1 when unknown), at most every few
// seconds; it is elastic.BackfillOptions.Progress.
func (p *progressBar) update(done, total int64) {
	p.total = total
	now := time.Now()
	every := progressEvery
	if p.tty {
		every = barEvery
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	p.print(done, now)
}

func (p *progressBar) done(done int64) {
	if p.tty {
		p.print(done, time.Now())
		fmt.Fprintln(p.w)
	}
}

// end ends a bar drawn on a terminal with a newline, so that what follows
// starts a line of its own.
func (p *progressBar) end() {
	if p.tty && p.last != p.start {
		fmt.Fprintln(p.w)
	}
}

func (p *progressBar) print(done int64, now time.Time) {
	elapsed := now.Sub(p.start).Seconds()
	rate := float64(done) / max(elapsed, 1e-3)
	pct, eta := "", ""
	if p.total > 0 {
		frac := min(float64(done)/float64(p.total), 1)
		pct = fmt.Sprintf(" (%.0f%%)", 100*frac)
		if rate > 0 && done < p.total {
			eta = ", ETA " + (time.Duration(float64(p.total-done)/rate) * time.Second).Round(time.Second).String()
		}
		if p.tty {
			const width = 30
			filled := int(frac * width)
			fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d%s %.0f rows/s%s   ", p.label,
				strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, p.total, pct, rate, eta)
			return
		}
		fmt.Fprintf(p.w, "%s: %d/%d rows%s, %.0f rows/s%s\n", p.label, done, p.total, pct, rate, eta)
		return
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%s: %d rows, %.0f rows/s   ", p.label, done, rate)
		return
	}
	fmt.Fprintf(p.w, "%s: %d rows, %.0f rows/s\n", p.label, done, rate)
}
