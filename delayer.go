package redstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DelayerOptions configures a Delayer. A nil *DelayerOptions means all
// defaults; zero fields mean their default, negative ones are an error.
type DelayerOptions struct {
	// Namespace selects the key layout (see NewKeys). Default: "" (none).
	Namespace string

	// BatchSize is the largest number of delay messages moved in one
	// script call (which blocks Redis for about 2-3 µs per message).
	// Default: DefaultConsumerBatchSize.
	BatchSize int

	// Block is how long one read of the delay stream waits for new
	// messages; see ConsumerOptions.Block. Default: DefaultConsumerBlock.
	Block time.Duration

	// LockTTL is the TTL of the delayer's lease. Default: DefaultLockTTL.
	LockTTL time.Duration

	// MinBackoff and MaxBackoff bound the backoff between retries of
	// failed Redis calls. Default: DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration

	// Now is the clock that decides whether a message is old enough: a
	// message is due when the time in its id plus the delay is not after
	// Now(). The id's time comes from the Redis server's clock, so skew
	// between the two shifts the delay. Default: time.Now.
	Now func() time.Time

	// Holder names this delayer's lease holder (see LeaseOptions.Holder).
	// Default: DefaultHolder().
	Holder string

	// Logger receives the delayer's log lines. Default: slog.Default().
	Logger *slog.Logger
}

// DelayerStats is a snapshot of a Delayer's progress.
type DelayerStats struct {
	// Active reports whether the delayer holds its lease.
	Active bool
	// Committed is the delayer's offset in the delay stream.
	Committed ID
	// NextDue is when the oldest message that is not yet due will be; zero
	// when the delayer is not waiting for one.
	NextDue time.Time
	// Batches, Moved and Errors count, since the Delayer was created:
	// committed batches, messages moved to the main stream, and failed
	// Redis calls.
	Batches, Moved, Errors uint64
}

// Delayer moves the messages of a delay stream ("<stream>.delay") to the
// main stream once they are at least delay old. One Lua script, fenced by
// the delayer's lease, re-adds the payload field of up to BatchSize due
// messages to the main stream, deletes them from the delay stream and
// commits the delayer's offset, atomically: the messages never travel
// through the client, and a failure or a deposed delayer moves nothing. The
// delayer then sleeps exactly until the next message is due, or waits for
// a new one. Because the producer writes each change to both streams, a
// change reaches consumers even when its main-stream write was lost, delay
// late.
//
// A message is due when the time in its id plus delay is not after Now()
// (DelayerOptions.Now); the id's time comes from the Redis server's clock.
// A delay message without a payload field is deleted without being moved.
// In Redis Cluster, the delay stream, main stream, lock and offset keys
// must share a slot: brace the stream name ("{products}").
//
// A Delayer is the Ruby gem's delayer: a consumer named DelayerName of the
// delay stream, with the same lock and offset keys, so one delayer, Go or
// Ruby, is active per stream. Run holds the lease while it runs, including
// while it sleeps, and releases it when it stops.
//
// A Delayer is safe for concurrent use: Stats may be called at any time.
// Run must not be called more than once at a time.
type Delayer struct {
	rdb      redis.UniversalClient
	stream   string
	delay    time.Duration
	main     string // main stream key
	key      string // delay stream key
	offset   string // offset key
	batch    int64
	block    time.Duration
	min, max time.Duration
	now      func() time.Time
	log      *slog.Logger
	lease    *leaser

	running atomic.Bool

	mu        sync.Mutex
	active    bool
	committed ID
	nextDue   time.Time
	batches   uint64
	moved     uint64
	errs      uint64
}

// NewDelayer returns a delayer of stream (the main stream's name, e.g.
// "products") that moves messages once they are delay old. It returns an
// error for a nil client, an empty stream, negative values, or, on a
// *redis.ClusterClient, a stream whose keys would not share a hash slot
// (see Keys.CheckCluster).
func NewDelayer(rdb redis.UniversalClient, stream string, delay time.Duration, opts *DelayerOptions) (*Delayer, error) {
	var o DelayerOptions
	if opts != nil {
		o = *opts
	}
	switch {
	case rdb == nil:
		return nil, errors.New("redstream: nil redis client")
	case stream == "":
		return nil, errors.New("redstream: delayer needs a stream")
	case delay < 0:
		return nil, fmt.Errorf("redstream: negative delay %v", delay)
	case o.BatchSize < 0 || o.Block < 0 || o.LockTTL < 0 || o.MinBackoff < 0 || o.MaxBackoff < 0:
		return nil, errors.New("redstream: negative delayer option")
	}
	ttl, err := leaseTTL(o.LockTTL)
	if err != nil {
		return nil, err
	}
	keys := NewKeys(o.Namespace)
	if err := checkClusterKeys(rdb, keys, stream); err != nil {
		return nil, err
	}
	delayStream := DelayStream(stream)
	log := cmp.Or(o.Logger, slog.Default()).With("stream", delayStream, "consumer", DelayerName)
	d := &Delayer{
		rdb:    rdb,
		stream: stream,
		delay:  delay,
		main:   keys.Stream(stream),
		key:    keys.Delay(stream),
		offset: keys.Offset(delayStream, DelayerName),
		batch:  int64(cmp.Or(o.BatchSize, DefaultConsumerBatchSize)),
		block:  cmp.Or(o.Block, DefaultConsumerBlock),
		min:    cmp.Or(o.MinBackoff, DefaultMinBackoff),
		max:    cmp.Or(o.MaxBackoff, DefaultMaxBackoff),
		now:    o.Now,
		log:    log,
	}
	if d.now == nil {
		d.now = time.Now
	}
	d.max = max(d.max, d.min)
	d.lease = newLeaser(rdb, keys, ConsumerLockName(delayStream, DelayerName), ttl, log).withHolder(o.Holder)
	return d, nil
}

// Stats returns a snapshot of the delayer's progress.
func (d *Delayer) Stats() DelayerStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return DelayerStats{
		Active:    d.active,
		Committed: d.committed,
		NextDue:   d.nextDue,
		Batches:   d.batches,
		Moved:     d.moved,
		Errors:    d.errs,
	}
}

// Run moves due messages until ctx ends, then releases the lease and
// returns nil. Redis errors are retried with capped exponential backoff and
// jitter; a lost lease is waited for again. Delivery is at least once: a
// batch interrupted between its re-add and its commit is re-added by the
// next run. Run returns an error only for a stored offset that is not a
// stream id, or a second Run.
func (d *Delayer) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("redstream: delayer already running")
	}
	defer d.running.Store(false)
	return d.lease.hold(ctx, "delayer", retryBackoff{min: d.min, max: d.max}, d.log,
		func() { d.count(&d.errs, 1) }, d.setActive, d.runLeased)
}

func (d *Delayer) setActive(v bool) {
	d.mu.Lock()
	d.active = v
	d.nextDue = time.Time{}
	d.mu.Unlock()
}

func (d *Delayer) count(n *uint64, v uint64) {
	d.mu.Lock()
	*n += v
	d.mu.Unlock()
}

func (d *Delayer) runLeased(l *Lease) error {
	ctx := l.Context()
	bo := retryBackoff{min: d.min, max: d.max}
	var errs errorLimiter
	fail := func(msg string, err error) {
		d.count(&d.errs, 1)
		errs.fail(ctx, d.log, msg, err)
		sleepCtx(ctx, bo.next())
	}

	var offset ID
	for {
		var err error
		if offset, err = readOffset(ctx, d.rdb, d.offset); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrInvalidID) {
			return err
		}
		fail("redstream: delayer cannot read its offset", err)
	}
	d.mu.Lock()
	d.committed = offset
	d.mu.Unlock()
	r := newXReader(d.rdb)
	defer r.close()

	for ctx.Err() == nil {
		// Once started, a move runs to its end even when ctx ends.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.lease.ttl)
		moved, last, next, err := d.move(mctx, l, offset)
		cancel()
		if errors.Is(err, ErrLockLost) {
			d.log.WarnContext(ctx, "redstream: delayer lost its lease before moving", "offset", offset.String())
			return nil
		}
		if err != nil {
			if ctx.Err() == nil {
				fail("redstream: delayer move failed", err)
			}
			continue
		}
		errs.recover(ctx, d.log, "redstream: delayer recovered")
		bo.reset()
		if moved > 0 {
			offset = last
			d.mu.Lock()
			d.committed = offset
			d.batches++
			d.moved += uint64(moved)
			d.mu.Unlock()
		}
		switch {
		case next.IsZero():
			// Nothing left: wait for a new delay message.
			if _, err := r.read(ctx, d.key, offset, 1, d.block); err != nil && ctx.Err() == nil {
				fail("redstream: delayer read failed", err)
			}
		case d.due(next):
			// A full batch was moved; more are due.
		default:
			due := next.Time().Add(d.delay)
			d.mu.Lock()
			d.nextDue = due
			d.mu.Unlock()
			sleepCtx(ctx, due.Sub(d.now()))
			d.mu.Lock()
			d.nextDue = time.Time{}
			d.mu.Unlock()
		}
	}
	return nil
}

// due reports whether the message id is at least delay old by the clock.
func (d *Delayer) due(id ID) bool { return !id.Time().Add(d.delay).After(d.now()) }

// move runs one script, fenced by the lease, that re-adds the payloads of
// up to BatchSize due messages after offset to the main stream, deletes
// them from the delay stream and commits the last one: a deposed delayer
// moves nothing, and a failure moves nothing either. It returns how many
// it moved, the last one's id and the id of the next message (zero when
// there is none). In Redis Cluster the lock, offset and both streams must
// share a slot (brace the stream name).
func (d *Delayer) move(ctx context.Context, l *Lease, offset ID) (moved int, last, next ID, err error) {
	// Due means id time + delay <= now, so the newest due id is the last
	// one of the millisecond now - delay.
	cutoff := d.now().Add(-d.delay).UnixMilli()
	if cutoff < 0 {
		cutoff = 0
	}
	keys := []string{d.lease.key, d.offset, d.key, d.main}
	reply, err := luaMove.Run(ctx, d.rdb, keys, l.value, offset.String(),
		strconv.FormatInt(cutoff, 10), d.batch).Result()
	if err != nil {
		return 0, ID{}, ID{}, fmt.Errorf("redstream: move delayed messages: %w", err)
	}
	res, ok := reply.([]any)
	if !ok || len(res) != 3 {
		if n, ok := reply.(int64); ok && n < 0 {
			return 0, ID{}, ID{}, ErrLockLost // the lock holds another value
		}
		return 0, ID{}, ID{}, fmt.Errorf("redstream: move delayed messages: unexpected reply %v", reply)
	}
	n, _ := res[0].(int64)
	if s, _ := res[1].(string); s != "" {
		if last, err = ParseID(s); err != nil {
			return 0, ID{}, ID{}, err
		}
	}
	if s, _ := res[2].(string); s != "" {
		if next, err = ParseID(s); err != nil {
			return 0, ID{}, ID{}, err
		}
	}
	return int(n), last, next, nil
}
