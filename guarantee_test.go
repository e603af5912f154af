package redstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

// TestDelayStreamGuarantee runs the whole pipeline while every main-stream
// write after COMMIT fails: creates, updates, soft and hard deletes and a
// rolled-back transaction go through GORM, no change reaches the main
// stream from the producer, and the Delayer delivers every one of them,
// after the delay, to a consumer with the Elasticsearch handler. The index
// must end exactly like the table: every live row's document with its
// current title, price and version, no document for a soft-deleted or
// deleted row. The producer counts each lost main-stream write.
func TestDelayStreamGuarantee(t *testing.T) {
	t.Parallel()
	const delay = time.Second
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()

	// The producer's own client fails every write to the main stream.
	faulty := redis.NewClient(rdb.Options())
	t.Cleanup(func() { _ = faulty.Close() })
	hook := &faultHook{fail: func(key string) bool { return key == keys.Stream("products") }}
	faulty.AddHook(hook)
	logs := &logBuffer{}
	p := mustProducer(faulty, &redstream.ProducerOptions{Namespace: ns, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	db := testenv.GORM(t, nil)
	must(t, db.Use(redstream.NewPlugin(p)))
	must(t, db.AutoMigrate(&Product{}))
	sqlDB, err := db.DB()
	must(t, err)

	srv := estest.New(t)
	l, err := elastic.NewTableLoader(ctx, sqlDB, elastic.TableOptions{
		Table: "products", SoftDeleteColumn: "deleted_at", VersionColumn: "updated_at",
	})
	must(t, err)
	h, err := elastic.NewHandler(srv.Client(t), l, &elastic.Options{Index: "products"})
	must(t, err)
	var (
		mu           sync.Mutex
		firstHandled time.Time
	)
	timed := redstream.HandlerFunc(func(ctx context.Context, b *redstream.Batch) error {
		mu.Lock()
		if firstHandled.IsZero() {
			firstHandled = time.Now()
		}
		mu.Unlock()
		return h.HandleBatch(ctx, b)
	})
	d, err := redstream.NewDelayer(rdb, "products", delay, &redstream.DelayerOptions{
		Namespace: ns, Block: 100 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	})
	must(t, err)
	c := newConsumer(t, rdb, "products", "indexer", timed, fastOptions(ns))
	start(t, d.Run)
	start(t, c.Run)

	// The writes: each committed transaction is one lost main-stream
	// pipeline.
	began := time.Now()
	commits, records := 0, 0
	var rows []*Product
	for i := range 30 {
		row := &Product{Title: fmt.Sprint("p", i), Price: i}
		must(t, db.Create(row).Error)
		rows = append(rows, row)
		commits, records = commits+1, records+1
	}
	batch := make([]*Product, 10)
	for i := range batch {
		batch[i] = &Product{Title: fmt.Sprint("b", i), Price: 100 + i}
	}
	must(t, db.Create(&batch).Error)
	rows = append(rows, batch...)
	commits, records = commits+1, records+len(batch)
	must(t, db.Transaction(func(tx *gorm.DB) error {
		a, b := &Product{Title: "tx-a"}, &Product{Title: "tx-b"}
		if err := tx.Create(a).Error; err != nil {
			return err
		}
		if err := tx.Create(b).Error; err != nil {
			return err
		}
		rows = append(rows, a, b)
		return tx.Model(rows[0]).Update("title", "p0 in tx").Error
	}))
	commits, records = commits+1, records+3
	errRollback := errors.New("rolled back")
	if err := db.Transaction(func(tx *gorm.DB) error {
		must(t, tx.Create(&Product{Title: "never"}).Error)
		return errRollback
	}); !errors.Is(err, errRollback) {
		t.Fatalf("rolled-back transaction: %v", err)
	}
	for _, row := range rows[1:11] {
		must(t, db.Model(row).Update("title", row.Title+" updated").Error)
		commits, records = commits+1, records+1
	}
	for _, row := range rows[11:16] {
		must(t, db.Model(row).Updates(map[string]any{"title": row.Title + " repriced", "price": row.Price * 2}).Error)
		commits, records = commits+1, records+1
	}
	for _, row := range rows[16:21] {
		must(t, db.Delete(row).Error) // soft
		commits, records = commits+1, records+1
	}
	var hardDeleted []int64
	for _, row := range rows[21:26] {
		must(t, db.Unscoped().Delete(row).Error)
		hardDeleted = append(hardDeleted, row.ID)
		commits, records = commits+1, records+1
	}

	st := p.Stats()
	if st.QueueFailures != int64(commits) || st.QueueMessages != 0 || st.DelayMessages != int64(records) || st.DelayFailures != 0 {
		t.Errorf("producer stats %+v; want %d queue failures, no queue message, %d delay messages", st, commits, records)
	}
	if n := hook.calls.Load(); n == 0 {
		t.Error("the fault hook saw no command")
	}

	// Every delay message is moved, and the index ends exactly like the
	// table. (It may match earlier: a late create message of a row also
	// indexes the row's later updates.)
	eventually(t, 30*time.Second, "the delayer to move every delay message", func() bool {
		return d.Stats().Moved >= int64(records)
	})
	var diff string
	deadline := time.Now().Add(30 * time.Second)
	for diff = indexDiff(t, db, srv, hardDeleted); diff != ""; diff = indexDiff(t, db, srv, hardDeleted) {
		if time.Now().After(deadline) {
			t.Fatalf("the index does not match the table: %s", diff)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	first := firstHandled
	mu.Unlock()
	// Delay message ids carry milliseconds: allow for the truncation.
	if got := first.Sub(began); got < delay-time.Millisecond {
		t.Errorf("the first change reached the consumer %v after the first write, before the delay of %v", got, delay)
	}
	eventually(t, 5*time.Second, "the delay stream to empty", func() bool { return rdb.XLen(ctx, keys.Delay("products")).Val() == 0 })
	// Every main-stream message came from the Delayer.
	if n, moved := rdb.XLen(ctx, keys.Stream("products")).Val(), d.Stats().Moved; n != int64(moved) {
		t.Errorf("main stream has %d messages; the delayer moved %d", n, moved)
	}
	if cs := c.Stats(); cs.DeadLettered != 0 {
		t.Errorf("consumer stats %+v: dead letters", cs)
	}
}

// indexDiff compares every row of products (soft-deleted ones included)
// and the hard-deleted ids with the index; "" when they agree.
func indexDiff(t *testing.T, db *gorm.DB, srv *estest.Server, hardDeleted []int64) string {
	t.Helper()
	var rows []Product
	must(t, redstream.SkipCapture(db).Unscoped().Order("id").Find(&rows).Error)
	live := 0
	for _, r := range rows {
		src, version, ok := srv.Doc("products", fmt.Sprint(r.ID))
		if r.DeletedAt.Valid {
			if ok {
				return fmt.Sprintf("soft-deleted row %d is indexed", r.ID)
			}
			continue
		}
		live++
		if !ok {
			return fmt.Sprintf("row %d is not indexed", r.ID)
		}
		var d struct {
			ID    int64  `json:"id"`
			Title string `json:"title"`
			Price int    `json:"price"`
		}
		if err := json.Unmarshal(src, &d); err != nil {
			return fmt.Sprintf("document %d: %v", r.ID, err)
		}
		if d.ID != r.ID || d.Title != r.Title || d.Price != r.Price || version != r.UpdatedAt.UnixMicro() {
			return fmt.Sprintf("document %d is %s version %d; row is %+v version %d", r.ID, src, version, r, r.UpdatedAt.UnixMicro())
		}
	}
	for _, id := range hardDeleted {
		if _, _, ok := srv.Doc("products", fmt.Sprint(id)); ok {
			return fmt.Sprintf("deleted row %d is indexed", id)
		}
	}
	if n := srv.Count("products"); n != live {
		return fmt.Sprintf("%d documents for %d live rows", n, live)
	}
	return ""
}
