package redstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// dlqPoll polls cond every 10 ms until it holds, failing the test after
// timeout.
func dlqPoll(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newDLQ(t testing.TB, rdb redis.Cmdable, keys redstream.Keys, stream, consumer string) *redstream.DeadLetterQueue {
	t.Helper()
	q, err := redstream.NewDeadLetterQueue(rdb, keys, stream, consumer)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// streamEntries returns the field maps of the entries of the stream at key.
func streamEntries(t testing.TB, rdb redis.Cmdable, key string) []map[string]any {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]map[string]any, len(msgs))
	for i, m := range msgs {
		out[i] = m.Values
	}
	return out
}

func TestParseDeadLetter(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 4, 5, 6, 7, 890_000_000, time.UTC)
	full := map[string]any{
		"id": "1700000000000-3", "stream": "products", "consumer": "indexer",
		"error": "rejected", "attempts": "2", "time": at.Format(time.RFC3339Nano),
	}
	with := func(kv ...string) map[string]any {
		m := make(map[string]any, len(full)+1)
		for k, v := range full {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	base := redstream.DeadLetter{
		DLQID: redstream.MustParseID("5-1"), ID: redstream.MustParseID("1700000000000-3"),
		Stream: "products", Consumer: "indexer", Error: "rejected", Attempts: 2, Time: at,
	}
	for _, c := range []struct {
		name   string
		values map[string]any
		want   func(d *redstream.DeadLetter)
	}{
		{"json payload", with("payload", `{"id":1}`), func(d *redstream.DeadLetter) {
			d.HasPayload, d.Payload = true, `{"id":1}`
		}},
		// The known bug: a payload that is not JSON was dropped.
		{"payload not json", with("payload", "not json"), func(d *redstream.DeadLetter) {
			d.HasPayload, d.Payload = true, "not json"
		}},
		{"empty payload", with("payload", ""), func(d *redstream.DeadLetter) { d.HasPayload = true }},
		{"no payload", with("fields", `{"other":"x"}`), func(d *redstream.DeadLetter) { d.Fields = `{"other":"x"}` }},
		{"fields not json", with("fields", "{oops"), func(d *redstream.DeadLetter) { d.Fields = "{oops" }},
		{"malformed metadata", with("id", "x", "attempts", "many", "time", "yesterday", "payload", "p"), func(d *redstream.DeadLetter) {
			d.ID, d.Attempts, d.Time, d.HasPayload, d.Payload = redstream.ID{}, 0, time.Time{}, true, "p"
		}},
		{"nothing", map[string]any{}, func(d *redstream.DeadLetter) { *d = redstream.DeadLetter{DLQID: d.DLQID} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := base
			c.want(&want)
			got, err := redstream.ParseDeadLetter(redis.XMessage{ID: "5-1", Values: c.values})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ParseDeadLetter =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
	if _, err := redstream.ParseDeadLetter(redis.XMessage{ID: "x"}); !errors.Is(err, redstream.ErrInvalidID) {
		t.Errorf("ParseDeadLetter of a bad entry id: %v, want ErrInvalidID", err)
	}
}

// TestDeadLetterNotJSON is the bug of the old `dlq` command: a dead letter
// whose payload is not JSON was listed without it and could not be
// replayed. It is listed and replayed byte for byte.
func TestDeadLetterNotJSON(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	// XADD … payload 'not json', as the consumer writes it.
	dlqID := rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.DeadLetter("products", "indexer"), Values: []any{
		"id", "1-1", "stream", "products", "consumer", "indexer",
		"error", "redstream: invalid message: payload is not JSON", "attempts", 0,
		"time", time.Now().UTC().Format(time.RFC3339Nano), "payload", "not json",
	}}).Val()

	q := newDLQ(t, rdb, keys, "products", "indexer")
	got, err := q.Read(ctx, redstream.ID{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].DLQID.String() != dlqID || !got[0].HasPayload || got[0].Payload != "not json" || got[0].ID.String() != "1-1" {
		t.Fatalf("Read = %+v", got)
	}
	newID, err := q.Replay(ctx, got[0].DLQID)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	main := rdb.XRange(ctx, keys.Stream("products"), "-", "+").Val()
	if len(main) != 1 || main[0].ID != newID.String() || !reflect.DeepEqual(main[0].Values, map[string]any{"payload": "not json"}) {
		t.Fatalf("stream after the replay = %+v, want one entry %s with payload 'not json'", main, newID)
	}
	if n, err := q.Len(ctx); err != nil || n != 0 {
		t.Errorf("Len after the replay = %d, %v; want 0", n, err)
	}
	if _, err := q.Replay(ctx, got[0].DLQID); !errors.Is(err, redstream.ErrNoDeadLetter) {
		t.Errorf("second Replay: %v, want ErrNoDeadLetter", err)
	}
}

// TestDeadLetterQueue reads what a consumer dead-letters, pages through it,
// replays and drops.
func TestDeadLetterQueue(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	stream := keys.Stream("products")
	add := func(values ...any) string {
		return rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: values}).Val()
	}
	rejected := add("payload", `{"id":1}`)
	notJSON := add("payload", "not json")
	noPayload := add("other", "x")
	add("payload", `{"id":4}`)

	h := redstream.HandlerFunc(func(ctx context.Context, b *redstream.Batch) error {
		for _, m := range b.Messages {
			if string(m.Payload) == `{"id":1}` {
				b.DeadLetter(m, errors.New("rejected"))
			}
		}
		return nil
	})
	c, err := redstream.NewConsumer(rdb, "products", "indexer", h, &redstream.ConsumerOptions{
		Namespace: ns, Block: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	dlqPoll(t, 10*time.Second, "the batch to be committed", func() bool { return c.Stats().Messages == 4 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	q := newDLQ(t, rdb, keys, "products", "indexer")
	if q.Key() != keys.DeadLetter("products", "indexer") {
		t.Errorf("Key() = %q", q.Key())
	}
	if n, err := q.Len(ctx); err != nil || n != 3 {
		t.Fatalf("Len = %d, %v; want 3", n, err)
	}
	// Pages of two.
	var all []redstream.DeadLetter
	var after redstream.ID
	pages := 0
	for {
		page, err := q.Read(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		all = append(all, page...)
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].DLQID
	}
	if pages != 2 || len(all) != 3 {
		t.Fatalf("read %d dead letters in %d pages, want 3 in 2", len(all), pages)
	}
	want := []struct {
		id, err, payload, fields string
		hasPayload               bool
		attempts                 int
	}{
		{rejected, "rejected", `{"id":1}`, "", true, 1},
		{notJSON, "redstream: invalid message: payload is not JSON", "not json", "", true, 0},
		{noPayload, "redstream: invalid message: no payload field", "", `{"other":"x"}`, false, 0},
	}
	for i, w := range want {
		d := all[i]
		if d.ID.String() != w.id || d.Stream != "products" || d.Consumer != "indexer" || d.Error != w.err ||
			d.Attempts != w.attempts || d.HasPayload != w.hasPayload || d.Payload != w.payload || d.Fields != w.fields {
			t.Errorf("dead letter %d = %+v, want %+v", i, d, w)
		}
		if d.Time.Before(before.Add(-time.Second)) || d.Time.After(time.Now().Add(time.Second)) {
			t.Errorf("dead letter %d time %v, not during the run", i, d.Time)
		}
	}
	if _, err := q.Read(ctx, redstream.ID{}, 0); err == nil {
		t.Error("Read with count 0: no error")
	}

	// No payload: not replayable, left in place, then dropped.
	if _, err := q.Replay(ctx, all[2].DLQID); !errors.Is(err, redstream.ErrNoPayload) {
		t.Errorf("Replay without a payload: %v, want ErrNoPayload", err)
	}
	if n, _ := q.Len(ctx); n != 3 {
		t.Errorf("Len after a refused replay = %d, want 3", n)
	}
	if err := q.Drop(ctx, all[2].DLQID); err != nil {
		t.Fatalf("Drop: %v", err)
	}
	if err := q.Drop(ctx, all[2].DLQID); !errors.Is(err, redstream.ErrNoDeadLetter) {
		t.Errorf("second Drop: %v, want ErrNoDeadLetter", err)
	}
	for _, d := range all[:2] {
		if _, err := q.Replay(ctx, d.DLQID); err != nil {
			t.Fatalf("Replay %s: %v", d.DLQID, err)
		}
	}
	entries := streamEntries(t, rdb, stream)
	got := entries[len(entries)-2:]
	if !reflect.DeepEqual(got, []map[string]any{{"payload": `{"id":1}`}, {"payload": "not json"}}) {
		t.Errorf("replayed entries = %v", got)
	}
	if n, _ := q.Len(ctx); n != 0 {
		t.Errorf("Len at the end = %d, want 0", n)
	}
}

// TestDeadLetterReplayOnce replays one dead letter from many goroutines at
// once: it reaches the stream once, and every other call finds it gone.
func TestDeadLetterReplayOnce(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	id := redstream.MustParseID(rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.DeadLetter("products", "indexer"),
		Values: []any{"id", "1-1", "payload", `{"id":1}`}}).Val())
	q := newDLQ(t, rdb, keys, "products", "indexer")
	const n = 20
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, gone int
	)
	for range n {
		wg.Go(func() {
			_, err := q.Replay(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, redstream.ErrNoDeadLetter):
				gone++
			default:
				t.Errorf("Replay: %v", err)
			}
		})
	}
	wg.Wait()
	if ok != 1 || gone != n-1 {
		t.Errorf("%d replays succeeded and %d found nothing; want 1 and %d", ok, gone, n-1)
	}
	if got := len(streamEntries(t, rdb, keys.Stream("products"))); got != 1 {
		t.Errorf("stream has %d entries, want 1", got)
	}
}

func TestNewDeadLetterQueueErrors(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	for _, c := range []struct {
		rdb              redis.Cmdable
		stream, consumer string
	}{
		{nil, "products", "indexer"},
		{rdb, "", "indexer"},
		{rdb, "products", ""},
	} {
		if _, err := redstream.NewDeadLetterQueue(c.rdb, keys, c.stream, c.consumer); err == nil {
			t.Errorf("NewDeadLetterQueue(%v, %q, %q): no error", c.rdb, c.stream, c.consumer)
		}
	}
}

// TestDeadLetterQueueCluster replays and drops on Redis Cluster with a
// braced stream name, with no CROSSSLOT error, and refuses a stream whose
// keys would not share a slot.
func TestDeadLetterQueueCluster(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.RedisCluster(t)
	rec := testenv.RecordCrossSlot(t, rdb)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	if _, err := redstream.NewDeadLetterQueue(rdb, keys, "products", "indexer"); err == nil {
		t.Error("NewDeadLetterQueue of an unbraced stream on a cluster: no error")
	}
	q := newDLQ(t, rdb, keys, "{dlq}", "indexer")
	var ids []redstream.ID
	for i := range 2 {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: q.Key(), Values: []any{"payload", fmt.Sprintf(`{"id":%d}`, i)}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, redstream.MustParseID(id))
	}
	if _, err := q.Replay(ctx, ids[0]); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if err := q.Drop(ctx, ids[1]); err != nil {
		t.Fatalf("Drop: %v", err)
	}
	if got := streamEntries(t, rdb, keys.Stream("{dlq}")); !reflect.DeepEqual(got, []map[string]any{{"payload": `{"id":0}`}}) {
		t.Errorf("stream = %v", got)
	}
	st, err := redstream.ReadStatus(ctx, rdb, keys, "{dlq}", "indexer")
	if err != nil {
		t.Fatalf("ReadStatus: %v", err)
	}
	if st.Length != 1 || len(st.Consumers) != 1 || st.Consumers[0].DeadLetters != 0 || st.Consumers[0].HasOffset {
		t.Errorf("ReadStatus = %+v", st)
	}
	rec.Check(t)
}

// A handler gives up on a message; the dead letter is listed and
// replayed, and the stream has the message again.
func ExampleDeadLetterQueue() {
	rdb, ns, cleanup := exampleRedis()
	defer cleanup()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	keys := redstream.NewKeys(ns)
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Stream("products"), Values: []any{"payload", `{"id":7}`}})

	// A handler that rejects every message.
	h := redstream.HandlerFunc(func(ctx context.Context, b *redstream.Batch) error {
		for _, m := range b.Messages {
			b.DeadLetter(m, errors.New("price is negative"))
		}
		cancel() // stop after this batch, which is still committed
		return nil
	})
	c, err := redstream.NewConsumer(rdb, "products", "indexer", h, &redstream.ConsumerOptions{
		Namespace: ns,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Run(ctx); err != nil {
		fmt.Println(err)
	}

	ctx = context.Background()
	q, err := redstream.NewDeadLetterQueue(rdb, keys, "products", "indexer")
	if err != nil {
		fmt.Println(err)
		return
	}
	letters, err := q.Read(ctx, redstream.ID{}, 100)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, d := range letters {
		fmt.Printf("%s by %s after %d attempt: %s\n", d.Payload, d.Consumer, d.Attempts, d.Error)
		if _, err := q.Replay(ctx, d.DLQID); err != nil {
			fmt.Println(err)
		}
	}
	n, _ := q.Len(ctx)
	fmt.Println("dead letters:", n)
	fmt.Println("stream length:", rdb.XLen(ctx, keys.Stream("products")).Val())
	// Output:
	// {"id":7} by indexer after 1 attempt: price is negative
	// dead letters: 0
	// stream length: 2
}
