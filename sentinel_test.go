package redstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// The Sentinel tests run against the deployment of
// scripts/redis-sentinel.sh: a master, one replica and a sentinel
// (REDIS_SENTINEL_ADDRS, REDIS_SENTINEL_MASTER). testenv.UseSentinel
// gives each test the deployment to itself and hands it back healthy.

// sentinelClientName names the failover client's connections, so that the
// test can see when none is left on the old master.
const sentinelClientName = "redstream-sentinel-test"

// attempt is one write of a sentinel writer: a db.Create of one Product.
type attempt struct {
	id         int64
	start, end time.Time
	err        error
}

// seenIDs is a handler that records the ids of the messages it receives.
type seenIDs struct {
	mu  sync.Mutex
	ids map[int64]int
}

func (s *seenIDs) HandleBatch(_ context.Context, b *redstream.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range b.Messages {
		var p struct{ ID int64 }
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return fmt.Errorf("payload %s: %w", m.Payload, err)
		}
		s.ids[p.ID]++
	}
	return nil
}

func (s *seenIDs) has(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[id] > 0
}

func (s *seenIDs) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// sentinelStream is one stream of the failover test: a schema with the
// plugin, its producer on the failover client, and a consumer and a
// delayer on that client.
type sentinelStream struct {
	name    string // for messages: "strict" or "async"
	ns      string
	db      *gorm.DB
	p       *redstream.Producer
	keys    redstream.Keys
	seen    *seenIDs
	delayer *redstream.Delayer

	mu       sync.Mutex
	attempts []attempt
}

// sentinelDelay is longer than a failover takes to reach the client
// (about 1.1 s here, more on a loaded machine), so the held row's delay
// message cannot be moved on the old master before the switch: the
// Delayer must move it on the new one.
const sentinelDelay = 3 * time.Second

func newSentinelStream(t *testing.T, name string, rdb *redis.Client, ns string, opts redstream.ProducerOptions) *sentinelStream {
	t.Helper()
	opts.Namespace = ns
	opts.Logger = slog.New(slog.DiscardHandler)
	s := &sentinelStream{name: name, ns: ns, p: mustProducer(rdb, &opts), keys: redstream.NewKeys(ns), seen: &seenIDs{ids: map[int64]int{}}}
	s.db = testenv.GORM(t, nil)
	must(t, s.db.Use(redstream.NewPlugin(s.p)))
	must(t, s.db.AutoMigrate(&Product{}))
	quiet := slog.New(slog.DiscardHandler)
	copts := fastOptions(ns)
	copts.Logger = quiet
	c := newConsumer(t, rdb, "products", "sentinel", s.seen, copts)
	dopts := fastDelayerOptions(ns)
	dopts.Logger = quiet
	s.delayer = newDelayer(t, rdb, "products", sentinelDelay, dopts)
	start(t, c.Run)
	start(t, s.delayer.Run)
	return s
}

// write creates a row every interval until ctx ends. A failed Create is
// recorded with its error: the plugin rolled it back.
func (s *sentinelStream) write(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p := Product{Title: s.name}
		a := attempt{start: time.Now()}
		a.err = s.db.Create(&p).Error
		a.id, a.end = p.ID, time.Now()
		s.mu.Lock()
		s.attempts = append(s.attempts, a)
		s.mu.Unlock()
	}
}

// committed returns the attempts that succeeded, by id.
func (s *sentinelStream) committed() map[int64]attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int64]attempt{}
	for _, a := range s.attempts {
		if a.err == nil {
			out[a.id] = a
		}
	}
	return out
}

// commitsAfter counts the commits that began after t.
func (s *sentinelStream) commitsAfter(t time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.attempts {
		if a.err == nil && a.start.After(t) {
			n++
		}
	}
	return n
}

// failed returns the attempts that returned an error.
func (s *sentinelStream) failed() []attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []attempt
	for _, a := range s.attempts {
		if a.err != nil {
			out = append(out, a)
		}
	}
	return out
}

// checkRows fails the test unless the table holds exactly the committed
// rows (plus extra, rows written outside the writer): no failed write left
// a row behind.
func (s *sentinelStream) checkRows(t *testing.T, extra ...int64) {
	t.Helper()
	var got []int64
	must(t, s.db.Model(&Product{}).Order("id").Pluck("id", &got).Error)
	var want []int64
	for id := range s.committed() {
		want = append(want, id)
	}
	want = append(want, extra...)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: the table holds ids %v, want the committed ones %v", s.name, diffIDs(got, want), diffIDs(want, got))
	}
	for _, a := range s.failed() {
		if a.id != 0 && slices.Contains(got, a.id) {
			t.Errorf("%s: row %d is in the table, but its Create returned %v", s.name, a.id, a.err)
		}
	}
}

// diffIDs returns the elements of a that are not in b.
func diffIDs(a, b []int64) []int64 {
	var out []int64
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// onNode reports whether the delay stream and the main stream of the
// node at rdb hold a message for id. The delay stream is read first: the
// producer's script and the Delayer both move a message from it to the
// main stream atomically, so a message in transit is seen in one or the
// other.
func (s *sentinelStream) onNode(t *testing.T, rdb redis.Cmdable, id int64) (delay, main bool) {
	t.Helper()
	want := ids(int(id))[0]
	delay = slices.Contains(payloads(t, rdb, s.keys.Delay("products")), want)
	main = slices.Contains(payloads(t, rdb, s.keys.Stream("products")), want)
	return delay, main
}

// outage returns the longest time between two successive commits.
func (s *sentinelStream) outage() time.Duration {
	var ends []time.Time
	for _, a := range s.committed() {
		ends = append(ends, a.end)
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	var longest time.Duration
	for i := 1; i < len(ends); i++ {
		longest = max(longest, ends[i].Sub(ends[i-1]))
	}
	return longest
}

// errorKinds counts the failed writes by kind.
func (s *sentinelStream) errorKinds() map[string]int {
	out := map[string]int{}
	for _, a := range s.failed() {
		var re *redstream.ReplicaError
		if errors.As(a.err, &re) {
			out[fmt.Sprintf("ReplicaError %d of %d", re.Got, re.Want)]++
			continue
		}
		msg := a.err.Error()
		if len(msg) > 80 {
			msg = msg[:77] + "..."
		}
		out[msg]++
	}
	return out
}

// medianLatency returns the median duration of the commits that ended
// before t.
func (s *sentinelStream) medianLatency(t time.Time) time.Duration {
	var ds []time.Duration
	for _, a := range s.committed() {
		if a.end.Before(t) {
			ds = append(ds, a.end.Sub(a.start))
		}
	}
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// holdMain is a hook that holds the first write to the main stream key
// until release is closed; held is closed once it waits.
type holdMain struct {
	key           string
	held, release chan struct{}
	once          sync.Once
}

func (h *holdMain) wait(cmds []redis.Cmder) {
	for _, c := range cmds {
		if mainStreamWrite(c) != h.key {
			continue
		}
		h.once.Do(func() {
			close(h.held)
			select {
			case <-h.release:
			case <-time.After(time.Minute): // the test failed before it released
			}
		})
		return
	}
}

func (h *holdMain) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *holdMain) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.wait([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}
func (h *holdMain) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.wait(cmds)
		return next(ctx, cmds)
	}
}

// clientsOn counts the connections of the client named name on the
// node at rdb.
func clientsOn(ctx context.Context, rdb *redis.Client, name string) (int, error) {
	list, err := rdb.ClientList(ctx).Result()
	if err != nil {
		return 0, err
	}
	return strings.Count(list, " name="+name+" "), nil
}

// TestSentinelFailover forces a Sentinel failover under a steady write
// load and checks what reaches the consumers, on two streams written at
// once through one failover client: "strict", whose producer has
// WaitReplicas: 1, and "async", whose producer does not wait.
//
// In the failover window Redis's asynchronous replication loses writes:
// the sentinel promotes the replica, and until the clients learn of it
// (the sentinel's +switch-master, which makes go-redis drop its
// connections to the old master), they go on writing to the old master,
// which acknowledges them; when the sentinel turns it into a replica of
// the new master a few seconds later, it resynchronises and those writes
// are gone. To show it on purpose, right after the switch the test also
// commits one row of each stream through a plain client of the old
// master, as a client that has not learned of the switch would (the
// stale rows).
//
// strict: every committed row reaches the consumer. A delay write that
// reached no replica fails its WAIT (a *ReplicaError) and the transaction
// rolls back, so every committed change has its delay message on the new
// master, unless its main-stream message replaced it there; a main-stream
// message the old master took alone is lost, and the Delayer delivers the
// change from its delay message. The test makes one such change on
// purpose (the held row: committed before the failover through a plain
// client of the master, its main-stream write held until after the
// switch). The stale row is rolled back.
//
// async: a committed row may be lost, and then only thus: it is on no
// node, and it was written to the old master after the failover began and
// before the failover client left it (the stale row, on purpose, is one).
// Any other row missing fails the test, and so does the stale row
// arriving.
//
// In both, writes refused during the switch return an error and leave no
// row, and rows written after it reach the consumer from the new master.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sen := testenv.UseSentinel(t)
	rdb, ns := sen.Client(t, func(o *redis.FailoverOptions) { o.ClientName = sentinelClientName })
	strict := newSentinelStream(t, "strict", rdb, ns, redstream.ProducerOptions{WaitReplicas: 1, WaitTimeout: 250 * time.Millisecond})
	async := newSentinelStream(t, "async", rdb, testenv.Namespace(t, rdb), redstream.ProducerOptions{})

	wctx, stopWriters := context.WithCancel(ctx)
	var writers sync.WaitGroup
	for _, s := range []*sentinelStream{strict, async} {
		writers.Go(func() { s.write(wctx, 5*time.Millisecond) })
	}
	defer func() { stopWriters(); writers.Wait() }()
	eventually(t, 10*time.Second, "the first rows to reach both consumers", func() bool {
		return strict.seen.count() >= 20 && async.seen.count() >= 20
	})

	// A strict commit whose main-stream write is held until after the
	// switch, through a plain client of the master: its delay message is
	// on the replica (WAIT) before COMMIT, its main-stream message will go
	// to the old master alone.
	from, err := sen.MasterAddr(ctx)
	must(t, err)
	old := sen.Node(t, from)
	hold := &holdMain{key: strict.keys.Stream("products"), held: make(chan struct{}), release: make(chan struct{})}
	release := sync.OnceFunc(func() { close(hold.release) })
	defer release() // should the test end early
	old.AddHook(hold)
	strictOpts := redstream.ProducerOptions{Namespace: ns, WaitReplicas: 1, WaitTimeout: 250 * time.Millisecond}
	staleStrict := staleDB(t, strict, old, strictOpts)
	held := Product{Title: "held"}
	heldErr := make(chan error, 1)
	go func() { heldErr <- staleStrict.Create(&held).Error }()
	select {
	case <-hold.held:
	case err := <-heldErr:
		t.Fatalf("the held commit returned before its main-stream write: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the held commit did not reach its main-stream write within 10s")
	}

	// The failover. began: the replica may be promoted from now on.
	began := time.Now()
	f, err := sen.Failover(ctx)
	if err != nil {
		t.Fatalf("failover: %v", err)
	}
	if f.From != from {
		t.Fatalf("the failover went from %s, not from the master %s", f.From, from)
	}
	// left: the failover client has no connection to the old master any
	// more, so its workers read, and its producers write, only the new
	// master.
	var left time.Time
	eventually(t, 10*time.Second, "the failover client to leave the old master", func() bool {
		n, err := clientsOn(ctx, old, sentinelClientName)
		if err == nil && n == 0 {
			left = time.Now()
			return true
		}
		return false
	})

	// Clients that have not learned of the switch: the old master is
	// still a master for a few seconds (the sentinel turns it into a
	// replica 2 s after the switch).
	if role, err := sen.NodeInfo(ctx, f.From, "role"); err != nil || role != "master" {
		t.Fatalf("the old master %s is a %q (%v) %v after the switch; the test needs it still a master",
			f.From, role, err, time.Since(began)-f.Switched)
	}
	release()
	if err := <-heldErr; err != nil {
		t.Fatalf("strict: the held commit: %v", err)
	}
	lost := Product{Title: "stale"}
	if err := staleDB(t, async, old, redstream.ProducerOptions{Namespace: async.ns}).Create(&lost).Error; err != nil {
		t.Fatalf("async: a commit through the old master: %v", err)
	}
	refused := Product{Title: "stale"}
	err = staleStrict.Create(&refused).Error
	var re *redstream.ReplicaError
	if !errors.As(err, &re) || re.Got != 0 {
		t.Errorf("strict: a commit through the old master returned %v, want a *redstream.ReplicaError (0 of 1 replicas)", err)
	}

	// Writes go on, on the new master. strict's are refused until the old
	// master is back as a replica (about 3 s), and on a loaded machine a
	// commit takes tens of milliseconds: the wait is generous, it only
	// bounds a hang.
	for _, s := range []*sentinelStream{strict, async} {
		eventually(t, 60*time.Second, s.name+": 200 commits after the switch", func() bool {
			return s.commitsAfter(left) >= 200
		})
	}
	stopWriters()
	writers.Wait()

	// The old master becomes a replica of the new one and resyncs.
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := sen.WaitHealthy(hctx); err != nil {
		t.Fatalf("the deployment did not recover: %v", err)
	}
	healthy := time.Since(began)
	fresh := sen.Node(t, f.To)

	// Every row in the tables is one whose Create succeeded, and only
	// those: refused writes were rolled back. The stale rows are the
	// exception: lost is committed, refused rolled back.
	strict.checkRows(t, held.ID)
	async.checkRows(t, lost.ID)
	if refused.ID != 0 {
		var n int64
		must(t, strict.db.Model(&Product{}).Where("id = ?", refused.ID).Count(&n).Error)
		if n != 0 {
			t.Errorf("strict: the refused stale row %d is in the table", refused.ID)
		}
	}

	// strict: every committed row reaches the consumer, the held one
	// through the Delayer.
	want := strict.committed()
	want[held.ID] = attempt{id: held.ID, start: left, end: left}
	waitSeen(t, strict, want, 10*time.Second, func(missing []int64) {
		for _, id := range missing {
			delay, main := strict.onNode(t, fresh, id)
			a := want[id]
			t.Errorf("strict: committed row %d (Create %v..%v after the failover began) never reached the consumer; on the new master: delay message %v, main message %v",
				id, a.start.Sub(began), a.end.Sub(began), delay, main)
		}
	})
	if _, main := strict.onNode(t, fresh, held.ID); !main {
		t.Errorf("strict: the held row %d has no main-stream message on the new master; the Delayer should have moved its delay message there", held.ID)
	}

	// async: wait for every row that is on the new master; what is on no
	// node is lost, and must be explained by the failover window.
	committed := async.committed()
	committed[lost.ID] = attempt{id: lost.ID, start: left, end: left}
	var arriving, gone []int64
	for id := range committed {
		if async.seen.has(id) {
			continue
		}
		if delay, main := async.onNode(t, fresh, id); delay || main {
			arriving = append(arriving, id)
		} else {
			gone = append(gone, id)
		}
	}
	waitSeen(t, async, pick(committed, arriving), 10*time.Second, func(missing []int64) {
		t.Errorf("async: rows %v are on the new master but never reached the consumer", missing)
	})
	slices.Sort(gone)
	var explained []string
	for _, id := range gone {
		a := committed[id]
		if d, m := async.onNode(t, old, id); d || m {
			t.Errorf("async: row %d is on the old master, now a replica, but not on the new one", id)
		}
		if id != lost.ID && (a.end.Before(began) || a.start.After(left)) {
			t.Errorf("async: committed row %d (Create %v..%v after the failover began, the client left the old master at %v) is on no node and never reached the consumer",
				id, a.start.Sub(began), a.end.Sub(began), left.Sub(began))
			continue
		}
		explained = append(explained, fmt.Sprintf("%d (committed %v after the failover began)", id, a.end.Sub(began).Round(time.Millisecond)))
	}
	if !slices.Contains(gone, lost.ID) {
		t.Errorf("async: the row committed through the old master after the switch (%d) was not lost; the test did not show what it should", lost.ID)
	}
	if async.seen.has(lost.ID) {
		t.Errorf("async: the row committed through the old master (%d) reached the consumer", lost.ID)
	}

	// The consumers work on the new master: each has committed the last
	// entry of its stream there.
	for _, s := range []*sentinelStream{strict, async} {
		eventually(t, 5*time.Second, s.name+": the consumer's offset at the end of the stream on the new master", func() bool {
			last, err := fresh.XRevRangeN(ctx, s.keys.Stream("products"), "+", "-", 1).Result()
			if err != nil || len(last) == 0 {
				return false
			}
			off, err := fresh.Get(ctx, s.keys.Offset("products", "sentinel")).Result()
			return err == nil && off == last[0].ID
		})
	}

	t.Logf("failover %s -> %s: the sentinel named the new master %v after SENTINEL FAILOVER, the client had left the old master after %v, the deployment was healthy again after %v",
		f.From, f.To, f.Switched.Round(time.Millisecond), left.Sub(began).Round(time.Millisecond), healthy.Round(time.Millisecond))
	for _, s := range []*sentinelStream{strict, async} {
		d := s.delayer.Stats()
		t.Logf("%s: %d commits (median %v each before the failover), %d refused %v, longest time without a commit %v, %d messages moved by the Delayer",
			s.name, len(s.committed()), s.medianLatency(began).Round(10*time.Microsecond), len(s.failed()), s.errorKinds(),
			s.outage().Round(time.Millisecond), d.Moved)
	}
	t.Logf("async: %d committed rows lost by asynchronous replication, each acknowledged by the old master after the promotion: %s",
		len(explained), strings.Join(explained, ", "))
}

// staleDB opens a second gorm.DB on s's schema whose plugin writes,
// with opts, through rdb: a plain client of one node.
func staleDB(t *testing.T, s *sentinelStream, rdb *redis.Client, opts redstream.ProducerOptions) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(s.db.Dialector, &gorm.Config{Logger: s.db.Logger})
	must(t, err)
	sqlDB, err := db.DB()
	must(t, err)
	t.Cleanup(func() { sqlDB.Close() })
	opts.Logger = slog.New(slog.DiscardHandler)
	must(t, db.Use(redstream.NewPlugin(mustProducer(rdb, &opts))))
	return db
}

// pick returns the attempts of ids.
func pick(all map[int64]attempt, ids []int64) map[int64]attempt {
	out := map[int64]attempt{}
	for _, id := range ids {
		out[id] = all[id]
	}
	return out
}

// waitSeen waits until s's consumer has seen every id of want, for at
// most timeout; then it calls report with those it has not, in order.
func waitSeen(t *testing.T, s *sentinelStream, want map[int64]attempt, timeout time.Duration, report func(missing []int64)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var missing []int64
		for id := range want {
			if !s.seen.has(id) {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			slices.Sort(missing)
			report(missing)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSentinelWaitReplicas: with WaitReplicas: 1, a commit returns once
// its delay message is on the replica; with the replica unresponsive
// (DEBUG SLEEP 2), the WAIT times out and the commit is rolled back with a
// *redstream.ReplicaError; once the replica is back, commits succeed
// again.
func TestSentinelWaitReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, ns, sen := testenv.RedisSentinel(t)
	// KeepDelayMessages, so that the delay message stays for the test to
	// look for on the replica.
	const waitTimeout = 200 * time.Millisecond
	p := mustProducer(rdb, &redstream.ProducerOptions{
		Namespace: ns, WaitReplicas: 1, WaitTimeout: waitTimeout, KeepDelayMessages: true,
		Logger: slog.New(slog.DiscardHandler),
	})
	keys := p.Keys()
	db := testenv.GORM(t, nil)
	must(t, db.Use(redstream.NewPlugin(p)))
	must(t, db.AutoMigrate(&Product{}))

	replicas, err := sen.ReplicaAddrs(ctx)
	must(t, err)
	if len(replicas) != 1 {
		t.Fatalf("replicas %v, want one", replicas)
	}
	replica := sen.Node(t, replicas[0])

	// The replica answers: the commit succeeds, and its delay message is
	// on the replica the moment Create returns: WAIT saw it there.
	up := Product{Title: "up"}
	must(t, db.Create(&up).Error)
	if got := payloads(t, replica, keys.Delay("products")); !slices.Equal(got, ids(int(up.ID))) {
		t.Fatalf("delay stream on the replica %s = %v, want %v", replicas[0], got, ids(int(up.ID)))
	}

	// The replica sleeps for two seconds: it acknowledges nothing.
	asleep := make(chan error, 1)
	go func() { asleep <- replica.Do(ctx, "debug", "sleep", "2").Err() }()
	probe := redis.NewClient(&redis.Options{Addr: replicas[0], ReadTimeout: 50 * time.Millisecond, MaxRetries: -1})
	defer probe.Close()
	eventually(t, 5*time.Second, "the replica to sleep", func() bool { return probe.Ping(ctx).Err() != nil })

	down := Product{Title: "down"}
	began := time.Now()
	err = db.Create(&down).Error
	took := time.Since(began)
	var re *redstream.ReplicaError
	if !errors.As(err, &re) || re.Want != 1 || re.Got != 0 {
		t.Fatalf("Create with the replica asleep = %v, want a *redstream.ReplicaError 0 of 1", err)
	}
	if took < waitTimeout {
		t.Errorf("Create returned after %v, before WaitTimeout (%v)", took, waitTimeout)
	}
	var n int64
	must(t, db.Model(&Product{}).Where("id = ?", down.ID).Count(&n).Error)
	if n != 0 {
		t.Errorf("the rolled-back row %d is in the table", down.ID)
	}
	// The master took the delay message before the WAIT; the rolled-back
	// change has no main-stream message. (The Delayer would move the delay
	// message later; a consumer then finds no row: a no-op.)
	if got := payloads(t, rdb, keys.Stream("products")); !slices.Equal(got, ids(int(up.ID))) {
		t.Errorf("main stream = %v, want only %v", got, ids(int(up.ID)))
	}

	select {
	case err := <-asleep:
		must(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("DEBUG SLEEP 2 did not return within 10s")
	}
	// Awake again: commits succeed.
	again := Product{Title: "again"}
	eventually(t, 5*time.Second, "a commit to succeed with the replica awake", func() bool {
		again.ID = 0
		return db.Create(&again).Error == nil
	})
	delay := payloads(t, replica, keys.Delay("products"))
	if !slices.Contains(delay, ids(int(again.ID))[0]) {
		t.Errorf("delay stream on the replica = %v, want it to hold %v", delay, ids(int(again.ID)))
	}
}
