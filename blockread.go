package redstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// xentry is one stream entry as read.
type xentry struct {
	id     ID
	values map[string]any
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
