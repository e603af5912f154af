package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redstream-go/redstream"
)

// shardedProduct is a product written to its shard of "products".
type shardedProduct product

func (shardedProduct) TableName() string { return "products" }

// RedstreamName implements redstream.Namer.
func (p shardedProduct) RedstreamName() string {
	return redstream.ShardName("products", p.ID, groupShards)
}

// groupFixture runs worker processes of one group on a stream of 12
// shards: 12 units.
type groupFixture struct {
	*fixture
	shards []string
	host   string
}

const (
	groupShards       = 12
	groupLockTTL      = 2 * time.Second // worker.lock_ttl in newFixture
	groupHeartbeatTTL = 2 * time.Second
)

func newGroupFixture(t *testing.T) *groupFixture {
	f := newFixture(t, fmt.Sprintf("    shards: %d\n    delay: 2s\n", groupShards))
	f.addWorkerOption(t, "heartbeat_ttl: 2s")
	// JSON logs, for fencedCommits.
	f.editConfig(t, "  level: debug\n", "  level: debug\n  format: json\n")
	host, _ := os.Hostname()
	return &groupFixture{fixture: f, shards: redstream.ShardNames("products", groupShards), host: host}
}

func (g *groupFixture) holderOf(p *process) string {
	return fmt.Sprintf("%s:%d", g.host, p.cmd.Process.Pid)
}

// leases returns how many consumer and delayer leases of the shards each
// holder has.
func (g *groupFixture) leases(t *testing.T) (consumers, delayers map[string]int) {
	t.Helper()
	consumers, delayers = map[string]int{}, map[string]int{}
	for _, s := range g.shards {
		if h := g.lockHolder(t, redstream.ConsumerLockName(s, "indexer")); h != "" {
			consumers[h]++
		}
		if h := g.lockHolder(t, redstream.ConsumerLockName(redstream.DelayStream(s), redstream.DelayerName)); h != "" {
			delayers[h]++
		}
	}
	return consumers, delayers
}

// spread reports whether the processes hold want consumer and delayer
// leases each, and nobody else holds any.
func (g *groupFixture) spread(t *testing.T, want int, ps ...*process) bool {
	c, d := g.leases(t)
	exp := map[string]int{}
	for _, p := range ps {
		exp[g.holderOf(p)] = want
	}
	return maps.Equal(c, exp) && maps.Equal(d, exp)
}

// fencedCommit is one offset commit that passed its lease's fence, as a
// worker process logs it at debug level: the unit's lock, the lease's
// value (a random token of its own, and the holder) and the offset.
type fencedCommit struct {
	Lock   string `json:"lock"`
	Lease  string `json:"lease"`
	Offset string `json:"offset"`
}

// fencedCommits returns the commits the processes logged.
func fencedCommits(t *testing.T, ps ...*process) []fencedCommit {
	t.Helper()
	var out []fencedCommit
	for _, p := range ps {
		for line := range strings.Lines(p.stderr.String()) {
			if !strings.Contains(line, `"msg":"redstream: offset committed"`) {
				continue
			}
			var c fencedCommit
			if err := json.Unmarshal([]byte(line), &c); err != nil || c.Lock == "" || c.Lease == "" {
				t.Fatalf("commit line %q: %v", line, err)
			}
			out = append(out, c)
		}
	}
	return out
}

// checkOneHolderAtATime checks that no unit ever had two holders
// committing: for every lock, the offsets committed under one lease and
// those committed under another never interleave. Offsets only move
// forward, so leases whose offset ranges are disjoint committed one after
// the other; a deposed holder whose commit got through after its successor
// had committed makes two ranges overlap. It returns how many leases
// committed and how many of the locks had more than one.
func checkOneHolderAtATime(t *testing.T, commits []fencedCommit) (leases, moved int) {
	t.Helper()
	type span struct {
		lease    string
		min, max redstream.ID
		n        int
	}
	byLock := map[string]map[string]*span{}
	for _, c := range commits {
		id, err := redstream.ParseID(c.Offset)
		if err != nil {
			t.Fatalf("commit of %s: offset %q: %v", c.Lock, c.Offset, err)
		}
		if byLock[c.Lock] == nil {
			byLock[c.Lock] = map[string]*span{}
		}
		sp := byLock[c.Lock][c.Lease]
		if sp == nil {
			sp = &span{lease: c.Lease, min: id, max: id}
			byLock[c.Lock][c.Lease] = sp
		}
		if id.Less(sp.min) {
			sp.min = id
		}
		if sp.max.Less(id) {
			sp.max = id
		}
		sp.n++
	}
	for lock, m := range byLock {
		spans := slices.SortedFunc(maps.Values(m), func(a, b *span) int { return a.min.Compare(b.min) })
		for i := 1; i < len(spans); i++ {
			a, b := spans[i-1], spans[i]
			if !a.max.Less(b.min) {
				t.Errorf("%s: two holders committing: lease %s committed %v..%v (%d commits), lease %s %v..%v (%d)",
					lock, a.lease, a.min, a.max, a.n, b.lease, b.min, b.max, b.n)
			}
		}
		leases += len(spans)
		if len(spans) > 1 {
			moved++
		}
	}
	return leases, moved
}

// luaSteal takes a consumer's lock from its holder and commits the first
// entry past the committed offset, in one step, as a holder that took the
// lock over while the deposed one still works would: KEYS lock, offset,
// stream; ARGV the new lock value, its TTL in ms. It does nothing and
// returns "" unless an entry is there past the offset.
var luaSteal = redis.NewScript(`
local off = redis.call("get", KEYS[2])
local from = "-"
if off then from = "(" .. off end
local e = redis.call("xrange", KEYS[3], from, "+", "COUNT", 1)
if #e == 0 then return "" end
redis.call("set", KEYS[1], ARGV[1], "PX", ARGV[2])
redis.call("set", KEYS[2], e[1][1])
return e[1][1]
`)

// watchOffsets polls the committed offsets of the consumers ("indexer")
// and delayers of the shards until the function it returns is called,
// failing the test when one moves backwards.
func watchOffsets(t *testing.T, rdb redis.UniversalClient, ns string, shards []string) (stop func()) {
	keys := redstream.NewKeys(ns)
	var offsets []string
	for _, s := range shards {
		offsets = append(offsets, keys.Offset(s, "indexer"), keys.Offset(redstream.DelayStream(s), redstream.DelayerName))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := map[string]redstream.ID{}
		for ctx.Err() == nil {
			for _, k := range offsets {
				v, err := rdb.Get(ctx, k).Result()
				if err != nil {
					continue // none yet, or the test is ending
				}
				id, err := redstream.ParseID(v)
				if err != nil {
					t.Errorf("offset %s: %v", k, err)
					return
				}
				if id.Less(last[k]) {
					t.Errorf("offset %s moved backwards: %v, then %v", k, last[k], id)
				}
				last[k] = id
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return func() { cancel(); <-done }
}

// TestGroupKill runs three worker processes on 12 units under a write
// load: they spread the units 4/4/4; a process killed with SIGKILL leaves
// its units to the other two within lease TTL + heartbeat TTL + 2 s;
// started again, it gets its share back; a process stopped with SIGTERM
// hands its units over at once; with a stable membership no lease moves; a
// holder deposed without knowing it commits nothing more; no unit ever has
// two holders committing; and at the end every row is indexed.
func TestGroupKill(t *testing.T) {
	t.Parallel()
	g := newGroupFixture(t)
	start := func(listen string) *process {
		p := startBin(t, g.vars, "worker", "--config", g.config, "--listen", listen)
		waitReady(t, listen)
		return p
	}
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	ps := []*process{start(addrs[0]), start(addrs[1]), start(addrs[2])}
	all := slices.Clone(ps) // every process started, for fencedCommits
	within(t, 15*time.Second, "4 units each", func() bool { return g.spread(t, 4, ps...) })
	r := runBin(t, g.vars, "status", "--config", g.config, "--json")
	var st struct {
		Group groupStatus `json:"group"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 0 {
		t.Fatalf("status --json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if len(st.Group.Members) != 3 || !st.Group.Balance {
		t.Errorf("status: group %+v, want 3 members", st.Group)
	}
	if n := metric(t, addrs[0], `redstream_group_members{group="workers"}`); n != 3 {
		t.Errorf("redstream_group_members = %v, want 3", n)
	}
	if n := metric(t, addrs[0], `redstream_group_units_owned{group="workers"}`); n != 4 {
		t.Errorf("redstream_group_units_owned = %v, want 4", n)
	}

	// A steady write load for the rest of the test.
	ctx, cancel := context.WithCancel(context.Background())
	var written []*shardedProduct
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for id := uint64(1); ctx.Err() == nil; id++ {
			p := &shardedProduct{ID: id, Title: fmt.Sprint("p", id)}
			if err := g.db.Create(p).Error; err != nil {
				t.Errorf("create: %v", err)
				return
			}
			mu.Lock()
			written = append(written, p)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	// Meanwhile no committed offset ever moves backwards.
	defer watchOffsets(t, g.rdb, g.ns, g.shards)()

	// A stable membership: no lease moves for 5 s.
	c0, d0 := g.leases(t)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if c, d := g.leases(t); !maps.Equal(c, c0) || !maps.Equal(d, d0) {
			t.Fatalf("leases moved with a stable membership: %v %v, then %v %v", c0, d0, c, d)
		}
	}

	// A holder deposed without knowing it, as when a failover loses its
	// lock and another holder takes the lock: the test takes it, and
	// commits past the offset, while the process still has the unit in
	// hand. The fence refuses the process's next commit, and it stops
	// serving the unit until it holds the lock again.
	keys := redstream.NewKeys(g.ns)
	var victim string
	for _, s := range g.shards {
		if g.lockHolder(t, redstream.ConsumerLockName(s, "indexer")) == g.holderOf(ps[0]) {
			victim = s
			break
		}
	}
	if victim == "" {
		t.Fatal("the first process holds no consumer lease")
	}
	thief := fmt.Sprintf("%022d@thief", time.Now().UnixNano())
	victimLock := redstream.ConsumerLockName(victim, "indexer")
	var stolen string
	within(t, 30*time.Second, "an entry of "+victim+" past its committed offset", func() bool {
		var err error
		stolen, err = luaSteal.Run(ctx, g.rdb, []string{keys.Lock(victimLock), keys.Offset(victim, "indexer"), keys.Stream(victim)},
			thief, groupLockTTL.Milliseconds()).Text()
		if err != nil {
			t.Fatalf("steal: %v", err)
		}
		if stolen == "" {
			time.Sleep(2 * time.Millisecond)
		}
		return stolen != ""
	})
	thiefCommits := []fencedCommit{{Lock: victimLock, Lease: thief, Offset: stolen}}
	// More for the deposed holder to try to commit.
	for id, n := uint64(1<<40), 0; n < 3; id++ {
		if redstream.ShardName("products", id, groupShards) != victim {
			continue
		}
		p := &shardedProduct{ID: id, Title: fmt.Sprint("p", id)}
		if err := g.db.Create(p).Error; err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		written = append(written, p)
		mu.Unlock()
		n++
	}
	within(t, groupLockTTL+5*time.Second, "the first process to serve "+victim+" again", func() bool {
		return g.lockHolder(t, victimLock) == g.holderOf(ps[0])
	})
	within(t, 15*time.Second, "4 units each after the lock was taken", func() bool { return g.spread(t, 4, ps...) })

	// kill -9: the other two take 6 each.
	killed := time.Now()
	if err := ps[2].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-ps[2].done
	within(t, groupLockTTL+groupHeartbeatTTL+2*time.Second, "6 units each after a kill", func() bool {
		return g.spread(t, 6, ps[0], ps[1])
	})
	t.Logf("units moved %v after a SIGKILL", time.Since(killed).Round(time.Millisecond))

	// Started again: 4 each.
	ps[2] = start(addrs[2])
	all = append(all, ps[2])
	within(t, 15*time.Second, "4 units each after a restart", func() bool { return g.spread(t, 4, ps...) })

	// SIGTERM: its units move at once, without waiting for a TTL.
	stopped := time.Now()
	if code := ps[1].stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d", code)
	}
	within(t, 2*time.Second, "6 units each after a SIGTERM", func() bool { return g.spread(t, 6, ps[0], ps[2]) })
	t.Logf("units moved %v after a SIGTERM", time.Since(stopped).Round(time.Millisecond))

	cancel()
	wg.Wait()
	mu.Lock()
	rows := written
	mu.Unlock()
	if len(rows) == 0 {
		t.Fatal("nothing written")
	}
	eventually(t, "every row written during the moves indexed", func() bool { return indexedRows(g.es, rows...) })
	t.Logf("%d rows written and indexed while the units moved", len(rows))

	commits := append(fencedCommits(t, all...), thiefCommits...)
	leases, moved := checkOneHolderAtATime(t, commits)
	if moved == 0 {
		t.Error("no unit changed holders between commits; the check proves nothing")
	}
	t.Logf("%d fenced commits under %d leases; %d units changed holders", len(commits), leases, moved)
}

// lockValues returns the value of every consumer and delayer lock of the
// shards: which lease holds each, token and holder.
func (g *groupFixture) lockValues(t *testing.T) map[string]string {
	t.Helper()
	keys := redstream.NewKeys(g.ns)
	out := map[string]string{}
	for _, s := range g.shards {
		for _, l := range []string{redstream.ConsumerLockName(s, "indexer"),
			redstream.ConsumerLockName(redstream.DelayStream(s), redstream.DelayerName)} {
			v, err := g.rdb.Get(context.Background(), keys.Lock(l)).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				t.Fatal(err)
			}
			out[l] = v
		}
	}
	return out
}

// TestGroupStable runs three worker processes on 12 units under a write
// load for 60 s of stable membership: no lease moves, none is even taken
// anew by its own holder (every lock keeps its value), and the group
// counts no move, hand-over or adoption.
func TestGroupStable(t *testing.T) {
	t.Parallel()
	const window = 60 * time.Second
	g := newGroupFixture(t)
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	var ps []*process
	for _, a := range addrs {
		ps = append(ps, startBin(t, g.vars, "worker", "--config", g.config, "--listen", a))
		waitReady(t, a)
	}
	within(t, 15*time.Second, "4 units each", func() bool { return g.spread(t, 4, ps...) })

	ctx, cancel := context.WithCancel(context.Background())
	var written []*shardedProduct
	done := make(chan struct{})
	go func() {
		defer close(done)
		for id := uint64(1); ctx.Err() == nil; id++ {
			p := &shardedProduct{ID: id, Title: fmt.Sprint("p", id)}
			if err := g.db.Create(p).Error; err != nil {
				t.Errorf("create: %v", err)
				return
			}
			written = append(written, p)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-done }()

	locks := g.lockValues(t)
	start := time.Now()
	unmoved := func(d time.Duration) {
		for end := time.Now().Add(d); time.Now().Before(end); {
			time.Sleep(100 * time.Millisecond)
			now := g.lockValues(t)
			for l, v := range locks {
				if now[l] != v {
					t.Fatalf("%v into a stable membership, lock %s went from %q to %q", time.Since(start).Round(time.Millisecond), l, v, now[l])
				}
			}
		}
	}
	// A group counts a move when its step next reads the lock, up to an
	// interval (500 ms) after the move: let the moves of the start be
	// counted before the counters' baseline.
	unmoved(2 * time.Second)
	counters := []string{"redstream_lease_moves_total", "redstream_group_handovers_total", "redstream_group_adoptions_total"}
	before := map[string]float64{}
	for _, a := range addrs {
		for _, c := range counters {
			n := metric(t, a, c+`{group="workers"}`)
			if n < 0 {
				t.Fatalf("%s: no %s", a, c)
			}
			before[a+" "+c] = n
		}
	}
	unmoved(window)
	for _, a := range addrs {
		for _, c := range counters {
			if n := metric(t, a, c+`{group="workers"}`); n != before[a+" "+c] {
				t.Errorf("%s of %s went from %v to %v with a stable membership", c, a, before[a+" "+c], n)
			}
		}
	}
	cancel()
	<-done
	if len(written) == 0 {
		t.Fatal("nothing written")
	}
	eventually(t, "every row indexed", func() bool { return indexedRows(g.es, written...) })
	t.Logf("%v of stable membership, %d rows written: no lease moved", window, len(written))
}

// TestGroupRollingDeploy: a new process whose config has one more stream
// joins the group, then an old process stops: every unit, the new
// stream's included, stays served throughout, and the new stream's
// changes are indexed.
func TestGroupRollingDeploy(t *testing.T) {
	t.Parallel()
	g := newGroupFixture(t)
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	var ps []*process
	for _, a := range addrs[:2] {
		ps = append(ps, startBin(t, g.vars, "worker", "--config", g.config, "--listen", a))
		waitReady(t, a)
	}
	within(t, 15*time.Second, "6 units each", func() bool { return g.spread(t, 6, ps...) })

	// The new config: one more stream, on the same table.
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	newConfig := writeFile(t, t.TempDir(), "redstream.yaml", string(b)+
		"  - name: extra\n    table: products\n    index: extra\n    delay: 2s\n")
	writeMapping(t, filepath.Dir(newConfig))
	newcomer := startBin(t, g.vars, "worker", "--config", newConfig, "--listen", addrs[2])
	waitReady(t, addrs[2])

	extraLock := redstream.ConsumerLockName("extra", "indexer")
	served := func() bool {
		for _, s := range g.shards {
			if g.lockHolder(t, redstream.ConsumerLockName(s, "indexer")) == "" {
				return false
			}
		}
		return g.lockHolder(t, extraLock) != ""
	}
	within(t, 15*time.Second, "every unit served after the newcomer joined", served)

	// An old process stops: its units move, and every unit stays served.
	if code := ps[0].stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d", code)
	}
	within(t, groupLockTTL+groupHeartbeatTTL+2*time.Second, "every unit served after an old process stopped", served)
	if h := g.lockHolder(t, extraLock); h != g.holderOf(newcomer) {
		t.Errorf("the extra stream is served by %q, want the only process that has it, %q", h, g.holderOf(newcomer))
	}
	for _, s := range g.shards {
		if h := g.lockHolder(t, redstream.ConsumerLockName(s, "indexer")); h != g.holderOf(ps[1]) && h != g.holderOf(newcomer) {
			t.Errorf("%s held by %q, a process that is gone", s, h)
		}
	}

	// A change on each stream is indexed.
	p := &shardedProduct{ID: 1, Title: "one"}
	if err := g.db.Create(p).Error; err != nil {
		t.Fatal(err)
	}
	pr, err := redstream.NewProducer(g.rdb, &redstream.ProducerOptions{Namespace: g.ns})
	if err != nil {
		t.Fatal(err)
	}
	if err := pr.Queue(context.Background(), redstream.Ref{Stream: "extra", ID: 1}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the sharded change indexed", func() bool { return indexedRows(g.es, p) })
	eventually(t, "the extra stream's change indexed", func() bool {
		src, _, ok := g.es.Doc("extra", "1")
		return ok && strings.Contains(string(src), `"one"`)
	})
}
