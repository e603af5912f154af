package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/redstream-go/redstream"
)

// product is the model the create and latency scenarios write: the shape
// of the root package's benchmarks.
type product struct {
	ID        int64 `gorm:"primaryKey"`
	Title     string
	Price     int
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt
}

func (product) TableName() string { return "products" }

// insertSQL is the statement GORM runs for a create of product.
const insertSQL = `INSERT INTO "products" ("title","price","updated_at","deleted_at") VALUES ($1,$2,$3,$4) RETURNING "id"`

// createVariant is one way of creating a row, timed create by create.
// settle, when set, waits (untimed) for the background work a create
// left behind, so that it does not slow down the next variant's create.
type createVariant struct {
	name, desc string
	fn         func(ctx context.Context) error
	settle     func(ctx context.Context) error
	durs       []time.Duration
}

// runCreate times one create per implicit transaction in seven ways,
// interleaved create by create in a fresh random order each round, so that
// all see the same machine and none always follows the same other:
//
//	sql          BEGIN, INSERT … RETURNING, COMMIT with database/sql (pgx)
//	sql+redis    the same with an XADD to the delay stream before COMMIT and
//	             one to the main stream after it, with go-redis and no
//	             framework: the least any implementation of the commit
//	             guarantee can add
//	sql+redis/a  the same with the main-stream XADD handed to a background
//	             writer: the least an AsyncPublish-style commit can add
//	gorm         GORM without the plugin
//	plugin       GORM with the plugin (the default, synchronous publish)
//	plugin/a     GORM with the plugin and ProducerOptions.AsyncPublish
//	plugin/keep  GORM with the plugin and ProducerOptions.KeepDelayMessages:
//	             its main-stream write is a bare XADD, where the default's
//	             is a script that also deletes the delay message
func runCreate(ctx context.Context, cfg *config, rep *report) error {
	s, err := newSpace(ctx)
	if err != nil {
		return err
	}
	defer s.close()

	// One connection pool for every variant: they all run on the same
	// PostgreSQL connection (and backend process), as an application's
	// writes would, and none pays for waking a backend of its own.
	sqlDB, err := s.openDB(ctx)
	if err != nil {
		return err
	}
	defer sqlDB.Close()
	openGORM := func() (*gorm.DB, error) {
		return gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	}
	gormOff, err := openGORM()
	if err != nil {
		return err
	}
	if err := gormOff.AutoMigrate(&product{}); err != nil {
		return err
	}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	withPlugin := func(async, keep bool) (*gorm.DB, *redstream.Producer, error) {
		db, err := openGORM()
		if err != nil {
			return nil, nil, err
		}
		p, err := redstream.NewProducer(s.rdb, &redstream.ProducerOptions{Namespace: s.ns, AsyncPublish: async, KeepDelayMessages: keep})
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, func() { p.Close(context.Background()) })
		return db, p, db.Use(redstream.NewPlugin(p))
	}
	gormOn, _, err := withPlugin(false, false)
	if err != nil {
		return err
	}
	gormOnAsync, asyncProducer, err := withPlugin(true, false)
	if err != nil {
		return err
	}
	gormOnKeep, _, err := withPlugin(false, true)
	if err != nil {
		return err
	}
	// The async plugin's background writer has written every main-stream
	// message once QueueMessages reaches the number of its creates.
	var asyncCreates int64
	settlePlugin := func(ctx context.Context) error {
		asyncCreates++
		return waitFor(ctx, func() bool { return asyncProducer.Stats().QueueMessages >= asyncCreates })
	}

	delayKey, mainKey := s.keys.Delay("products"), s.keys.Stream("products")
	async := newRawPublisher(s.rdb, mainKey)
	defer async.close()

	// steps of the sql+redis variant: begin, insert, delay XADD, commit,
	// main XADD.
	var steps [5][]time.Duration
	rawCreate := func(ctx context.Context, withRedis, asyncMain bool) error {
		t0 := time.Now()
		tx, err := sqlDB.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		t1 := time.Now()
		var id int64
		if err := tx.QueryRowContext(ctx, insertSQL, "bench", 1, time.Now(), nil).Scan(&id); err != nil {
			return err
		}
		t2 := time.Now()
		payload := `{"id":` + strconv.FormatInt(id, 10) + `}`
		if withRedis {
			if err := s.rdb.Do(ctx, "xadd", delayKey, "*", "payload", payload).Err(); err != nil {
				return err
			}
		}
		t3 := time.Now()
		if err := tx.Commit(); err != nil {
			return err
		}
		t4 := time.Now()
		if withRedis {
			if asyncMain {
				async.publish(payload)
			} else if err := s.rdb.Do(ctx, "xadd", mainKey, "*", "payload", payload).Err(); err != nil {
				return err
			}
		}
		if withRedis && !asyncMain {
			t5 := time.Now()
			for i, d := range []time.Duration{t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3), t5.Sub(t4)} {
				steps[i] = append(steps[i], d)
			}
		}
		return nil
	}
	gormCreate := func(db *gorm.DB) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			return db.WithContext(ctx).Create(&product{Title: "bench", Price: 1}).Error
		}
	}
	variants := []*createVariant{
		{name: "sql", desc: "BEGIN/INSERT/COMMIT, database/sql", fn: func(ctx context.Context) error { return rawCreate(ctx, false, false) }},
		{name: "sql+redis", desc: "the same + XADD delay before COMMIT + XADD main after, go-redis, no framework", fn: func(ctx context.Context) error { return rawCreate(ctx, true, false) }},
		{name: "sql+redis/async", desc: "the same, main-stream XADD by a background writer", fn: func(ctx context.Context) error { return rawCreate(ctx, true, true) },
			settle: func(ctx context.Context) error { return waitFor(ctx, async.idle) }},
		{name: "gorm", desc: "GORM, no plugin", fn: gormCreate(gormOff)},
		{name: "plugin", desc: "GORM + plugin", fn: gormCreate(gormOn)},
		{name: "plugin/async", desc: "GORM + plugin, AsyncPublish", fn: gormCreate(gormOnAsync), settle: settlePlugin},
		{name: "plugin/keep", desc: "GORM + plugin, KeepDelayMessages (the main-stream write is a bare XADD; the delay message stays)", fn: gormCreate(gormOnKeep)},
	}
	byName := map[string]*createVariant{}
	for _, v := range variants {
		byName[v.name] = v
		rep.declare(figure{name: "µs/" + v.name, unit: "µs", desc: "mean time per create: " + v.desc})
	}
	declareCreateFigures(rep)

	for run := range cfg.runs {
		err := rep.run(run, func() error {
			for _, v := range variants {
				v.durs = v.durs[:0]
			}
			for i := range steps {
				steps[i] = steps[i][:0]
			}
			const warm = 30
			for i := range cfg.createN + warm {
				if ctx.Err() != nil {
					return errStopped
				}
				for _, k := range rand.Perm(len(variants)) {
					v := variants[k]
					start := time.Now()
					if err := v.fn(ctx); err != nil {
						return fmt.Errorf("%s: %w", v.name, err)
					}
					if i >= warm {
						v.durs = append(v.durs, time.Since(start))
					}
					if v.settle != nil {
						if err := v.settle(ctx); err != nil {
							return fmt.Errorf("%s: %w", v.name, err)
						}
					}
				}
				if i == warm-1 {
					for j := range steps {
						steps[j] = steps[j][:0]
					}
				}
			}
			lone, err := loneXAdds(ctx, s.rdb, s.keys.Stream("lone"), 300)
			if err != nil {
				return err
			}
			recordCreateRun(rep, byName, steps, lone)
			return nil
		})
		if err != nil {
			return err
		}
	}
	rep.note("µs/<variant> are means over %d creates per run; *_p50 figures use medians.", cfg.createN)
	return nil
}

func declareCreateFigures(rep *report) {
	rep.declare(figure{name: "ratio/raw", unit: "×", desc: "sql+redis / sql: the least a synchronous commit guarantee adds"})
	rep.declare(figure{name: "ratio/raw/async", unit: "×", desc: "sql+redis/async / sql: the least an async-publish commit adds"})
	rep.declare(figure{name: "ratio/gorm-floor", unit: "×", desc: "(gorm + what sql+redis adds to sql) / gorm: the least a GORM create can reach"})
	rep.declare(figure{name: "ratio/gorm-floor/async", unit: "×", desc: "the same for async publish"})
	rep.declare(figure{name: "ratio/plugin", unit: "×", desc: "plugin / gorm", target: "≤ 1.10", limit: "ratio/gorm-floor"})
	rep.declare(figure{name: "ratio/plugin/async", unit: "×", desc: "plugin/async / gorm", target: "≤ 1.10", limit: "ratio/gorm-floor/async"})
	rep.declare(figure{name: "ratio/plugin/keep", unit: "×", desc: "plugin/keep / gorm (KeepDelayMessages)", limit: "ratio/gorm-floor"})
	rep.declare(figure{name: "ratio/ack-keep", unit: "×", desc: "plugin / plugin/keep: what deleting the delay message adds to a create"})
	rep.declare(figure{name: "ratio/raw_p50", unit: "×", desc: "as ratio/raw, from medians"})
	rep.declare(figure{name: "ratio/plugin_p50", unit: "×", desc: "as ratio/plugin, from medians"})
	rep.declare(figure{name: "added/raw", unit: "µs", desc: "sql+redis − sql: time the two XADDs add with no framework"})
	rep.declare(figure{name: "added/plugin", unit: "µs", desc: "plugin − gorm: time the plugin adds", limit: "added/raw"})
	rep.declare(figure{name: "added/raw/async", unit: "µs", desc: "sql+redis/async − sql"})
	rep.declare(figure{name: "added/plugin/async", unit: "µs", desc: "plugin/async − gorm", limit: "added/raw/async"})
	rep.declare(figure{name: "added/plugin/keep", unit: "µs", desc: "plugin/keep − gorm", limit: "added/raw"})
	for _, s := range stepNames {
		rep.declare(figure{name: "step/" + s, unit: "µs", desc: "median of one step of sql+redis"})
	}
	for _, g := range xaddGaps {
		rep.declare(figure{name: "xadd/" + g.name, unit: "µs", desc: "median of one XADD " + g.desc})
	}
}

// xaddGaps are the ways a lone XADD is timed: what the calling goroutine
// does just before it decides how long the CPUs have been idle.
var xaddGaps = []struct {
	name, desc string
	before     func()
	pipelined  bool
}{
	{"back-to-back", "(Do), one after the other", func() {}, false},
	{"back-to-back-pipelined", "in a one-command pipeline, one after the other", func() {}, true},
	{"after-200µs-spin", "after keeping the CPU busy for 200 µs", func() {
		for t := time.Now(); time.Since(t) < 200*time.Microsecond; {
		}
	}, false},
	{"after-200µs-sleep", "after sleeping 200 µs", func() { time.Sleep(200 * time.Microsecond) }, false},
	{"after-2ms-sleep", "after sleeping 2 ms (about a COMMIT's fsync)", func() { time.Sleep(2 * time.Millisecond) }, false},
}

var stepNames = [5]string{"begin", "insert", "xadd-delay", "commit", "xadd-main"}

func recordCreateRun(rep *report, v map[string]*createVariant, steps [5][]time.Duration, lone [][]time.Duration) {
	mean := func(name string) float64 { return meanUS(v[name].durs) }
	p50 := func(name string) float64 { return medianUS(v[name].durs) }
	for name := range v {
		rep.add("µs/"+name, mean(name))
	}
	sql, raw, rawA, gm, on, onA := mean("sql"), mean("sql+redis"), mean("sql+redis/async"), mean("gorm"), mean("plugin"), mean("plugin/async")
	rep.add("ratio/raw", raw/sql)
	rep.add("ratio/raw/async", rawA/sql)
	rep.add("ratio/gorm-floor", (gm+raw-sql)/gm)
	rep.add("ratio/gorm-floor/async", (gm+rawA-sql)/gm)
	rep.add("ratio/plugin", on/gm)
	rep.add("ratio/plugin/async", onA/gm)
	rep.add("ratio/plugin/keep", mean("plugin/keep")/gm)
	rep.add("ratio/ack-keep", on/mean("plugin/keep"))
	rep.add("ratio/raw_p50", p50("sql+redis")/p50("sql"))
	rep.add("ratio/plugin_p50", p50("plugin")/p50("gorm"))
	rep.add("added/raw", raw-sql)
	rep.add("added/plugin", on-gm)
	rep.add("added/raw/async", rawA-sql)
	rep.add("added/plugin/async", onA-gm)
	rep.add("added/plugin/keep", mean("plugin/keep")-gm)
	for i, s := range stepNames {
		rep.add("step/"+s, medianUS(steps[i]))
	}
	for i, g := range xaddGaps {
		rep.add("xadd/"+g.name, medianUS(lone[i]))
	}
}

// loneXAdds times n XADDs outside any create in each of the xaddGaps
// ways.
func loneXAdds(ctx context.Context, rdb *redis.Client, key string, n int) ([][]time.Duration, error) {
	out := make([][]time.Duration, len(xaddGaps))
	for i, g := range xaddGaps {
		for range n {
			g.before()
			t := time.Now()
			var err error
			if g.pipelined {
				_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					p.Do(ctx, "xadd", key, "*", "payload", `{"id":1}`)
					return nil
				})
			} else {
				err = rdb.Do(ctx, "xadd", key, "*", "payload", `{"id":1}`).Err()
			}
			if err != nil {
				return nil, err
			}
			out[i] = append(out[i], time.Since(t))
		}
	}
	return out, rdb.Del(ctx, key).Err()
}

// waitFor polls done until it reports true, for at most 10 s.
func waitFor(ctx context.Context, done func() bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for !done() {
		if ctx.Err() != nil {
			return errStopped
		}
		if time.Now().After(deadline) {
			return errors.New("background write did not finish within 10 s")
		}
		time.Sleep(20 * time.Microsecond)
	}
	return nil
}

func meanUS(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return float64(t.Microseconds()) / float64(len(ds))
}

func medianUS(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2].Nanoseconds()) / 1e3
}

// rawPublisher is the least an asynchronous main-stream write can be: a
// goroutine that writes queued payloads, as many per pipeline as are
// waiting.
type rawPublisher struct {
	rdb     *redis.Client
	key     string
	ch      chan string
	done    sync.WaitGroup
	pending atomic.Int64 // payloads queued and not yet written
}

func newRawPublisher(rdb *redis.Client, key string) *rawPublisher {
	p := &rawPublisher{rdb: rdb, key: key, ch: make(chan string, 4096)}
	p.done.Add(1)
	go p.loop()
	return p
}

func (p *rawPublisher) publish(payload string) {
	p.pending.Add(1)
	p.ch <- payload
}

// idle reports whether every queued payload is written.
func (p *rawPublisher) idle() bool { return p.pending.Load() == 0 }

func (p *rawPublisher) close() {
	close(p.ch)
	p.done.Wait()
}

func (p *rawPublisher) loop() {
	defer p.done.Done()
	ctx := context.Background()
	for first := range p.ch {
		batch := []string{first}
	more:
		for {
			select {
			case pl, ok := <-p.ch:
				if !ok {
					break more
				}
				batch = append(batch, pl)
			default:
				break more
			}
		}
		if len(batch) == 1 {
			_ = p.rdb.Do(ctx, "xadd", p.key, "*", "payload", batch[0]).Err()
		} else {
			_, _ = p.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
				for _, pl := range batch {
					pipe.Do(ctx, "xadd", p.key, "*", "payload", pl)
				}
				return nil
			})
		}
		p.pending.Add(-int64(len(batch)))
	}
}
