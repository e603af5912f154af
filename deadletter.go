package redstream

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNoDeadLetter is returned by DeadLetterQueue.Replay and
// DeadLetterQueue.Drop when the dead-letter stream has no entry with the
// given id: it was never there, or it was replayed or dropped already.
var ErrNoDeadLetter = errors.New("redstream: no such dead letter")

// ErrNoPayload is returned by DeadLetterQueue.Replay for a dead letter that
// has no payload (an entry of the stream that had no "payload" field): it
// cannot be replayed, only dropped. The dead letter is left in place.
var ErrNoPayload = errors.New("redstream: dead letter has no payload")

// DeadLetter is one entry of a consumer's dead-letter stream: a message the
// consumer's handler gave up on (Batch.DeadLetter) or an entry that was not
// a valid message (ErrInvalidMessage). The Consumer writes it with the
// fields
//
//	id        the message's stream id
//	stream    the stream name
//	consumer  the consumer name
//	error     the reason
//	attempts  deliveries to the handler before it was dead-lettered (0: never delivered)
//	time      when it was dead-lettered, RFC 3339 in UTC
//	payload   the payload field as stored, when the entry has one
//	fields    otherwise, all fields of the entry as a JSON object
//
// to the stream at Keys.DeadLetter(stream, consumer), which is never
// trimmed. List, replay and drop dead letters with a DeadLetterQueue.
//
// Attempts counts the times the consumer handed the message to its
// handler, the last one included, before it was dead-lettered: 1 when the
// handler gave up on it at its first delivery (as the Elasticsearch
// handler does with a document Elasticsearch rejects), more when earlier
// deliveries of its batch failed as a whole and were retried. An invalid
// entry (ErrInvalidMessage) never reaches the handler: 0. A replay adds the
// payload to the stream as a new entry; dead-lettered again, it is a new
// dead letter, counted from its own first delivery.
//
// A DeadLetter is a plain value, safe to copy.
type DeadLetter struct {
	DLQID    ID        // the entry's id in the dead-letter stream
	ID       ID        // the message's id in its stream
	Stream   string    // the stream the message came from
	Consumer string    // the consumer that gave up on it
	Error    string    // why
	Attempts int       // deliveries to the handler before it was dead-lettered; 0 when never delivered
	Time     time.Time // when it was dead-lettered

	// HasPayload reports whether the message had a payload field; Payload
	// is that field exactly as stored, valid JSON or not.
	HasPayload bool
	Payload    string
	// Fields holds, for a message without a payload field, all of its
	// fields as a JSON object, exactly as stored; "" otherwise.
	Fields string
}

// ParseDeadLetter returns the dead letter of an entry read from a
// dead-letter stream (XRANGE, XREAD). The payload and fields are carried
// exactly as stored; a message id, attempt count or time that is missing
// or malformed is left zero. It returns an error, wrapping ErrInvalidID,
// only when m.ID is not a stream id.
func ParseDeadLetter(m redis.XMessage) (DeadLetter, error) {
	dlqID, err := ParseID(m.ID)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("redstream: dead letter: %w", err)
	}
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	d := DeadLetter{
		DLQID:    dlqID,
		Stream:   str("stream"),
		Consumer: str("consumer"),
		Error:    str("error"),
		Fields:   str("fields"),
	}
	d.ID, _ = ParseID(str("id"))
	d.Attempts, _ = strconv.Atoi(str("attempts"))
	d.Time, _ = time.Parse(time.RFC3339Nano, str("time"))
	if p, ok := m.Values["payload"]; ok {
		d.HasPayload = true
		d.Payload, _ = p.(string)
	}
	return d, nil
}

// DeadLetterQueue is the dead-letter stream of one consumer of one stream,
// Keys.DeadLetter(stream, consumer): it lists, replays and drops the
// consumer's dead letters. It is safe for concurrent use, also by several
// processes: each dead letter is replayed or dropped at most once.
type DeadLetterQueue struct {
	rdb    redis.Cmdable
	key    string // dead-letter stream key
	stream string // main stream key
}

// NewDeadLetterQueue returns the dead-letter stream of consumer on stream,
// with the key layout keys. It returns an error for a nil client, an empty
// stream or consumer, or, on a *redis.ClusterClient, a stream whose main
// and dead-letter keys would not share a hash slot (see Keys.CheckCluster).
// It does no I/O.
func NewDeadLetterQueue(rdb redis.Cmdable, keys Keys, stream, consumer string) (*DeadLetterQueue, error) {
	switch {
	case rdb == nil:
		return nil, errors.New("redstream: nil redis client")
	case stream == "" || consumer == "":
		return nil, errors.New("redstream: dead-letter queue needs a stream and a consumer")
	}
	q := &DeadLetterQueue{rdb: rdb, key: keys.DeadLetter(stream, consumer), stream: keys.Stream(stream)}
	if _, ok := rdb.(*redis.ClusterClient); ok {
		if a, b := keySlot(q.stream), keySlot(q.key); a != b {
			return nil, fmt.Errorf("redstream: stream %q cannot be used on Redis Cluster: its keys %q (hash slot %d) and %q (hash slot %d) "+
				"must share a slot to replay dead letters; wrap the stream name in braces, e.g. %s",
				stream, q.stream, a, q.key, b, bracedExample(stream))
		}
	}
	return q, nil
}

// Key returns the key of the dead-letter stream.
func (q *DeadLetterQueue) Key() string { return q.key }

// Len returns the number of dead letters.
func (q *DeadLetterQueue) Len(ctx context.Context) (int64, error) {
	n, err := q.rdb.XLen(ctx, q.key).Result()
	if err != nil {
		return 0, fmt.Errorf("redstream: count dead letters: %w", err)
	}
	return n, nil
}

// Read returns up to count dead letters, oldest first, whose DLQID comes
// after after; the zero ID reads from the first. To page through them all,
// pass the DLQID of the last one read until fewer than count come back.
func (q *DeadLetterQueue) Read(ctx context.Context, after ID, count int) ([]DeadLetter, error) {
	if count <= 0 {
		return nil, errors.New("redstream: read dead letters: count must be positive")
	}
	start := "-"
	if !after.IsZero() {
		start = "(" + after.String()
	}
	msgs, err := q.rdb.XRangeN(ctx, q.key, start, "+", int64(count)).Result()
	if err != nil {
		return nil, fmt.Errorf("redstream: read dead letters: %w", err)
	}
	out := make([]DeadLetter, 0, len(msgs))
	for _, m := range msgs {
		d, err := ParseDeadLetter(m)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// luaReplay adds the payload of a dead letter to the main stream as a new
// entry, the way a producer writes it, and deletes the dead letter, in one
// atomic step: the message is never lost between the two, and a dead letter
// replayed by two callers at once is added once (see the script).
var (
	//go:embed deadletter_replay.lua
	luaReplaySrc string
	luaReplay    = redis.NewScript(luaReplaySrc)
)

// Replay adds the payload of the dead letter id to its stream again, as a
// new entry with a single "payload" field (the payload exactly as stored),
// and deletes the dead letter, atomically; it returns the new entry's id.
// It returns an error wrapping ErrNoDeadLetter when there is no such dead
// letter, and ErrNoPayload when it has no payload.
//
// The consumers of the stream, all of them, then see the message again; a
// payload that is still invalid is dead-lettered again.
func (q *DeadLetterQueue) Replay(ctx context.Context, id ID) (ID, error) {
	res, err := luaReplay.Run(ctx, q.rdb, []string{q.key, q.stream}, id.String()).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return ID{}, fmt.Errorf("redstream: replay %s: %w", id, ErrNoDeadLetter)
	case err != nil:
		return ID{}, fmt.Errorf("redstream: replay %s: %w", id, err)
	}
	s, ok := res.(string)
	if !ok {
		return ID{}, fmt.Errorf("redstream: replay %s: %w", id, ErrNoPayload)
	}
	return ParseID(s)
}

// Drop deletes the dead letter id. It returns an error wrapping
// ErrNoDeadLetter when there is no such dead letter.
func (q *DeadLetterQueue) Drop(ctx context.Context, id ID) error {
	n, err := q.rdb.XDel(ctx, q.key, id.String()).Result()
	switch {
	case err != nil:
		return fmt.Errorf("redstream: drop %s: %w", id, err)
	case n == 0:
		return fmt.Errorf("redstream: drop %s: %w", id, ErrNoDeadLetter)
	}
	return nil
}

// writeDeadLetters writes the dead letters of b to the dead-letter stream:
// the messages the handler marked (dead) and the invalid entries it never
// saw, in stream order.
func (c *Consumer) writeDeadLetters(ctx context.Context, b *Batch, dead, invalid map[ID]error) error {
	if len(dead)+len(invalid) > 0 {
		now := time.Now().UTC().Format(time.RFC3339Nano)
		// Invalid entries never reached the handler: 0 attempts.
		type letter struct {
			reason   error
			attempts int
		}
		letters := make(map[ID]letter, len(dead)+len(invalid))
		for id, err := range dead {
			letters[id] = letter{err, b.Attempt}
		}
		for id, err := range invalid {
			letters[id] = letter{err, 0}
		}
		added := make(map[ID]*redis.StringCmd, len(letters))
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, e := range b.raw {
				if dl, ok := letters[e.id]; ok {
					added[e.id] = p.XAdd(ctx, &redis.XAddArgs{Stream: c.dlq, Values: deadLetterFields(e, c.stream, c.name, dl.reason, dl.attempts, now)})
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("redstream: write dead letters: %w", err)
		}
		// One line per dead letter, once it is written: the handler's
		// marks of a batch that failed afterwards are not dead letters.
		for _, e := range b.raw {
			if dl, ok := letters[e.id]; ok {
				c.log.WarnContext(ctx, "redstream: message dead-lettered", "id", e.id.String(),
					"dlq_id", added[e.id].Val(), "attempts", dl.attempts, "error", dl.reason)
			}
		}
	}
	return nil
}

// deadLetterFields are the fields of a dead-letter entry (see DeadLetter):
// enough to list, replay (XADD the payload back to the stream) or drop it.
func deadLetterFields(e xentry, stream, consumer string, reason error, attempts int, now string) []any {
	f := []any{
		"id", e.id.String(),
		"stream", stream,
		"consumer", consumer,
		"error", reason.Error(),
		"attempts", attempts,
		"time", now,
	}
	if p, ok := e.values["payload"]; ok {
		f = append(f, "payload", p)
	} else {
		raw, _ := json.Marshal(e.values)
		f = append(f, "fields", string(raw))
	}
	return f
}
