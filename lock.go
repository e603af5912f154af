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
// returned by Lease.CommitOffset when the lock no longer holds the lease's
// value, in which case nothing was written.
var ErrLockLost = errors.New("redstream: lock lost")

// ErrLeaseHeld is returned by TryLease when another holder has the lock.
var ErrLeaseHeld = errors.New("redstream: lease held by another holder")

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

	//go:embed offset_lib.lua
	luaOffsetLib string

	//go:embed offset_commit.lua
	luaCommitSrc string
	luaCommit    = redis.NewScript(luaOffsetLib + luaCommitSrc)

	//go:embed offset_move.lua
	luaMoveSrc string
	luaMove    = redis.NewScript(luaOffsetLib + luaMoveSrc)
)

// LeaseOptions configures AcquireLease and TryLease. A nil *LeaseOptions
// means all defaults.
type LeaseOptions struct {
	// Namespace selects the key layout (see NewKeys). Default: "" (none).
	Namespace string

	// TTL is the lock key's time-to-live. The lease is refreshed every
	// TTL/3, and its work context is cancelled once TTL has passed since
	// the last successful refresh. Default: DefaultLockTTL.
	TTL time.Duration

	// Holder names the lease's holder for operators: it is stored in the
	// lock value after the random token (see LockHolder). Default:
	// DefaultHolder().
	Holder string

	// Logger receives lease events (loss, refresh errors).
	// Default: slog.Default().
	Logger *slog.Logger
}

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

// leaser obtains leases on one lock. It is the shared machinery of the
// workers and of the exported AcquireLease and TryLease.
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

func leaseOptions(opts *LeaseOptions) (Keys, time.Duration, *slog.Logger, error) {
	var o LeaseOptions
	if opts != nil {
		o = *opts
	}
	ttl, err := leaseTTL(o.TTL)
	if err != nil {
		return Keys{}, 0, nil, err
	}
	return NewKeys(o.Namespace), ttl, cmp.Or(o.Logger, slog.Default()), nil
}

// leaseTTL applies the default to a TTL option and validates it.
func leaseTTL(ttl time.Duration) (time.Duration, error) {
	ttl = cmp.Or(ttl, DefaultLockTTL)
	if ttl < 3*time.Millisecond {
		return 0, fmt.Errorf("redstream: lock TTL %v below 3ms", ttl)
	}
	return ttl, nil
}

// TryLease tries once to obtain the lock named lockname (for example
// ConsumerLockName("products", "indexer")) and returns ErrLeaseHeld when
// another holder has it. The lease's context derives from ctx. The caller
// must Release the lease. On a *redis.ClusterClient, the lock and its
// notify list must share a hash slot (brace the stream name in the lock
// name: "consumer:{products}:indexer"); otherwise TryLease returns an error
// at once.
func TryLease(ctx context.Context, rdb redis.UniversalClient, lockname string, opts *LeaseOptions) (*Lease, error) {
	keys, ttl, log, err := leaseOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := checkClusterLock(rdb, keys, lockname); err != nil {
		return nil, err
	}
	return newLeaser(rdb, keys, lockname, ttl, log).withHolder(holderOf(opts)).try(ctx)
}

// AcquireLease obtains the lock named lockname, waiting for as long as ctx
// allows while another holder has it. A waiter blocks on the lock's notify
// list, so it wakes as soon as the holder releases the lock (within a few
// milliseconds), and as soon as the lock key of a vanished holder expires.
// On a *redis.Client it waits on a dedicated connection and returns at once
// when ctx ends; other clients wait on a pool connection, for at most a
// second at a time. It returns ctx's error when ctx ends first. The lease's
// context derives from ctx. The caller must Release the lease. On a
// *redis.ClusterClient the lock name must be braced as for TryLease.
func AcquireLease(ctx context.Context, rdb redis.UniversalClient, lockname string, opts *LeaseOptions) (*Lease, error) {
	keys, ttl, log, err := leaseOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := checkClusterLock(rdb, keys, lockname); err != nil {
		return nil, err
	}
	return newLeaser(rdb, keys, lockname, ttl, log).withHolder(holderOf(opts)).acquire(ctx)
}

func holderOf(opts *LeaseOptions) string {
	if opts == nil {
		return ""
	}
	return opts.Holder
}

// hold is the life of a long-running lease holder (a consumer, a delayer):
// until ctx ends it obtains the lease, runs work while holding it, and
// releases it. A failure to obtain the lease is counted (failed), logged
// at most once a minute and retried after backoff; a lost lease is waited
// for again. setActive reports whether the lease is held. hold returns nil
// when ctx ends, or the first error work returns (work returns nil when
// its lease's context ends).
func (lr *leaser) hold(ctx context.Context, name string, bo retryBackoff, log *slog.Logger,
	failed func(), setActive func(bool), work func(*Lease) error) error {
	var errs errorLimiter
	for ctx.Err() == nil {
		l, err := lr.acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failed()
			errs.fail(ctx, log, "redstream: "+name+" cannot obtain its lease", err)
			if !sleepCtx(ctx, bo.next()) {
				break
			}
			continue
		}
		bo.reset()
		errs.recover(ctx, log, "redstream: "+name+" obtained its lease")
		setActive(true)
		err = work(l)
		setActive(false)
		if rerr := l.Release(ctx); rerr != nil && !errors.Is(rerr, ErrLockLost) {
			log.WarnContext(ctx, "redstream: "+name+" lease release failed", "error", rerr)
		}
		if err != nil {
			return err
		}
		if errors.Is(context.Cause(l.Context()), ErrLockLost) && ctx.Err() == nil {
			log.WarnContext(ctx, "redstream: "+name+" lost its lease; waiting to obtain it again")
		}
	}
	return nil
}

// try obtains the lock once, or returns ErrLeaseHeld.
func (lr *leaser) try(ctx context.Context) (*Lease, error) {
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
		return nil, ErrLeaseHeld
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		return nil, fmt.Errorf("redstream: obtain lock %s: %w", lr.name, err)
	}
	return lr.start(ctx, lock, start), nil
}

// acquire obtains the lock, waiting on its notify list while another
// holder has it.
func (lr *leaser) acquire(ctx context.Context) (*Lease, error) {
	var b blocker
	defer b.close()
	for {
		l, err := lr.try(ctx)
		if !errors.Is(err, ErrLeaseHeld) {
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
func (lr *leaser) start(ctx context.Context, lock *redislock.Lock, obtained time.Time) *Lease {
	work, cancel := context.WithCancelCause(ctx)
	l := &Lease{
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

// Lease is a held Redis lock that is kept alive until it is released or
// lost. Obtain one with AcquireLease or TryLease; the workers of this
// package hold one each while they run.
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
// each other. A Lease is safe for concurrent use. Release must be called
// exactly once it is no longer needed; it stops the refresh goroutine.
type Lease struct {
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
// cancelled when the parent context given to AcquireLease or TryLease ends,
// when the lease is lost (context.Cause is then ErrLockLost) and when it is
// released.
func (l *Lease) Context() context.Context { return l.work }

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
func (l *Lease) Held() bool {
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
func (l *Lease) Key() string { return l.lr.key }

// keep refreshes the lock until the lease is released or lost. It runs
// every refresh in its own goroutine, so that a refresh stuck on the wire
// cannot hold back the local deadline.
func (l *Lease) keep(deadline time.Time) {
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
func (l *Lease) Release(ctx context.Context) error {
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

// CommitOffset sets the committed offset of consumer on stream to id, in one
// script that first checks that the lease's lock still holds this lease's
// value: a deposed holder commits nothing and gets ErrLockLost. The offset
// never moves backwards: committing an id at or before the stored one
// (compared numerically) leaves it unchanged and returns nil. In Redis
// Cluster, the lock and offset keys must share a slot (brace the stream
// name).
func (l *Lease) CommitOffset(ctx context.Context, stream, consumer string, id ID) error {
	return l.commitKey(ctx, l.lr.keys.Offset(stream, consumer), id)
}

func (l *Lease) commitKey(ctx context.Context, offsetKey string, id ID) error {
	n, err := luaCommit.Run(ctx, l.lr.rdb, []string{l.lr.key, offsetKey}, l.value, id.String()).Int64()
	switch {
	case err != nil:
		return fmt.Errorf("redstream: commit offset %s: %w", id, err)
	case n < 0:
		return ErrLockLost
	}
	return nil
}

// readOffset returns the committed offset at key, or the zero ID when none
// has been committed.
func readOffset(ctx context.Context, rdb redis.UniversalClient, key string) (ID, error) {
	s, err := rdb.Get(ctx, key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return ID{}, nil
	case err != nil:
		return ID{}, fmt.Errorf("redstream: read offset: %w", err)
	}
	id, err := ParseID(s)
	if err != nil {
		return ID{}, fmt.Errorf("redstream: offset %s: %w", key, err)
	}
	return id, nil
}

// cmdProcessor is what a blocker runs commands on: a client or a
// dedicated connection.
type cmdProcessor interface {
	redis.Cmdable
	Process(ctx context.Context, cmd redis.Cmder) error
}

// blocker runs the blocking commands (XREAD BLOCK, BLPOP) of one worker. On
// a *redis.Client it runs them on a dedicated connection, so that a command
// waiting in Redis holds no connection of the shared pool, and interrupts a
// waiting command with CLIENT UNBLOCK when ctx ends, so that workers stop at
// once. Other clients (cluster, ring) run them through their pool, and a
// command waits out its timeout. A blocker belongs to one goroutine; close
// releases its connection.
type blocker struct {
	rdb    redis.UniversalClient
	client *redis.Client // nil when rdb is not a *redis.Client
	conn   *redis.Conn
	id     int64
}

func newBlocker(rdb redis.UniversalClient) blocker {
	b := blocker{rdb: rdb}
	b.client, _ = rdb.(*redis.Client)
	return b
}

func (b *blocker) close() {
	if b.conn != nil {
		_ = b.conn.Close()
		b.conn = nil
	}
}

// do runs fn, which sends one blocking command, on the dedicated
// connection, or on the client itself when there is none. It returns fn's
// error, or the error of setting up the connection. When fn fails with
// anything but redis.Nil, the connection is dropped and the next command
// starts on a fresh one.
func (b *blocker) do(ctx context.Context, fn func(cmdProcessor) error) error {
	if b.client == nil {
		return fn(b.rdb)
	}
	if b.conn == nil {
		conn := b.client.Conn()
		id, err := conn.ClientID(ctx).Result()
		if err != nil {
			_ = conn.Close()
			return fmt.Errorf("redstream: client id: %w", err)
		}
		b.conn, b.id = conn, id
	}
	unblocked := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(unblocked)
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		b.client.ClientUnblock(uctx, b.id)
	})
	err := fn(b.conn)
	if !stop() {
		<-unblocked
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		b.close() // the next command starts on a fresh connection
	}
	return err
}
