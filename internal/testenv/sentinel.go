package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// DefaultRedisSentinelAddrs is the sentinel used when
	// REDIS_SENTINEL_ADDRS is not set: the one scripts/redis-sentinel.sh
	// starts.
	DefaultRedisSentinelAddrs = "127.0.0.1:30126"
	// DefaultRedisSentinelMaster is the master name used when
	// REDIS_SENTINEL_MASTER is not set.
	DefaultRedisSentinelMaster = "redstream"

	sentinelHint = "is it running? Start it with `make services` (scripts/redis-sentinel.sh)"

	// sentinelSettle bounds the wait for a healthy deployment: a failover
	// of the test deployment, and its old master's return as a replica,
	// take about 4 s.
	sentinelSettle = 30 * time.Second
	// sentinelLockWait bounds the wait for another test, maybe in another
	// package's test binary, to hand the deployment over.
	sentinelLockWait = 3 * time.Minute
	pollEvery        = 10 * time.Millisecond
)

// RedisSentinelAddrs returns the comma-separated sentinel addresses of
// $REDIS_SENTINEL_ADDRS, or those of DefaultRedisSentinelAddrs.
func RedisSentinelAddrs() []string {
	v := os.Getenv("REDIS_SENTINEL_ADDRS")
	if v == "" {
		v = DefaultRedisSentinelAddrs
	}
	var addrs []string
	for a := range strings.SplitSeq(v, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

// RedisSentinelMaster returns $REDIS_SENTINEL_MASTER or
// DefaultRedisSentinelMaster.
func RedisSentinelMaster() string {
	if v := os.Getenv("REDIS_SENTINEL_MASTER"); v != "" {
		return v
	}
	return DefaultRedisSentinelMaster
}

// Sentinel is the test deployment of Redis Sentinel: a master, its
// replica and the sentinels that watch them. A failover swaps the roles of
// the data nodes, so tests ask the sentinel (MasterAddr) rather than
// assume an address. Its methods are safe for concurrent use.
type Sentinel struct {
	Addrs  []string // the sentinels, host:port
	Master string   // the master's name

	sc *redis.SentinelClient // to Addrs[0]
}

// RedisSentinel returns a failover client for the test Sentinel
// deployment (redis.NewFailoverClient with default options), a fresh,
// unique key namespace, and the deployment; see UseSentinel and
// Sentinel.Client.
func RedisSentinel(t testing.TB) (*redis.Client, string, *Sentinel) {
	t.Helper()
	s := UseSentinel(t)
	rdb, ns := s.Client(t, nil)
	return rdb, ns, s
}

// UseSentinel gives the test the test Sentinel deployment to itself until
// it ends: tests that use it, in this process or in another package's
// test binary, run one at a time, as each may force a failover or pause a
// node. It then waits until the deployment is healthy (see Healthy), and
// on cleanup waits for that again, so that the next test finds it so.
//
// The test fails, with a hint on how to start the deployment, if the first
// sentinel does not answer or the deployment does not become healthy
// within 30 s.
func UseSentinel(t testing.TB) *Sentinel {
	t.Helper()
	addrs := RedisSentinelAddrs()
	s := &Sentinel{
		Addrs:  addrs,
		Master: RedisSentinelMaster(),
		sc:     redis.NewSentinelClient(&redis.Options{Addr: addrs[0]}),
	}
	t.Cleanup(func() { _ = s.sc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := s.sc.Ping(ctx).Err(); err != nil {
		t.Fatalf("testenv: cannot reach the Redis Sentinel at %s: %v\n%s", addrs[0], err, sentinelHint)
	}
	unlock, err := lockFile(sentinelLockPath(addrs[0], s.Master), sentinelLockWait)
	if err != nil {
		t.Fatalf("testenv: take the Redis Sentinel deployment: %v", err)
	}
	t.Cleanup(unlock)

	wctx, wcancel := context.WithTimeout(context.Background(), sentinelSettle)
	defer wcancel()
	if err := s.WaitHealthy(wctx); err != nil {
		t.Fatalf("testenv: the Redis Sentinel deployment %q at %s is not healthy: %v\n%s",
			s.Master, addrs[0], err, sentinelHint)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), sentinelSettle)
		defer cancel()
		if err := s.WaitHealthy(ctx); err != nil {
			t.Errorf("testenv: the test left the Redis Sentinel deployment unhealthy: %v\n"+
				"restore it with: bash scripts/redis-sentinel.sh start", err)
		}
	})
	return s
}

// Client returns a failover client (redis.NewFailoverClient) for the
// deployment's master and a fresh, unique key namespace, as [Redis] does
// for the single server. adjust, if not nil, may change the options first.
// The test fails if the master does not answer PING. On cleanup, once the
// deployment is healthy again (an old master resynced from the new one),
// every key matching "<ns>:*" is deleted on the master, the test fails if
// one is left on any node once the replicas have caught up, and the client
// is closed.
func (s *Sentinel) Client(t testing.TB, adjust func(*redis.FailoverOptions)) (*redis.Client, string) {
	t.Helper()
	opts := &redis.FailoverOptions{MasterName: s.Master, SentinelAddrs: s.Addrs}
	if adjust != nil {
		adjust(opts)
	}
	rdb := redis.NewFailoverClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		t.Fatalf("testenv: cannot reach the Redis Sentinel master %q through %s: %v\n%s",
			s.Master, strings.Join(s.Addrs, ","), err, sentinelHint)
	}
	t.Cleanup(func() {
		if err := rdb.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			t.Errorf("testenv: close Redis Sentinel client: %v", err)
		}
	})
	// Cleanups run last-in first-out: the health wait, the deletion, the
	// check for leftovers, then the client's Close.
	var ns string
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := s.leftovers(ctx, rdb, ns); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	ns = Namespace(t, rdb)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), sentinelSettle)
		defer cancel()
		if err := s.WaitHealthy(ctx); err != nil {
			t.Errorf("testenv: the Redis Sentinel deployment is not healthy before deleting %s:*: %v", ns, err)
		}
	})
	return rdb, ns
}

// leftovers returns an error naming the keys of "<ns>:*" that some node,
// master or replica, still holds, once the replicas have acknowledged
// everything written to the master so far (WAIT).
func (s *Sentinel) leftovers(ctx context.Context, rdb *redis.Client, ns string) error {
	replicas, err := s.ReplicaAddrs(ctx)
	if err != nil {
		return err
	}
	if err := rdb.Do(ctx, "wait", len(replicas), 5000).Err(); err != nil {
		return fmt.Errorf("wait for the replicas: %w", err)
	}
	master, err := s.MasterAddr(ctx)
	if err != nil {
		return err
	}
	for _, addr := range append([]string{master}, replicas...) {
		c := redis.NewClient(&redis.Options{Addr: addr})
		var keys []string
		iter := c.Scan(ctx, 0, ns+":*", scanCount).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		err := iter.Err()
		_ = c.Close()
		if err != nil {
			return fmt.Errorf("scan %s: %w", addr, err)
		}
		if len(keys) > 0 {
			return fmt.Errorf("%s still holds keys of %s after the test: %v", addr, ns, keys)
		}
	}
	return nil
}

// Node returns a plain client of the data node at addr, bypassing the
// sentinel: it stays connected to that node whatever its role. It is
// closed on cleanup.
func (s *Sentinel) Node(t testing.TB, addr string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// MasterAddr returns the address of the master the sentinel names now
// (SENTINEL GET-MASTER-ADDR-BY-NAME).
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	hp, err := s.sc.GetMasterAddrByName(ctx, s.Master).Result()
	if err != nil {
		return "", fmt.Errorf("sentinel get-master-addr-by-name %s: %w", s.Master, err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("sentinel get-master-addr-by-name %s: reply %q", s.Master, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// ReplicaAddrs returns the addresses of the master's replicas in the
// sentinel's view (SENTINEL REPLICAS), healthy or not.
func (s *Sentinel) ReplicaAddrs(ctx context.Context) ([]string, error) {
	rs, err := s.sc.Replicas(ctx, s.Master).Result()
	if err != nil {
		return nil, fmt.Errorf("sentinel replicas %s: %w", s.Master, err)
	}
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, net.JoinHostPort(r["ip"], r["port"]))
	}
	return out, nil
}

// Healthy returns nil when the deployment is fit for a test, and
// otherwise says what is not: the sentinel names a master and has no
// failover under way; that master answers as one; and every replica the
// sentinel lists is linked to it, in its own view (INFO replication) and
// in the sentinel's, which could then promote it.
func (s *Sentinel) Healthy(ctx context.Context) error {
	master, err := s.MasterAddr(ctx)
	if err != nil {
		return err
	}
	m, err := s.sc.Master(ctx, s.Master).Result()
	if err != nil {
		return fmt.Errorf("sentinel master %s: %w", s.Master, err)
	}
	if m["flags"] != "master" {
		return fmt.Errorf("the sentinel flags master %s as %q", master, m["flags"])
	}
	if role, err := nodeInfo(ctx, master, "role"); err != nil {
		return fmt.Errorf("master %s: %w", master, err)
	} else if role != "master" {
		return fmt.Errorf("master %s answers as a %s", master, role)
	}
	rs, err := s.sc.Replicas(ctx, s.Master).Result()
	if err != nil {
		return fmt.Errorf("sentinel replicas %s: %w", s.Master, err)
	}
	if len(rs) == 0 {
		return fmt.Errorf("the sentinel knows no replica of %s", master)
	}
	_, mport, _ := net.SplitHostPort(master)
	for _, r := range rs {
		addr := net.JoinHostPort(r["ip"], r["port"])
		if r["flags"] != "slave" || r["master-link-status"] != "ok" || r["master-port"] != mport {
			return fmt.Errorf("the sentinel sees replica %s with flags %q, link %q, master port %q",
				addr, r["flags"], r["master-link-status"], r["master-port"])
		}
		link, err := nodeInfo(ctx, addr, "master_link_status")
		if err != nil {
			return fmt.Errorf("replica %s: %w", addr, err)
		}
		if link != "up" {
			return fmt.Errorf("replica %s: master_link_status %q", addr, link)
		}
	}
	return nil
}

// WaitHealthy polls Healthy until it returns nil or ctx ends; then it
// returns Healthy's last error.
func (s *Sentinel) WaitHealthy(ctx context.Context) error {
	return poll(ctx, func() error { return s.Healthy(ctx) })
}

// Failover is one failover that Sentinel.Failover forced.
type Failover struct {
	From, To string        // the old and the new master
	Switched time.Duration // from SENTINEL FAILOVER until the sentinel named To
}

// Failover forces a failover (SENTINEL FAILOVER, which needs no quorum)
// and waits until the sentinel names another master. The old master goes
// on accepting writes for a few seconds more, until the sentinel turns it
// into a replica of the new one; WaitHealthy waits for that.
func (s *Sentinel) Failover(ctx context.Context) (Failover, error) {
	from, err := s.MasterAddr(ctx)
	if err != nil {
		return Failover{}, err
	}
	start := time.Now()
	if err := s.sc.Failover(ctx, s.Master).Err(); err != nil {
		return Failover{}, fmt.Errorf("sentinel failover %s: %w", s.Master, err)
	}
	f := Failover{From: from}
	err = poll(ctx, func() error {
		to, err := s.MasterAddr(ctx)
		if err != nil {
			return err
		}
		if to == from {
			return fmt.Errorf("the sentinel still names %s", from)
		}
		f.To = to
		return nil
	})
	f.Switched = time.Since(start)
	return f, err
}

// nodeInfo returns a field of INFO replication of the node at addr.
func nodeInfo(ctx context.Context, addr, field string) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no %s in INFO replication", field)
}

// NodeInfo returns a field of INFO replication (role, master_port,
// master_link_status, …) of the data node at addr.
func (s *Sentinel) NodeInfo(ctx context.Context, addr, field string) (string, error) {
	return nodeInfo(ctx, addr, field)
}

// poll calls check every 10 ms until it returns nil or ctx ends; then it
// returns check's last error.
func poll(ctx context.Context, check func() error) error {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (after %v)", err, context.Cause(ctx))
		case <-t.C:
		}
	}
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// sentinelLockPath is the lock file of the deployment of sentinel addr
// and master name, shared by every test binary on this machine.
func sentinelLockPath(addr, name string) string {
	return filepath.Join(os.TempDir(), "redstream-sentinel-"+unsafeFileChars.ReplaceAllString(addr+"-"+name, "_")+".lock")
}

// lockFile takes an exclusive lock (flock) on the file at path, creating
// it, polling until it has it or wait has passed. The lock goes with the
// open file, so it is released by the returned function or by the
// process's exit, however it ends; two calls in one process exclude each
// other too.
func lockFile(path string, wait time.Duration) (func(), error) {
	// Read-only: flock needs no write access, so a lock file another user
	// created serves too.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: still held by another test after %v", path, wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
