package main

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// write is one scheduled write and what happened to it.
type write struct {
	due, start, done time.Time
	measured         bool
	failed           bool     // do returned an error
	model            *product // a create's row (its ID is set by the INSERT)
	id               int64    // an update's row

	commit, ack time.Time // set under tracker.mu
}

// pacedResult is what a paced run did.
type pacedResult struct {
	writes   []*write // in schedule order
	failed   int64
	firstErr error
}

// paced releases total writes at rate: write i is due at start + i/rate,
// and the first warm of them are not measured. A scheduler hands each
// write, as it comes due, to one of writers goroutines running do, through
// a queue that never blocks it: the schedule never waits for the writers
// (open loop), so a slow write does not delay the next one. paced returns
// once every write has run, or errStopped when ctx ended first.
func paced(ctx context.Context, rate, total, warm, writers int, do func(ctx context.Context, w *write) error) (*pacedResult, error) {
	period := time.Second / time.Duration(rate)
	jobs := make(chan *write, total)
	var (
		wg     sync.WaitGroup
		failed atomic.Int64
		firstE atomic.Value
	)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range jobs {
				if ctx.Err() != nil {
					continue // drain the queue
				}
				w.start = time.Now()
				err := do(ctx, w)
				w.done = time.Now()
				if err != nil {
					w.failed = true
					failed.Add(1)
					firstE.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	// The schedule: write i is due at start + i*period; the ticker only
	// decides when to release the writes that have come due.
	writes := make([]*write, 0, total)
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	sent := 0
	for sent < total && ctx.Err() == nil {
		due := min(int(time.Since(start)/period)+1, total)
		for ; sent < due; sent++ {
			w := &write{due: start.Add(time.Duration(sent) * period), measured: sent >= warm}
			writes = append(writes, w)
			jobs <- w
		}
		<-tick.C
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil {
		return nil, errStopped
	}
	r := &pacedResult{writes: writes, failed: failed.Load()}
	if e, ok := firstE.Load().(error); ok {
		r.firstErr = e
	}
	return r, nil
}

// achieved returns the measured writes that succeeded, the rate at which
// they ran (from the first one's due time to the last one's end), and the
// writers' start lag and write times, sorted.
func (r *pacedResult) achieved(ok func(w *write) bool) (n int, rate float64, lag, took []time.Duration) {
	var first, last time.Time
	for _, w := range r.writes {
		if !w.measured || !ok(w) {
			continue
		}
		if first.IsZero() {
			first = w.due
		}
		if w.done.After(last) {
			last = w.done
		}
		lag = append(lag, w.start.Sub(w.due))
		took = append(took, w.done.Sub(w.start))
	}
	n = len(took)
	if n > 0 && last.After(first) {
		rate = float64(n) / last.Sub(first).Seconds()
	}
	slices.Sort(lag)
	slices.Sort(took)
	return n, rate, lag, took
}
