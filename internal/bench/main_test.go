package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
}

func TestPercentile(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(i+1) * time.Millisecond
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.9: 90 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := percentile(ds, q); got != want {
			t.Errorf("percentile(%v) = %v, want %v", q, got, want)
		}
	}
	if got := percentile(ds[:1], 0.99); got != time.Millisecond {
		t.Errorf("percentile of one = %v", got)
	}
}

// TestReport: the fraction of a limit is taken run by run, and every
// figure has a RESULT line that is JSON.
func TestReport(t *testing.T) {
	r := newReport("s", 2)
	r.declare(figure{name: "limit", unit: "msg/s", higherBetter: true})
	r.declare(figure{name: "ours", unit: "msg/s", higherBetter: true, limit: "limit", target: "≥ 1"})
	r.declare(figure{name: "ratio", unit: "×", limit: "floor"})
	r.declare(figure{name: "floor", unit: "×"})
	for i, v := range [][4]float64{{100, 50, 1.5, 1.2}, {200, 150, 1.25, 1.25}} {
		if err := r.run(i, func() error {
			r.add("limit", v[0])
			r.add("ours", v[1])
			r.add("ratio", v[2])
			r.add("floor", v[3])
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	r.print(&out)
	got := map[string]resultLine{}
	for _, l := range strings.Split(out.String(), "\n") {
		if rest, ok := strings.CutPrefix(l, "RESULT "); ok {
			var rl resultLine
			if err := json.Unmarshal([]byte(rest), &rl); err != nil {
				t.Fatalf("RESULT line is not JSON: %v: %s", err, rest)
			}
			got[rl.Figure] = rl
		}
	}
	if len(got) != 4 {
		t.Fatalf("%d RESULT lines, want 4:\n%s", len(got), out.String())
	}
	// Runs 50/100 and 150/200: fractions 0.5 and 0.75, median 0.625.
	if f := got["ours"].Fraction; f == nil || *f != 0.625 {
		t.Errorf("fraction of ours = %v, want 0.625", f)
	}
	// Lower is better: 1.2/1.5 and 1.25/1.25, median 0.9.
	if f := got["ratio"].Fraction; f == nil || *f != 0.9 {
		t.Errorf("fraction of ratio = %v, want 0.9", f)
	}
	if m := got["ours"].Median; m != 100 {
		t.Errorf("median of ours = %v, want 100", m)
	}
	if len(got["ours"].Load) != 2 {
		t.Errorf("load of %d runs, want 2", len(got["ours"].Load))
	}
}

func TestRunUsage(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{{}, {"nosuch"}, {"-runs", "0", "create"}, {"-updates", "2", "latency"},
		{"-e2e-rate", "0", "e2e"}, {"-mem-runs", "0", "delaymem"}, {"-mem-duration", "0s", "delaymem"}, {"-scale-rows", "10", "scale"}} {
		var stdout, stderr bytes.Buffer
		if code := run(ctx, args, &stdout, &stderr); code != 2 {
			t.Errorf("run(%q) = %d, want 2; stderr: %s", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "latency") ||
		!strings.Contains(stderr.String(), "delaymem") || !strings.Contains(stderr.String(), "scale") {
		t.Errorf("-h = %d, %q", code, stderr.String())
	}
}

func TestShorten(t *testing.T) {
	cfg := config{runs: 5, createN: 2000, duration: 20 * time.Second, warmup: 3 * time.Second, rows: 1_000_000,
		e2eDuration: 20 * time.Second, e2eDelay: 5 * time.Second, memDuration: 5 * time.Minute, scaleRows: 300_000}
	shorten(&cfg, map[string]bool{"rows": true, "e2e-delay": true})
	if cfg.runs != 3 || cfg.createN != 400 || cfg.duration != 5*time.Second || cfg.rows != 1_000_000 ||
		cfg.e2eDuration != 8*time.Second || cfg.e2eDelay != 5*time.Second || cfg.memDuration != 15*time.Second ||
		cfg.scaleRows != 60_000 {
		t.Errorf("shorten = %+v", cfg)
	}
}

// TestModeOrder: the two delay modes alternate which runs first.
func TestModeOrder(t *testing.T) {
	if a, b := modeOrder(0), modeOrder(1); a[0] == b[0] || a[0] == a[1] || b[0] == b[1] {
		t.Errorf("modeOrder(0) = %v, modeOrder(1) = %v", a, b)
	}
}

// TestScaleOrder: every run drains with 1, 2 and 3 processes, and
// consecutive runs start at opposite ends.
func TestScaleOrder(t *testing.T) {
	for run := range 4 {
		o := scaleOrder(run)
		if !slices.Equal(slices.Sorted(slices.Values(o)), []int{1, 2, 3}) {
			t.Errorf("scaleOrder(%d) = %v, want 1, 2 and 3", run, o)
		}
		if next := scaleOrder(run + 1); next[0] == o[0] {
			t.Errorf("scaleOrder(%d) and (%d) both start with %d", run, run+1, o[0])
		}
	}
}

// TestStatTicks reads this process's CPU time from /proc where there is one.
func TestStatTicks(t *testing.T) {
	st, ok := statTicks("/proc/self/stat")
	if !ok {
		t.Fatal("cannot read /proc/self/stat: the CPU figures of the bench command need Linux's /proc")
	}
	if st.comm == "" {
		t.Errorf("statTicks = %+v, want a name", st)
	}
	if got := selfTicks(); got < st.ticks {
		t.Errorf("selfTicks = %d after %d: went backwards", got, st.ticks)
	}
}
