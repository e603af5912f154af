package redstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// logLine is a JSON log line of a worker.
type logLine struct {
	Time      time.Time     `json:"time"`
	Level     string        `json:"level"`
	Msg       string        `json:"msg"`
	Attempt   int           `json:"attempt"`
	RetryIn   time.Duration `json:"retry_in"`
	NextRetry time.Time     `json:"next_retry"`
	Failing   time.Duration `json:"failing_for"`
	NotLogged *int          `json:"not_logged"`
	Outage    time.Duration `json:"outage"`
	Failed    int           `json:"failed_attempts"`
}

func parseLogLines(t *testing.T, out string) []logLine {
	t.Helper()
	var lines []logLine
	for _, s := range strings.Split(strings.TrimSpace(out), "\n") {
		var l logLine
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("log line %q: %v", s, err)
		}
		lines = append(lines, l)
	}
	return lines
}

// TestConsumerOutageLogs runs a consumer whose handler fails for a while,
// then recovers: during the outage the consumer logs its first failure at
// once and then progress lines at a bounded rate, each with the attempt
// count, the wait before the next retry (never above MaxBackoff) and its
// time; every failure is either logged or counted in the next line; the
// recovery line gives the outage's length and its failed attempts; and
// every message is committed once the handler works again.
func TestConsumerOutageLogs(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ids := addMessages(t, rdb, keys.Stream("products"), 1, 5)

	var failing atomic.Bool
	failing.Store(true)
	var failures atomic.Int64
	h := redstream.HandlerFunc(func(ctx context.Context, b *redstream.Batch) error {
		if failing.Load() {
			failures.Add(1)
			return errors.New("elasticsearch: 500 Internal Server Error")
		}
		return nil
	})
	const (
		maxBackoff = 40 * time.Millisecond
		every      = 150 * time.Millisecond
		long       = 450 * time.Millisecond
	)
	logs := &logBuffer{}
	opts := fastOptions(ns)
	opts.MinBackoff, opts.MaxBackoff = 5*time.Millisecond, maxBackoff
	opts.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	c := newConsumer(t, rdb, "products", "indexer", h, opts)
	redstream.SetLogRate(c, every, long)
	start(t, c.Run)
	eventually(t, 10*time.Second, "the handler to fail", func() bool { return failures.Load() >= 3 })
	time.Sleep(1200 * time.Millisecond)
	failing.Store(false)
	eventually(t, 10*time.Second, "the batch to be committed", func() bool { return c.Stats().Committed == ids[4] })
	if st := c.Stats(); st.Messages != 5 || st.Batches != 1 {
		t.Fatalf("Stats() = %+v, want the 5 messages in one batch", st)
	}

	var progress, recovered []logLine
	for _, l := range parseLogLines(t, logs.String()) {
		switch l.Msg {
		case "redstream: handler failed; retrying the batch":
			progress = append(progress, l)
		case "redstream: consumer recovered":
			recovered = append(recovered, l)
		}
	}
	n := int(failures.Load())
	if len(recovered) != 1 {
		t.Fatalf("%d recovery lines, want 1:\n%s", len(recovered), logs.String())
	}
	rec := recovered[0]
	if rec.Failed != n || rec.Level != "INFO" || rec.Outage < time.Second {
		t.Errorf("recovery line %+v, want INFO with failed_attempts=%d and an outage of at least 1s", rec, n)
	}
	// Lines at most every `every` during the outage's first `long`, then
	// at most every `long`.
	bound := int((long+every-1)/every) + 1 + int((rec.Outage-long)/long)
	if len(progress) < 2 || len(progress) > bound {
		t.Fatalf("%d outage lines for %d failures in %v, want 2 to %d:\n%s", len(progress), n, rec.Outage, bound, logs.String())
	}
	prev := 0
	for i, l := range progress {
		if l.Level != "ERROR" || l.Attempt <= prev || l.NextRetry.IsZero() || l.RetryIn <= 0 || l.RetryIn > maxBackoff {
			t.Fatalf("outage line %d: %+v, want ERROR, attempt above %d, 0 < retry_in <= %v, next_retry", i, l, prev, maxBackoff)
		}
		if l.NextRetry.Before(l.Time.Add(-time.Second)) {
			t.Errorf("outage line %d: next_retry %v long before the line (%v)", i, l.NextRetry, l.Time)
		}
		switch {
		case i == 0 && (l.Attempt != 1 || l.NotLogged != nil):
			t.Errorf("first outage line %+v, want attempt 1 and no not_logged", l)
		case i > 0 && (l.NotLogged == nil || *l.NotLogged != l.Attempt-prev-1 || l.Failing <= 0):
			t.Errorf("outage line %d: %+v, want not_logged=%d (the failures since attempt %d) and failing_for", i, l, l.Attempt-prev-1, prev)
		}
		prev = l.Attempt
	}
	if prev > n {
		t.Errorf("last logged attempt %d of %d failures", prev, n)
	}
	t.Logf("%d failures, %d outage lines (at most %d), outage %v", n, len(progress), bound, rec.Outage)
}
