package redstream

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream/internal/backoff"
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

	// Holder names this delayer's lease holder for operators: it is
	// stored in the lock value after the random token, where LockHolder
	// and `redstream status` read it. Default: DefaultHolder().
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
	Batches, Moved, Errors int64
}

//go:embed offset_move.lua
var luaMoveSrc string

// luaMove moves due delay messages and commits the delayer's offset, fenced
// by its lease.
var luaMove = redis.NewScript(luaOffsetLib + luaMoveSrc)

// Delayer moves the messages of a delay stream ("<stream>.delay") to the
// main stream once they are at least delay old. One Lua script, fenced by
// the delayer's lease, re-adds the payload field of up to BatchSize due
// messages to the main stream, deletes them from the delay stream and
// commits the delayer's offset, atomically: the messages never travel
// through the client, and a failure or a deposed delayer moves nothing. The
// delayer then sleeps exactly until the next message is due, or waits for
// a new one. The producer writes each change to the delay stream before
// COMMIT and swaps it for its main-stream message after COMMIT, so the
// delay stream holds only unconfirmed changes: transactions in flight and
// main-stream writes that were lost. The Delayer delivers those, delay
// late; the others it never sees. (Delay messages of Ruby producers, and of
// producers with KeepDelayMessages, stay until the Delayer moves them.)
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
	worker
	stream string
	delay  time.Duration
	main   string // main stream key
	key    string // delay stream key
	batch  int64
	block  time.Duration
	now    func() time.Time

	// Guarded by worker.mu:
	nextDue time.Time
	batches int64
	moved   int64
}

// NewDelayer returns a delayer of stream (the main stream's name, e.g.
// "products") that moves messages once they are delay old. It returns an
// error for a nil client, an empty stream, negative values, or, on a
// *redis.ClusterClient, a stream whose keys would not share a hash slot
// (see Keys.CheckCluster).
func NewDelayer(rdb redis.UniversalClient, stream string, delay time.Duration, opts *DelayerOptions) (*Delayer, error) {
	o := optionsOf(opts)
	if err := checkWorkerArgs(rdb, "delayer", stream); err != nil {
		return nil, err
	}
	if delay < 0 {
		return nil, fmt.Errorf("redstream: negative delay %v", delay)
	}
	if err := checkWorkerOptions("delayer", int64(o.BatchSize), int64(o.Block), int64(o.LockTTL),
		int64(o.MinBackoff), int64(o.MaxBackoff)); err != nil {
		return nil, err
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
	d := &Delayer{
		stream: stream,
		delay:  delay,
		main:   keys.Stream(stream),
		key:    keys.Delay(stream),
		batch:  int64(cmp.Or(o.BatchSize, DefaultConsumerBatchSize)),
		block:  cmp.Or(o.Block, DefaultConsumerBlock),
		now:    o.Now,
	}
	if d.now == nil {
		d.now = time.Now
	}
	d.worker.init(rdb, workerConfig{
		kind: "delayer", keys: keys, lockname: ConsumerLockName(delayStream, DelayerName),
		offset: keys.Offset(delayStream, DelayerName), ttl: ttl,
		lo: cmp.Or(o.MinBackoff, DefaultMinBackoff), hi: cmp.Or(o.MaxBackoff, DefaultMaxBackoff),
		holder: o.Holder, log: cmp.Or(o.Logger, slog.Default()).With("stream", delayStream, "consumer", DelayerName),
	})
	d.idle = func() { d.nextDue = time.Time{} }
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
func (d *Delayer) Run(ctx context.Context) error { return d.hold(ctx, d.run) }

// run moves due messages from offset while l is held. It returns nil when
// the lease's context ends and ErrLockLost when a move found the lease
// taken.
func (d *Delayer) run(s *session, offset ID) error {
	for s.ctx.Err() == nil {
		// Once started, a move runs to its end even when ctx ends.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), d.lr.ttl)
		moved, last, next, err := d.move(mctx, s.l, offset)
		cancel()
		if errors.Is(err, ErrLockLost) {
			return ErrLockLost
		}
		if errors.Is(err, errOffsetMoved) {
			stored, ok, err := s.readOffset()
			if !ok {
				return err
			}
			d.log.WarnContext(s.ctx, "redstream: Redis does not hold the delayer's offset (a failover, or an offset reset); going on from the stored offset",
				"offset", offset.String(), "stored", stored.String())
			offset = stored
			d.update(func() { d.committed = stored })
			continue
		}
		if err != nil {
			if s.ctx.Err() == nil {
				s.retry("redstream: delayer move failed", err)
			}
			continue
		}
		s.ok()
		if moved > 0 {
			offset = last
			d.update(func() {
				d.committed = offset
				d.batches++
				d.moved += int64(moved)
			})
		}
		switch {
		case next.IsZero():
			// Nothing left: wait for a new delay message.
			if _, err := s.r.read(s.ctx, d.key, offset, 1, d.block); err != nil && s.ctx.Err() == nil {
				s.retry("redstream: delayer read failed", err)
			}
		case d.due(next):
			// A full batch was moved; more are due.
		default:
			due := next.Time().Add(d.delay)
			d.update(func() { d.nextDue = due })
			backoff.Sleep(s.ctx, due.Sub(d.now()))
			d.update(func() { d.nextDue = time.Time{} })
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
func (d *Delayer) move(ctx context.Context, l *lease, offset ID) (moved int, last, next ID, err error) {
	// Due means id time + delay <= now, so the newest due id is the last
	// one of the millisecond now - delay.
	cutoff := d.now().Add(-d.delay).UnixMilli()
	if cutoff < 0 {
		cutoff = 0
	}
	keys := []string{d.lr.key, d.offset, d.key, d.main}
	reply, err := luaMove.Run(ctx, d.rdb, keys, l.value, offset.String(),
		strconv.FormatInt(cutoff, 10), d.batch).Result()
	if err != nil {
		return 0, ID{}, ID{}, fmt.Errorf("redstream: move delayed messages: %w", err)
	}
	res, ok := reply.([]any)
	if !ok || len(res) != 3 {
		if n, ok := reply.(int64); ok && n == -2 {
			return 0, ID{}, ID{}, errOffsetMoved // see offset_move.lua
		}
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
		l.committed(ctx, last, "messages", n)
	}
	if s, _ := res[2].(string); s != "" {
		if next, err = ParseID(s); err != nil {
			return 0, ID{}, ID{}, err
		}
	}
	return int(n), last, next, nil
}
