package redstream_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// The worker benchmarks mirror the Ruby gem's measurements: each operation
// processes a pre-filled stream, and the reported msg/s is messages over the
// timed seconds of all operations. Run them with a fixed count, e.g.
//
//	go test -run '^$' -bench Workers -benchtime 5x .

const (
	benchConsumerMessages = 200_000
	benchDelayerMessages  = 100_000
	benchTrimmerMessages  = 200_000
)

// BenchmarkWorkersConsumerDrain drains a pre-filled stream with a no-op
// handler and the default batch size, from 0-0 with a fresh consumer name,
// until the last id is committed and the lease released.
func BenchmarkWorkersConsumerDrain(b *testing.B) {
	rdb, ns := testenv.Redis(b)
	keys := redstream.NewKeys(ns)
	ids := addMessages(b, rdb, keys.Stream("products"), 1, benchConsumerMessages)
	last := ids[len(ids)-1]
	var elapsed time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		h := redstream.HandlerFunc(func(_ context.Context, batch *redstream.Batch) error {
			if batch.Messages[len(batch.Messages)-1].ID == last {
				cancel() // the batch is still committed
			}
			return nil
		})
		c, err := redstream.NewConsumer(rdb, "products", "bench"+strconv.Itoa(i), h, &redstream.ConsumerOptions{Namespace: ns})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := c.Run(ctx); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		if got := c.Stats().Committed; got != last {
			b.Fatalf("committed %v, want %v", got, last)
		}
	}
	b.ReportMetric(float64(b.N*benchConsumerMessages)/elapsed.Seconds(), "msg/s")
}

// BenchmarkWorkersDelayer moves a pre-filled delay stream of due messages
// to the main stream, until the delay stream is empty.
func BenchmarkWorkersDelayer(b *testing.B) {
	rdb, ns := testenv.Redis(b)
	keys := redstream.NewKeys(ns)
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		stream := "products" + strconv.Itoa(i)
		ids := addMessages(b, rdb, keys.Delay(stream), 1, benchDelayerMessages)
		last := ids[len(ids)-1]
		d, err := redstream.NewDelayer(rdb, stream, 0, &redstream.DelayerOptions{
			Namespace: ns,
			Now:       func() time.Time { return time.Now().Add(time.Hour) }, // all due
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- d.Run(ctx) }()
		tick := time.NewTicker(time.Millisecond)
		for d.Stats().Committed != last {
			<-tick.C
		}
		elapsed += time.Since(start)
		tick.Stop()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if n := rdb.XLen(context.Background(), keys.Delay(stream)).Val(); n != 0 {
			b.Fatalf("delay stream has %d entries left", n)
		}
		rdb.Del(context.Background(), keys.Stream(stream), keys.Delay(stream))
	}
	b.ReportMetric(float64(b.N*benchDelayerMessages)/elapsed.Seconds(), "msg/s")
}

// BenchmarkWorkersTrimmer trims a pre-filled stream whose two consumers
// have both committed the last id, in one Trim. Run it with a count-based
// -benchtime (e.g. 3x) or the default: each op fills 200k messages first.
func BenchmarkWorkersTrimmer(b *testing.B) {
	rdb, ns := testenv.Redis(b)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	var elapsed time.Duration
	// The timer runs through the fill too, so that b.N stays small: a trim
	// takes milliseconds, the fill it needs most of a second. The metric
	// counts only the time inside Trim.
	for i := 0; i < b.N; i++ {
		ids := addMessages(b, rdb, keys.Stream("products"), 1, benchTrimmerMessages)
		last := ids[len(ids)-1].String()
		rdb.Set(ctx, keys.Offset("products", "indexer"), last, 0)
		rdb.Set(ctx, keys.Offset("products", "cache"), last, 0)
		t, err := redstream.NewTrimmer(rdb, "products", []string{"indexer", "cache"}, &redstream.TrimmerOptions{Namespace: ns})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		n, err := t.Trim(ctx)
		elapsed += time.Since(start)
		if err != nil || n != benchTrimmerMessages {
			b.Fatalf("Trim = %d, %v; want %d", n, err, benchTrimmerMessages)
		}
	}
	b.ReportMetric(float64(b.N*benchTrimmerMessages)/elapsed.Seconds(), "msg/s")
}
