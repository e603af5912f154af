package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
)

// delayModes are the two ways the producer treats delay messages: keep
// (ProducerOptions.KeepDelayMessages, the Ruby gem's way: every delay
// message stays until the Delayer moves it) and ack (the default: the
// main-stream write deletes it).
var delayModes = []struct {
	name string
	keep bool
}{
	{"keep", true},
	{"ack", false},
}

// modeOrder returns the indexes of delayModes in the order run number run
// takes them: alternating, so that neither always runs first.
func modeOrder(run int) []int {
	if run%2 == 0 {
		return []int{0, 1}
	}
	return []int{1, 0}
}

// runDelayMem measures what the delay stream holds in Redis after a long
// steady write load, in both delay modes: single-row creates through GORM
// with the plugin, paced at -mem-rate for -mem-duration, with a Delayer
// whose delay (-mem-delay, as long as the run by default) moves nothing
// during the run. At the end it records MEMORY USAGE (SAMPLES 0: every
// node counted) and XLEN of the delay stream, and the same of the main
// stream for comparison. No consumer runs: the delay stream's content does
// not depend on one.
func runDelayMem(ctx context.Context, cfg *config, rep *report) error {
	for _, m := range delayModes {
		rep.declare(figure{name: "delay-bytes/" + m.name, unit: "bytes", desc: "MEMORY USAGE of the delay stream at the end, " + m.name + " mode"})
		rep.declare(figure{name: "delay-xlen/" + m.name, unit: "entries", desc: "XLEN of the delay stream at the end, " + m.name + " mode"})
		rep.declare(figure{name: "delay-xlen-max/" + m.name, unit: "entries", desc: "largest XLEN of the delay stream seen during the run (sampled each second), " + m.name + " mode"})
		rep.declare(figure{name: "main-bytes/" + m.name, unit: "bytes", desc: "MEMORY USAGE of the main stream at the end (no consumer, no trimmer), " + m.name + " mode"})
		rep.declare(figure{name: "rate/" + m.name, unit: "creates/s", desc: fmt.Sprintf("achieved create rate (target %d/s), %s mode", cfg.memRate, m.name), target: fmt.Sprint(cfg.memRate)})
		rep.declare(figure{name: "creates/" + m.name, unit: "creates", desc: "creates committed in the run, " + m.name + " mode"})
		rep.declare(figure{name: "write-p50/" + m.name, unit: "ms", desc: "one create through GORM + plugin, median, " + m.name + " mode"})
		rep.declare(figure{name: "moved/" + m.name, unit: "messages", desc: "messages the Delayer had moved when the delay stream was measured (the first ones come due as a run of -mem-delay ends), " + m.name + " mode"})
		rep.declare(figure{name: "errors/" + m.name, unit: "creates", desc: "creates that failed, " + m.name + " mode"})
	}
	rep.declare(figure{name: "delay-bytes keep/ack", unit: "×", desc: "delay stream memory, keep over ack, run by run"})
	var loads []string
	for run := range cfg.memRuns {
		err := rep.run(run, func() error {
			for _, i := range modeOrder(run) {
				m := delayModes[i]
				before := loadAvg()
				if err := delayMemRun(ctx, cfg, rep, m.name, m.keep); err != nil {
					return fmt.Errorf("%s mode: %w", m.name, err)
				}
				loads = append(loads, fmt.Sprintf("run %d %s %.2f→%.2f", run+1, m.name, before, loadAvg()))
			}
			f := rep.byName
			n := len(f["delay-bytes keep/ack"].values)
			rep.add("delay-bytes keep/ack", f["delay-bytes/keep"].values[n]/f["delay-bytes/ack"].values[n])
			return nil
		})
		if err != nil {
			return err
		}
	}
	var conf []string
	if rdb, err := openRedis(ctx); err == nil {
		for _, k := range []string{"stream-node-max-bytes", "stream-node-max-entries"} {
			if v, err := rdb.ConfigGet(ctx, k).Result(); err == nil {
				conf = append(conf, k+" "+v[k])
			}
		}
		rdb.Close()
	}
	rep.note("Single-row creates at %d/s for %s per mode, %d writers, a Delayer of %s, no consumer; Redis %s.",
		cfg.memRate, cfg.memDuration, cfg.writers, cfg.memDelay, strings.Join(conf, ", "))
	rep.note("load average (1 min) before→after each mode: %s", strings.Join(loads, ", "))
	return nil
}

// delayMemRun runs one mode in a fresh space and records its figures.
func delayMemRun(ctx context.Context, cfg *config, rep *report, mode string, keep bool) error {
	s, err := newSpace(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	a, err := openApp(s, cfg.writers, redstream.ProducerOptions{KeepDelayMessages: keep}, nil)
	if err != nil {
		return err
	}
	defer a.close()
	workerRedis, err := openRedis(ctx)
	if err != nil {
		return err
	}
	defer workerRedis.Close()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := redstream.NewDelayer(workerRedis, "products", cfg.memDelay, &redstream.DelayerOptions{Namespace: s.ns, Logger: quiet})
	if err != nil {
		return err
	}
	dctx, stopDelayer := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(dctx) }()
	defer func() {
		stopDelayer()
		<-done
	}()

	delayKey, mainKey := s.keys.Delay("products"), s.keys.Stream("products")
	// Sample the delay stream's length each second.
	var (
		mu      sync.Mutex
		maxXLen int64
	)
	sctx, stopSampler := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
			if n, err := workerRedis.XLen(sctx, delayKey).Result(); err == nil {
				mu.Lock()
				maxXLen = max(maxXLen, n)
				mu.Unlock()
			}
		}
	}()

	total := int(cfg.memDuration.Seconds() * float64(cfg.memRate))
	res, err := paced(ctx, cfg.memRate, total, 0, cfg.writers, func(ctx context.Context, w *write) error {
		return a.create(ctx, w, rand.IntN(1000))
	})
	stopSampler()
	wg.Wait()
	if err != nil {
		return err
	}
	if n := res.failed; n > 0 && n*100 > int64(total) {
		return fmt.Errorf("%d of %d creates failed, e.g. %v", n, total, res.firstErr)
	}
	// Measured as soon as the last create returned.
	delayBytes, err := workerRedis.MemoryUsage(ctx, delayKey, 0).Result()
	if err != nil && err != redis.Nil {
		return fmt.Errorf("MEMORY USAGE %s: %w", delayKey, err)
	}
	delayLen, err := workerRedis.XLen(ctx, delayKey).Result()
	if err != nil {
		return err
	}
	moved := d.Stats().Moved
	stopDelayer()
	mainBytes, err := workerRedis.MemoryUsage(ctx, mainKey, 0).Result()
	if err != nil && err != redis.Nil {
		return fmt.Errorf("MEMORY USAGE %s: %w", mainKey, err)
	}
	n, rate, _, took := res.achieved(func(w *write) bool { return !w.failed })
	if n == 0 {
		return errors.New("no create succeeded")
	}
	mu.Lock()
	maxLen := max(maxXLen, delayLen)
	mu.Unlock()
	rep.add("delay-bytes/"+mode, float64(delayBytes))
	rep.add("delay-xlen/"+mode, float64(delayLen))
	rep.add("delay-xlen-max/"+mode, float64(maxLen))
	rep.add("main-bytes/"+mode, float64(mainBytes))
	rep.add("rate/"+mode, rate)
	rep.add("creates/"+mode, float64(n))
	rep.add("write-p50/"+mode, ms(percentile(took, 0.5)))
	rep.add("moved/"+mode, float64(moved))
	rep.add("errors/"+mode, float64(res.failed))
	return nil
}
