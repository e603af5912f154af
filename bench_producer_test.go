package redstream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// pairDBs opens two *gorm.DB on one fresh schema: off without the plugin,
// on with it, its producer made with opts (Namespace set to a fresh one;
// closed at cleanup), which it returns too.
func pairDBs(b *testing.B, opts redstream.ProducerOptions) (off, on *gorm.DB, p *redstream.Producer) {
	b.Helper()
	rdb, ns := testenv.Redis(b)
	dsn := testenv.Schema(b)
	open := func() *gorm.DB {
		db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			b.Fatal(err)
		}
		sqlDB, _ := db.DB()
		b.Cleanup(func() { sqlDB.Close() })
		return db
	}
	off, on = open(), open()
	opts.Namespace = ns
	p = mustProducer(rdb, &opts)
	b.Cleanup(func() { p.Close(context.Background()) })
	if err := on.Use(redstream.NewPlugin(p)); err != nil {
		b.Fatal(err)
	}
	if err := off.AutoMigrate(&Product{}); err != nil {
		b.Fatal(err)
	}
	return off, on, p
}

// delayModes are the sub-benchmarks of the producer benchmarks:
// delay=keep is ProducerOptions.KeepDelayMessages (every delay message
// stays until the Delayer moves it), delay=ack the default (the
// main-stream write deletes it in the same script). Compare them with
// benchstat -col /delay.
var delayModes = []struct {
	name string
	keep bool
}{
	{"delay=keep", true},
	{"delay=ack", false},
}

// interleave times off and on alternately, so that both see the same
// machine, and reports each one's time per op and their ratio. settle,
// when not nil, runs untimed after each on, to wait for background work
// that would otherwise slow down the next off.
func interleave(b *testing.B, unit string, off, on, settle func()) {
	var tOff, tOn time.Duration
	timed := func(f func(), total *time.Duration, after func()) {
		start := time.Now()
		f()
		*total += time.Since(start)
		if after != nil {
			after()
		}
	}
	for i := 0; b.Loop(); i++ {
		// Alternate which goes first, so neither always follows the other.
		if i%2 == 0 {
			timed(off, &tOff, nil)
			timed(on, &tOn, settle)
		} else {
			timed(on, &tOn, settle)
			timed(off, &tOff, nil)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(tOff.Microseconds())/n, "off-µs/"+unit)
	b.ReportMetric(float64(tOn.Microseconds())/n, "on-µs/"+unit)
	b.ReportMetric(float64(tOn)/float64(tOff), "on/off")
}

// BenchmarkCreateSingle: one create per implicit transaction, plugin on vs
// off (the Ruby gem: 1.45×).
//
// publish=sync is the default (Commit returns once the main-stream message
// is written); publish=async is ProducerOptions.AsyncPublish. Under each,
// delay=keep and delay=ack (see delayModes).
func BenchmarkCreateSingle(b *testing.B) {
	for _, async := range []bool{false, true} {
		name := "publish=sync"
		if async {
			name = "publish=async"
		}
		for _, mode := range delayModes {
			b.Run(name+"/"+mode.name, func(b *testing.B) {
				off, on, p := pairDBs(b, redstream.ProducerOptions{AsyncPublish: async, KeepDelayMessages: mode.keep})
				// With AsyncPublish, wait (untimed) until the background
				// writer has written each create's main-stream message.
				var settle func()
				if async {
					var creates int64
					settle = func() {
						creates++
						deadline := time.Now().Add(10 * time.Second)
						for p.Stats().QueueMessages < creates {
							if time.Now().After(deadline) {
								b.Fatalf("main-stream message %d not written within 10 s", creates)
							}
							time.Sleep(20 * time.Microsecond)
						}
					}
				}
				interleave(b, "create",
					func() {
						if err := off.Create(&Product{Title: "bench", Price: 1}).Error; err != nil {
							b.Fatal(err)
						}
					},
					func() {
						if err := on.Create(&Product{Title: "bench", Price: 1}).Error; err != nil {
							b.Fatal(err)
						}
					}, settle)
			})
		}
	}
}

// BenchmarkCreateTx1000: 1,000 creates in one transaction, plugin on vs off
// (the Ruby gem: 2.60×), with delay=keep and delay=ack (see delayModes).
func BenchmarkCreateTx1000(b *testing.B) {
	for _, mode := range delayModes {
		b.Run(mode.name, func(b *testing.B) {
			off, on, _ := pairDBs(b, redstream.ProducerOptions{KeepDelayMessages: mode.keep})
			run := func(db *gorm.DB) func() {
				return func() {
					err := db.Transaction(func(tx *gorm.DB) error {
						for range 1000 {
							if err := tx.Create(&Product{Title: "bench", Price: 1}).Error; err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			interleave(b, "tx", run(off), run(on), nil)
		})
	}
}

// BenchmarkProducerBulk: Producer.Bulk over 1,000 records with an empty fn:
// 1,000 delay and 1,000 main-stream messages per op (the Ruby gem: 30.5k
// messages/s), with delay=keep and delay=ack (see delayModes: with ack, the
// main-stream write also deletes the 1,000 delay messages).
func BenchmarkProducerBulk(b *testing.B) {
	for _, size := range []int{1000, 10000} {
		for _, mode := range delayModes {
			b.Run(fmt.Sprint("records=", size, "/", mode.name), func(b *testing.B) {
				benchProducerBulk(b, size, mode.keep)
			})
		}
	}
}

func benchProducerBulk(b *testing.B, size int, keep bool) {
	rdb, ns := testenv.Redis(b)
	p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns, KeepDelayMessages: keep})
	records := make([]Product, size)
	for i := range records {
		records[i].ID = int64(i + 1)
	}
	ctx := context.Background()
	noop := func(context.Context) error { return nil }
	var msgs int
	for b.Loop() {
		if err := p.Bulk(ctx, records, noop); err != nil {
			b.Fatal(err)
		}
		msgs += 2 * size
		if msgs >= 2_000_000 {
			// Keep Redis memory bounded across long runs.
			b.StopTimer()
			rdb.Del(ctx, p.Keys().Stream("products"), p.Keys().Delay("products"))
			msgs = 0
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(2*size*b.N)/b.Elapsed().Seconds(), "msg/s")
}

// BenchmarkProducerBulkVsRaw alternates Producer.Bulk over 1,000 records
// with the same Redis work done with no framework (two pipelines of 1,000
// XADDs whose arguments are built before the timer starts), op by op, so
// that both see the same machine. It reports each one's msg/s and the
// fraction of the raw rate Bulk reaches. With delay=ack (see delayModes),
// the raw loop's second pipeline ends with one XDEL of the 1,000 delay
// messages, the deletes Bulk's main-stream script does (without its
// atomicity).
func BenchmarkProducerBulkVsRaw(b *testing.B) {
	for _, mode := range delayModes {
		b.Run(mode.name, func(b *testing.B) { benchBulkVsRaw(b, mode.keep) })
	}
}

func benchBulkVsRaw(b *testing.B, keep bool) {
	const size = 1000
	rdb, ns := testenv.Redis(b)
	p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns, KeepDelayMessages: keep})
	records := make([]Product, size)
	for i := range records {
		records[i].ID = int64(i + 1)
	}
	keys := redstream.NewKeys(ns)
	rawKeys := []string{keys.Delay("raw"), keys.Stream("raw")}
	args := make([][][]any, len(rawKeys))
	for k, key := range rawKeys {
		args[k] = make([][]any, size)
		for i := range size {
			args[k][i] = []any{"xadd", key, "*", "payload", fmt.Sprintf(`{"id":%d}`, i+1)}
		}
	}
	ctx := context.Background()
	noop := func(context.Context) error { return nil }
	xdel := make([]any, 2, 2+size) // XDEL <delay key> <the ids of the first pipeline>
	xdel[0], xdel[1] = "xdel", rawKeys[0]
	raw := func() {
		for k := range rawKeys {
			cmds, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
				for _, a := range args[k] {
					pipe.Do(ctx, a...)
				}
				if k == 1 && !keep {
					pipe.Do(ctx, xdel...)
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			if k == 0 && !keep {
				xdel = xdel[:2]
				for _, c := range cmds {
					xdel = append(xdel, c.(*redis.Cmd).Val())
				}
			}
		}
	}
	bulk := func() {
		if err := p.Bulk(ctx, records, noop); err != nil {
			b.Fatal(err)
		}
	}
	var tBulk, tRaw time.Duration
	timed := func(f func(), total *time.Duration) {
		start := time.Now()
		f()
		*total += time.Since(start)
	}
	msgs := 0
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			timed(bulk, &tBulk)
			timed(raw, &tRaw)
		} else {
			timed(raw, &tRaw)
			timed(bulk, &tBulk)
		}
		if msgs += 2 * size; msgs >= 1_000_000 {
			// Keep Redis memory bounded across long runs.
			b.StopTimer()
			rdb.Del(ctx, p.Keys().Stream("products"), p.Keys().Delay("products"), rawKeys[0], rawKeys[1])
			msgs = 0
			b.StartTimer()
		}
	}
	n := float64(2 * size * b.N)
	b.ReportMetric(n/tBulk.Seconds(), "bulk-msg/s")
	b.ReportMetric(n/tRaw.Seconds(), "raw-msg/s")
	b.ReportMetric(tRaw.Seconds()/tBulk.Seconds(), "bulk/raw")
}

// BenchmarkRawXAdd is the limit Producer.Bulk is measured against:
// pipelined XADDs of pre-built payloads, 1,000 per round trip, with no
// framework (each command's arguments are built before the timer starts).
func BenchmarkRawXAdd(b *testing.B) {
	rdb, ns := testenv.Redis(b)
	key := redstream.NewKeys(ns).Stream("raw")
	ctx := context.Background()
	args := make([][]any, 1000)
	for i := range args {
		args[i] = []any{"xadd", key, "*", "payload", fmt.Sprintf(`{"id":%d}`, i+1)}
	}
	var msgs int
	for b.Loop() {
		_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, a := range args {
				pipe.Do(ctx, a...)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if msgs += len(args); msgs >= 2_000_000 {
			b.StopTimer()
			rdb.Del(ctx, key)
			msgs = 0
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(len(args)*b.N)/b.Elapsed().Seconds(), "msg/s")
}

// BenchmarkProducerQueueOne: one main-stream message per call, back to
// back, as the plugin writes a single-row transaction's messages: one
// Redis round trip each.
func BenchmarkProducerQueueOne(b *testing.B) {
	rdb, ns := testenv.Redis(b)
	p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns})
	ctx := context.Background()
	rec := Product{ID: 42}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Queue(ctx, &rec); err != nil {
			b.Fatal(err)
		}
	}
	rdb.Del(ctx, p.Keys().Stream("products"))
}
