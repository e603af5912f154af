package redstream_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// The worker benchmarks mirror the Ruby gem's measurements: each operation
// processes a pre-filled stream, and the reported msg/s is messages over the
// timed seconds of all operations. Run them with a fixed count, e.g.
//
//	go test -run '^$' -bench Workers -benchtime 5x .
//
// Each also reports the CPU time per message, over the same timed
// sections, of the benchmark process (cpu-ns/msg: the worker's own code
// and its Redis client; where /proc/self/stat exists) and of the Redis
// server (redis-cpu-ns/msg, from INFO cpu, so it counts anything else that
// uses the server meanwhile). On a shared machine they move much less with
// the load than msg/s does.

// cpuMeter adds up the CPU time of this process and of the Redis server
// between start and stop.
type cpuMeter struct {
	rdb                  *redis.Client
	self, redis          time.Duration
	self0, redis0        time.Duration
	selfOK, redisOK, run bool
}

func newCPUMeter(rdb *redis.Client) *cpuMeter {
	m := &cpuMeter{rdb: rdb}
	_, m.selfOK = selfCPU()
	_, m.redisOK = redisCPU(rdb)
	return m
}

func (m *cpuMeter) start() {
	m.self0, _ = selfCPU()
	m.redis0, _ = redisCPU(m.rdb)
	m.run = true
}

func (m *cpuMeter) stop() {
	if !m.run {
		return
	}
	s, _ := selfCPU()
	r, _ := redisCPU(m.rdb)
	m.self += s - m.self0
	m.redis += r - m.redis0
	m.run = false
}

// report reports the CPU time per message of msgs messages.
func (m *cpuMeter) report(b *testing.B, msgs int) {
	m.stop()
	// Less than a clock tick (a Trimmer's trim) is not measured.
	if m.selfOK && m.self > 0 {
		b.ReportMetric(float64(m.self.Nanoseconds())/float64(msgs), "cpu-ns/msg")
	}
	if m.redisOK {
		b.ReportMetric(float64(m.redis.Nanoseconds())/float64(msgs), "redis-cpu-ns/msg")
	}
}

// selfCPU returns this process's user and system CPU time so far, from
// /proc/self/stat (in clock ticks of 10 ms); false where there is none.
func selfCPU() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	// After the name: state ppid pgrp session tty_nr tpgid flags minflt
	// cminflt majflt cmajflt utime stime.
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+st) * 10 * time.Millisecond, true
}

// redisCPU returns the Redis server's user and system CPU time so far
// (INFO cpu); false when it cannot be read.
func redisCPU(rdb *redis.Client) (time.Duration, bool) {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		return 0, false
	}
	var total float64
	n := 0
	for _, l := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, false
			}
			total += f
			n++
		}
	}
	return time.Duration(total * float64(time.Second)), n == 2
}

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
	cpu := newCPUMeter(rdb)
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
		cpu.start()
		start := time.Now()
		if err := c.Run(ctx); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
		cpu.stop()
		if got := c.Stats().Committed; got != last {
			b.Fatalf("committed %v, want %v", got, last)
		}
	}
	b.ReportMetric(float64(b.N*benchConsumerMessages)/elapsed.Seconds(), "msg/s")
	cpu.report(b, b.N*benchConsumerMessages)
}

// BenchmarkWorkersDelayer moves a pre-filled delay stream of due messages
// to the main stream, until the delay stream is empty.
func BenchmarkWorkersDelayer(b *testing.B) {
	rdb, ns := testenv.Redis(b)
	keys := redstream.NewKeys(ns)
	var elapsed time.Duration
	cpu := newCPUMeter(rdb)
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
		cpu.start()
		start := time.Now()
		go func() { done <- d.Run(ctx) }()
		tick := time.NewTicker(time.Millisecond)
		for d.Stats().Committed != last {
			<-tick.C
		}
		elapsed += time.Since(start)
		cpu.stop()
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
	cpu.report(b, b.N*benchDelayerMessages)
}

// BenchmarkWorkersTrimmer trims a pre-filled stream whose two consumers
// have both committed the last id, in one Trim. Run it with a count-based
// -benchtime (e.g. 3x) or the default: each op fills 200k messages first.
func BenchmarkWorkersTrimmer(b *testing.B) {
	rdb, ns := testenv.Redis(b)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	var elapsed time.Duration
	cpu := newCPUMeter(rdb)
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
		cpu.start()
		start := time.Now()
		n, err := t.Trim(ctx)
		elapsed += time.Since(start)
		cpu.stop()
		if err != nil || n != benchTrimmerMessages {
			b.Fatalf("Trim = %d, %v; want %d", n, err, benchTrimmerMessages)
		}
	}
	b.ReportMetric(float64(b.N*benchTrimmerMessages)/elapsed.Seconds(), "msg/s")
	cpu.report(b, b.N*benchTrimmerMessages)
}
