package redstream

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bsm/redislock"
	"github.com/redis/go-redis/v9"
)

// DefaultLockTTL is the time-to-live of a lease's lock key, as in the Ruby
// gem. The holder refreshes it every third of that.
const DefaultLockTTL = 5 * time.Second

// ErrLockLost is the cause of a lease context cancelled because the lease
// was lost: a refresh found another holder's value in the lock key, or the
// local lease deadline passed without a successful refresh. It is also
// returned by a fenced commit when the lock no longer holds the lease's
// value, in which case nothing was written.
var ErrLockLost = errors.New("redstream: lock lost")

// errLeaseHeld is returned by leaser.try when another holder has the lock.
var errLeaseHeld = errors.New("redstream: lease held by another holder")

const (
	// leaseWaitPoll bounds one wait on a lock's notify list. A waiter whose
	// holder vanished without releasing (a crash) retries at this pace, so
	// it takes over at most this long after the lock key expires.
	leaseWaitPoll = time.Second
	// leaseReleaseTimeout bounds the release script on shutdown.
	leaseReleaseTimeout = 2 * time.Second
)

var (
	//go:embed lock_release.lua
	luaReleaseSrc string
	luaRelease    = redis.NewScript(luaReleaseSrc)
)

// holderSep separates the random token of a lock value from the holder's
// name: "<token>@<holder>".
const holderSep = "@"

// tokenLen is the length of redislock's random tokens (16 bytes, base64).
const tokenLen = 22

// DefaultHolder returns the default holder name of leases: "<hostname>:<pid>".
func DefaultHolder() string { return defaultHolder() }

var defaultHolder = sync.OnceValue(func() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return host + ":" + strconv.Itoa(os.Getpid())
})

// LockHolder returns the holder name stored in a lock value written by
// this package ("<token>@<holder>"), or "" when the value names none (for
// instance a lock of the Ruby gem, whose values are random tokens only).
func LockHolder(value string) string {
	if len(value) <= tokenLen || !strings.HasPrefix(value[tokenLen:], holderSep) {
		return ""
	}
	return value[tokenLen+len(holderSep):]
}

// leaser obtains leases on one lock for a worker.
type leaser struct {
	rdb    redis.UniversalClient
	locks  *redislock.Client
	keys   Keys
	name   string // lock name, e.g. consumer:<stream>:<consumer>
	key    string
	notify string
	ttl    time.Duration
	holder string
	log    *slog.Logger
	// since measures the time passed since a monotonic reference; it is
	// time.Since, and tests replace it to model a process stopped past its
	// deadline whose timers have not fired yet.
	since func(time.Time) time.Duration
}

func newLeaser(rdb redis.UniversalClient, keys Keys, lockname string, ttl time.Duration, log *slog.Logger) *leaser {
	return &leaser{
		holder: DefaultHolder(),
		rdb:    rdb,
		locks:  redislock.New(rdb),
		keys:   keys,
		name:   lockname,
		key:    keys.Lock(lockname),
		notify: keys.Notify(lockname),
		ttl:    ttl,
		log:    log,
		since:  time.Since,
	}
}

// withHolder sets the holder name, unless it is empty (the default stays).
func (lr *leaser) withHolder(holder string) *leaser {
	if holder != "" {
		lr.holder = holder
	}
	return lr
}

// leaseTTL applies the default to a TTL option and validates it.
func leaseTTL(ttl time.Duration) (time.Duration, error) {
	ttl = cmp.Or(ttl, DefaultLockTTL)
	if ttl < 3*time.Millisecond {
		return 0, fmt.Errorf("redstream: lock TTL %v below 3ms", ttl)
	}
	return ttl, nil
}

// try obtains the lock once, or returns errLeaseHeld.
func (lr *leaser) try(ctx context.Context) (*lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := time.Now()
	// With NoRetry, redislock answers at once; the deadline only keeps it
	// from adding its own (which would turn a miss into DeadlineExceeded).
	octx, cancel := context.WithTimeout(ctx, lr.ttl)
	// The lock value is token+metadata; the fenced scripts compare all of
	// it (Lease.value).
	lock, err := lr.locks.Obtain(octx, lr.key, lr.ttl, &redislock.Options{Metadata: holderSep + lr.holder})
	cancel()
	switch {
	case errors.Is(err, redislock.ErrNotObtained):
		return nil, errLeaseHeld
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		return nil, fmt.Errorf("redstream: obtain lock %s: %w", lr.name, err)
	}
	return lr.start(ctx, lock, start), nil
}

// acquire obtains the lock, waiting on its notify list while another
// holder has it.
func (lr *leaser) acquire(ctx context.Context) (*lease, error) {
	var b blocker
	defer b.close()
	for {
		l, err := lr.try(ctx)
		if !errors.Is(err, errLeaseHeld) {
			return l, err
		}
		if b.rdb == nil {
			b = newBlocker(lr.rdb)
		}
		if err := lr.wait(ctx, &b); err != nil {
			return nil, err
		}
	}
}

// wait blocks until the lock's holder releases it, its lock key expires,
// leaseWaitPoll passes or ctx ends.
func (lr *leaser) wait(ctx context.Context, b *blocker) error {
	pttl, err := lr.rdb.PTTL(ctx, lr.key).Result()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("redstream: wait for lock %s: %w", lr.name, err)
	}
	switch {
	case pttl == -2: // gone already: try again at once
		return nil
	case pttl >= 0 && pttl < leaseWaitPoll:
		// Wake when the key expires, since a vanished holder pushes
		// nothing. BLPOP takes fractional seconds (Redis >= 6); go-redis's
		// BLPop rounds them to whole ones, hence Do.
		secs := strconv.FormatFloat((pttl + 5*time.Millisecond).Seconds(), 'f', 3, 64)
		err = b.do(ctx, func(c cmdProcessor) error {
			cmd := redis.NewStringSliceCmd(ctx, "blpop", lr.notify, secs)
			_ = c.Process(ctx, cmd)
			return cmd.Err()
		})
	default:
		err = b.do(ctx, func(c cmdProcessor) error { return c.BLPop(ctx, leaseWaitPoll, lr.notify).Err() })
	}
	switch {
	case err == nil, errors.Is(err, redis.Nil):
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return fmt.Errorf("redstream: wait for lock %s: %w", lr.name, err)
	}
}

// start turns an obtained lock into a lease and starts its keeper.
func (lr *leaser) start(ctx context.Context, lock *redislock.Lock, obtained time.Time) *lease {
	work, cancel := context.WithCancelCause(ctx)
	l := &lease{
		base:   obtained,
		lr:     lr,
		lock:   lock,
		value:  lock.Token() + lock.Metadata(),
		work:   work,
		cancel: cancel,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	l.until.Store(int64(lr.ttl))
	go l.keep(obtained.Add(lr.ttl))
	return l
}

// lease is a held Redis lock that is kept alive until it is released or
// lost. A worker obtains one through its leaser (try, acquire) and holds
// it while it runs.
//
// While the lease is held, a goroutine refreshes the lock every TTL/3,
// checking that the lock still holds this lease's value. When a refresh
// finds another value, or TTL passes without a successful refresh, the
// lease's context is cancelled with cause ErrLockLost, so that work done
// under it stops. Because a holder can still act between losing the lock
// and noticing it, writes that must not come from a deposed holder go
// through a fenced script such as CommitOffset.
//
// The lock keys are those of the Ruby gem, so Go and Ruby workers exclude
// each other. A lease is safe for concurrent use. Release must be called
// exactly once it is no longer needed; it stops the refresh goroutine.
type lease struct {
	base   time.Time    // when the lock was requested; a monotonic reference
	until  atomic.Int64 // the local deadline, in nanoseconds after base
	lr     *leaser
	lock   *redislock.Lock
	value  string
	work   context.Context
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}

	once   sync.Once
	relErr error
}

// Context returns the context of the work done under the lease. It is
// cancelled when the parent context given to the leaser ends,
// when the lease is lost (context.Cause is then ErrLockLost) and when it is
// released.
func (l *lease) Context() context.Context { return l.work }

// Held reports whether the lease is still held as far as this process can
// tell: it has been neither released nor lost, and its local deadline (the
// start of the last successful refresh plus the TTL, by the monotonic clock)
// has not passed. Once the deadline has passed, Held cancels the lease's
// context with ErrLockLost at once, without waiting for the refresh
// goroutine.
//
// Checking Held right before a write that no script can fence narrows the
// window in which a process that was stopped past the TTL (SIGSTOP, a VM
// pause, a long stall) acts after another holder has taken over: the
// monotonic clock runs on while a process is stopped, so the first check
// after it resumes fails.
func (l *lease) Held() bool {
	select {
	case <-l.stop:
		return false
	default:
	}
	if errors.Is(context.Cause(l.work), ErrLockLost) {
		return false
	}
	if l.lr.since(l.base) >= time.Duration(l.until.Load()) {
		l.cancel(ErrLockLost)
		return false
	}
	return true
}

// Key returns the Redis key of the lease's lock.
func (l *lease) Key() string { return l.lr.key }

// keep refreshes the lock until the lease is released or lost. It runs
// every refresh in its own goroutine, so that a refresh stuck on the wire
// cannot hold back the local deadline.
func (l *lease) keep(deadline time.Time) {
	defer close(l.done)
	ttl := l.lr.ttl
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	expire := time.NewTimer(time.Until(deadline))
	defer expire.Stop()

	type result struct {
		start time.Time
		err   error
	}
	results := make(chan result, 1)
	rctx, rcancel := context.WithCancel(context.WithoutCancel(l.work))
	var wg sync.WaitGroup
	defer func() {
		rcancel()
		wg.Wait()
	}()
	inflight := false

	for {
		select {
		case <-l.stop:
			return
		case <-expire.C:
			l.lr.log.WarnContext(l.work, "redstream: lease expired before a refresh succeeded", "lock", l.lr.name)
			l.cancel(ErrLockLost)
			return
		case <-tick.C:
			if inflight {
				continue
			}
			inflight = true
			wg.Add(1)
			go func(start time.Time) {
				defer wg.Done()
				c, cancel := context.WithTimeout(rctx, ttl/3)
				err := l.lock.Refresh(c, ttl, nil)
				cancel()
				results <- result{start: start, err: err}
			}(time.Now())
		case r := <-results:
			inflight = false
			switch {
			case r.err == nil:
				l.until.Store(int64(r.start.Add(ttl).Sub(l.base)))
				expire.Reset(time.Until(r.start.Add(ttl)))
			case errors.Is(r.err, redislock.ErrNotObtained):
				l.lr.log.WarnContext(l.work, "redstream: lease lost to another holder", "lock", l.lr.name)
				l.cancel(ErrLockLost)
				return
			default:
				l.lr.log.WarnContext(l.work, "redstream: lease refresh failed", "lock", l.lr.name, "error", r.err)
			}
		}
	}
}

// Release stops refreshing the lease, cancels its context and deletes the
// lock if it still holds this lease's value; it then pushes onto the lock's
// notify list, as the Ruby gem does, so that waiters wake at once (the list
// expires after one TTL). The Redis call runs on a context detached from
// ctx's cancellation, bounded by a short timeout, so a lease is released
// even while its owner shuts down. It returns ErrLockLost when the lock was
// held by another holder. Only the first call does anything; later calls
// return its result.
func (l *lease) Release(ctx context.Context) error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		l.cancel(context.Canceled)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseReleaseTimeout)
		defer cancel()
		n, err := luaRelease.Run(rctx, l.lr.rdb, []string{l.lr.key, l.lr.notify},
			l.value, l.lr.ttl.Milliseconds()).Int64()
		switch {
		case err != nil:
			l.relErr = fmt.Errorf("redstream: release lock %s: %w", l.lr.name, err)
		case n < 0:
			l.relErr = ErrLockLost
		}
	})
	return l.relErr
}
