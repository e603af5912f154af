package redstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/elastic/estest"
	"github.com/redstream-go/redstream/internal/testenv"
)

// The Redis Cluster tests run against the cluster of
// scripts/redis-cluster.sh (REDIS_CLUSTER_ADDRS) with braced stream names,
// so that every key of a stream shares a hash slot. "{products}" (slot
// 10285) and "{orders}" (slot 105) lie on different masters of a
// three-master cluster, so writes that span both streams cross nodes.
const (
	productsStream = "{products}"
	ordersStream   = "{orders}"
)

// clusterProduct is synced through the stream "{products}".
type clusterProduct struct {
	ID        int64 `gorm:"primaryKey"`
	Title     string
	Price     int
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt
}

func (clusterProduct) TableName() string     { return "products" }
func (clusterProduct) RedstreamName() string { return productsStream }

// clusterOrder is synced through the stream "{orders}".
type clusterOrder struct {
	ID        int64 `gorm:"primaryKey"`
	ProductID int64
	Qty       int
	UpdatedAt time.Time
}

func (clusterOrder) TableName() string     { return "orders" }
func (clusterOrder) RedstreamName() string { return ordersStream }

// clusterEnv is a test's Redis Cluster namespace, database with the plugin,
// producer and Elasticsearch test server.
type clusterEnv struct {
	rdb  *redis.ClusterClient
	ns   string
	keys redstream.Keys
	rec  *testenv.CrossSlotRecorder
	db   *gorm.DB
	p    *redstream.Producer
	es   *estest.Server
}

func newClusterEnv(t *testing.T) *clusterEnv {
	t.Helper()
	rdb, ns := testenv.RedisCluster(t)
	rec := testenv.RecordCrossSlot(t, rdb)
	// Runs after the workers, which the test starts later, have stopped.
	t.Cleanup(func() { rec.Check(t) })
	e := &clusterEnv{rdb: rdb, ns: ns, keys: redstream.NewKeys(ns), rec: rec, es: estest.New(t)}
	requireTwoMasters(t, rdb, e.keys.Stream(productsStream), e.keys.Stream(ordersStream))

	// Small pipelines and pages, so that writes take several round trips.
	e.p = mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns, PipelineSize: 4, BatchSize: 3})
	e.db = testenv.GORM(t, nil)
	must(t, e.db.Use(redstream.NewPlugin(e.p)))
	must(t, e.db.AutoMigrate(&clusterProduct{}, &clusterOrder{}))
	return e
}

// requireTwoMasters fails the test unless keys a and b are served by
// different masters: the test would prove less on a one-master cluster.
func requireTwoMasters(t *testing.T, rdb *redis.ClusterClient, a, b string) {
	t.Helper()
	ctx := context.Background()
	na, err := rdb.MasterForKey(ctx, a)
	must(t, err)
	nb, err := rdb.MasterForKey(ctx, b)
	must(t, err)
	if na.Options().Addr == nb.Options().Addr {
		t.Fatalf("%s and %s are both on %s; run the test against a cluster of three masters (scripts/redis-cluster.sh)",
			a, b, na.Options().Addr)
	}
}

// streamWorkers are the workers syncing one stream into one index.
type streamWorkers struct {
	consumer *redstream.Consumer
	delayer  *redstream.Delayer
	trimmer  *redstream.Trimmer
	handler  *elastic.Handler
}

// sync starts a consumer with the Elasticsearch handler, a delayer and a
// trimmer on stream, syncing table into the index of the same name.
func (e *clusterEnv) sync(t *testing.T, stream, table, softDelete string, delay time.Duration) *streamWorkers {
	t.Helper()
	ctx := context.Background()
	sqlDB, err := e.db.DB()
	must(t, err)
	loader, err := elastic.NewTableLoader(ctx, sqlDB, elastic.TableOptions{
		Table: table, SoftDeleteColumn: softDelete, VersionColumn: "updated_at",
	})
	must(t, err)
	h, err := elastic.NewHandler(e.es.Client(t), loader, &elastic.Options{Index: table})
	must(t, err)
	w := &streamWorkers{handler: h}
	w.consumer = newConsumer(t, e.rdb, stream, "indexer", h, fastOptions(e.ns))
	w.delayer = newDelayer(t, e.rdb, stream, delay, &redstream.DelayerOptions{
		Namespace: e.ns, Block: 100 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	w.trimmer = newTrimmer(t, e.rdb, stream, []string{"indexer"}, &redstream.TrimmerOptions{
		Namespace: e.ns, Interval: 50 * time.Millisecond,
	})
	start(t, w.consumer.Run)
	start(t, w.delayer.Run)
	start(t, w.trimmer.Run)
	return w
}

// indexMismatch compares the index named table with the rows the query
// selects (the live rows of table): each must be a document whose source
// is the row's row_to_json, and the index must hold nothing else. It
// returns "" when they agree.
func (e *clusterEnv) indexMismatch(t *testing.T, table, where string) string {
	t.Helper()
	rows, err := e.db.Raw("SELECT id::text, row_to_json(t)::text FROM " + table + " t WHERE " + where + " ORDER BY id").Rows()
	must(t, err)
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id, row string
		must(t, rows.Scan(&id, &row))
		n++
		src, _, ok := e.es.Doc(table, id)
		if !ok {
			return fmt.Sprintf("%s/%s: no document, want %s", table, id, row)
		}
		var got, want map[string]any
		must(t, json.Unmarshal(src, &got))
		must(t, json.Unmarshal([]byte(row), &want))
		if !reflect.DeepEqual(got, want) {
			return fmt.Sprintf("%s/%s: document %s, want %s", table, id, src, row)
		}
	}
	must(t, rows.Err())
	if c := e.es.Count(table); c != n {
		return fmt.Sprintf("%s: %d documents, want %d", table, c, n)
	}
	return ""
}

// waitSynced waits until both indexes match their tables.
func (e *clusterEnv) waitSynced(t *testing.T, what string) {
	t.Helper()
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for {
		last = e.indexMismatch(t, "products", "deleted_at IS NULL")
		if last == "" {
			last = e.indexMismatch(t, "orders", "true")
		}
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: indexes not in sync after 30s: %s", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *clusterEnv) xlen(t *testing.T, key string) int64 {
	t.Helper()
	n, err := e.rdb.XLen(context.Background(), key).Result()
	must(t, err)
	return n
}

// TestClusterEndToEnd runs the whole flow on a Redis Cluster: GORM writes
// captured by the plugin (create, update, delete, a transaction spanning
// both streams, a rollback), Producer.Bulk and BulkQuery, delay messages
// moved by the Delayer, consumers committing offsets, the Trimmer, and
// the Elasticsearch handler. The indexes must end equal to the tables, and
// no command may have been refused with CROSSSLOT.
func TestClusterEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newClusterEnv(t)
	db := e.db
	// Delay messages are moved 300ms after their write: a duplicate of the
	// main-stream message for ordinary writes, the only message for the
	// write below whose main-stream message is lost.
	products := e.sync(t, productsStream, "products", "deleted_at", 300*time.Millisecond)
	orders := e.sync(t, ordersStream, "orders", "", 300*time.Millisecond)

	// Creates, one and in batches.
	ps := make([]clusterProduct, 12)
	for i := range ps {
		ps[i] = clusterProduct{Title: fmt.Sprintf("product %d", i), Price: i}
	}
	must(t, db.CreateInBatches(ps, 5).Error)
	o := clusterOrder{ProductID: ps[0].ID, Qty: 1}
	must(t, db.Create(&o).Error)
	e.waitSynced(t, "after the creates")

	// Updates and deletes: soft, hard, by key.
	must(t, db.Model(&ps[1]).Update("title", "renamed").Error)
	ps[2].Price = 200
	must(t, db.Save(&ps[2]).Error)
	must(t, db.Delete(&ps[3]).Error)
	must(t, db.Unscoped().Delete(&clusterProduct{}, ps[4].ID).Error)

	// One transaction writing both streams: its delay messages go to two
	// masters in one pipeline before COMMIT, its main-stream messages in
	// one after.
	var o2 clusterOrder
	must(t, db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Model(&ps[0]).Update("price", 99).Error; err != nil {
			return err
		}
		o2 = clusterOrder{ProductID: ps[0].ID, Qty: 3}
		if err := tx.Create(&o2).Error; err != nil {
			return err
		}
		return tx.Model(&o).Update("qty", 2).Error
	}))

	// A rollback writes nothing.
	before := e.p.Stats()
	errRollback := errors.New("roll back")
	err := db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&clusterProduct{Title: "never"}).Error; err != nil {
			return err
		}
		if err := tx.Create(&clusterOrder{ProductID: ps[0].ID, Qty: 100}).Error; err != nil {
			return err
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("rolled-back transaction: %v, want %v", err, errRollback)
	}
	if after := e.p.Stats(); after.DelayMessages != before.DelayMessages || after.QueueMessages != before.QueueMessages {
		t.Errorf("a rollback wrote messages: stats %+v, then %+v", before, after)
	}

	// Raw SQL on both tables, wrapped in Producer.Bulk.
	refs := []redstream.Ref{{Stream: productsStream, ID: ps[5].ID}, {Stream: ordersStream, ID: o.ID}}
	must(t, e.p.Bulk(ctx, refs, func(ctx context.Context) error {
		return db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec("UPDATE products SET title = 'bulk', updated_at = now() WHERE id = ?", ps[5].ID).Error; err != nil {
				return err
			}
			return tx.Exec("UPDATE orders SET qty = qty + 10, updated_at = now() WHERE id = ?", o.ID).Error
		})
	}))

	// Every cheap product, in pages of 3 (ProducerOptions.BatchSize).
	must(t, e.p.BulkQuery(ctx, db.Model(&clusterProduct{}).Where("price < ?", 10),
		func(ctx context.Context, page *gorm.DB) error {
			return page.Update("title", gorm.Expr("title || ' (cheap)'")).Error
		}))
	e.waitSynced(t, "after updates, deletes, Bulk and BulkQuery")

	// A committed change whose main-stream message is lost: only its delay
	// message exists, and the Delayer delivers it.
	movedBefore := products.delayer.Stats().Moved
	must(t, redstream.SkipCapture(db).Model(&ps[6]).Update("title", "late").Error)
	must(t, e.p.Delay(ctx, &ps[6]))
	e.waitSynced(t, "after a change known only to the delay stream")
	if src, _, _ := e.es.Doc("products", fmt.Sprint(ps[6].ID)); !strings.Contains(string(src), `"late"`) {
		t.Errorf("products/%d = %s, want the late title", ps[6].ID, src)
	}
	if moved := products.delayer.Stats().Moved; moved <= movedBefore {
		t.Errorf("delayer moved %d messages, and %d before the lost write; want more", moved, movedBefore)
	}

	// WAIT runs on the master of each stream; this cluster has no
	// replicas, so it reports too few.
	pw := mustProducer(e.rdb, &redstream.ProducerOptions{Namespace: e.ns, WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
	var rerr *redstream.ReplicaError
	if err := pw.Delay(ctx, refs); !errors.As(err, &rerr) || rerr.Got != 0 {
		t.Errorf("Delay with WaitReplicas 1 on a cluster without replicas = %v, want a ReplicaError with 0 acknowledgements", err)
	}

	// Everything was delivered, the delay messages of committed changes
	// were deleted with their main-stream messages, the lost one was
	// moved, and the streams trimmed behind the committed offsets.
	for _, s := range []struct {
		stream string
		w      *streamWorkers
	}{{productsStream, products}, {ordersStream, orders}} {
		delayerOffset := e.keys.Offset(redstream.DelayStream(s.stream), redstream.DelayerName)
		eventually(t, 30*time.Second, s.stream+" and its delay stream trimmed empty, offsets stored", func() bool {
			moved := s.w.delayer.Stats().Committed
			return e.xlen(t, e.keys.Stream(s.stream)) == 0 && e.xlen(t, e.keys.Delay(s.stream)) == 0 &&
				getOffset(t, e.rdb, e.keys.Offset(s.stream, "indexer")) == s.w.consumer.Stats().Committed.String() &&
				(moved.IsZero() && getOffset(t, e.rdb, delayerOffset) == "" || getOffset(t, e.rdb, delayerOffset) == moved.String())
		})
		if st := s.w.consumer.Stats(); st.Committed.IsZero() || st.Messages == 0 || st.Errors != 0 {
			t.Errorf("%s: consumer stats %+v, want messages committed and no errors", s.stream, st)
		}
		// Only products had a change whose main-stream write was lost.
		if st := s.w.delayer.Stats(); (s.stream == productsStream) != (st.Moved > 0) || st.Errors != 0 {
			t.Errorf("%s: delayer stats %+v, want only the lost change moved, and no errors", s.stream, st)
		}
		if st := s.w.trimmer.Stats(); st.Trims == 0 || st.Trimmed == 0 || st.Errors != 0 {
			t.Errorf("%s: trimmer stats %+v, want trims and no errors", s.stream, st)
		}
		if st := s.w.handler.Stats(); st.Indexed == 0 || st.DeadLettered != 0 {
			t.Errorf("%s: handler stats %+v, want documents indexed and none dead-lettered", s.stream, st)
		}
	}
	if st := products.handler.Stats(); st.Deleted == 0 {
		t.Errorf("products handler deleted no document: %+v", st)
	}
	e.waitSynced(t, "at the end")
	if errs := e.rec.Errors(); len(errs) > 0 {
		t.Fatalf("CROSSSLOT errors: %v", errs)
	}
}

// TestClusterConsumer covers a consumer's life on a Redis Cluster: taking
// over a crashed holder's lease once it expires, dead letters, offsets, a
// takeover when the holder stops, and the fencing of a deposed lease.
func TestClusterConsumer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, ns := testenv.RedisCluster(t)
	rec := testenv.RecordCrossSlot(t, rdb)
	t.Cleanup(func() { rec.Check(t) })
	keys := redstream.NewKeys(ns)
	const stream = "{events}"
	key := keys.Stream(stream)
	lock := keys.Lock(redstream.ConsumerLockName(stream, "indexer"))

	// A holder that crashed: its lock expires in a moment, and it never
	// pushes to the notify list.
	must(t, rdb.Set(ctx, lock, "crashed-holder", 700*time.Millisecond).Err())

	ids := addMessages(t, rdb, key, 1, 10)
	invalid, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"other", "x"}}).Result()
	must(t, err)
	a := &deadLettering{poison: `{"id":5}`}
	ca := newConsumer(t, rdb, stream, "indexer", a, fastOptions(ns))
	wa := start(t, ca.Run)
	eventually(t, 30*time.Second, "the first consumer to commit past the invalid entry", func() bool {
		return getOffset(t, rdb, keys.Offset(stream, "indexer")) == invalid
	})
	if got, want := a.seen(), payloadsOf(1, 10); !slices.Equal(got, want) {
		t.Errorf("first consumer saw %v, want %v", got, want)
	}
	dl, err := rdb.XRange(ctx, keys.DeadLetter(stream, "indexer"), "-", "+").Result()
	must(t, err)
	if len(dl) != 2 || dl[0].Values["id"] != ids[4].String() || dl[0].Values["attempts"] != "1" ||
		dl[1].Values["id"] != invalid || dl[1].Values["attempts"] != "0" {
		t.Errorf("dead letters %v, want message 5 (attempt 1) and the invalid entry (attempt 0)", dl)
	}
	if st := ca.Stats(); st.DeadLettered != 2 || st.Committed.String() != invalid {
		t.Errorf("first consumer stats %+v, want 2 dead letters and offset %s", st, invalid)
	}

	// A second consumer of the same name waits, and takes over from the
	// committed offset when the first stops.
	b := &deadLettering{}
	cb := newConsumer(t, rdb, stream, "indexer", b, fastOptions(ns))
	start(t, cb.Run)
	addMessages(t, rdb, key, 11, 5)
	eventually(t, 30*time.Second, "the first consumer to handle 11-15", func() bool { return len(a.seen()) == 15 })
	if cb.Stats().Active || len(b.seen()) != 0 {
		t.Fatalf("the second consumer ran while the first held the lease: %+v", cb.Stats())
	}
	wa.stop(t)
	eventually(t, 30*time.Second, "the second consumer to take over", func() bool { return cb.Stats().Active })
	addMessages(t, rdb, key, 16, 5)
	eventually(t, 30*time.Second, "the second consumer to handle 16-20", func() bool { return len(b.seen()) == 5 })
	if got, want := b.seen(), payloadsOf(16, 20); !slices.Equal(got, want) {
		t.Errorf("second consumer saw %v, want %v", got, want)
	}

	// A deposed lease commits nothing.
	l, err := redstream.TryLease(ctx, rdb, redstream.ConsumerLockName(stream, "fenced"), &redstream.LeaseOptions{Namespace: ns})
	must(t, err)
	must(t, l.CommitOffset(ctx, stream, "fenced", ids[0]))
	must(t, rdb.Set(ctx, l.Key(), "another-holder", 0).Err())
	if err := l.CommitOffset(ctx, stream, "fenced", ids[1]); !errors.Is(err, redstream.ErrLockLost) {
		t.Errorf("CommitOffset of a deposed lease = %v, want ErrLockLost", err)
	}
	if got := getOffset(t, rdb, keys.Offset(stream, "fenced")); got != ids[0].String() {
		t.Errorf("offset after the deposed commit = %q, want %s", got, ids[0])
	}
	if err := l.Release(ctx); !errors.Is(err, redstream.ErrLockLost) {
		t.Errorf("Release of a deposed lease = %v, want ErrLockLost", err)
	}
}

// deadLettering records the payloads it sees and dead-letters poison.
type deadLettering struct {
	recorder
	poison string
}

func (h *deadLettering) HandleBatch(ctx context.Context, b *redstream.Batch) error {
	for _, m := range b.Messages {
		if string(m.Payload) == h.poison {
			b.DeadLetter(m, errors.New("poison"))
		}
	}
	return h.recorder.HandleBatch(ctx, b)
}

func (h *deadLettering) seen() []string {
	batches, _ := h.snapshot()
	var out []string
	for _, b := range batches {
		out = append(out, b...)
	}
	return out
}

// payloadsOf returns the payloads {"id":from} … {"id":to}.
func payloadsOf(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf(`{"id":%d}`, i))
	}
	return out
}

// TestClusterUnbracedStreamName: on a Redis Cluster, the workers and
// leases refuse a stream name whose keys would land in different hash
// slots, up front and naming the fix; braced names, and unbraced ones on a
// single server, are accepted.
func TestClusterUnbracedStreamName(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, ns := testenv.RedisCluster(t)
	rec := testenv.RecordCrossSlot(t, rdb)
	t.Cleanup(func() { rec.Check(t) })
	single, _ := testenv.Redis(t)
	h := redstream.HandlerFunc(func(context.Context, *redstream.Batch) error { return nil })
	const fix = "wrap the stream name in braces, e.g. {products}"

	constructors := map[string]func(rdb redis.UniversalClient, stream string) error{
		"NewConsumer": func(rdb redis.UniversalClient, stream string) error {
			_, err := redstream.NewConsumer(rdb, stream, "indexer", h, &redstream.ConsumerOptions{Namespace: ns})
			return err
		},
		"NewDelayer": func(rdb redis.UniversalClient, stream string) error {
			_, err := redstream.NewDelayer(rdb, stream, time.Minute, &redstream.DelayerOptions{Namespace: ns})
			return err
		},
		"NewTrimmer": func(rdb redis.UniversalClient, stream string) error {
			_, err := redstream.NewTrimmer(rdb, stream, []string{"indexer", "cache"}, &redstream.TrimmerOptions{Namespace: ns})
			return err
		},
	}
	for name, fn := range constructors {
		err := fn(rdb, "products")
		if err == nil || !strings.Contains(err.Error(), "Redis Cluster") || !strings.Contains(err.Error(), fix) {
			t.Errorf("%s(cluster, products) = %v, want an error saying to %s", name, err, fix)
		}
		if err := fn(rdb, productsStream); err != nil {
			t.Errorf("%s(cluster, %s) = %v", name, productsStream, err)
		}
		if err := fn(single, "products"); err != nil {
			t.Errorf("%s(single server, products) = %v", name, err)
		}
	}

	opts := &redstream.LeaseOptions{Namespace: ns}
	unbraced := redstream.ConsumerLockName("products", "indexer")
	if _, err := redstream.TryLease(ctx, rdb, unbraced, opts); err == nil || !strings.Contains(err.Error(), "braces") {
		t.Errorf("TryLease(cluster, %s) = %v, want an error saying to use braces", unbraced, err)
	}
	if _, err := redstream.AcquireLease(ctx, rdb, unbraced, opts); err == nil || !strings.Contains(err.Error(), "braces") {
		t.Errorf("AcquireLease(cluster, %s) = %v, want an error saying to use braces", unbraced, err)
	}
	l, err := redstream.TryLease(ctx, rdb, redstream.ConsumerLockName(productsStream, "indexer"), opts)
	must(t, err)
	must(t, l.Release(ctx))
	if n, err := rdb.Exists(ctx, l.Key()).Result(); err != nil || n != 0 {
		t.Errorf("lock %s after Release: exists %d, %v", l.Key(), n, err)
	}
}

// Keys.CheckCluster tells whether a stream's keys share a Redis Cluster
// hash slot, as the workers need.
func ExampleKeys_CheckCluster() {
	keys := redstream.NewKeys("shop")
	fmt.Println(keys.CheckCluster("{products}", "indexer"))
	fmt.Println(keys.CheckCluster("products", "indexer"))
	// Output:
	// <nil>
	// redstream: stream "products" cannot be used on Redis Cluster: its keys "shop:redstream:stream:products" (hash slot 10529) and "shop:redstream:stream:products.delay" (hash slot 12902) must share a slot for the scripts that commit offsets and move delay messages; wrap the stream name in braces, e.g. {products}
}

// TestClusterShardsSpread: the shards of a braced stream name have hash
// slots of their own, so they land on more than one master, and a group
// of consumers serves them all through the producer's acknowledged writes.
func TestClusterShardsSpread(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, ns := testenv.RedisCluster(t)
	rec := testenv.RecordCrossSlot(t, rdb)
	t.Cleanup(func() { rec.Check(t) })
	keys := redstream.NewKeys(ns)
	const shards = 6
	names := redstream.ShardNames("{orders}", shards)
	masters := map[string]bool{}
	for _, s := range names {
		must(t, keys.CheckCluster(s, "indexer"))
		node, err := rdb.MasterForKey(ctx, keys.Stream(s))
		must(t, err)
		masters[node.Options().Addr] = true
	}
	if len(masters) < 2 {
		t.Fatalf("the %d shards of {orders} all live on %v", shards, masters)
	}

	p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns})
	var refs []redstream.Ref
	for id := 1; id <= 30; id++ {
		refs = append(refs, redstream.Ref{Stream: redstream.ShardName("{orders}", id, shards), ID: id})
	}
	must(t, p.Bulk(ctx, refs, func(context.Context) error { return nil }))

	var mu sync.Mutex
	seen := map[string]bool{}
	var units []redstream.Unit
	for _, s := range names {
		c := newConsumer(t, rdb, s, "indexer", redstream.HandlerFunc(func(_ context.Context, b *redstream.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range b.Messages {
				seen[string(m.Payload)] = true
			}
			return nil
		}), fastOptions(ns))
		units = append(units, redstream.Unit{Name: s, Lock: redstream.ConsumerLockName(s, "indexer"), Run: c.Run})
	}
	g, err := redstream.NewGroup(rdb, "workers", units, &redstream.GroupOptions{Namespace: ns, Interval: 100 * time.Millisecond})
	must(t, err)
	start(t, g.Run)
	eventually(t, 30*time.Second, "every sharded message consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 30
	})
	for _, s := range names {
		if n := rdb.XLen(ctx, keys.Delay(s)).Val(); n != 0 {
			t.Errorf("%s: %d delay messages left, want each deleted with its main-stream message", s, n)
		}
	}
	t.Logf("%d shards on %d masters", shards, len(masters))
}
