package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
)

// Backfill defaults.
const (
	defaultBackfillPage = 1000
	progressEvery       = 5 * time.Second // plain progress lines
	barEvery            = 200 * time.Millisecond
)

func runBackfill(ctx context.Context, e *env, args []string) int {
	fs := e.flagSet("backfill", "--config FILE --stream NAME [--from ID] [--to ID] [--page N] [--restart]")
	path := e.configFlag(fs)
	name := fs.String("stream", "", "configured stream `name` whose table to index; required")
	from := fs.String("from", "", "index rows whose key is above this `id` (default: from the first row)")
	to := fs.String("to", "", "index rows whose key is at most this `id` (default: to the last row)")
	page := fs.Int("page", 0, "rows per page (default: the stream's batch_size, else 1000)")
	restart := fs.Bool("restart", false, "ignore the cursor of an interrupted run and start over")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, code, ok := e.loadConfig(*path)
	if !ok {
		return code
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
	svc, err := connect(ctx, cfg, need{redis: true, db: true, es: true}, 0)
	if err != nil {
		return e.fail(err)
	}
	defer svc.close()
	log := newLogger(cfg.Log, e.stderr)
	if err := ensureIndex(ctx, svc.es, s); err != nil {
		return e.fail(fmt.Errorf("index %s: %w", s.Index, err))
	}
	h, err := newHandler(ctx, svc, cfg, s, log)
	if err != nil {
		return e.fail(fmt.Errorf("stream %s (table %s): %w", s.Name, s.Table, err))
	}
	w, err := newPKWalker(ctx, svc.db, s, *to)
	if err != nil {
		return e.fail(err)
	}
	cursorKey := backfillCursorKey(redstream.NewKeys(cfg.Redis.Namespace), s)
	after := *from
	if *restart {
		if err := svc.rdb.Del(ctx, cursorKey).Err(); err != nil {
			return e.fail(err)
		}
	} else if c, err := svc.rdb.Get(ctx, cursorKey).Result(); err == nil {
		after = c
		fmt.Fprintf(e.stderr, "redstream backfill: resuming an interrupted run after key %s (--restart starts over)\n", c)
	} else if !errors.Is(err, redis.Nil) {
		return e.fail(err)
	}
	total := w.estimate(ctx, after)
	prog := newProgressBar(e.stderr, "backfill "+s.Name, total)
	n := cmp(*page, cmp(s.BatchSize, defaultBackfillPage))
	start := time.Now()
	before := h.Stats()
	rows := int64(0)
	for {
		ids, err := w.next(ctx, after, n)
		if err != nil {
			return e.fail(err)
		}
		if len(ids) == 0 {
			break
		}
		b := &redstream.Batch{Stream: s.Name, Consumer: "backfill", Attempt: 1}
		for i, id := range ids {
			// {"id":"<id>"}: the bytes json.Marshal gives the map, without
			// the map.
			quoted, err := json.Marshal(id)
			if err != nil {
				return e.fail(err)
			}
			payload := make([]byte, 0, len(quoted)+8)
			payload = append(append(append(payload, `{"id":`...), quoted...), '}')
			// Synthetic ids: the handler tells messages apart by them.
			b.Messages = append(b.Messages, redstream.Message{ID: redstream.ID{Seq: uint64(i) + 1}, Stream: s.Name, Payload: payload})
		}
		if err := h.HandleBatch(ctx, b); err != nil {
			if ctx.Err() != nil {
				fmt.Fprintf(e.stderr, "\nredstream backfill: interrupted after key %s; run the command again to resume\n", after)
				return exitFailure
			}
			return e.fail(fmt.Errorf("page after key %q: %w", after, err))
		}
		after = ids[len(ids)-1]
		if err := svc.rdb.Set(ctx, cursorKey, after, 0).Err(); err != nil {
			return e.fail(fmt.Errorf("store the cursor: %w", err))
		}
		rows += int64(len(ids))
		prog.update(rows)
	}
	prog.done(rows)
	if err := svc.rdb.Del(ctx, cursorKey).Err(); err != nil {
		return e.fail(err)
	}
	st := h.Stats()
	fmt.Fprintf(e.stdout, "backfill %s: %d rows in %s: %d indexed, %d deleted (soft-deleted rows), %d rejected (see the log)\n",
		s.Name, rows, time.Since(start).Round(time.Millisecond),
		st.Indexed-before.Indexed, st.Deleted-before.Deleted, st.DeadLettered-before.DeadLettered)
	if st.DeadLettered > before.DeadLettered {
		return exitFailure
	}
	return exitOK
}

func cmp(a, b int) int {
	if a > 0 {
		return a
	}
	return b
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

// pkWalker pages through a table's primary keys in order, as text.
type pkWalker struct {
	db                *sql.DB
	table, pk, pkType string
	to                string
}

func newPKWalker(ctx context.Context, db *sql.DB, s *StreamConfig, to string) (*pkWalker, error) {
	w := &pkWalker{db: db, table: pgx.Identifier(strings.Split(s.Table, ".")).Sanitize(), pk: pgx.Identifier{s.PrimaryKey}.Sanitize(), to: to}
	err := db.QueryRowContext(ctx, `SELECT format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped`,
		w.table, s.PrimaryKey).Scan(&w.pkType)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("table %s has no column %q (or does not exist)", s.Table, s.PrimaryKey)
	}
	if err != nil {
		return nil, fmt.Errorf("read the type of %s.%s: %w", s.Table, s.PrimaryKey, err)
	}
	return w, nil
}

// where returns the condition "key after after and up to w.to", with
// only the bounds that are set, and its arguments ($1, $2, …). A bound
// left out rather than passed as NULL keeps each page an index range scan
// even under a generic plan (plan_cache_mode, poolers that prepare).
func (w *pkWalker) where(after string) (string, []any) {
	var conds []string
	var args []any
	for _, b := range []struct{ op, v string }{{">", after}, {"<=", w.to}} {
		if b.v == "" {
			continue
		}
		args = append(args, b.v)
		conds = append(conds, fmt.Sprintf("t.%s %s $%d::text::%s", w.pk, b.op, len(args), w.pkType))
	}
	if len(conds) == 0 {
		return "TRUE", nil
	}
	return strings.Join(conds, " AND "), args
}

// next returns up to n keys after after, in order.
func (w *pkWalker) next(ctx context.Context, after string, n int) ([]string, error) {
	// Order by the column, not by its text (an output column named like it).
	cond, args := w.where(after)
	args = append(args, n)
	q := fmt.Sprintf("SELECT t.%[1]s::text AS k FROM %[2]s t WHERE %[3]s ORDER BY t.%[1]s LIMIT $%[4]d", w.pk, w.table, cond, len(args))
	rows, err := w.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	defer rows.Close()
	ids := make([]string, 0, n)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// estimate returns the rows left after after: counted when the table is
// small, else the planner's estimate for the whole table; -1 when unknown.
func (w *pkWalker) estimate(ctx context.Context, after string) int64 {
	var est float64
	if err := w.db.QueryRowContext(ctx, "SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)", w.table).Scan(&est); err != nil {
		return -1
	}
	if est >= 0 && est > 1e6 {
		return int64(est)
	}
	var n int64
	cond, args := w.where(after)
	q := fmt.Sprintf("SELECT count(*) FROM %s t WHERE %s", w.table, cond)
	if err := w.db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return -1
	}
	return n
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

func newProgressBar(w io.Writer, label string, total int64) *progressBar {
	now := time.Now()
	return &progressBar{w: w, label: label, total: total, tty: isTerminal(w), start: now, last: now}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progressBar) update(done int64) {
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
