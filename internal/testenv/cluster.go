package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

const (
	// DefaultRedisClusterAddrs are the seed nodes of the test Redis Cluster
	// used when REDIS_CLUSTER_ADDRS is not set: the three masters that
	// scripts/redis-cluster.sh starts.
	DefaultRedisClusterAddrs = "127.0.0.1:30001,127.0.0.1:30002,127.0.0.1:30003"

	clusterHint = "is it running? Start it with `make services` (scripts/redis-cluster.sh)"
)

// RedisClusterAddrs returns the comma-separated addresses of
// $REDIS_CLUSTER_ADDRS, or those of DefaultRedisClusterAddrs.
func RedisClusterAddrs() []string {
	v := os.Getenv("REDIS_CLUSTER_ADDRS")
	if v == "" {
		v = DefaultRedisClusterAddrs
	}
	var addrs []string
	for a := range strings.SplitSeq(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// RedisCluster returns a client for the test Redis Cluster and a fresh,
// unique key namespace, as [Redis] does for the single server.
//
// The test fails, with a hint on how to start the cluster, unless every
// master answers PING and reports cluster_state:ok. On cleanup every key
// matching "<ns>:*" is deleted on every master and the client is closed.
func RedisCluster(t testing.TB) (*redis.ClusterClient, string) {
	t.Helper()
	addrs := RedisClusterAddrs()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	masters := 0
	var mu sync.Mutex
	err := rdb.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		if err := node.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("master %s: %w", node.Options().Addr, err)
		}
		info, err := node.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("master %s: cluster info: %w", node.Options().Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("master %s: cluster_state is not ok", node.Options().Addr)
		}
		mu.Lock()
		masters++
		mu.Unlock()
		return nil
	})
	if err == nil && masters == 0 {
		err = errors.New("no master found")
	}
	if err != nil {
		_ = rdb.Close()
		t.Fatalf("testenv: cannot reach the Redis Cluster at %s: %v\n%s", strings.Join(addrs, ","), err, clusterHint)
	}
	t.Cleanup(func() {
		if err := rdb.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			t.Errorf("testenv: close Redis Cluster client: %v", err)
		}
	})
	return rdb, Namespace(t, rdb)
}

// CrossSlotRecorder records the Redis errors whose text contains
// "CROSSSLOT": multi-key commands, scripts and transactions whose keys lie
// in different hash slots, whether Redis or go-redis refused them. It is
// safe for concurrent use.
type CrossSlotRecorder struct {
	mu   sync.Mutex
	errs []string
}

// RecordCrossSlot installs a hook on rdb, and on every node client rdb has
// or will create, that records every CROSSSLOT error of a command or a
// pipeline (transactions included). Commands routed through rdb are seen by
// both, so one error may be recorded twice. Assert with Errors or Check.
func RecordCrossSlot(t testing.TB, rdb *redis.ClusterClient) *CrossSlotRecorder {
	t.Helper()
	r := &CrossSlotRecorder{}
	rdb.AddHook(r)
	rdb.OnNewNode(func(node *redis.Client) { node.AddHook(r) })
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := rdb.ForEachShard(ctx, func(_ context.Context, node *redis.Client) error {
		node.AddHook(r)
		return nil
	}); err != nil {
		t.Fatalf("testenv: hook the Redis Cluster nodes: %v\n%s", err, clusterHint)
	}
	return r
}

// Check fails the test if any CROSSSLOT error was recorded, listing the
// first few.
func (r *CrossSlotRecorder) Check(t testing.TB) {
	t.Helper()
	errs := r.Errors()
	if len(errs) == 0 {
		return
	}
	more := ""
	if len(errs) > 10 {
		more = fmt.Sprintf("\n  … and %d more", len(errs)-10)
		errs = errs[:10]
	}
	t.Errorf("%d CROSSSLOT errors:\n  %s%s", len(r.Errors()), strings.Join(errs, "\n  "), more)
}

// Errors returns the recorded errors, each with the command that caused it.
func (r *CrossSlotRecorder) Errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

func (r *CrossSlotRecorder) check(cmd redis.Cmder, err error) {
	if err == nil {
		err = cmd.Err()
	}
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		return
	}
	r.mu.Lock()
	r.errs = append(r.errs, describe(cmd)+": "+err.Error())
	r.mu.Unlock()
}

// describe renders a command's arguments, shortened: a script's source
// would fill the screen.
func describe(cmd redis.Cmder) string {
	var b strings.Builder
	for i, a := range cmd.Args() {
		if i > 0 {
			b.WriteByte(' ')
		}
		s := fmt.Sprint(a)
		if len(s) > 60 {
			s = s[:57] + "..."
		}
		b.WriteString(s)
		if b.Len() > 240 {
			b.WriteString(" ...")
			break
		}
	}
	return b.String()
}

// DialHook implements redis.Hook; it changes nothing.
func (r *CrossSlotRecorder) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook.
func (r *CrossSlotRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		r.check(cmd, err)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook, for pipelines and
// transactions.
func (r *CrossSlotRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			r.check(cmd, nil)
		}
		if err != nil && strings.Contains(err.Error(), "CROSSSLOT") && !anyCrossSlot(cmds) {
			r.mu.Lock()
			r.errs = append(r.errs, fmt.Sprintf("pipeline of %d commands: %v", len(cmds), err))
			r.mu.Unlock()
		}
		return err
	}
}

func anyCrossSlot(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if c.Err() != nil && strings.Contains(c.Err().Error(), "CROSSSLOT") {
			return true
		}
	}
	return false
}

var _ redis.Hook = (*CrossSlotRecorder)(nil)
