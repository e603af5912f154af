package testenv

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestRedisClusterAddrs(t *testing.T) {
	t.Setenv("REDIS_CLUSTER_ADDRS", "")
	if got, want := strings.Join(RedisClusterAddrs(), ","), DefaultRedisClusterAddrs; got != want {
		t.Errorf("RedisClusterAddrs() = %q, want %q", got, want)
	}
	t.Setenv("REDIS_CLUSTER_ADDRS", " a:1, b:2 ,,")
	if got, want := strings.Join(RedisClusterAddrs(), ","), "a:1,b:2"; got != want {
		t.Errorf("RedisClusterAddrs() = %q, want %q", got, want)
	}
}

func TestRedisClusterCleanup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, keep := RedisCluster(t)
	if !redisNamespace.MatchString(keep) {
		t.Errorf("namespace %q does not match %v", keep, redisNamespace)
	}
	if err := rdb.Set(ctx, keep+":survivor", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}

	var ns string
	t.Run("sub", func(t *testing.T) {
		sub, subNS := RedisCluster(t)
		ns = subNS
		// Keys in many slots, so on every master, and more per master
		// than one SCAN page holds.
		_, err := sub.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range 4000 {
				p.Set(ctx, fmt.Sprintf("%s:k:%d", ns, i), i, 0)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		perMaster := clusterKeys(t, sub, ns)
		if len(perMaster) < 2 {
			t.Fatalf("keys on %d masters, want them spread over several: %v", len(perMaster), perMaster)
		}
		if n := sum(perMaster); n != 4000 {
			t.Fatalf("%d keys in %s, want 4000", n, ns)
		}
	})

	if n := sum(clusterKeys(t, rdb, ns)); n != 0 {
		t.Errorf("%d keys left in %s after the subtest ended", n, ns)
	}
	if n := sum(clusterKeys(t, rdb, keep)); n != 1 {
		t.Errorf("%d keys in the parent namespace %s, want 1", n, keep)
	}
}

func TestRedisClusterUnreachableHint(t *testing.T) {
	// Port 1 on loopback refuses connections at once.
	t.Setenv("REDIS_CLUSTER_ADDRS", "127.0.0.1:1")
	msg := fatalMessage(t, func(tb testing.TB) { RedisCluster(tb) })
	if !strings.Contains(msg, "make services") || !strings.Contains(msg, "127.0.0.1:1") {
		t.Errorf("Fatalf(%q), want the address and a hint to run `make services`", msg)
	}
}

func TestRecordCrossSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, ns := RedisCluster(t)
	rec := RecordCrossSlot(t, rdb)

	// Same slot: nothing to record.
	a, b := ns+":{x}:a", ns+":{x}:b"
	if err := rdb.MSet(ctx, a, 1, b, 2).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.MGet(ctx, a, b).Err(); err != nil {
		t.Fatal(err)
	}
	if errs := rec.Errors(); len(errs) > 0 {
		t.Fatalf("recorded %v for same-slot commands", errs)
	}

	// "{x}" and "{y}" hash to different slots (16287 and 12222).
	c := ns + ":{y}:c"
	steps := map[string]func() error{
		"command": func() error { return rdb.MGet(ctx, a, c).Err() },
		"script": func() error {
			return rdb.Eval(ctx, "return redis.call('exists', KEYS[1], KEYS[2])", []string{a, c}).Err()
		},
		"pipeline": func() error {
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.Get(ctx, a)
				p.MGet(ctx, a, c)
				return nil
			})
			return err
		},
		"transaction": func() error {
			_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Get(ctx, a)
				p.Get(ctx, c)
				return nil
			})
			return err
		},
		"node": func() error {
			node, err := rdb.MasterForKey(ctx, a)
			if err != nil {
				return fmt.Errorf("no CROSSSLOT: %w", err)
			}
			return node.MGet(ctx, a, c).Err()
		},
	}
	for name, step := range steps {
		before := len(rec.Errors())
		err := step()
		if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
			t.Errorf("%s: err = %v, want CROSSSLOT", name, err)
		}
		if after := len(rec.Errors()); after == before {
			t.Errorf("%s: no CROSSSLOT error recorded", name)
		}
	}

	// Check reports what was recorded.
	var f fakeTB
	rec.Check(&f)
	if !strings.Contains(f.errors(), "CROSSSLOT") {
		t.Errorf("Check reported %q, want the recorded errors", f.errors())
	}
}

// fakeTB records Errorf calls.
type fakeTB struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) errors() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.msgs, "\n")
}

// clusterKeys counts the keys matching "<ns>:*" on each master that has
// any.
func clusterKeys(t *testing.T, rdb *redis.ClusterClient, ns string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	out := map[string]int{}
	err := rdb.ForEachMaster(context.Background(), func(ctx context.Context, node *redis.Client) error {
		n := 0
		iter := node.Scan(ctx, 0, ns+":*", 1000).Iterator()
		for iter.Next(ctx) {
			n++
		}
		if n > 0 {
			mu.Lock()
			out[node.Options().Addr] = n
			mu.Unlock()
		}
		return iter.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
