package redstream

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
	// DefaultMaxBackoff caps the wait between retries. A worker retries
	// at least this often during an outage, so it is also about the
	// longest a worker takes to move again once what failed (Redis,
	// the database, Elasticsearch) answers normally: a failed attempt
	// costs a retrying worker one request every 1-2 s, and a long wait
	// would leave the stream idle long after the outage.
	DefaultMaxBackoff = 2 * time.Second
	// DefaultMaxPayloadBytes bounds the payload of one stream entry. A
	// payload names a record ({"id":42}), it does not carry it: anything
	// near this size is a bug or an abuse of the stream.
	DefaultMaxPayloadBytes = 1 << 20
)

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
	// first time, 2 after the handler failed it once, and so on. A message
	// dead-lettered from this delivery records it as its attempts (see
	// DeadLetter).
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
	// jitter, between retries of a failed batch or Redis call: the n-th
	// wait is MinBackoff doubled n-1 times, capped at MaxBackoff, and
	// picked at random in its upper half. MaxBackoff is also about the
	// longest the consumer takes to resume once the failure is over.
	// Default: DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration

	// MaxPayloadBytes bounds the size of an entry's payload. A larger one
	// is never handed to the handler: it is dead-lettered as
	// ErrInvalidMessage, with its size and the limit as the reason.
	// Default: DefaultMaxPayloadBytes.
	MaxPayloadBytes int

	// Holder names this consumer's lease holder for operators: it is
	// stored in the lock value after the random token, where LockHolder
	// and `redstream status` read it. Default: DefaultHolder().
	Holder string

	// Logger receives the consumer's log lines. During an outage (a run
	// of failures) the first failure is logged at once, then a progress
	// line at most every 10 s (every minute after the first minute), each
	// with the attempt count and the time of the next retry; the first
	// success logs one recovery line with the outage's length and its
	// failed attempts.
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
	Batches, Messages, Errors, DeadLettered int64
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
	worker
	stream  string
	name    string
	h       Handler
	keys    Keys
	key     string // stream key
	dlq     string // dead-letter stream key
	batch   int64
	block   time.Duration
	payload int // MaxPayloadBytes

	// Guarded by worker.mu:
	pending  ID // oldest message in hand; zero when none
	batches  int64
	messages int64
	dead     int64
}

// NewConsumer returns a consumer named name of stream that hands batches to
// h. It returns an error for a nil client or handler, an empty stream or
// name, negative options, or, on a *redis.ClusterClient, a stream whose keys
// would not share a hash slot (see Keys.CheckCluster).
func NewConsumer(rdb redis.UniversalClient, stream, name string, h Handler, opts *ConsumerOptions) (*Consumer, error) {
	o := optionsOf(opts)
	if err := checkWorkerArgs(rdb, "consumer", stream); err != nil {
		return nil, err
	}
	switch {
	case name == "":
		return nil, errors.New("redstream: consumer needs a name")
	case h == nil:
		return nil, errors.New("redstream: nil handler")
	}
	if err := checkWorkerOptions("consumer", int64(o.BatchSize), int64(o.Block), int64(o.LockTTL),
		int64(o.MinBackoff), int64(o.MaxBackoff), int64(o.MaxPayloadBytes)); err != nil {
		return nil, err
	}
	ttl, err := leaseTTL(o.LockTTL)
	if err != nil {
		return nil, err
	}
	keys := NewKeys(o.Namespace)
	if err := checkClusterKeys(rdb, keys, stream, name); err != nil {
		return nil, err
	}
	c := &Consumer{
		stream:  stream,
		name:    name,
		h:       h,
		keys:    keys,
		key:     keys.Stream(stream),
		dlq:     keys.DeadLetter(stream, name),
		batch:   int64(cmp.Or(o.BatchSize, DefaultConsumerBatchSize)),
		block:   cmp.Or(o.Block, DefaultConsumerBlock),
		payload: cmp.Or(o.MaxPayloadBytes, DefaultMaxPayloadBytes),
	}
	c.worker.init(rdb, workerConfig{
		kind: "consumer", keys: keys, lockname: ConsumerLockName(stream, name),
		offset: keys.Offset(stream, name), ttl: ttl,
		lo: cmp.Or(o.MinBackoff, DefaultMinBackoff), hi: cmp.Or(o.MaxBackoff, DefaultMaxBackoff),
		holder: o.Holder, log: cmp.Or(o.Logger, slog.Default()).With("stream", stream, "consumer", name),
	})
	c.idle = func() { c.pending = ID{} }
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
// exponential backoff and jitter; a lost lease is waited for again. When
// Redis no longer holds the offset it committed or the entry it read (a
// failover to a replica that had not received them), it logs a warning
// and goes on from the stored offset, delivering again what follows it.
//
// On ctx cancel the handler's context is cancelled too. A batch the handler
// still completes (returns nil) is committed; otherwise it is abandoned and
// delivered again later. Run then releases the lease and returns: at once
// on a *redis.Client, within Block on other clients (see
// ConsumerOptions.Block). Run returns an error only for what retrying
// cannot fix: a stored offset that is not a stream id, or a second Run.
func (c *Consumer) Run(ctx context.Context) error { return c.hold(ctx, c.consume) }

// consume reads, handles and commits batches from offset while l is held.
// It returns nil when the lease's context ends, ErrLockLost when a commit
// found the lease taken, and an error only when fatal.
func (c *Consumer) consume(s *session, offset ID) error {
	for s.ctx.Err() == nil {
		msgs, err := c.read(s.ctx, s.r, offset)
		if err != nil {
			if s.ctx.Err() == nil {
				s.retry("redstream: consumer read failed", err)
			}
			continue
		}
		if len(msgs) == 0 {
			// Idle: make sure no failover took commits away meanwhile.
			if stored, err := readOffset(s.ctx, c.rdb, c.offset); err == nil && stored != offset {
				if offset, err = c.reread(s, offset, ID{}); err != nil || s.ctx.Err() != nil {
					return err
				}
			}
			continue
		}
		h := c.newBatch(msgs)
		h.prev = offset
		c.update(func() { c.pending = msgs[0].id })
		if !c.deliver(s, h) {
			return nil
		}
		if ok, err := c.settle(s, h); !ok {
			if !errors.Is(err, errOffsetMoved) {
				return err
			}
			if offset, err = c.reread(s, offset, h.last); err != nil {
				return err
			}
			continue
		}
		s.ok()
		offset = h.last
		n := int64(len(h.b.Messages) + len(h.invalid))
		c.update(func() {
			c.committed = h.last
			c.pending = ID{}
			c.batches++
			c.messages += n
			c.dead += int64(len(h.dead) + len(h.invalid))
		})
	}
	return nil
}

// reread reads the stored offset after a commit or an idle check found
// that this Redis node does not have what the consumer read or committed
// (see lease.commitAfter), and returns it, the offset to go on from.
// offset is the one the consumer went on from until now, last the batch
// whose commit was refused (zero after an idle check). The entries after
// the stored offset are delivered again, those this consumer had handled
// included: at least once.
func (c *Consumer) reread(s *session, offset, last ID) (ID, error) {
	stored, ok, err := s.readOffset()
	if !ok {
		return offset, err
	}
	attrs := []any{"stream", c.stream, "consumer", c.name, "offset", offset.String(), "stored", stored.String()}
	if !last.IsZero() {
		attrs = append(attrs, "refused", last.String())
	}
	c.log.WarnContext(s.ctx, "redstream: Redis does not hold what this consumer read or committed (a failover, or an offset reset or a trim); going on from the stored offset", attrs...)
	c.update(func() {
		c.committed = stored
		c.pending = ID{}
	})
	return stored, nil
}

// inHand is a batch read and not yet committed, with what is left to do.
type inHand struct {
	b       *Batch
	invalid map[ID]error // entries that are not messages: never handled
	prev    ID           // the offset the batch was read after
	last    ID           // the last entry's id, the offset to commit
	dead    map[ID]error // what the handler dead-lettered
	written bool         // the dead letters are written
}

// deliver hands h's batch to the handler until it accepts it, backing off
// between attempts. It returns false, leaving the batch to the next holder,
// when the lease's context ends or its deadline passes first.
func (c *Consumer) deliver(s *session, h *inHand) bool {
	if len(h.b.Messages) == 0 {
		return true // nothing but invalid entries
	}
	for {
		if !s.l.Held() {
			// Stopped past the TTL (or lost meanwhile): another holder
			// may have this batch already; it is not ours to write.
			return false
		}
		h.b.Attempt++
		err := c.handle(leaseContext{s.ctx, s.l}, h.b)
		marks := h.b.takeDead()
		if err == nil {
			h.dead = marks
			return true
		}
		if s.ctx.Err() != nil {
			return false // abandoned: the next holder delivers it again
		}
		if !s.retry("redstream: handler failed; retrying the batch", err,
			"first", h.b.Messages[0].ID.String(), "messages", len(h.b.Messages)) {
			return false
		}
	}
}

// settle writes the dead letters of a handled batch and commits its last
// id, each retried alone, even when the lease's context was cancelled
// meanwhile (on a detached context), unless the lease is lost. It reports
// whether the batch is committed; the error is ErrLockLost when the commit
// found another holder.
func (c *Consumer) settle(s *session, h *inHand) (bool, error) {
	for {
		if errors.Is(context.Cause(s.ctx), ErrLockLost) || (s.ctx.Err() == nil && !s.l.Held()) {
			return false, nil
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), c.lr.ttl)
		err := c.commit(cctx, s.l, h)
		cancel()
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, ErrLockLost), errors.Is(err, errOffsetMoved):
			return false, err
		}
		if !s.retry("redstream: consumer commit failed; retrying", err) {
			return false, nil
		}
	}
}

// commit writes h's dead letters, once, then commits h's last id.
func (c *Consumer) commit(ctx context.Context, l *lease, h *inHand) error {
	if !h.written {
		if err := c.writeDeadLetters(ctx, h.b, h.dead, h.invalid); err != nil {
			return err
		}
		h.written = true
	}
	return l.commitAfter(ctx, c.key, c.offset, h.prev, h.last)
}

// leaseContext is the context of a handler call: its Err also checks the
// lease's local deadline (Lease.Held), so a handler that checks ctx.Err()
// before a write stops at once when its process resumes after being stopped
// past the TTL, before the refresh goroutine has noticed.
type leaseContext struct {
	context.Context
	l *lease
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

// read returns the entries after offset, waiting up to Block for some.
func (c *Consumer) read(ctx context.Context, r *xreader, offset ID) ([]xentry, error) {
	return r.read(ctx, c.key, offset, c.batch, c.block)
}

// newBatch turns entries into a batch in hand, setting aside the invalid
// ones.
func (c *Consumer) newBatch(es []xentry) *inHand {
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
	return &inHand{b: b, invalid: invalid, last: es[len(es)-1].id}
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
