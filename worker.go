package redstream

import (
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

// errorLogEvery is how often a worker repeats an error line while the same
// kind of failure goes on.
const errorLogEvery = time.Minute

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
	var errs logLimiter
	for ctx.Err() == nil {
		l, err := w.lr.acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w.update(func() { w.errs++ })
			errs.fail(ctx, w.log, "redstream: "+w.kind+" cannot obtain its lease", err)
			if !backoff.Sleep(ctx, bo.Next()) {
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
	s := &session{w: w, l: l, ctx: l.Context(), bo: backoff.New(w.lo, w.hi), r: newXReader(w.rdb)}
	defer s.r.close()
	var offset ID
	if w.offset != "" {
		for {
			var err error
			if offset, err = readOffset(s.ctx, w.rdb, w.offset); err == nil {
				break
			}
			if s.ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrInvalidID) {
				return err
			}
			if !s.retry("redstream: "+w.kind+" cannot read its offset", err) {
				return nil
			}
		}
		w.update(func() { w.committed = offset })
		s.bo.Reset()
	}
	return work(s, offset)
}

// retry counts a failed Redis call or handler call, logs it at a bounded
// rate, and waits out the backoff; it reports whether the wait passed
// (false: the lease's context ended).
func (s *session) retry(msg string, err error, attrs ...any) bool {
	s.w.update(func() { s.w.errs++ })
	s.errs.fail(s.ctx, s.w.log, msg, err, attrs...)
	return backoff.Sleep(s.ctx, s.bo.Next())
}

// ok ends a run of failures: the backoff starts over, and a recovery line
// is logged when failures were.
func (s *session) ok() {
	s.bo.Reset()
	s.errs.recover(s.ctx, s.w.log, "redstream: "+s.w.kind+" recovered")
}

// logLimiter rate-limits a worker's error lines: the first failure is
// logged, then at most one line per errorLogEvery with the count of
// failures in between, and one line when the worker recovers. It belongs
// to one goroutine.
type logLimiter struct {
	failing    bool
	last       time.Time
	suppressed int
}

func (e *logLimiter) fail(ctx context.Context, log *slog.Logger, msg string, err error, attrs ...any) {
	now := time.Now()
	if e.failing && now.Sub(e.last) < errorLogEvery {
		e.suppressed++
		return
	}
	attrs = append(attrs, "error", err)
	if e.suppressed > 0 {
		attrs = append(attrs, "repeated", e.suppressed)
	}
	log.ErrorContext(ctx, msg, attrs...)
	e.failing, e.last, e.suppressed = true, now, 0
}

func (e *logLimiter) recover(ctx context.Context, log *slog.Logger, msg string) {
	if !e.failing {
		return
	}
	log.InfoContext(ctx, msg)
	e.failing, e.suppressed = false, 0
}
