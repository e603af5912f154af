package redstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

func newDelayer(t testing.TB, rdb redis.UniversalClient, stream string, delay time.Duration, opts *redstream.DelayerOptions) *redstream.Delayer {
	t.Helper()
	d, err := redstream.NewDelayer(rdb, stream, delay, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func fastDelayerOptions(ns string) *redstream.DelayerOptions {
	return &redstream.DelayerOptions{
		Namespace:  ns,
		Block:      100 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	}
}

// streamPayloads returns the payload fields of a stream, in order.
func streamPayloads(t testing.TB, rdb redis.Cmdable, key string) []string {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		if len(m.Values) != 1 {
			t.Fatalf("entry %s has fields %v, want only payload", m.ID, m.Values)
		}
		out = append(out, fmt.Sprint(m.Values["payload"]))
	}
	return out
}

// TestDelayerMovesExpired moves every message that is old enough by the
// injected clock, with the same payload, deleting it from the delay stream.
func TestDelayerMovesExpired(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ids := addMessages(t, rdb, keys.Delay("products"), 1, 25)

	opts := fastDelayerOptions(ns)
	opts.BatchSize = 10
	opts.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	d := newDelayer(t, rdb, "products", time.Hour, opts)
	w := start(t, d.Run)
	eventually(t, 5*time.Second, "25 moved messages", func() bool { return d.Stats().Committed == ids[24] })
	w.stop(t)

	got := streamPayloads(t, rdb, keys.Stream("products"))
	if len(got) != 25 || got[0] != `{"id":1}` || got[24] != `{"id":25}` {
		t.Fatalf("main stream = %v", got)
	}
	if n := rdb.XLen(context.Background(), keys.Delay("products")).Val(); n != 0 {
		t.Fatalf("delay stream has %d entries left, want 0", n)
	}
	if got := getOffset(t, rdb, keys.Offset("products.delay", "delayer")); got != ids[24].String() {
		t.Fatalf("offset = %q, want %v", got, ids[24])
	}
	if st := d.Stats(); st.Moved != 25 || st.Batches != 3 || st.Errors != 0 || st.Active {
		t.Fatalf("Stats() = %+v", st)
	}
	if n := rdb.Exists(context.Background(), keys.Lock(redstream.ConsumerLockName("products.delay", "delayer"))).Val(); n != 0 {
		t.Fatal("lock not released")
	}
}

// TestDelayerLeavesYoung moves old messages, leaves the young ones and
// commits before it sleeps until the first young one is due.
func TestDelayerLeavesYoung(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	delayKey := keys.Delay("products")
	for i, id := range []string{"1000-0", "1000-1", "2000-0"} {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: delayKey, ID: id, Values: []any{"payload", fmt.Sprintf(`{"id":%d}`, i+1)}})
	}
	young := addMessages(t, rdb, delayKey, 4, 2)

	d := newDelayer(t, rdb, "products", time.Hour, fastDelayerOptions(ns))
	start(t, d.Run)
	eventually(t, 5*time.Second, "the delayer to sleep", func() bool { return !d.Stats().NextDue.IsZero() })

	st := d.Stats()
	if st.Committed.String() != "2000-0" || st.Moved != 3 {
		t.Fatalf("Stats() = %+v, want committed 2000-0 and 3 moved before sleeping", st)
	}
	if got, want := st.NextDue, young[0].Time().Add(time.Hour); !got.Equal(want) {
		t.Fatalf("NextDue = %v, want %v", got, want)
	}
	if got := getOffset(t, rdb, keys.Offset("products.delay", "delayer")); got != "2000-0" {
		t.Fatalf("offset = %q, want 2000-0", got)
	}
	if got := fmt.Sprint(streamPayloads(t, rdb, keys.Stream("products"))); got != `[{"id":1} {"id":2} {"id":3}]` {
		t.Fatalf("main stream = %s", got)
	}
	if got := fmt.Sprint(streamPayloads(t, rdb, delayKey)); got != `[{"id":4} {"id":5}]` {
		t.Fatalf("delay stream = %s", got)
	}
}

// TestDelayerOnTime checks, by the real clock, that a message reaches the
// main stream when it is due, not later and never early. Measured: about
// 1-3 ms late on an idle 2-core machine; the bound is generous.
func TestDelayerOnTime(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	delay := 300 * time.Millisecond
	d := newDelayer(t, rdb, "products", delay, fastDelayerOptions(ns))
	start(t, d.Run)

	// A first message, already due when the delayer sees it, then one that
	// arrives while the delayer waits for new messages.
	for i := range 2 {
		id := addMessages(t, rdb, keys.Delay("products"), i, 1)[0]
		eventually(t, 5*time.Second, "the message to be moved", func() bool {
			return rdb.XLen(context.Background(), keys.Stream("products")).Val() == int64(i+1)
		})
		late := time.Since(id.Time().Add(delay))
		t.Logf("message %d delivered %v after it was due", i, late)
		if late < -2*time.Millisecond { // the id's time is truncated to the millisecond
			t.Fatalf("message %d delivered %v early", i, -late)
		}
		if late > 500*time.Millisecond {
			t.Fatalf("message %d delivered %v late", i, late)
		}
	}
}

func TestDelayerMutualExclusion(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	opts := fastDelayerOptions(ns)
	opts.BatchSize = 3
	a := newDelayer(t, rdb, "products", 0, opts)
	b := newDelayer(t, rdb, "products", 0, opts)
	start(t, a.Run)
	start(t, b.Run)
	ids := addMessages(t, rdb, keys.Delay("products"), 1, 40)
	eventually(t, 5*time.Second, "40 moved messages", func() bool {
		return a.Stats().Committed == ids[39] || b.Stats().Committed == ids[39]
	})
	if a.Stats().Active == b.Stats().Active {
		t.Fatal("want exactly one active delayer")
	}
	if got := a.Stats().Moved + b.Stats().Moved; got != 40 {
		t.Fatalf("moved %d, want 40", got)
	}
	if n := rdb.XLen(context.Background(), keys.Stream("products")).Val(); n != 40 {
		t.Fatalf("main stream has %d entries, want 40", n)
	}
}

func TestDelayerOptions(t *testing.T) {
	t.Parallel()
	rdb, _ := testenv.Redis(t)
	for i, tc := range []struct {
		rdb    redis.UniversalClient
		stream string
		delay  time.Duration
		opts   *redstream.DelayerOptions
	}{
		{nil, "s", 0, nil},
		{rdb, "", 0, nil},
		{rdb, "s", -time.Second, nil},
		{rdb, "s", 0, &redstream.DelayerOptions{BatchSize: -1}},
	} {
		if _, err := redstream.NewDelayer(tc.rdb, tc.stream, tc.delay, tc.opts); err == nil {
			t.Errorf("case %d: NewDelayer accepted invalid arguments", i)
		}
	}
}

// TestDelayerDeposedMovesNothing pins the lease check of the move script:
// a delayer whose lock another holder took, before its own refresh
// noticed, moves nothing when a due message arrives. Its lease's TTL is
// long, so that only the script can tell.
func TestDelayerDeposedMovesNothing(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	opts := fastDelayerOptions(ns)
	opts.LockTTL = 30 * time.Second // refreshes every 10 s
	d := newDelayer(t, rdb, "products", time.Minute, opts)
	start(t, d.Run)
	eventually(t, 5*time.Second, "the delayer to hold its lease", func() bool { return d.Stats().Active })

	lock := keys.Lock(redstream.ConsumerLockName(redstream.DelayStream("products"), redstream.DelayerName))
	if err := rdb.Set(ctx, lock, "another-holder", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	// Due at once: its id's time is in 1970.
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Delay("products"), ID: "1000-0",
		Values: []any{"payload", `{"id":1}`}}).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the deposed delayer to try the move", func() bool {
		st := d.Stats()
		return st.Errors > 0 || !st.Active || st.Moved > 0
	})
	if st := d.Stats(); st.Moved != 0 || st.Batches != 0 {
		t.Fatalf("deposed delayer moved: %+v", st)
	}
	if n := rdb.XLen(ctx, keys.Stream("products")).Val(); n != 0 {
		t.Fatalf("main stream has %d entries, want none", n)
	}
	if n := rdb.XLen(ctx, keys.Delay("products")).Val(); n != 1 {
		t.Fatalf("delay stream has %d entries, want the message left in place", n)
	}
	if got := getOffset(t, rdb, keys.Offset(redstream.DelayStream("products"), redstream.DelayerName)); got != "" {
		t.Fatalf("deposed delayer committed offset %q", got)
	}
}

// TestDelayerStepsDownOnLostLease: when the move script answers that the
// lock holds another holder's value, the delayer steps down at once, as a
// lost lease, without counting a Redis error or waiting for its next
// refresh to notice.
func TestDelayerStepsDownOnLostLease(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	opts := fastDelayerOptions(ns)
	opts.LockTTL = 30 * time.Second // refreshes every 10 s
	d := newDelayer(t, rdb, "products", time.Minute, opts)
	start(t, d.Run)
	eventually(t, 5*time.Second, "the delayer to hold its lease", func() bool { return d.Stats().Active })

	lock := keys.Lock(redstream.ConsumerLockName(redstream.DelayStream("products"), redstream.DelayerName))
	if err := rdb.Set(ctx, lock, "another-holder", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Delay("products"), ID: "1000-0",
		Values: []any{"payload", `{"id":1}`}}).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "the delayer to step down", func() bool { return !d.Stats().Active })
	if st := d.Stats(); st.Errors != 0 || st.Moved != 0 {
		t.Fatalf("stats = %+v; want no error counted and nothing moved", st)
	}
}
