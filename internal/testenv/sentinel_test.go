package testenv

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRedisSentinelEnv(t *testing.T) {
	t.Setenv("REDIS_SENTINEL_ADDRS", "")
	t.Setenv("REDIS_SENTINEL_MASTER", "")
	if got, want := strings.Join(RedisSentinelAddrs(), ","), DefaultRedisSentinelAddrs; got != want {
		t.Errorf("RedisSentinelAddrs() = %q, want %q", got, want)
	}
	if got, want := RedisSentinelMaster(), DefaultRedisSentinelMaster; got != want {
		t.Errorf("RedisSentinelMaster() = %q, want %q", got, want)
	}
	t.Setenv("REDIS_SENTINEL_ADDRS", " a:1, b:2 ,,")
	t.Setenv("REDIS_SENTINEL_MASTER", "m")
	if got, want := strings.Join(RedisSentinelAddrs(), ","), "a:1,b:2"; got != want {
		t.Errorf("RedisSentinelAddrs() = %q, want %q", got, want)
	}
	if got := RedisSentinelMaster(); got != "m" {
		t.Errorf("RedisSentinelMaster() = %q, want $REDIS_SENTINEL_MASTER", got)
	}
}

// TestRedisSentinel: the client writes to the master the sentinel names,
// the replica follows, and the namespace is gone from both after the
// test.
func TestRedisSentinel(t *testing.T) {
	ctx := context.Background()
	var ns, master string
	var replicas []string
	t.Run("sub", func(t *testing.T) {
		rdb, subNS, s := RedisSentinel(t)
		ns = subNS
		if !redisNamespace.MatchString(ns) {
			t.Errorf("namespace %q does not match %v", ns, redisNamespace)
		}
		var err error
		if master, err = s.MasterAddr(ctx); err != nil {
			t.Fatal(err)
		}
		if replicas, err = s.ReplicaAddrs(ctx); err != nil || len(replicas) == 0 {
			t.Fatalf("ReplicaAddrs() = %v, %v; want at least one", replicas, err)
		}
		if err := rdb.Set(ctx, ns+":k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if n := s.Node(t, master).Exists(ctx, ns+":k").Val(); n != 1 {
			t.Errorf("the key is not on the master %s", master)
		}
		// WAIT: the replica has it too.
		if n, err := rdb.Do(ctx, "wait", len(replicas), 5000).Int(); err != nil || n != len(replicas) {
			t.Fatalf("WAIT = %d, %v; want %d replicas", n, err, len(replicas))
		}
		for _, r := range replicas {
			if n := s.Node(t, r).Exists(ctx, ns+":k").Val(); n != 1 {
				t.Errorf("the key is not on the replica %s", r)
			}
		}
	})
	for _, addr := range append([]string{master}, replicas...) {
		c := redis.NewClient(&redis.Options{Addr: addr})
		keys, err := c.Keys(ctx, ns+":*").Result()
		_ = c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 0 {
			t.Errorf("%s still holds %v after the test ended", addr, keys)
		}
	}
}

func TestRedisSentinelUnreachableHint(t *testing.T) {
	// Port 1 on loopback refuses connections at once.
	t.Setenv("REDIS_SENTINEL_ADDRS", "127.0.0.1:1")
	msg := fatalMessage(t, func(tb testing.TB) { RedisSentinel(tb) })
	if !strings.Contains(msg, "make services") || !strings.Contains(msg, "127.0.0.1:1") {
		t.Errorf("Fatalf(%q), want the address and a hint to run `make services`", msg)
	}
}

func TestLockFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := lockFile(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// A second holder, even in this process, waits, then gives up.
	if _, err := lockFile(path, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "still held") {
		t.Fatalf("second lockFile = %v, want it still held", err)
	}
	unlock()
	unlock2, err := lockFile(path, time.Second)
	if err != nil {
		t.Fatalf("lockFile after unlock: %v", err)
	}
	unlock2()
}

func TestSentinelLockPath(t *testing.T) {
	got := filepath.Base(sentinelLockPath("127.0.0.1:30126", "a/b c"))
	if want := "redstream-sentinel-127.0.0.1_30126-a_b_c.lock"; got != want {
		t.Errorf("sentinelLockPath = %q, want %q", got, want)
	}
}
