package redstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream/internal/backoff"
)

// A failing worker logs its first failure at once, then a progress line
// at most every errorLogEvery during the first errorLogLong of the
// outage, and at most every errorLogLong after that: a bounded number of
// lines, each with the attempt count and the time of the next retry.
const (
	errorLogEvery = 10 * time.Second
	errorLogLong  = time.Minute
)

// worker is the base that Consumer, Delayer and Trimmer share: the guard
// against a second Run, the lease-holding loop, the offset read on each new
// lease, the retry backoff, rate-limited error lines with a recovery line,
// and the counters every worker keeps. Each worker adds only its own loop:
// the consumer's read → handle → commit, the delayer's move, the trimmer's
// trim.
type worker struct {
	kind   string // "consumer", "delayer", "trimmer": the subject of log lines
	rdb    redis.UniversalClient
	lr     *leaser
	offset string // the offset key; "" for a worker without one
	lo, hi time.Duration
	log    *slog.Logger
	// logEvery and logLong set the logLimiter's rate; 0 means
	// errorLogEvery and errorLogLong (tests shorten them).
	logEvery, logLong time.Duration

	running atomic.Bool

	// mu guards the fields below and the stats of the worker built on
	// this base (see update).
	mu        sync.Mutex
	active    bool
	committed ID
	errs      int64
	idle      func() // called under mu when the worker stops holding its lease
}

// workerConfig is what every worker's options share, after defaults.
type workerConfig struct {
	kind     string
	keys     Keys
	lockname string
	offset   string
	ttl      time.Duration
	lo, hi   time.Duration
	holder   string
	log      *slog.Logger
}

// init sets up a worker that has not run yet.
func (w *worker) init(rdb redis.UniversalClient, c workerConfig) {
	w.kind = c.kind
	w.rdb = rdb
	w.lr = newLeaser(rdb, c.keys, c.lockname, c.ttl, c.log).withHolder(c.holder)
	w.offset = c.offset
	w.lo, w.hi = c.lo, max(c.hi, c.lo)
	w.log = c.log
}

// optionsOf returns *opts, or the zero options when opts is nil.
func optionsOf[T any](opts *T) (o T) {
	if opts != nil {
		o = *opts
	}
	return o
}

// checkWorkerArgs checks what every worker's constructor takes: a client
// and a stream name.
func checkWorkerArgs(rdb redis.UniversalClient, kind, stream string) error {
	switch {
	case rdb == nil:
		return errors.New("redstream: nil redis client")
	case stream == "":
		return fmt.Errorf("redstream: %s needs a stream", kind)
	}
	return nil
}

// checkWorkerOptions returns an error naming the worker's kind when a
// duration or count option is negative.
func checkWorkerOptions(kind string, values ...int64) error {
	for _, v := range values {
		if v < 0 {
			return fmt.Errorf("redstream: negative %s option", kind)
		}
	}
	return nil
}

// start guards Run against a second concurrent call; the returned function
// ends the guard.
func (w *worker) start() (func(), error) {
	if !w.running.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("redstream: %s already running", w.kind)
	}
	return func() { w.running.Store(false) }, nil
}

// update runs f while holding the stats lock.
func (w *worker) update(f func()) {
	w.mu.Lock()
	f()
	w.mu.Unlock()
}

// hold is the life of a long-running lease holder: until ctx ends it
// obtains the lease, reads the committed offset, runs work while holding
// the lease, and releases it. A failure to obtain the lease is counted,
// logged at a bounded rate and retried after backoff; a lost lease is
// waited for again. work returns nil when its lease's context ends,
// ErrLockLost when a fenced write found another holder (the worker steps
// down at once), or an error that is fatal, which hold returns. hold
// returns nil when ctx ends.
func (w *worker) hold(ctx context.Context, work func(s *session, offset ID) error) error {
	stop, err := w.start()
	if err != nil {
		return err
	}
	defer stop()
	bo := backoff.New(w.lo, w.hi)
	errs := w.logLimiter()
	for ctx.Err() == nil {
		l, err := w.lr.acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w.update(func() { w.errs++ })
			wait := bo.Next()
			errs.fail(ctx, w.log, "redstream: "+w.kind+" cannot obtain its lease", err, wait)
			if !backoff.Sleep(ctx, wait) {
				break
			}
			continue
		}
		bo.Reset()
		errs.recover(ctx, w.log, "redstream: "+w.kind+" obtained its lease")
		err = w.leased(l, work)
		if errors.Is(err, ErrLockLost) {
			l.cancel(ErrLockLost)
			err = nil
		}
		if rerr := l.Release(ctx); rerr != nil && !errors.Is(rerr, ErrLockLost) {
			w.log.WarnContext(ctx, "redstream: "+w.kind+" lease release failed", "error", rerr)
		}
		if err != nil {
			return err
		}
		if errors.Is(context.Cause(l.Context()), ErrLockLost) {
			if ctx.Err() != nil {
				w.log.WarnContext(ctx, "redstream: "+w.kind+" lost its lease")
				break
			}
			w.log.WarnContext(ctx, "redstream: "+w.kind+" lost its lease; waiting to obtain it again")
		}
	}
	return nil
}

// session is one holding of a worker's lease: what the worker's own loop
// needs while it holds it. It belongs to that loop's goroutine.
type session struct {
	w    *worker
	l    *lease
	ctx  context.Context // the lease's context
	bo   backoff.Backoff
	errs logLimiter
	r    *xreader // blocking reads, on a dedicated connection where possible
}

// leased runs work under l, after reading the committed offset.
func (w *worker) leased(l *lease, work func(*session, ID) error) error {
	w.update(func() { w.active = true })
	defer w.update(func() {
		w.active = false
		if w.idle != nil {
			w.idle()
		}
	})
	s := &session{w: w, l: l, ctx: l.Context(), bo: backoff.New(w.lo, w.hi), errs: w.logLimiter(), r: newXReader(w.rdb)}
	defer s.r.close()
	var offset ID
	if w.offset != "" {
		var ok bool
		var err error
		if offset, ok, err = s.readOffset(); !ok {
			return err
		}
		w.update(func() { w.committed = offset })
	}
	return work(s, offset)
}

// readOffset reads the worker's committed offset, retrying with backoff.
// ok is false when the lease's context ended first, or when the stored
// offset is not a stream id (err says so).
func (s *session) readOffset() (offset ID, ok bool, err error) {
	for {
		if offset, err = readOffset(s.ctx, s.w.rdb, s.w.offset); err == nil {
			s.bo.Reset()
			return offset, true, nil
		}
		if s.ctx.Err() != nil {
			return ID{}, false, nil
		}
		if errors.Is(err, ErrInvalidID) {
			return ID{}, false, err
		}
		if !s.retry("redstream: "+s.w.kind+" cannot read its offset", err) {
			return ID{}, false, nil
		}
	}
}

// retry counts a failed Redis call or handler call, logs it at a bounded
// rate, and waits out the backoff; it reports whether the wait passed
// (false: the lease's context ended).
func (s *session) retry(msg string, err error, attrs ...any) bool {
	s.w.update(func() { s.w.errs++ })
	wait := s.bo.Next()
	s.errs.fail(s.ctx, s.w.log, msg, err, wait, attrs...)
	return backoff.Sleep(s.ctx, wait)
}

// ok ends a run of failures: the backoff starts over, and a recovery line
// is logged when failures were.
func (s *session) ok() {
	s.bo.Reset()
	s.errs.recover(s.ctx, s.w.log, "redstream: "+s.w.kind+" recovered")
}

// logLimiter rate-limits a worker's error lines during an outage, a run
// of failures without a success in between. The first failure is logged
// at once; later ones are counted and logged at most every errorLogEvery
// (every errorLogLong once the outage is that old). Each line carries the
// attempt (the failures of the outage so far), the wait before the next
// retry and its time; later lines also how long the outage has lasted and
// how many failures were not logged since the line before. The first
// success after an outage logs one recovery line with the outage's length
// and attempts. A logLimiter belongs to one goroutine; its zero value
// logs at the default rate.
type logLimiter struct {
	every, long time.Duration // 0: errorLogEvery, errorLogLong
	since       time.Time     // the outage's first failure; zero when none
	last        time.Time     // the last line logged
	attempts    int           // failures of the outage
	suppressed  int           // failures not logged since the last line
}

// logLimiter returns a new logLimiter at the worker's rate.
func (w *worker) logLimiter() logLimiter { return logLimiter{every: w.logEvery, long: w.logLong} }

// fail counts a failure; the caller retries after wait.
func (e *logLimiter) fail(ctx context.Context, log *slog.Logger, msg string, err error, wait time.Duration, attrs ...any) {
	now := time.Now()
	if e.attempts == 0 {
		e.since = now
	}
	e.attempts++
	if e.attempts > 1 && now.Sub(e.last) < e.interval(now.Sub(e.since)) {
		e.suppressed++
		return
	}
	// The error goes last: Elasticsearch's can be long.
	line := []any{"attempt", e.attempts, "retry_in", wait.Round(time.Millisecond), "next_retry", now.Add(wait)}
	if e.attempts > 1 {
		line = append(line, "failing_for", now.Sub(e.since).Round(time.Millisecond), "not_logged", e.suppressed)
	}
	line = append(append(line, attrs...), "error", err)
	log.ErrorContext(ctx, msg, line...)
	e.last, e.suppressed = now, 0
}

// interval is the least time between two lines of an outage that has
// lasted so long.
func (e *logLimiter) interval(lasted time.Duration) time.Duration {
	every, long := cmp.Or(e.every, errorLogEvery), cmp.Or(e.long, errorLogLong)
	if lasted < long {
		return every
	}
	return max(long, every)
}

// recover ends an outage, if one is going on, with a line saying how long
// it lasted and how many attempts failed.
func (e *logLimiter) recover(ctx context.Context, log *slog.Logger, msg string) {
	if e.attempts == 0 {
		return
	}
	log.InfoContext(ctx, msg, "outage", time.Since(e.since).Round(time.Millisecond), "failed_attempts", e.attempts)
	e.since, e.attempts, e.suppressed = time.Time{}, 0, 0
}
