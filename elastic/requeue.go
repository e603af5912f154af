package elastic

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
)

// RequeueChanged wraps h, the handler of a Backfill into an index that a
// live consumer of streams (names in the namespace of keys: a stream, or
// its shards) writes too, so that no row changed during a page stays
// stale in the index.
//
// Both read a row before writing its document. Without a version column
// nothing refuses an older state, so a page read just before a change
// can be written after the live consumer wrote that change. For each
// page, RequeueChanged notes the streams' last entries before h reads the
// rows; once h has written them, it appends each change of those rows
// added to a stream since then to that stream again (the same payload,
// once per row). The live consumer handles the copies after the page was
// written and writes those rows last. A change added after that check
// comes after the page's writes anyway. Every consumer of the streams
// receives those changes once more, as at least once delivery allows.
//
// A version column makes the newer state win whichever writes last, but
// only when every change moves the version: a soft delete that leaves it
// as it was (GORM's does) loses to a page's equal version written after
// it, and the document comes back. Wrap h with a version column too.
func RequeueChanged(h redstream.Handler, rdb redis.UniversalClient, keys redstream.Keys, streams []string) redstream.Handler {
	return &requeueChanged{h: h, rdb: rdb, keys: keys, streams: streams}
}

type requeueChanged struct {
	h       redstream.Handler
	rdb     redis.UniversalClient
	keys    redstream.Keys
	streams []string
}

func (r *requeueChanged) HandleBatch(ctx context.Context, b *redstream.Batch) error {
	// The streams' last entries: whatever comes after them was added
	// after the page's rows were read.
	pipe := r.rdb.Pipeline()
	lasts := make([]*redis.XMessageSliceCmd, len(r.streams))
	for i, s := range r.streams {
		lasts[i] = pipe.XRevRangeN(ctx, r.keys.Stream(s), "+", "-", 1)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("elastic: read the streams' ends: %w", err)
	}
	if err := r.h.HandleBatch(ctx, b); err != nil {
		return err
	}
	ids := make(map[string]bool, len(b.Messages))
	for _, m := range b.Messages {
		if id, err := MessageID(m.Payload); err == nil {
			ids[id] = true
		}
	}
	for i, s := range r.streams {
		from := "-"
		if last := lasts[i].Val(); len(last) == 1 {
			from = "(" + last[0].ID
		}
		if err := r.requeue(ctx, r.keys.Stream(s), from, ids); err != nil {
			return err
		}
	}
	return nil
}

// requeue appends each entry of stream key from from on whose message
// names an id in ids to the stream again, once per id, and removes the
// ids it requeued from ids.
func (r *requeueChanged) requeue(ctx context.Context, key, from string, ids map[string]bool) error {
	pipe := r.rdb.Pipeline()
	for {
		entries, err := r.rdb.XRangeN(ctx, key, from, "+", 1000).Result()
		if err != nil {
			return fmt.Errorf("elastic: read stream %s: %w", key, err)
		}
		for _, e := range entries {
			p, _ := e.Values["payload"].(string)
			if id, err := MessageID([]byte(p)); err == nil && ids[id] {
				delete(ids, id)
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"payload", p}})
			}
		}
		if len(entries) < 1000 {
			break
		}
		from = "(" + entries[len(entries)-1].ID
	}
	if pipe.Len() == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("elastic: requeue the changes of a backfilled page to %s: %w", key, err)
	}
	return nil
}
