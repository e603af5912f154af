package redstream

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream/internal/testenv"
)

// TestLeaseDeadlineStopsHandler pins the lease's local deadline
// (Lease.Held): a holder whose refreshes cannot reach Redis treats its
// lease as lost once the TTL has passed since its last successful refresh,
// by its own monotonic clock, and calls its handler no more, even before
// its refresh goroutine has noticed.
//
// The holder reaches Redis through a proxy that is stalled, as a network
// partition or a paused process would stall it. Its clock is moved past
// the deadline in one step, the way the monotonic clock jumps for a
// process resumed after SIGSTOP or a VM pause: its timers have not fired
// yet, so only the deadline check can tell. Meanwhile the lock key
// expires (it is deleted here, as its TTL would) and another holder takes
// the lease. When the proxy resumes, the deposed consumer reads the next
// message; it must not hand it to its handler.
func TestLeaseDeadlineStopsHandler(t *testing.T) {
	t.Parallel()
	direct, ns := testenv.Redis(t)
	proxy := testenv.NewProxy(t, direct.Options().Addr)
	viaProxy, _ := testenv.RedisOptions(t, func(o *redis.Options) { o.Addr = proxy.Addr() })
	ctx := context.Background()
	keys := NewKeys(ns)
	// A long TTL: the refresh goroutine (every TTL/3) stays out of the
	// test's few hundred milliseconds, as after a resume before it runs.
	const ttl = 30 * time.Second

	var mu sync.Mutex
	var handled []ID
	h := HandlerFunc(func(ctx context.Context, b *Batch) error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range b.Messages {
			handled = append(handled, m.ID)
		}
		return nil
	})
	c, err := NewConsumer(viaProxy, "products", "indexer", h, &ConsumerOptions{
		Namespace: ns, LockTTL: ttl, Block: 100 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var jump atomic.Int64 // how far the holder's clock has jumped
	c.lr.since = func(t time.Time) time.Duration { return time.Since(t) + time.Duration(jump.Load()) }

	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := c.Run(rctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	defer wg.Wait()
	defer cancel()
	defer proxy.Resume() // before the cleanups, which go through the proxy

	add := func(id string) ID {
		t.Helper()
		if err := direct.XAdd(ctx, &redis.XAddArgs{Stream: keys.Stream("products"), ID: id,
			Values: []any{"payload", `{"id":1}`}}).Err(); err != nil {
			t.Fatal(err)
		}
		return MustParseID(id)
	}
	first := add("1000-0")
	waitFor(t, "the first batch committed", func() bool { return c.Stats().Committed == first })

	// The pause: refreshes cannot reach Redis, the holder's clock passes
	// its deadline, the lock key expires and another holder takes it.
	proxy.Stall()
	jump.Store(int64(ttl))
	lockname := ConsumerLockName("products", "indexer")
	if err := direct.Del(ctx, keys.Lock(lockname)).Err(); err != nil {
		t.Fatal(err)
	}
	other, err := TryLease(ctx, direct, lockname, &LeaseOptions{Namespace: ns, TTL: ttl, Holder: "other"})
	if err != nil {
		t.Fatalf("another holder could not take the expired lock: %v", err)
	}
	defer func() { _ = other.Release(ctx) }()
	second := add("2000-0")
	proxy.Resume()

	waitFor(t, "the deposed consumer to step down", func() bool { return !c.Stats().Active })
	mu.Lock()
	got := append([]ID(nil), handled...)
	mu.Unlock()
	if len(got) != 1 || got[0] != first {
		t.Fatalf("handler saw %v; want only %v, none after the local deadline (%v came after it)", got, first, second)
	}
	if s, err := direct.Get(ctx, keys.Offset("products", "indexer")).Result(); err != nil || s != first.String() {
		t.Fatalf("offset = %q, %v; want %v", s, err, first)
	}
	if st := c.Stats(); st.Batches != 1 {
		t.Fatalf("stats = %+v, want one committed batch", st)
	}
}

// waitFor polls cond until it holds, for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
