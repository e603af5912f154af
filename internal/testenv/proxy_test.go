package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream/internal/testenv"
)

// TestProxyStall: a stalled proxy holds requests without dropping the
// connection; after Resume the held request's reply arrives.
func TestProxyStall(t *testing.T) {
	t.Parallel()
	direct, _ := testenv.Redis(t)
	p := testenv.NewProxy(t, direct.Options().Addr)
	rdb, ns := testenv.RedisOptions(t, func(o *redis.Options) { o.Addr = p.Addr(); o.MaxRetries = -1; o.ContextTimeoutEnabled = true })
	ctx := context.Background()
	key := ns + "k"
	if err := rdb.Set(ctx, key, "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}

	p.Stall()
	defer p.Resume() // before the cleanups, which go through the proxy
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	err := rdb.Get(sctx, key).Err()
	cancel()
	if err == nil {
		t.Fatal("GET through a stalled proxy succeeded")
	}
	// A write sent while stalled reaches Redis only after Resume.
	done := make(chan error, 1)
	go func() { done <- rdb.Set(ctx, key, "2", time.Minute).Err() }()
	time.Sleep(50 * time.Millisecond) // give the write time to reach the proxy
	if got := direct.Get(ctx, key).Val(); got != "1" {
		t.Fatalf("value = %q while stalled, want the write held back", got)
	}
	p.Resume()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("held write not delivered after Resume")
	}
	if got := direct.Get(ctx, key).Val(); got != "2" {
		t.Fatalf("value = %q after Resume, want 2", got)
	}
}

// TestProxyCutReplies: with replies cut, a write reaches the server but
// the client gets an error instead of the reply.
func TestProxyCutReplies(t *testing.T) {
	t.Parallel()
	direct, _ := testenv.Redis(t)
	p := testenv.NewProxy(t, direct.Options().Addr)
	rdb, ns := testenv.RedisOptions(t, func(o *redis.Options) { o.Addr = p.Addr(); o.MaxRetries = -1 })
	ctx := context.Background()
	key := ns + "k"
	p.CutReplies(true)
	if err := rdb.Set(ctx, key, "1", time.Minute).Err(); err == nil {
		t.Fatal("SET answered although its reply was cut")
	}
	p.CutReplies(false)
	if got := direct.Get(ctx, key).Val(); got != "1" {
		t.Fatalf("value = %q, want the write applied", got)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after CutReplies(false): %v", err)
	}
}
