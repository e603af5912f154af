package redstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// StreamStatus is a snapshot of one stream and of the workers on it, read
// from Redis by ReadStatus. Ages are measured by the Redis server's clock.
type StreamStatus struct {
	Stream string // stream name, e.g. "products" or a shard "products-3"
	Length int64  // entries in the main stream

	// Unconfirmed counts the entries of the delay stream: changes whose
	// main-stream message is not confirmed, that is transactions in flight
	// and main-stream writes that failed, which the Delayer delivers once
	// they are delay old (with ProducerOptions.KeepDelayMessages, every
	// change of the last delay). OldestUnconfirmed is the age of the
	// oldest, 0 when there is none. On a healthy, idle system both are 0.
	Unconfirmed       int64
	OldestUnconfirmed time.Duration

	Consumers []ConsumerStatus // in the order asked for
	Delayer   LockStatus       // the delayer's lease
	Trimmer   LockStatus       // the trimmer's lease (held only while trimming)
}

// ConsumerStatus is the state of one consumer of a stream, as ReadStatus
// reads it.
type ConsumerStatus struct {
	Name string
	// HasOffset reports whether the consumer has committed an offset;
	// Offset is that offset, zero when none (the consumer then starts
	// from 0-0).
	HasOffset bool
	Offset    ID
	// Lag is the age of the oldest entry of the stream after Offset; 0
	// when the consumer is caught up.
	Lag         time.Duration
	Lease       LockStatus // the consumer's lease
	DeadLetters int64      // entries of its dead-letter stream
}

// LockStatus says whether a lock is held, and by whom when the holder named
// itself in the lock value (see LockHolder).
type LockStatus struct {
	Held   bool
	Holder string        // LockHolder of the lock value; "" when it names none
	TTL    time.Duration // time left; 0 when not held or held with no expiry
}

// ReadStatus returns the state of stream and of the named consumers on it:
// stream and delay-stream lengths, the age of the oldest delay message,
// each consumer's committed offset, lag, lease and dead-letter count, and
// the delayer's and the trimmer's leases. For a sharded stream, call it
// once per shard (see ShardName). It reads in two round trips and writes
// nothing; the values are not one atomic snapshot.
//
// It returns an error, wrapping ErrInvalidID, when a stored offset is not
// a stream id.
func ReadStatus(ctx context.Context, rdb redis.Cmdable, keys Keys, stream string, consumers ...string) (StreamStatus, error) {
	st, err := readStatus(ctx, rdb, keys, stream, consumers)
	if err != nil {
		return StreamStatus{}, fmt.Errorf("redstream: status of %s: %w", stream, err)
	}
	return st, nil
}

// lockCmds are the replies of a lock's GET and PTTL.
type lockCmds struct {
	value *redis.StringCmd
	pttl  *redis.DurationCmd
}

func queueLock(ctx context.Context, p redis.Pipeliner, key string) lockCmds {
	return lockCmds{value: p.Get(ctx, key), pttl: p.PTTL(ctx, key)}
}

func (l lockCmds) status() (LockStatus, error) {
	v, err := l.value.Result()
	if errors.Is(err, redis.Nil) {
		return LockStatus{}, nil
	}
	if err != nil {
		return LockStatus{}, err
	}
	s := LockStatus{Held: true, Holder: LockHolder(v)}
	if ttl := l.pttl.Val(); ttl > 0 { // -1: no expiry; -2: gone meanwhile
		s.TTL = ttl
	}
	return s, l.pttl.Err()
}

func readStatus(ctx context.Context, rdb redis.Cmdable, keys Keys, stream string, consumers []string) (StreamStatus, error) {
	type consumerCmds struct {
		offset *redis.StringCmd
		lock   lockCmds
		dlq    *redis.IntCmd
	}
	var (
		now              *redis.TimeCmd
		length, delayed  *redis.IntCmd
		oldest           *redis.XMessageSliceCmd
		cs               = make([]consumerCmds, len(consumers))
		delayer, trimmer lockCmds
	)
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		now = p.Time(ctx)
		length = p.XLen(ctx, keys.Stream(stream))
		delayed = p.XLen(ctx, keys.Delay(stream))
		oldest = p.XRangeN(ctx, keys.Delay(stream), "-", "+", 1)
		for i, c := range consumers {
			cs[i] = consumerCmds{
				offset: p.Get(ctx, keys.Offset(stream, c)),
				lock:   queueLock(ctx, p, keys.Lock(ConsumerLockName(stream, c))),
				dlq:    p.XLen(ctx, keys.DeadLetter(stream, c)),
			}
		}
		delayer = queueLock(ctx, p, keys.Lock(ConsumerLockName(DelayStream(stream), DelayerName)))
		trimmer = queueLock(ctx, p, keys.Lock(TrimmerLockName(stream)))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return StreamStatus{}, err
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) { // Nil: a GET of a missing key
			return StreamStatus{}, err
		}
	}
	t, err := now.Result()
	if err != nil {
		return StreamStatus{}, err
	}
	age := func(msgs []redis.XMessage) (time.Duration, error) {
		if len(msgs) == 0 {
			return 0, nil
		}
		id, err := ParseID(msgs[0].ID)
		if err != nil {
			return 0, err
		}
		return max(t.Sub(id.Time()), 0), nil
	}

	st := StreamStatus{Stream: stream, Length: length.Val(), Unconfirmed: delayed.Val()}
	if st.OldestUnconfirmed, err = age(oldest.Val()); err != nil {
		return st, err
	}
	if st.Delayer, err = delayer.status(); err != nil {
		return st, err
	}
	if st.Trimmer, err = trimmer.status(); err != nil {
		return st, err
	}
	st.Consumers = make([]ConsumerStatus, len(consumers))
	for i, c := range consumers {
		s := ConsumerStatus{Name: c, DeadLetters: cs[i].dlq.Val()}
		off, err := cs[i].offset.Result()
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return st, err
		default:
			if s.Offset, err = ParseID(off); err != nil {
				return st, fmt.Errorf("offset of %s: %w", c, err)
			}
			s.HasOffset = true
		}
		if s.Lease, err = cs[i].lock.status(); err != nil {
			return st, err
		}
		st.Consumers[i] = s
	}

	// The lags: the first entry after each offset.
	if len(consumers) == 0 {
		return st, nil
	}
	next := make([]*redis.XMessageSliceCmd, len(consumers))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range st.Consumers {
			next[i] = p.XRangeN(ctx, keys.Stream(stream), "("+c.Offset.String(), "+", 1)
		}
		return nil
	}); err != nil {
		return st, err
	}
	for i := range st.Consumers {
		if st.Consumers[i].Lag, err = age(next[i].Val()); err != nil {
			return st, err
		}
	}
	return st, nil
}

// ReadMembers returns the live members of the worker group name (see
// Group), sorted; a member counts as live until its heartbeat expires, by
// the Redis server's clock.
func ReadMembers(ctx context.Context, rdb redis.Cmdable, keys Keys, group string) ([]string, error) {
	members, err := luaHeartbeat.Run(ctx, rdb, []string{keys.Group(group)}, "", DefaultHeartbeatTTL.Milliseconds()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("redstream: read group %s: %w", group, err)
	}
	return members, nil
}
