package redstream

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of ConsumerOptions and DelayerOptions.
const (
	// DefaultConsumerBatchSize is the most messages read at once, as in
	// the Ruby gem.
	DefaultConsumerBatchSize = 1000
	// DefaultConsumerBlock is how long one read waits for new messages, as
	// in the Ruby gem.
	DefaultConsumerBlock = 5 * time.Second
	// DefaultMinBackoff is the first wait before a retry.
	DefaultMinBackoff = 100 * time.Millisecond
	// DefaultMaxBackoff caps the wait between retries.
	DefaultMaxBackoff = 30 * time.Second
	// DefaultMaxPayloadBytes bounds the payload of one stream entry. A
	// payload names a record ({"id":42}), it does not carry it: anything
	// near this size is a bug or an abuse of the stream.
	DefaultMaxPayloadBytes = 1 << 20
)

// errorLogEvery is how often a worker repeats an error line while the same
// kind of failure goes on.
const errorLogEvery = time.Minute

// ErrInvalidMessage is the error recorded in the dead-letter stream for an
// entry that has no "payload" field, whose payload is not valid JSON, or
// whose payload is larger than ConsumerOptions.MaxPayloadBytes. A Consumer
// never hands such an entry to its handler: it dead-letters it (with 0
// attempts) and commits past it with the rest of its batch.
var ErrInvalidMessage = errors.New("redstream: invalid message")

// Message is one stream entry as a handler sees it.
type Message struct {
	ID      ID              // stream id of the entry
	Stream  string          // stream name (not key), e.g. "products"
	Payload json.RawMessage // the entry's "payload" field, as stored; always valid JSON
}

// Batch is what a Handler receives: messages read in one XREAD, in stream
// order. A Batch is only valid during the HandleBatch call that received
// it; DeadLetter is safe for concurrent use by the handler's goroutines.
type Batch struct {
	Stream   string    // stream name
	Consumer string    // consumer name
	Messages []Message // never empty
	// Attempt counts the deliveries of this batch to the handler: 1 the
	// first time, 2 after the handler failed it once, and so on.
	Attempt int

	mu   sync.Mutex
	dead map[ID]error
	raw  []xentry
}

// DeadLetter marks m, a message of the batch, as one the handler gives up
// on: when HandleBatch returns nil, the consumer writes it to its
// dead-letter stream (Keys.DeadLetter) with err as the reason, and the rest
// of the batch is committed as processed. Marks are discarded when
// HandleBatch returns an error, since the batch is then delivered again.
func (b *Batch) DeadLetter(m Message, err error) {
	if err == nil {
		err = errors.New("dead-lettered by handler")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dead == nil {
		b.dead = make(map[ID]error)
	}
	b.dead[m.ID] = err
}

// DeadLettered returns a copy of the messages marked with DeadLetter so
// far, by id, with their reasons. It lets code that drives a Handler
// outside a Consumer (a backfill, a verification) see what was rejected.
func (b *Batch) DeadLettered() map[ID]error {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[ID]error, len(b.dead))
	for id, err := range b.dead {
		out[id] = err
	}
	return out
}

func (b *Batch) takeDead() map[ID]error {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.dead
	b.dead = nil
	return d
}

// Handler processes batches of a Consumer. HandleBatch is called by one
// goroutine at a time, with a context that is cancelled when the consumer
// stops or loses its lease (context.Cause is then ErrLockLost). Returning
// nil commits the batch; returning an error delivers the same batch again
// after a backoff. Delivery is at least once, so handlers must be
// idempotent.
type Handler interface {
	HandleBatch(ctx context.Context, b *Batch) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, b *Batch) error

// HandleBatch calls f(ctx, b).
func (f HandlerFunc) HandleBatch(ctx context.Context, b *Batch) error { return f(ctx, b) }

var _ Handler = HandlerFunc(nil)

// ConsumerOptions configures a Consumer. A nil *ConsumerOptions means all
// defaults; zero fields mean their default, negative ones are an error.
type ConsumerOptions struct {
	// Namespace selects the key layout (see NewKeys). Default: "" (none).
	Namespace string

	// BatchSize is the largest number of messages read and handed to the
	// handler at once (XREAD COUNT). Default: DefaultConsumerBatchSize.
	BatchSize int

	// Block is how long one XREAD waits for new messages before the
	// consumer reads again. On a *redis.Client, blocking reads run on a
	// dedicated connection and are interrupted (CLIENT UNBLOCK) when Run's
	// context ends; on other clients (cluster, ring) a read waiting in
	// Redis cannot be interrupted, and Run may take up to Block to return.
	// Default: DefaultConsumerBlock.
	Block time.Duration

	// LockTTL is the TTL of the consumer's lease. Default: DefaultLockTTL.
	LockTTL time.Duration

	// MinBackoff and MaxBackoff bound the exponential backoff, with
	// jitter, between retries of a failed batch or Redis call.
	// Default: DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration

	// MaxPayloadBytes bounds the size of an entry's payload. A larger one
	// is never handed to the handler: it is dead-lettered as
	// ErrInvalidMessage, with its size and the limit as the reason.
	// Default: DefaultMaxPayloadBytes.
	MaxPayloadBytes int

	// Holder names this consumer's lease holder (see LeaseOptions.Holder).
	// Default: DefaultHolder().
	Holder string

	// Logger receives the consumer's log lines; repeated errors are
	// logged at most once a minute, and a recovery once.
	// Default: slog.Default().
	Logger *slog.Logger
}

// ConsumerStats is a snapshot of a Consumer's progress.
type ConsumerStats struct {
	// Active reports whether the consumer holds its lease.
	Active bool
	// Committed is the last offset this consumer committed, or the offset
	// it started from; zero before it first held its lease.
	Committed ID
	// Lag is the age of the oldest message read but not yet committed:
	// now minus the time in its id, by the local clock. It is 0 while the
	// consumer has no message in hand, that is when its last read found
	// the stream caught up. A stuck handler shows a growing lag.
	Lag time.Duration
	// Batches, Messages, Errors and DeadLettered count, since the
	// Consumer was created: batches committed, messages committed
	// (including dead-lettered ones), failed handler calls and Redis
	// errors, and messages written to the dead-letter stream.
	Batches, Messages, Errors, DeadLettered uint64
}

// Consumer reads one stream as a named consumer and hands batches to a
// Handler, committing its offset after each batch; delivery is at least
// once. It is wire-compatible with the Ruby gem's Redstream::Consumer: same
// offset and lock keys, so Go and Ruby consumers of one name exclude each
// other.
//
// Of all consumers with one name on one stream, one is active at a time:
// Run holds the consumer's lease for as long as it runs, idle or not, and
// the others wait on the lease's notify list. Releasing an idle lease would
// only hand the stream back and forth between instances; instead a stopped
// consumer releases at once, so a waiting one takes over within
// milliseconds, and a crashed one's lease expires after LockTTL.
//
// While it runs, a consumer keeps one connection of the client's pool for
// its blocking reads and lease waits; size PoolSize for the workers that
// share a client, or give them their own.
//
// A message the handler gives up on (Batch.DeadLetter), and an entry that
// is not a valid message (ErrInvalidMessage), becomes one entry of the
// consumer's dead-letter stream, Keys.DeadLetter(stream, name): see
// DeadLetter for its fields, and DeadLetterQueue to list, replay or drop
// them. The dead-letter stream is not trimmed.
//
// A Consumer is safe for concurrent use: Stats may be called at any time.
// Run must not be called more than once at a time.
type Consumer struct {
	rdb      redis.UniversalClient
	stream   string
	name     string
	h        Handler
	keys     Keys
	key      string // stream key
	offset   string // offset key
	dlq      string // dead-letter stream key
	batch    int64
	block    time.Duration
	min, max time.Duration
	payload  int // MaxPayloadBytes
	log      *slog.Logger
	lease    *leaser

	running atomic.Bool

	mu        sync.Mutex
	active    bool
	committed ID
	pending   ID // oldest message in hand; zero when none
	batches   uint64
	messages  uint64
	errs      uint64
	dead      uint64
}

// NewConsumer returns a consumer named name of stream that hands batches to
// h. It returns an error for a nil client or handler, an empty stream or
// name, negative options, or, on a *redis.ClusterClient, a stream whose keys
// would not share a hash slot (see Keys.CheckCluster).
func NewConsumer(rdb redis.UniversalClient, stream, name string, h Handler, opts *ConsumerOptions) (*Consumer, error) {
	var o ConsumerOptions
	if opts != nil {
		o = *opts
	}
	switch {
	case rdb == nil:
		return nil, errors.New("redstream: nil redis client")
	case stream == "" || name == "":
		return nil, errors.New("redstream: consumer needs a stream and a name")
	case h == nil:
		return nil, errors.New("redstream: nil handler")
	case o.BatchSize < 0 || o.Block < 0 || o.LockTTL < 0 || o.MinBackoff < 0 || o.MaxBackoff < 0 || o.MaxPayloadBytes < 0:
		return nil, errors.New("redstream: negative consumer option")
	}
	log := cmp.Or(o.Logger, slog.Default()).With("stream", stream, "consumer", name)
	ttl, err := leaseTTL(o.LockTTL)
	if err != nil {
		return nil, err
	}
	keys := NewKeys(o.Namespace)
	if err := checkClusterKeys(rdb, keys, stream, name); err != nil {
		return nil, err
	}
	c := &Consumer{
		rdb:     rdb,
		stream:  stream,
		name:    name,
		h:       h,
		keys:    keys,
		key:     keys.Stream(stream),
		offset:  keys.Offset(stream, name),
		dlq:     keys.DeadLetter(stream, name),
		batch:   int64(cmp.Or(o.BatchSize, DefaultConsumerBatchSize)),
		block:   cmp.Or(o.Block, DefaultConsumerBlock),
		min:     cmp.Or(o.MinBackoff, DefaultMinBackoff),
		max:     cmp.Or(o.MaxBackoff, DefaultMaxBackoff),
		payload: cmp.Or(o.MaxPayloadBytes, DefaultMaxPayloadBytes),
		log:     log,
	}
	c.max = max(c.max, c.min)
	c.lease = newLeaser(rdb, keys, ConsumerLockName(stream, name), ttl, log).withHolder(o.Holder)
	return c, nil
}

// Stats returns a snapshot of the consumer's progress.
func (c *Consumer) Stats() ConsumerStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ConsumerStats{
		Active:       c.active,
		Committed:    c.committed,
		Batches:      c.batches,
		Messages:     c.messages,
		Errors:       c.errs,
		DeadLettered: c.dead,
	}
	if !c.pending.IsZero() {
		s.Lag = max(time.Since(c.pending.Time()), 0)
	}
	return s
}

// Run consumes the stream until ctx ends, then returns nil. It waits for
// the consumer's lease, reads from the committed offset (0-0 when none),
// hands each batch to the handler and commits the batch's last id, fenced
// by the lease. Redis errors and handler errors are retried with capped
// exponential backoff and jitter; a lost lease is waited for again.
//
// On ctx cancel the handler's context is cancelled too. A batch the handler
// still completes (returns nil) is committed; otherwise it is abandoned and
// delivered again later. Run then releases the lease and returns: at once
// on a *redis.Client, within Block on other clients (see
// ConsumerOptions.Block). Run returns an error only for what retrying
// cannot fix: a stored offset that is not a stream id, or a second Run.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("redstream: consumer already running")
	}
	defer c.running.Store(false)
	return c.lease.hold(ctx, "consumer", retryBackoff{min: c.min, max: c.max}, c.log,
		func() { c.count(&c.errs, 1) }, c.setActive, c.runLeased)
}

func (c *Consumer) setActive(v bool) {
	c.mu.Lock()
	c.active = v
	if !v {
		c.pending = ID{}
	}
	c.mu.Unlock()
}

func (c *Consumer) count(n *uint64, d uint64) {
	c.mu.Lock()
	*n += d
	c.mu.Unlock()
}

// runLeased consumes while the lease is held. It returns nil when the
// lease's context ends (stop or loss) and an error only when fatal.
func (c *Consumer) runLeased(l *Lease) error {
	ctx := l.Context()
	bo := retryBackoff{min: c.min, max: c.max}
	var errs errorLimiter
	r := newXReader(c.rdb)
	defer r.close()

	var offset ID
	for {
		var err error
		if offset, err = readOffset(ctx, c.rdb, c.offset); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrInvalidID) {
			return err
		}
		c.count(&c.errs, 1)
		errs.fail(ctx, c.log, "redstream: consumer cannot read its offset", err)
		if !sleepCtx(ctx, bo.next()) {
			return nil
		}
	}
	c.mu.Lock()
	c.committed = offset
	c.mu.Unlock()

	var (
		b       *Batch // a batch in hand, kept across retries
		invalid map[ID]error
		last    ID
		handled bool         // the handler has accepted b
		dead    map[ID]error // what it dead-lettered
		written bool         // the dead letters of b are written
	)
	for ctx.Err() == nil {
		if b == nil {
			msgs, err := c.read(ctx, r, offset)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				c.count(&c.errs, 1)
				errs.fail(ctx, c.log, "redstream: consumer read failed", err)
				sleepCtx(ctx, bo.next())
				continue
			}
			if len(msgs) == 0 {
				continue
			}
			b, invalid, last = c.newBatch(msgs)
			handled, dead, written = len(b.Messages) == 0, nil, false
			c.mu.Lock()
			c.pending = msgs[0].id
			c.mu.Unlock()
		}

		if !handled {
			if !l.Held() {
				// Stopped past the TTL (or lost meanwhile): another holder
				// may have this batch already; it is not ours to write.
				return nil
			}
			b.Attempt++
			err := c.handle(leaseContext{ctx, l}, b)
			marks := b.takeDead()
			if err != nil {
				if ctx.Err() != nil {
					// Abandoned: the next holder delivers it again.
					return nil
				}
				c.count(&c.errs, 1)
				errs.fail(ctx, c.log, "redstream: handler failed; retrying the batch", err,
					"first", b.Messages[0].ID.String(), "attempt", b.Attempt)
				sleepCtx(ctx, bo.next())
				continue
			}
			handled, dead = true, marks
		}

		// The handler is done: write its dead letters and commit, even when
		// ctx was cancelled meanwhile (on a detached context), unless the
		// lease is lost. A failed write or commit is retried alone.
		if errors.Is(context.Cause(ctx), ErrLockLost) || (ctx.Err() == nil && !l.Held()) {
			return nil
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.lease.ttl)
		var err error
		if !written {
			if err = c.writeDeadLetters(cctx, b, dead, invalid); err == nil {
				written = true
			}
		}
		if err == nil {
			err = l.commitKey(cctx, c.offset, last)
		}
		cancel()
		if errors.Is(err, ErrLockLost) {
			c.log.WarnContext(ctx, "redstream: consumer lost its lease before committing", "offset", last.String())
			return nil
		}
		if err != nil {
			c.count(&c.errs, 1)
			errs.fail(ctx, c.log, "redstream: consumer commit failed; retrying", err)
			sleepCtx(ctx, bo.next())
			continue
		}
		errs.recover(ctx, c.log, "redstream: consumer recovered")
		bo.reset()
		offset = last
		n := uint64(len(b.Messages) + len(invalid))
		c.mu.Lock()
		c.committed = last
		c.pending = ID{}
		c.batches++
		c.messages += n
		c.dead += uint64(len(dead) + len(invalid))
		c.mu.Unlock()
		b, invalid, dead = nil, nil, nil
	}
	return nil
}

// leaseContext is the context of a handler call: its Err also checks the
// lease's local deadline (Lease.Held), so a handler that checks ctx.Err()
// before a write stops at once when its process resumes after being stopped
// past the TTL, before the refresh goroutine has noticed.
type leaseContext struct {
	context.Context
	l *Lease
}

func (c leaseContext) Err() error {
	c.l.Held() // cancels the lease's context once its deadline has passed
	return c.Context.Err()
}

// handle calls the handler, turning a panic into an error so that one bad
// message cannot crash the worker.
func (c *Consumer) handle(ctx context.Context, b *Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("redstream: handler panic: %v", r)
		}
	}()
	return c.h.HandleBatch(ctx, b)
}

type xentry struct {
	id     ID
	values map[string]any
}

// read returns the entries after offset, waiting up to Block for some.
func (c *Consumer) read(ctx context.Context, r *xreader, offset ID) ([]xentry, error) {
	return r.read(ctx, c.key, offset, c.batch, c.block)
}

// xreader runs the blocking XREADs of one worker (see blocker).
type xreader struct {
	blocker
}

func newXReader(rdb redis.UniversalClient) *xreader {
	return &xreader{blocker: newBlocker(rdb)}
}

func (r *xreader) read(ctx context.Context, key string, offset ID, count int64, block time.Duration) ([]xentry, error) {
	args := &redis.XReadArgs{Streams: []string{key, offset.String()}, Count: count, Block: block}
	var cmd *redis.XStreamSliceCmd
	if err := r.do(ctx, func(c cmdProcessor) error {
		cmd = c.XRead(ctx, args)
		return nil
	}); err != nil {
		return nil, err
	}
	res, err := cmd.Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		r.close() // the next read starts on a fresh connection
		return nil, fmt.Errorf("redstream: xread: %w", err)
	}
	var out []xentry
	for _, s := range res {
		if out == nil {
			out = make([]xentry, 0, len(s.Messages))
		}
		for _, m := range s.Messages {
			id, err := ParseID(m.ID)
			if err != nil {
				return nil, err
			}
			out = append(out, xentry{id: id, values: m.Values})
		}
	}
	return out, nil
}

// newBatch turns entries into a batch, setting aside the invalid ones.
func (c *Consumer) newBatch(es []xentry) (*Batch, map[ID]error, ID) {
	b := &Batch{Stream: c.stream, Consumer: c.name, Messages: make([]Message, 0, len(es))}
	var invalid map[ID]error
	for _, e := range es {
		p, err := entryPayload(e.values, c.payload)
		if err != nil {
			if invalid == nil {
				invalid = make(map[ID]error)
			}
			invalid[e.id] = err
			continue
		}
		b.Messages = append(b.Messages, Message{ID: e.id, Stream: c.stream, Payload: p})
	}
	b.raw = es
	return b, invalid, es[len(es)-1].id
}

// entryPayload returns the payload field of an entry's values, checked:
// present, at most maxBytes long and valid JSON. Every refusal is
// ErrInvalidMessage.
func entryPayload(values map[string]any, maxBytes int) (json.RawMessage, error) {
	v, ok := values["payload"]
	if !ok {
		return nil, fmt.Errorf("%w: no payload field", ErrInvalidMessage)
	}
	s, _ := v.(string)
	if len(s) > maxBytes {
		return nil, fmt.Errorf("%w: payload of %d bytes exceeds the limit of %d bytes (MaxPayloadBytes)",
			ErrInvalidMessage, len(s), maxBytes)
	}
	if !json.Valid([]byte(s)) {
		return nil, fmt.Errorf("%w: payload is not JSON", ErrInvalidMessage)
	}
	return json.RawMessage(s), nil
}

// retryBackoff is a capped exponential backoff with jitter. The zero attempt
// count waits min; each failure doubles the wait up to max. A random
// jitter picks the wait in [d/2, d].
type retryBackoff struct {
	min, max time.Duration
	n        int
}

func (b *retryBackoff) next() time.Duration {
	d := b.min
	for i := 0; i < b.n && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	b.n++
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

func (b *retryBackoff) reset() { b.n = 0 }

// sleepCtx waits for d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// errorLimiter rate-limits a worker's error lines: the first failure is logged,
// then at most one line per errorLogEvery with the count of failures in
// between, and one line when the worker recovers. It belongs to one
// goroutine.
type errorLimiter struct {
	failing    bool
	last       time.Time
	suppressed int
	warn       bool // log at Warn, not Error: an expected, passing state
}

func (e *errorLimiter) fail(ctx context.Context, log *slog.Logger, msg string, err error, attrs ...any) {
	now := time.Now()
	if e.failing && now.Sub(e.last) < errorLogEvery {
		e.suppressed++
		return
	}
	attrs = append(attrs, "error", err)
	if e.suppressed > 0 {
		attrs = append(attrs, "repeated", e.suppressed)
	}
	level := slog.LevelError
	if e.warn {
		level = slog.LevelWarn
	}
	log.Log(ctx, level, msg, attrs...)
	e.failing, e.last, e.suppressed = true, now, 0
}

func (e *errorLimiter) recover(ctx context.Context, log *slog.Logger, msg string) {
	if !e.failing {
		return
	}
	log.InfoContext(ctx, msg)
	e.failing, e.suppressed = false, 0
}
