package redstream_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

func TestProducerDelayQueue(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns, PipelineSize: 2})
	ctx := context.Background()
	must(t, p.Delay(ctx, &Product{ID: 1}, []Product{{ID: 2}, {ID: 3}}, Product{ID: 0}))
	must(t, p.Queue(ctx, []*Product{{ID: 4}}, redstream.Ref{Stream: "other", ID: "k<&>"}))
	keys := redstream.NewKeys(ns)
	if got, want := payloads(t, rdb, keys.Delay("products")), ids(1, 2, 3); !sameSet(got, want) {
		t.Errorf("delay = %v, want %v", got, want)
	}
	if got, want := payloads(t, rdb, keys.Stream("products")), ids(4); !sameSet(got, want) {
		t.Errorf("main = %v, want %v", got, want)
	}
	// Payloads are compact JSON without HTML escaping, as Ruby's JSON.dump.
	if got, want := payloads(t, rdb, keys.Stream("other")), []string{`{"id":"k<&>"}`}; !sameSet(got, want) {
		t.Errorf("ref = %v, want %v", got, want)
	}
	if st := p.Stats(); st.DelayMessages != 3 || st.QueueMessages != 2 {
		t.Errorf("stats = %+v", st)
	}
	if err := p.Queue(ctx, 42); err == nil {
		t.Error("Queue(42) succeeded")
	}
	if err := p.Queue(ctx, redstream.Ref{ID: 1}); err == nil {
		t.Error("Ref without stream accepted")
	}
}

func TestProducerBulk(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns, PipelineSize: 3})
	keys := p.Keys()
	ctx := context.Background()
	records := []Product{{ID: 1}, {ID: 2}, {ID: 3}, {ID: 4}}
	ran := false
	must(t, p.Bulk(ctx, records, func(ctx context.Context) error {
		ran = true
		// Delay messages are written before fn, main-stream ones after.
		if n := rdb.XLen(ctx, keys.Delay("products")).Val(); n != 4 {
			t.Errorf("delay messages before fn = %d, want 4", n)
		}
		if n := rdb.XLen(ctx, keys.Stream("products")).Val(); n != 0 {
			t.Errorf("main messages before fn = %d, want 0", n)
		}
		return nil
	}))
	if !ran {
		t.Fatal("fn did not run")
	}
	if n := rdb.XLen(ctx, keys.Stream("products")).Val(); n != 4 {
		t.Errorf("main messages = %d, want 4", n)
	}
	// Each delay message went with its main-stream message.
	if n := rdb.XLen(ctx, keys.Delay("products")).Val(); n != 0 {
		t.Errorf("delay messages after Bulk = %d, want 0", n)
	}

	boom := errors.New("boom")
	err := p.Bulk(ctx, []redstream.Ref{{Stream: "failing", ID: 9}}, func(context.Context) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want boom", err)
	}
	if got := payloads(t, rdb, keys.Delay("failing")); !sameSet(got, ids(9)) {
		t.Errorf("delay = %v, want the message for the Delayer", got)
	}
	if n := rdb.XLen(ctx, keys.Stream("failing")).Val(); n != 0 {
		t.Errorf("main messages after a failed fn = %d, want 0", n)
	}
}

func TestProducerBulkRedisDown(t *testing.T) {
	t.Parallel()
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { down.Close() })
	p := mustProducer(down, nil)
	err := p.Bulk(context.Background(), []redstream.Ref{{Stream: "s", ID: 1}}, func(context.Context) error {
		t.Error("fn ran although the delay messages were not written")
		return nil
	})
	if err == nil {
		t.Fatal("Bulk succeeded with Redis down")
	}
	if st := p.Stats(); st.DelayFailures != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestProducerBulkQuery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, modes[0])
	ctx := context.Background()
	rows := make([]Product, 2500)
	for i := range rows {
		rows[i].Price = i % 2 // half cheap
	}
	must(t, redstream.SkipCapture(e.db).CreateInBatches(&rows, 1000).Error)
	p := mustProducer(e.rdb, &redstream.ProducerOptions{Namespace: "bq" + e.keys.Stream(""), BatchSize: 300})
	keys := p.Keys()
	var pages int
	err := p.BulkQuery(ctx, e.db.Model(&Product{}).Where("price = ?", 0), func(ctx context.Context, page *gorm.DB) error {
		pages++
		// This page's delay messages are written; those of the pages
		// before were deleted with their main-stream messages.
		if n := e.rdb.XLen(ctx, keys.Delay("products")).Val(); n != int64(min(300, 1250-(pages-1)*300)) {
			t.Errorf("page %d: delay messages = %d before fn", pages, n)
		}
		// The update moves the rows out of the condition; keyset paging
		// by primary key still visits each matching row once.
		return page.Update("price", 10).Error
	})
	must(t, err)
	if pages != 5 {
		t.Errorf("pages = %d, want 5 (1,250 rows in pages of 300)", pages)
	}
	var cheap, updated int64
	must(t, e.db.Model(&Product{}).Where("price = 0").Count(&cheap).Error)
	must(t, e.db.Model(&Product{}).Where("price = 10").Count(&updated).Error)
	if cheap != 0 || updated != 1250 {
		t.Errorf("cheap = %d, updated = %d; want 0 and 1250", cheap, updated)
	}
	main := payloads(t, e.rdb, keys.Stream("products"))
	if len(main) != 1250 {
		t.Fatalf("main messages = %d, want 1250", len(main))
	}
	if n := e.rdb.XLen(ctx, keys.Delay("products")).Val(); n != 0 {
		t.Errorf("delay messages after BulkQuery = %d, want 0", n)
	}
	// Only even ids (price 0) were messaged, each once.
	seen := map[string]bool{}
	for _, m := range main {
		if seen[m] {
			t.Errorf("duplicate %s", m)
		}
		seen[m] = true
	}
	if !seen[`{"id":1}`] || seen[`{"id":2}`] {
		t.Errorf("wrong rows messaged: id 1 %v, id 2 %v", seen[`{"id":1}`], seen[`{"id":2}`])
	}
	// The plugin did not capture the page updates a second time.
	if n := e.rdb.XLen(ctx, e.keys.Stream("products")).Val(); n != 0 {
		t.Errorf("plugin captured %d page writes, want 0", n)
	}
}

func TestProducerBulkQueryCompositeKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, modes[0])
	must(t, e.db.AutoMigrate(&Pair{}))
	var pairs []Pair
	for a := range 3 {
		for _, b := range []string{"x", "y", "z"} {
			pairs = append(pairs, Pair{A: int64(a), B: b})
		}
	}
	must(t, redstream.SkipCapture(e.db).Create(&pairs).Error)
	p := mustProducer(e.rdb, &redstream.ProducerOptions{Namespace: "bq" + e.keys.Stream(""), BatchSize: 4})
	var pages int
	must(t, p.BulkQuery(context.Background(), e.db.Model(&Pair{}), func(ctx context.Context, page *gorm.DB) error {
		pages++
		return page.Update("value", 1).Error
	}))
	if pages != 3 {
		t.Errorf("pages = %d, want 3", pages)
	}
	var n int64
	must(t, e.db.Model(&Pair{}).Where("value = 1").Count(&n).Error)
	if n != 9 {
		t.Errorf("updated = %d, want 9", n)
	}
	if got := len(payloads(t, e.rdb, p.Keys().Stream("pairs"))); got != 9 {
		t.Errorf("messages = %d, want 9", got)
	}
}

func TestProducerWaitReplicas(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	p := mustProducer(rdb, &redstream.ProducerOptions{
		Namespace: ns, WaitReplicas: 1, WaitTimeout: 100 * time.Millisecond,
	})
	start := time.Now()
	err := p.Delay(context.Background(), redstream.Ref{Stream: "w", ID: 1})
	var re *redstream.ReplicaError
	if !errors.As(err, &re) || re.Want != 1 || re.Got != 0 {
		t.Fatalf("err = %v, want a ReplicaError 0 of 1", err)
	}
	if !strings.Contains(err.Error(), "0 of 1 replicas") {
		t.Errorf("message %q", err)
	}
	// The Ruby gem's WAIT n 0 blocks forever; here WAIT is bounded.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WAIT took %v", d)
	}
	// Main-stream writes do not wait.
	must(t, p.Queue(context.Background(), redstream.Ref{Stream: "w", ID: 1}))
}

func TestPluginWaitReplicasRollsBack(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	e := newEnvWith(t, modes[0], rdb, ns)
	p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns, WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
	db := e.db.Session(&gorm.Session{NewDB: true})
	// A second plugin on a fresh connection, configured to wait for a replica
	// this server does not have.
	db2, err := gorm.Open(db.Dialector, &gorm.Config{Logger: db.Logger})
	must(t, err)
	sqlDB, _ := db2.DB()
	t.Cleanup(func() { sqlDB.Close() })
	must(t, db2.Use(redstream.NewPlugin(p)))
	err = db2.Create(&Product{Title: "x"}).Error
	var re *redstream.ReplicaError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a ReplicaError", err)
	}
	var n int64
	must(t, e.db.Model(&Product{}).Count(&n).Error)
	if n != 0 {
		t.Errorf("rows = %d, want 0", n)
	}
}

// TestPluginAsyncPublish: with AsyncPublish, commits hand their main-stream
// messages to a background writer; Close flushes every one, and later
// commits publish synchronously again.
func TestPluginAsyncPublish(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns, AsyncPublish: true})
	db := testenv.GORM(t, nil)
	must(t, db.Use(redstream.NewPlugin(p)))
	must(t, db.AutoMigrate(&Product{}))
	keys := p.Keys()

	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.Create(&Product{ID: int64(i + 1)}).Error; err != nil {
				t.Error(err)
			}
		}()
	}
	must(t, db.Transaction(func(tx *gorm.DB) error {
		for i := 41; i <= 50; i++ {
			if err := tx.Create(&Product{ID: int64(i)}).Error; err != nil {
				return err
			}
		}
		return nil
	}))
	wg.Wait()
	// Delay messages are written before each commit, whatever the mode.
	if st := p.Stats(); st.DelayMessages != 50 {
		t.Errorf("delay messages written = %d, want 50", st.DelayMessages)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	must(t, p.Close(ctx))
	// The writer deleted each with its main-stream message.
	if n := rdb.XLen(ctx, keys.Delay("products")).Val(); n != 0 {
		t.Errorf("delay messages after Close = %d, want 0", n)
	}
	want := make([]int, 50)
	for i := range want {
		want[i] = i + 1
	}
	if got := payloads(t, rdb, keys.Stream("products")); !sameSet(got, ids(want...)) {
		t.Errorf("main messages after Close = %d, want 50 (ids 1..50)", len(got))
	}
	if st := p.Stats(); st.QueueMessages != 50 || st.QueueFailures != 0 {
		t.Errorf("stats = %+v", st)
	}
	// After Close, a commit publishes before it returns.
	must(t, db.Create(&Product{ID: 51}).Error)
	if n := rdb.XLen(context.Background(), keys.Stream("products")).Val(); n != 51 {
		t.Errorf("main messages = %d right after a commit following Close, want 51", n)
	}
	must(t, p.Close(ctx)) // idempotent
}

// hangHook holds every command or pipeline that writes to key until its
// context ends, as a Redis that stopped answering would.
type hangHook struct{ key string }

func (h hangHook) hangs(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if mainStreamWrite(c) == h.key {
			return true
		}
	}
	return false
}

func (h hangHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h hangHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.hangs([]redis.Cmder{cmd}) {
			<-ctx.Done()
			cmd.SetErr(ctx.Err())
			return ctx.Err()
		}
		return next(ctx, cmd)
	}
}

func (h hangHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.hangs(cmds) {
			<-ctx.Done()
			for _, c := range cmds {
				c.SetErr(ctx.Err())
			}
			return ctx.Err()
		}
		return next(ctx, cmds)
	}
}

// TestProducerCloseAbortsWrites: when Close's context ends before the
// AsyncPublish writer has flushed, Close cancels the write in flight,
// waits for the writer to return and reports it; the messages stay in the
// delay stream for the Delayer. TestMain's goroutine check fails the run
// if the writer outlived Close.
func TestProducerCloseAbortsWrites(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	rdb.AddHook(hangHook{key: keys.Stream("products")})
	p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns, AsyncPublish: true, PublishTimeout: time.Hour})
	db := testenv.GORM(t, nil)
	must(t, db.Use(redstream.NewPlugin(p)))
	must(t, db.AutoMigrate(&Product{}))
	must(t, db.Create(&Product{ID: 1}).Error)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v after its context ended", d)
	}
	if n := rdb.XLen(context.Background(), keys.Delay("products")).Val(); n != 1 {
		t.Fatalf("delay messages = %d, want 1 left for the Delayer", n)
	}
	if n := rdb.XLen(context.Background(), keys.Stream("products")).Val(); n != 0 {
		t.Fatalf("main messages = %d, want none", n)
	}
}

// TestNewProducerValidates: a nil client and negative options are errors,
// as for the workers; zero options take their defaults.
func TestNewProducerValidates(t *testing.T) {
	rdb, _ := testenv.Redis(t)
	if _, err := redstream.NewProducer(nil, nil); err == nil {
		t.Error("nil client accepted")
	}
	for _, o := range []redstream.ProducerOptions{
		{PipelineSize: -1}, {BatchSize: -1}, {WaitReplicas: -1}, {WaitTimeout: -1}, {PublishTimeout: -1},
	} {
		if _, err := redstream.NewProducer(rdb, &o); err == nil {
			t.Errorf("NewProducer(%+v) accepted a negative option", o)
		}
	}
	if _, err := redstream.NewProducer(rdb, nil); err != nil {
		t.Errorf("NewProducer with defaults: %v", err)
	}
}
