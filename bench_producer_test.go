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
// on with it.
func pairDBs(b *testing.B) (off, on *gorm.DB) {
	return pairDBsWith(b, false)
}

// pairDBsWith is pairDBs with a choice of AsyncPublish for the plugin's
// producer (closed at cleanup).
func pairDBsWith(b *testing.B, async bool) (off, on *gorm.DB) {
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
	p := redstream.NewProducer(rdb, &redstream.ProducerOptions{Namespace: ns, AsyncPublish: async})
	b.Cleanup(func() { p.Close(context.Background()) })
	if err := on.Use(redstream.NewPlugin(p)); err != nil {
		b.Fatal(err)
	}
	if err := off.AutoMigrate(&Product{}); err != nil {
		b.Fatal(err)
	}
	return off, on
}

// interleave times off and on alternately, so that both see the same
// machine, and reports each one's time per op and their ratio.
func interleave(b *testing.B, unit string, off, on func()) {
	var tOff, tOn time.Duration
	for i := 0; b.Loop(); i++ {
		// Alternate which goes first, so neither always follows the other.
		first, second := off, on
		pFirst, pSecond := &tOff, &tOn
		if i%2 == 1 {
			first, second, pFirst, pSecond = on, off, &tOn, &tOff
		}
		start := time.Now()
		first()
		mid := time.Now()
		second()
		*pFirst += mid.Sub(start)
		*pSecond += time.Since(mid)
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
// is written); publish=async is ProducerOptions.AsyncPublish.
func BenchmarkCreateSingle(b *testing.B) {
	for _, async := range []bool{false, true} {
		name := "publish=sync"
		if async {
			name = "publish=async"
		}
		b.Run(name, func(b *testing.B) {
			off, on := pairDBsWith(b, async)
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
				})
		})
	}
}

// BenchmarkCreateTx1000: 1,000 creates in one transaction, plugin on vs off
// (the Ruby gem: 2.60×).
func BenchmarkCreateTx1000(b *testing.B) {
	off, on := pairDBs(b)
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
	interleave(b, "tx", run(off), run(on))
}

// BenchmarkProducerBulk: Producer.Bulk over 1,000 records with an empty fn:
// 1,000 delay and 1,000 main-stream messages per op (the Ruby gem: 30.5k
// messages/s).
func BenchmarkProducerBulk(b *testing.B) {
	for _, size := range []int{1000, 10000} {
		b.Run(fmt.Sprint("records=", size), func(b *testing.B) {
			rdb, ns := testenv.Redis(b)
			p := redstream.NewProducer(rdb, &redstream.ProducerOptions{Namespace: ns})
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
		})
	}
}

// BenchmarkRawXAdd is the limit Producer.Bulk is measured against:
// pipelined XADDs of pre-built payloads, 1,000 per round trip, with no
// framework.
func BenchmarkRawXAdd(b *testing.B) {
	rdb, ns := testenv.Redis(b)
	key := redstream.NewKeys(ns).Stream("raw")
	ctx := context.Background()
	payloads := make([]string, 1000)
	for i := range payloads {
		payloads[i] = fmt.Sprintf(`{"id":%d}`, i+1)
	}
	var msgs int
	for b.Loop() {
		_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, pl := range payloads {
				pipe.Do(ctx, "xadd", key, "*", "payload", pl)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if msgs += len(payloads); msgs >= 2_000_000 {
			b.StopTimer()
			rdb.Del(ctx, key)
			msgs = 0
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(len(payloads)*b.N)/b.Elapsed().Seconds(), "msg/s")
}
