package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/redstream-go/redstream"
)

// chaosConfig sizes a chaos run. make test runs the defaults; make chaos
// runs a longer one through the CHAOS_* variables (see the Makefile).
type chaosConfig struct {
	kills     int           // SIGKILLs, spread over the two workers
	gap       time.Duration // the longest pause between two kills
	minWrites int           // the writer goes on at least this long
	rate      int           // writer operations per second
	seed      uint64
}

func chaosSettings(t *testing.T) chaosConfig {
	t.Helper()
	c := chaosConfig{kills: 20, gap: 800 * time.Millisecond, minWrites: 1500, rate: 250, seed: uint64(time.Now().UnixNano())}
	for _, v := range []struct {
		name string
		dst  any
	}{
		{"CHAOS_KILLS", &c.kills}, {"CHAOS_GAP", &c.gap}, {"CHAOS_WRITES", &c.minWrites},
		{"CHAOS_RATE", &c.rate}, {"CHAOS_SEED", &c.seed},
	} {
		s := os.Getenv(v.name)
		if s == "" {
			continue
		}
		var err error
		switch dst := v.dst.(type) {
		case *int:
			*dst, err = strconv.Atoi(s)
		case *uint64:
			*dst, err = strconv.ParseUint(s, 10, 64)
		case *time.Duration:
			*dst, err = time.ParseDuration(s)
		}
		if err != nil {
			t.Fatalf("%s=%q: %v", v.name, s, err)
		}
	}
	return c
}

// errRollback rolls a chaos transaction back on purpose.
var errRollback = errors.New("rolled back on purpose")

// chaosWriter runs a mixed write load on the model M: creates (one row or
// a slice), updates, soft deletes, restores, hard deletes, rolled-back
// transactions and Producer.Bulk batch updates in raw SQL.
type chaosWriter[M productModel] struct {
	db       *gorm.DB
	now      string // SQL for the database's time, as updated_at holds it; "" is PostgreSQL's
	producer *redstream.Producer
	rng      *rand.Rand
	ids      []uint64 // rows that exist (soft-deleted or not)
	counts   map[string]int
}

func (w *chaosWriter[M]) pick() (uint64, int, bool) {
	if len(w.ids) == 0 {
		return 0, 0, false
	}
	i := w.rng.IntN(len(w.ids))
	return w.ids[i], i, true
}

func (w *chaosWriter[M]) title() string { return fmt.Sprintf("t%x", w.rng.Uint32()) }

// ref returns a new M with the primary key id (0 for a new row).
func (w *chaosWriter[M]) ref(id uint64) *M {
	m := M(product{ID: id, Title: "never", Price: 1})
	return &m
}

// step performs one random operation.
func (w *chaosWriter[M]) step(ctx context.Context) error {
	db := w.db.WithContext(ctx)
	n := w.rng.IntN(100)
	id, i, ok := w.pick()
	switch {
	case n < 25 || !ok:
		p := M(product{Title: w.title(), Price: w.rng.Int64N(1000)})
		if err := db.Create(&p).Error; err != nil {
			return fmt.Errorf("create: %w", err)
		}
		w.ids = append(w.ids, product(p).ID)
		w.counts["create"]++
	case n < 30:
		ps := make([]M, 5)
		for j := range ps {
			ps[j] = M(product{Title: w.title(), Price: w.rng.Int64N(1000)})
		}
		if err := db.Create(&ps).Error; err != nil {
			return fmt.Errorf("create a slice: %w", err)
		}
		for _, p := range ps {
			w.ids = append(w.ids, product(p).ID)
		}
		w.counts["create"] += len(ps)
	case n < 55:
		err := db.Model(w.ref(id)).Updates(map[string]any{"title": w.title(), "price": w.rng.Int64N(1000)}).Error
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		w.counts["update"]++
	case n < 65:
		if err := db.Delete(w.ref(id)).Error; err != nil {
			return fmt.Errorf("soft delete: %w", err)
		}
		w.counts["soft delete"]++
	case n < 70:
		// Restoring a soft-deleted row also sets updated_at.
		if err := db.Unscoped().Model(w.ref(id)).Updates(map[string]any{"deleted_at": nil, "title": w.title()}).Error; err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		w.counts["restore"]++
	case n < 77:
		if err := db.Unscoped().Delete(w.ref(id)).Error; err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		w.ids = slices.Delete(w.ids, i, i+1)
		w.counts["delete"]++
	case n < 87:
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Create(w.ref(0)).Error; err != nil {
				return err
			}
			if err := tx.Model(w.ref(id)).Update("title", "never").Error; err != nil {
				return err
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			return fmt.Errorf("rolled-back transaction: %v", err)
		}
		w.counts["rolled back"]++
	default:
		// A batch update in raw SQL, which the plugin cannot see, wrapped
		// in Producer.Bulk.
		batch := make([]M, 0, 20)
		ids := make([]uint64, 0, 20)
		for range 1 + w.rng.IntN(20) {
			id, _, _ := w.pick()
			batch = append(batch, M(product{ID: id}))
			ids = append(ids, id)
		}
		err := w.producer.Bulk(ctx, batch, func(ctx context.Context) error {
			return redstream.SkipCapture(w.db).WithContext(ctx).
				Exec("UPDATE products SET price = price + 1, updated_at = "+cmp.Or(w.now, "clock_timestamp()")+" WHERE id IN ?", ids).Error
		})
		if err != nil {
			return fmt.Errorf("bulk update: %w", err)
		}
		w.counts["bulk update"]++
	}
	return nil
}

// chaosStreamYAML configures the stream of a chaos run.
const chaosStreamYAML = `    soft_delete_column: deleted_at
    version_column: updated_at
    delay: 1s
    trim_interval: 200ms
`

// TestChaos writes a mixed load while two worker processes are killed with
// SIGKILL at random moments and restarted, then checks that the index
// converges: verify reports nothing missing, extra or stale, and every
// document equals its row.
func TestChaos(t *testing.T) {
	t.Parallel()
	f := newFixture(t, chaosStreamYAML)
	producer := mustProducer(f.rdb, &redstream.ProducerOptions{Namespace: f.ns})
	runChaos[product](t, f, producer, "products")
}

// TestClusterChaos is TestChaos against the Redis Cluster, with the stream
// "{products}"; no command meets a CROSSSLOT error.
func TestClusterChaos(t *testing.T) {
	t.Parallel()
	f := newClusterFixture(t, chaosStreamYAML)
	producer := mustProducer(f.crdb, &redstream.ProducerOptions{Namespace: f.ns})
	runChaos[clusterProduct](t, f.fixture, producer, clusterStream)
}

// runChaos runs a chaos test on f's stream, written through f.db with the
// model M.
func runChaos[M productModel](t *testing.T, f *fixture, producer *redstream.Producer, stream string) {
	cfg := chaosSettings(t)
	t.Logf("chaos %s: seed %d (CHAOS_SEED reproduces the writer's and the killer's choices)", stream, cfg.seed)
	f.setWorkerOption(t, "lock_ttl", "2s", "1s")
	f.setWorkerOption(t, "level", "debug", "info")
	ctx := context.Background()

	listens := [2]string{f.listen, freeAddr(t)}
	var (
		mu      sync.Mutex
		workers [2]*process
		all     []*process
	)
	start := func(i int) {
		vars := maps.Clone(f.vars)
		p := startBin(t, vars, "worker", "--config", f.config, "--listen", listens[i])
		mu.Lock()
		workers[i] = p
		all = append(all, p)
		mu.Unlock()
	}
	start(0)
	start(1)
	waitReady(t, listens[0])
	waitReady(t, listens[1])

	w := &chaosWriter[M]{db: f.db, producer: producer, rng: rand.New(rand.NewPCG(cfg.seed, 1)), counts: map[string]int{}}
	if f.mysql {
		w.now = "UTC_TIMESTAMP(6)" // a DATETIME holds UTC, as GORM writes it
	}
	killsDone := make(chan struct{})
	writerErr := make(chan error, 1)
	began := time.Now()
	var ops int
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(cfg.rate))
		defer tick.Stop()
		for {
			select {
			case <-killsDone:
				if ops >= cfg.minWrites {
					writerErr <- nil
					return
				}
			default:
			}
			<-tick.C
			if err := w.step(ctx); err != nil {
				writerErr <- err
				return
			}
			ops++
		}
	}()

	krng := rand.New(rand.NewPCG(cfg.seed, 2))
	var kills [2]int
	for range cfg.kills {
		time.Sleep(time.Duration(krng.Int64N(int64(cfg.gap))))
		i := krng.IntN(2)
		mu.Lock()
		p := workers[i]
		mu.Unlock()
		select {
		case <-p.done:
			t.Fatalf("worker %d exited by itself: %v\n%s", i, p.err, p.stderr.String())
		default:
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		kills[i]++
		time.Sleep(time.Duration(krng.Int64N(int64(300 * time.Millisecond))))
		start(i)
	}
	close(killsDone)
	if err := <-writerErr; err != nil {
		t.Fatalf("writer, after %d operations: %v", ops, err)
	}
	wrote := time.Since(began)
	rows, converge := chaosConverge[M](t, f, stream)
	mu.Lock()
	for i, p := range workers {
		select {
		case <-p.done:
			t.Fatalf("worker %d exited by itself: %v\n%s", i, p.err, p.stderr.String())
		default:
		}
	}
	for _, p := range all {
		if out := p.stderr.String(); strings.Contains(out, "CROSSSLOT") {
			t.Fatalf("a worker met CROSSSLOT:\n%s", out)
		}
	}
	mu.Unlock()
	t.Logf("chaos %s: %d writer operations in %.1fs %v; %d rows live; kills %d+%d; verify in sync %.2fs after the last write",
		stream, ops, wrote.Seconds(), w.counts, rows, kills[0], kills[1], converge.Seconds())
}

// chaosConverge runs verify on stream until it reports the index in sync,
// then checks that nothing is missing, extra or stale, that every document
// equals its row, and that nothing was dead-lettered. It returns the
// number of live rows and how long the index took to converge.
func chaosConverge[M productModel](t *testing.T, f *fixture, stream string) (int, time.Duration) {
	t.Helper()
	settled := time.Now()
	var rep verifyReport
	within(t, 2*time.Minute, "verify to report the index in sync", func() bool {
		rep = chaosVerify(t, f, stream)
		return rep.InSync
	})
	converge := time.Since(settled)
	if rep.Missing.Count+rep.Extra.Count+rep.Stale.Count != 0 || !rep.Versioned {
		t.Fatalf("verify: %+v", rep)
	}
	// verify compares versions; compare every document with its row too.
	var ms []M
	if err := f.db.Find(&ms).Error; err != nil {
		t.Fatal(err)
	}
	rows := make([]product, len(ms))
	for i, m := range ms {
		rows[i] = product(m)
	}
	for _, r := range rows {
		src, _, ok := f.es.Doc("products", strconv.FormatUint(r.ID, 10))
		if !ok {
			t.Fatalf("row %d has no document", r.ID)
		}
		if want := fmt.Sprintf(`"title":%q`, r.Title); !containsAll(string(src), want, fmt.Sprintf(`"price":%d`, r.Price)) {
			t.Fatalf("document %d = %s; row %+v", r.ID, src, r)
		}
	}
	if n := f.es.Count("products"); n != len(rows) {
		t.Fatalf("%d documents for %d live rows", n, len(rows))
	}
	for _, st := range f.status(t) {
		for _, c := range st.Consumers {
			if c.DeadLetters != 0 {
				t.Fatalf("%s: %d dead letters", st.Stream, c.DeadLetters)
			}
		}
	}
	return len(rows), converge
}

// TestShardedChaos is the chaos run on a stream of 12 shards served by a
// balancing group of up to three worker processes, which join, leave with
// SIGTERM and die by SIGKILL at random moments during the mixed write
// load (one at least always runs). The index converges (verify reports
// nothing missing, extra or stale), no committed offset ever moves
// backwards, and no unit ever has two holders committing.
func TestShardedChaos(t *testing.T) {
	t.Parallel()
	cfg := chaosSettings(t)
	t.Logf("sharded chaos: seed %d (CHAOS_SEED reproduces the writer's and the processes' choices)", cfg.seed)
	f := newFixture(t, chaosStreamYAML+fmt.Sprintf("    shards: %d\n", groupShards))
	f.addWorkerOption(t, "heartbeat_ttl: 1s")
	f.setWorkerOption(t, "lock_ttl", "2s", "1s")
	f.editConfig(t, "  level: debug\n", "  level: debug\n  format: json\n") // for fencedCommits
	producer := mustProducer(f.rdb, &redstream.ProducerOptions{Namespace: f.ns})
	shards := redstream.ShardNames("products", groupShards)
	stopWatch := watchOffsets(t, f.rdb, f.ns, shards)

	listens := [3]string{f.listen, freeAddr(t), freeAddr(t)}
	var running [3]*process // nil when stopped
	var all []*process
	start := func(i int) {
		running[i] = startBin(t, f.vars, "worker", "--config", f.config, "--listen", listens[i])
		all = append(all, running[i])
	}
	for i := range running {
		start(i)
	}
	for _, l := range listens {
		waitReady(t, l)
	}

	ctx := context.Background()
	w := &chaosWriter[shardedProduct]{db: f.db, producer: producer, rng: rand.New(rand.NewPCG(cfg.seed, 1)), counts: map[string]int{}}
	eventsDone := make(chan struct{})
	writerErr := make(chan error, 1)
	began := time.Now()
	var ops int
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(cfg.rate))
		defer tick.Stop()
		for {
			select {
			case <-eventsDone:
				if ops >= cfg.minWrites {
					writerErr <- nil
					return
				}
			default:
			}
			<-tick.C
			if err := w.step(ctx); err != nil {
				writerErr <- err
				return
			}
			ops++
		}
	}()

	// cfg.kills events, each a join, a SIGTERM or a SIGKILL.
	rng := rand.New(rand.NewPCG(cfg.seed, 2))
	events := map[string]int{}
	for range cfg.kills {
		time.Sleep(time.Duration(rng.Int64N(int64(cfg.gap))))
		var up, down []int
		for i, p := range running {
			if p == nil {
				down = append(down, i)
				continue
			}
			select {
			case <-p.done:
				t.Fatalf("worker %d exited by itself: %v\n%s", i, p.err, p.stderr.String())
			default:
			}
			up = append(up, i)
		}
		if len(down) > 0 && (len(up) == 1 || rng.IntN(2) == 0) {
			i := down[rng.IntN(len(down))]
			start(i)
			// Ready: it handles SIGTERM from now on.
			waitReady(t, listens[i])
			events["join"]++
			continue
		}
		i := up[rng.IntN(len(up))]
		p := running[i]
		running[i] = nil
		if rng.IntN(2) == 0 {
			if code := p.stop(t); code != 0 {
				t.Fatalf("worker %d: exit code %d after SIGTERM\n%s", i, code, p.stderr.String())
			}
			events["SIGTERM"]++
			continue
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		events["SIGKILL"]++
	}
	close(eventsDone)
	if err := <-writerErr; err != nil {
		t.Fatalf("writer, after %d operations: %v", ops, err)
	}
	wrote := time.Since(began)
	rows, converge := chaosConverge[shardedProduct](t, f, "products")
	stopWatch()
	for i, p := range running {
		if p == nil {
			continue
		}
		select {
		case <-p.done:
			t.Fatalf("worker %d exited by itself: %v\n%s", i, p.err, p.stderr.String())
		default:
		}
	}
	commits := fencedCommits(t, all...)
	leases, moved := checkOneHolderAtATime(t, commits)
	if moved == 0 {
		t.Error("no unit changed holders between commits; the check proves nothing")
	}
	t.Logf("sharded chaos: %d writer operations in %.1fs %v; %d rows live; processes %v; %d fenced commits under %d leases, %d units changed holders; verify in sync %.2fs after the last write",
		ops, wrote.Seconds(), w.counts, rows, events, len(commits), leases, moved, converge.Seconds())
}

// chaosVerify runs verify --json on stream, in sync or not.
func chaosVerify(t *testing.T, f *fixture, stream string) verifyReport {
	t.Helper()
	r := runBin(t, f.vars, "verify", "--json", "--config", f.config, "--stream", stream)
	var rep verifyReport
	if r.code != exitOK && r.code != exitFailure || strings.Contains(r.stderr, "CROSSSLOT") {
		t.Fatalf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("verify --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	return rep
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
