package redstream_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// addMessages appends n messages {"id":<i>} (i from first) to the stream
// key and returns their ids.
func addMessages(t testing.TB, rdb redis.Cmdable, key string, first, n int) []redstream.ID {
	t.Helper()
	ctx := context.Background()
	var out []redstream.ID
	for start := 0; start < n; start += 1000 {
		cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := start; i < min(n, start+1000); i++ {
				p.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"payload", fmt.Sprintf(`{"id":%d}`, first+i)}})
			}
			return nil
		})
		if err != nil {
			t.Fatalf("xadd: %v", err)
		}
		for _, c := range cmds {
			out = append(out, redstream.MustParseID(c.(*redis.StringCmd).Val()))
		}
	}
	return out
}

// getOffset returns the offset stored at key, or "" when none.
func getOffset(t testing.TB, rdb redis.Cmdable, key string) string {
	t.Helper()
	s, err := rdb.Get(context.Background(), key).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return s
}

// refreshSrc is bsm/redislock's refresh script, which stallHook recognises.
const refreshSrc = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("pexpire", KEYS[1], ARGV[2]) else return 0 end`

// stallHook blocks lock refreshes while stalled, until their context ends,
// the way a paused process or a partitioned network would.
type stallHook struct {
	mu      sync.Mutex
	stalled bool
	hits    int
	sha     string
}

func newStallHook() *stallHook {
	sum := sha1.Sum([]byte(refreshSrc))
	return &stallHook{sha: hex.EncodeToString(sum[:])}
}

func (h *stallHook) stall(v bool) {
	h.mu.Lock()
	h.stalled = v
	h.mu.Unlock()
}

func (h *stallHook) stalledHits() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits
}

func (h *stallHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *stallHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if len(args) > 1 && (args[1] == h.sha || args[1] == refreshSrc) {
			h.mu.Lock()
			stalled := h.stalled
			if stalled {
				h.hits++
			}
			h.mu.Unlock()
			if stalled {
				<-ctx.Done()
				cmd.SetErr(ctx.Err())
				return ctx.Err()
			}
		}
		return next(ctx, cmd)
	}
}

func (h *stallHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestLeaseMutualExclusion(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	ctx := context.Background()
	opts := &redstream.LeaseOptions{Namespace: ns}
	name := redstream.ConsumerLockName("products", "indexer")

	a, err := redstream.TryLease(ctx, rdb, name, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := a.Key(), ns+":redstream:lock:consumer:products:indexer"; got != want {
		t.Fatalf("Key() = %q, want %q", got, want)
	}
	if ttl := rdb.PTTL(ctx, a.Key()).Val(); ttl <= 0 || ttl > redstream.DefaultLockTTL {
		t.Fatalf("lock PTTL = %v, want (0, %v]", ttl, redstream.DefaultLockTTL)
	}
	if _, err := redstream.TryLease(ctx, rdb, name, opts); !errors.Is(err, redstream.ErrLeaseHeld) {
		t.Fatalf("second TryLease: %v, want ErrLeaseHeld", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if a.Context().Err() == nil {
		t.Fatal("context of a released lease is not done")
	}
	if n := rdb.Exists(ctx, a.Key()).Val(); n != 0 {
		t.Fatal("lock key left after Release")
	}
	notify := redstream.NewKeys(ns).Notify(name)
	if got := rdb.LRange(ctx, notify, 0, -1).Val(); len(got) != 1 || got[0] != "1" {
		t.Fatalf("notify list = %q, want [1]", got)
	}
	if ttl := rdb.PTTL(ctx, notify).Val(); ttl <= 0 {
		t.Fatalf("notify list PTTL = %v, want a TTL", ttl)
	}
	b, err := redstream.TryLease(ctx, rdb, name, opts)
	if err != nil {
		t.Fatalf("TryLease after release: %v", err)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLeaseRefreshKeepsLock(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	ctx := context.Background()
	ttl := 300 * time.Millisecond
	l, err := redstream.TryLease(ctx, rdb, "trimmer:s", &redstream.LeaseOptions{Namespace: ns, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Release(ctx) }()
	select {
	case <-l.Context().Done():
		t.Fatalf("lease lost while refreshed: %v", context.Cause(l.Context()))
	case <-time.After(4 * ttl):
	}
	if _, err := redstream.TryLease(ctx, rdb, "trimmer:s", &redstream.LeaseOptions{Namespace: ns, TTL: ttl}); !errors.Is(err, redstream.ErrLeaseHeld) {
		t.Fatalf("TryLease of a refreshed lease: %v, want ErrLeaseHeld", err)
	}
}

func TestLeaseLostToForeignValue(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	ctx := context.Background()
	ttl := 300 * time.Millisecond
	l, err := redstream.TryLease(ctx, rdb, "consumer:s:c", &redstream.LeaseOptions{Namespace: ns, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Release(ctx) }()
	if err := l.CommitOffset(ctx, "s", "c", redstream.MustParseID("5-1")); err != nil {
		t.Fatalf("CommitOffset while held: %v", err)
	}
	rdb.Set(ctx, l.Key(), "someone-else", time.Minute)
	select {
	case <-l.Context().Done():
	case <-time.After(2 * ttl):
		t.Fatal("lease context not cancelled after the lock changed hands")
	}
	if cause := context.Cause(l.Context()); !errors.Is(cause, redstream.ErrLockLost) {
		t.Fatalf("cause = %v, want ErrLockLost", cause)
	}
	if err := l.CommitOffset(ctx, "s", "c", redstream.MustParseID("6-0")); !errors.Is(err, redstream.ErrLockLost) {
		t.Fatalf("CommitOffset after loss: %v, want ErrLockLost", err)
	}
	if got := getOffset(t, rdb, redstream.NewKeys(ns).Offset("s", "c")); got != "5-1" {
		t.Fatalf("offset = %q, want 5-1", got)
	}
	if err := l.Release(ctx); !errors.Is(err, redstream.ErrLockLost) {
		t.Fatalf("Release of a lost lease: %v, want ErrLockLost", err)
	}
	if got := rdb.Get(ctx, l.Key()).Val(); got != "someone-else" {
		t.Fatalf("Release touched another holder's lock: %q", got)
	}
}

func TestLeaseCommitNeverBackwards(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	ctx := context.Background()
	l, err := redstream.TryLease(ctx, rdb, "consumer:s:c", &redstream.LeaseOptions{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Release(ctx) }()
	key := redstream.NewKeys(ns).Offset("s", "c")
	for _, step := range []struct{ commit, want string }{
		{"999-0", "999-0"},
		{"1000-0", "1000-0"},
		{"999-5", "1000-0"},
		{"1000-9", "1000-9"},
		{"1000-10", "1000-10"},
		{"1000-9", "1000-10"},
		{"1000-10", "1000-10"},
		{"18446744073709551615-18446744073709551615", "18446744073709551615-18446744073709551615"},
		{"18446744073709551615-18446744073709551614", "18446744073709551615-18446744073709551615"},
	} {
		if err := l.CommitOffset(ctx, "s", "c", redstream.MustParseID(step.commit)); err != nil {
			t.Fatalf("CommitOffset(%s): %v", step.commit, err)
		}
		if got := getOffset(t, rdb, key); got != step.want {
			t.Fatalf("after CommitOffset(%s) offset = %q, want %q", step.commit, got, step.want)
		}
	}
}

// TestLeaseWaiterWakesOnRelease measures how long a waiter blocked on the
// notify list takes to obtain a released lease (about 1 ms on a 2-core
// machine); the bound is generous so that a loaded machine does not fail it.
func TestLeaseWaiterWakesOnRelease(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	ctx := context.Background()
	opts := &redstream.LeaseOptions{Namespace: ns}
	a, err := redstream.TryLease(ctx, rdb, "trimmer:s", opts)
	if err != nil {
		t.Fatal(err)
	}
	clientName := ns + "-waiter"
	waiter, _ := testenv.RedisOptions(t, func(o *redis.Options) { o.ClientName = clientName })

	type result struct {
		l   *redstream.Lease
		at  time.Time
		err error
	}
	got := make(chan result, 1)
	go func() {
		l, err := redstream.AcquireLease(ctx, waiter, "trimmer:s", opts)
		got <- result{l, time.Now(), err}
	}()
	eventually(t, 5*time.Second, "the waiter blocked in BLPOP", func() bool {
		for _, line := range strings.Split(rdb.ClientList(ctx).Val(), "\n") {
			if strings.Contains(line, " name="+clientName+" ") && strings.Contains(line, " cmd=blpop") {
				return true
			}
		}
		return false
	})
	released := time.Now()
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer func() { _ = r.l.Release(ctx) }()
		wake := r.at.Sub(released)
		t.Logf("waiter obtained the lease %v after the release", wake)
		if wake > time.Second {
			t.Fatalf("waiter woke %v after the release, want well under 1s", wake)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter did not obtain the released lease")
	}
}

// TestLeaseStalledRefresh stalls a holder's refreshes past the TTL: another
// holder takes over within TTL + 1 s, the stalled one's context is
// cancelled with ErrLockLost, and its fenced commit writes nothing.
func TestLeaseStalledRefresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stalledClient, ns := testenv.Redis(t)
	hook := newStallHook()
	stalledClient.AddHook(hook)
	rdb, _ := testenv.Redis(t)
	ttl := 500 * time.Millisecond
	opts := &redstream.LeaseOptions{Namespace: ns, TTL: ttl}

	a, err := redstream.TryLease(ctx, stalledClient, "consumer:s:c", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Release(ctx) }()
	if err := a.CommitOffset(ctx, "s", "c", redstream.MustParseID("10-0")); err != nil {
		t.Fatal(err)
	}
	if !a.Held() {
		t.Fatal("a fresh lease is not Held")
	}
	hook.stall(true)
	stalledAt := time.Now()

	bctx, cancel := context.WithTimeout(ctx, ttl+time.Second)
	defer cancel()
	b, err := redstream.AcquireLease(bctx, rdb, "consumer:s:c", opts)
	if err != nil {
		t.Fatalf("second holder did not take over within TTL + 1s: %v", err)
	}
	defer func() { _ = b.Release(ctx) }()
	t.Logf("took over %v after the refreshes stalled", time.Since(stalledAt))
	if hook.stalledHits() == 0 {
		t.Fatal("no refresh was stalled")
	}
	select {
	case <-a.Context().Done():
	case <-time.After(time.Second):
		t.Fatal("stalled holder's context not cancelled")
	}
	if cause := context.Cause(a.Context()); !errors.Is(cause, redstream.ErrLockLost) {
		t.Fatalf("cause = %v, want ErrLockLost", cause)
	}
	if a.Held() || !b.Held() {
		t.Fatalf("Held: deposed %v, new holder %v; want false, true", a.Held(), b.Held())
	}
	if err := b.CommitOffset(ctx, "s", "c", redstream.MustParseID("20-0")); err != nil {
		t.Fatal(err)
	}
	if err := a.CommitOffset(ctx, "s", "c", redstream.MustParseID("30-0")); !errors.Is(err, redstream.ErrLockLost) {
		t.Fatalf("deposed holder's commit: %v, want ErrLockLost", err)
	}
	if got := getOffset(t, rdb, redstream.NewKeys(ns).Offset("s", "c")); got != "20-0" {
		t.Fatalf("offset = %q, want 20-0", got)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if b.Held() {
		t.Fatal("a released lease is Held")
	}
}

func TestLeaseAcquireCancelled(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	ctx := context.Background()
	opts := &redstream.LeaseOptions{Namespace: ns}
	a, err := redstream.TryLease(ctx, rdb, "trimmer:s", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Release(ctx) }()
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := redstream.AcquireLease(cctx, rdb, "trimmer:s", opts); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AcquireLease: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("AcquireLease returned %v after its context ended", d)
	}
	if _, err := redstream.TryLease(ctx, rdb, "x", &redstream.LeaseOptions{TTL: -1}); err == nil {
		t.Fatal("negative TTL accepted")
	}
}

// TestLeaseForeignValueEndsAtOnce pins the refresh's answer: a refresh
// that finds another holder's value in the lock key ends the lease at that
// refresh, within one refresh interval (TTL/3), not at the local deadline
// as a transient refresh error would.
func TestLeaseForeignValueEndsAtOnce(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	ctx := context.Background()
	// Refreshes every 2 s. Taken over right after one, the lease's local
	// deadline is at least 4 s away; the next refresh is at most 2 s away.
	const ttl = 6 * time.Second
	l, err := redstream.TryLease(ctx, rdb, "consumer:s:c", &redstream.LeaseOptions{Namespace: ns, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Release(ctx) }()
	if err := rdb.Set(ctx, l.Key(), "another-holder", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	taken := time.Now()
	select {
	case <-l.Context().Done():
	case <-time.After(ttl):
		t.Fatal("lease context not cancelled after the lock changed hands")
	}
	took := time.Since(taken)
	t.Logf("stepped down %v after the takeover", took)
	if limit := ttl/3 + time.Second; took > limit {
		t.Fatalf("stepped down %v after the takeover, want within one refresh interval (%v, %v allowed)", took, ttl/3, limit)
	}
	if cause := context.Cause(l.Context()); !errors.Is(cause, redstream.ErrLockLost) {
		t.Fatalf("cause = %v, want ErrLockLost", cause)
	}
	if l.Held() {
		t.Fatal("a lease taken over is Held")
	}
}
