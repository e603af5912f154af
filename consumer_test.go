package redstream_test

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// worker is a started Run, stopped by stop.
type worker struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs run in a goroutine; the test's cleanup stops it.
func start(t testing.TB, run func(context.Context) error) *worker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{cancel: cancel, done: make(chan error, 1)}
	go func() { w.done <- run(ctx) }()
	t.Cleanup(func() { w.stop(t) })
	return w
}

// stop cancels the worker and waits for Run to return nil.
func (w *worker) stop(t testing.TB) {
	t.Helper()
	if w.done == nil {
		return
	}
	w.cancel()
	select {
	case err := <-w.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	w.done = nil
}

// recorder is a handler that records what it sees.
type recorder struct {
	mu      sync.Mutex
	batches [][]string // payloads per batch
	ids     []redstream.ID
}

func (r *recorder) HandleBatch(_ context.Context, b *redstream.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ps []string
	for _, m := range b.Messages {
		ps = append(ps, string(m.Payload))
		r.ids = append(r.ids, m.ID)
	}
	r.batches = append(r.batches, ps)
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids)
}

func (r *recorder) snapshot() ([][]string, []redstream.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]string(nil), r.batches...), append([]redstream.ID(nil), r.ids...)
}

// fastOptions keeps tests quick: short reads and backoffs.
func fastOptions(ns string) *redstream.ConsumerOptions {
	return &redstream.ConsumerOptions{
		Namespace:  ns,
		Block:      100 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	}
}

func newConsumer(t testing.TB, rdb redis.UniversalClient, stream, name string, h redstream.Handler, opts *redstream.ConsumerOptions) *redstream.Consumer {
	t.Helper()
	c, err := redstream.NewConsumer(rdb, stream, name, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConsumerBatchesAndOffset(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ids := addMessages(t, rdb, keys.Stream("products"), 1, 25)

	rec := &recorder{}
	opts := fastOptions(ns)
	opts.BatchSize = 10
	c := newConsumer(t, rdb, "products", "indexer", rec, opts)
	w := start(t, c.Run)
	eventually(t, 5*time.Second, "25 messages", func() bool { return c.Stats().Committed == ids[24] })

	batches, seen := rec.snapshot()
	if got, want := fmt.Sprint(len(batches[0]), len(batches[1]), len(batches[2])), "10 10 5"; len(batches) != 3 || got != want {
		t.Fatalf("batch sizes = %v, want %s", batches, want)
	}
	if batches[0][0] != `{"id":1}` || batches[2][4] != `{"id":25}` {
		t.Fatalf("payloads = %v", batches)
	}
	for i, id := range seen {
		if id != ids[i] {
			t.Fatalf("message %d has id %v, want %v", i, id, ids[i])
		}
	}
	if got := getOffset(t, rdb, keys.Offset("products", "indexer")); got != ids[24].String() {
		t.Fatalf("offset = %q, want %v", got, ids[24])
	}
	st := c.Stats()
	if !st.Active || st.Batches != 3 || st.Messages != 25 || st.Errors != 0 || st.DeadLettered != 0 || st.Lag != 0 {
		t.Fatalf("Stats() = %+v", st)
	}

	// Messages added later are delivered too: an idle consumer keeps up.
	more := addMessages(t, rdb, keys.Stream("products"), 26, 3)
	eventually(t, 5*time.Second, "3 more messages", func() bool { return c.Stats().Committed == more[2] })

	w.stop(t)
	if n := rdb.Exists(context.Background(), keys.Lock(redstream.ConsumerLockName("products", "indexer"))).Val(); n != 0 {
		t.Fatal("lock not released after Run returned")
	}
	if c.Stats().Active {
		t.Fatal("stopped consumer reports Active")
	}
}

func TestConsumerUsesExistingOffset(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ids := addMessages(t, rdb, keys.Stream("products"), 1, 10)
	rdb.Set(context.Background(), keys.Offset("products", "indexer"), ids[4].String(), 0)

	rec := &recorder{}
	c := newConsumer(t, rdb, "products", "indexer", rec, fastOptions(ns))
	start(t, c.Run)
	eventually(t, 5*time.Second, "the last message", func() bool { return c.Stats().Committed == ids[9] })
	if _, seen := rec.snapshot(); len(seen) != 5 || seen[0] != ids[5] {
		t.Fatalf("seen %v, want the 5 messages after %v", seen, ids[4])
	}
}

// TestConsumerMutualExclusion runs two consumers of one name: only one
// handles batches at a time, and when it stops the other takes over at once
// and does not starve.
func TestConsumerMutualExclusion(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	stream := keys.Stream("products")

	var inside, overlap atomic.Int32
	var mu sync.Mutex
	handledBy := map[string]int{}
	handler := func(who string) redstream.HandlerFunc {
		return func(ctx context.Context, b *redstream.Batch) error {
			if inside.Add(1) > 1 {
				overlap.Add(1)
			}
			defer inside.Add(-1)
			mu.Lock()
			handledBy[who] += len(b.Messages)
			mu.Unlock()
			return nil
		}
	}
	total := func() int {
		mu.Lock()
		defer mu.Unlock()
		return handledBy["a"] + handledBy["b"]
	}
	opts := fastOptions(ns)
	opts.BatchSize = 7
	a := newConsumer(t, rdb, "products", "indexer", handler("a"), opts)
	b := newConsumer(t, rdb, "products", "indexer", handler("b"), opts)
	wa, wb := start(t, a.Run), start(t, b.Run)

	addMessages(t, rdb, stream, 1, 100)
	eventually(t, 5*time.Second, "100 messages", func() bool { return total() == 100 })
	if a.Stats().Active == b.Stats().Active {
		t.Fatalf("active: a=%v b=%v, want exactly one", a.Stats().Active, b.Stats().Active)
	}
	active, standby, wActive := a, b, wa
	if b.Stats().Active {
		active, standby, wActive = b, a, wb
	}
	if standby.Stats().Messages != 0 {
		t.Fatal("the standby consumer handled messages")
	}

	stopped := time.Now()
	wActive.stop(t)
	eventually(t, 2*time.Second, "the standby to take over", func() bool { return standby.Stats().Active })
	t.Logf("standby took over %v after the active consumer stopped", time.Since(stopped))
	ids := addMessages(t, rdb, stream, 101, 50)
	eventually(t, 5*time.Second, "50 more messages", func() bool { return standby.Stats().Committed == ids[49] })
	if total() != 150 || overlap.Load() != 0 {
		t.Fatalf("handled %d messages with %d overlaps, want 150 and 0", total(), overlap.Load())
	}
	if active.Stats().Messages+standby.Stats().Messages != 150 {
		t.Fatalf("Messages %d + %d, want 150", active.Stats().Messages, standby.Stats().Messages)
	}
}

func TestConsumerRetriesWithBackoff(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ids := addMessages(t, rdb, keys.Stream("products"), 1, 3)

	var calls []time.Time
	var attempts []int
	var mu sync.Mutex
	h := redstream.HandlerFunc(func(ctx context.Context, b *redstream.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, time.Now())
		attempts = append(attempts, b.Attempt)
		if len(calls) <= 3 {
			return errors.New("store down")
		}
		return nil
	})
	opts := fastOptions(ns)
	opts.MinBackoff = 40 * time.Millisecond
	opts.MaxBackoff = time.Second
	c := newConsumer(t, rdb, "products", "indexer", h, opts)
	start(t, c.Run)
	eventually(t, 5*time.Second, "the batch to succeed", func() bool { return c.Stats().Committed == ids[2] })

	mu.Lock()
	defer mu.Unlock()
	if got, want := fmt.Sprint(attempts), "[1 2 3 4]"; got != want {
		t.Fatalf("attempts = %s, want %s", got, want)
	}
	// Backoff doubles from 40ms with jitter in [d/2, d]: at least 20, 40, 80ms.
	for i, least := range []time.Duration{20, 40, 80} {
		if gap := calls[i+1].Sub(calls[i]); gap < least*time.Millisecond {
			t.Fatalf("retry %d after %v, want at least %vms", i+1, gap, least)
		}
	}
	if st := c.Stats(); st.Errors != 3 || st.Batches != 1 || st.Messages != 3 {
		t.Fatalf("Stats() = %+v", st)
	}
}

// TestConsumerDeadLettersPoison dead-letters a message the handler can
// never process, while the stream keeps moving.
func TestConsumerDeadLettersPoison(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	stream := keys.Stream("products")
	addMessages(t, rdb, stream, 1, 5)
	poison := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"payload", `{"id":"poison"}`}}).Val()
	noPayload := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"other", "x"}}).Val()
	notJSON := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"payload", `{"id":`}}).Val()
	addMessages(t, rdb, stream, 6, 5)

	rec := &recorder{}
	h := redstream.HandlerFunc(func(ctx context.Context, b *redstream.Batch) error {
		var good []redstream.Message
		for _, m := range b.Messages {
			var p struct{ ID json.Number }
			if err := json.Unmarshal(m.Payload, &p); err != nil {
				b.DeadLetter(m, fmt.Errorf("bad id: %w", err))
				continue
			}
			good = append(good, m)
		}
		return rec.HandleBatch(ctx, &redstream.Batch{Messages: good})
	})
	opts := fastOptions(ns)
	opts.BatchSize = 4
	c := newConsumer(t, rdb, "products", "indexer", h, opts)
	start(t, c.Run)
	eventually(t, 5*time.Second, "10 good messages", func() bool { return rec.count() == 10 })
	eventually(t, 5*time.Second, "the final commit", func() bool { return c.Stats().Messages == 13 })
	if st := c.Stats(); st.DeadLettered != 3 || st.Errors != 0 {
		t.Fatalf("Stats() = %+v", st)
	}

	dlq := rdb.XRange(ctx, keys.DeadLetter("products", "indexer"), "-", "+").Val()
	if len(dlq) != 3 {
		t.Fatalf("dead-letter stream has %d entries, want 3", len(dlq))
	}
	want := []struct{ id, payload, fields, errPrefix, attempts string }{
		{poison, `{"id":"poison"}`, "", "bad id: ", "1"},
		{noPayload, "", `{"other":"x"}`, "redstream: invalid message: no payload field", "0"},
		{notJSON, `{"id":`, "", "redstream: invalid message: payload is not JSON", "0"},
	}
	for i, w := range want {
		v := dlq[i].Values
		if v["id"] != w.id || v["stream"] != "products" || v["consumer"] != "indexer" || v["attempts"] != w.attempts {
			t.Errorf("dead letter %d = %v, want id %s attempts %s", i, v, w.id, w.attempts)
		}
		if p, _ := v["payload"].(string); p != w.payload {
			t.Errorf("dead letter %d payload = %q, want %q", i, p, w.payload)
		}
		if f, _ := v["fields"].(string); f != w.fields {
			t.Errorf("dead letter %d fields = %q, want %q", i, f, w.fields)
		}
		if e, _ := v["error"].(string); len(e) < len(w.errPrefix) || e[:len(w.errPrefix)] != w.errPrefix {
			t.Errorf("dead letter %d error = %q, want prefix %q", i, e, w.errPrefix)
		}
		if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(v["time"])); err != nil {
			t.Errorf("dead letter %d time: %v", i, err)
		}
	}
}

// TestConsumerDeposed stalls the lease refreshes of a consumer whose
// handler is busy: another consumer takes over within TTL + 1 s, and the
// deposed one commits nothing when its handler returns.
func TestConsumerDeposed(t *testing.T) {
	t.Parallel()
	stalledClient, ns := testenv.Redis(t)
	hook := newStallHook()
	stalledClient.AddHook(hook)
	rdb, _ := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ids := addMessages(t, rdb, keys.Stream("products"), 1, 10)
	ttl := 500 * time.Millisecond

	entered := make(chan struct{})
	finish := make(chan struct{})
	var once sync.Once
	var returned atomic.Bool
	deposed := redstream.HandlerFunc(func(ctx context.Context, b *redstream.Batch) error {
		once.Do(func() { close(entered) })
		<-finish // ignores ctx, as a careless handler would
		returned.Store(true)
		return nil
	})
	opts := fastOptions(ns)
	opts.LockTTL = ttl
	a := newConsumer(t, stalledClient, "products", "indexer", deposed, opts)
	start(t, a.Run)
	<-entered
	if lag := a.Stats().Lag; lag <= 0 {
		t.Fatalf("Lag = %v while a batch is in hand, want > 0", lag)
	}
	hook.stall(true)
	stalledAt := time.Now()

	rec := &recorder{}
	b := newConsumer(t, rdb, "products", "indexer", rec, opts)
	start(t, b.Run)
	eventually(t, ttl+time.Second, "the second consumer to take over", func() bool { return b.Stats().Committed == ids[9] })
	t.Logf("took over and committed %v after the refreshes stalled", time.Since(stalledAt))

	close(finish)
	eventually(t, 5*time.Second, "the deposed handler to return", returned.Load)
	eventually(t, 5*time.Second, "the deposed consumer to go standby", func() bool { return !a.Stats().Active })
	if st := a.Stats(); st.Batches != 0 || st.Messages != 0 {
		t.Fatalf("deposed consumer committed: %+v", st)
	}
	if got := getOffset(t, rdb, keys.Offset("products", "indexer")); got != ids[9].String() {
		t.Fatalf("offset = %q, want %v", got, ids[9])
	}
}

// TestConsumerGracefulShutdown stops a consumer in the middle of a batch:
// the handler's context is cancelled, a batch it completes is committed,
// and the lease is released at once.
func TestConsumerGracefulShutdown(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ids := addMessages(t, rdb, keys.Stream("products"), 1, 5)
	entered := make(chan struct{})
	h := redstream.HandlerFunc(func(ctx context.Context, b *redstream.Batch) error {
		close(entered)
		<-ctx.Done() // finishes its work despite the cancellation
		return nil
	})
	opts := fastOptions(ns)
	opts.Block = time.Second
	c := newConsumer(t, rdb, "products", "indexer", h, opts)
	w := start(t, c.Run)
	<-entered
	stopped := time.Now()
	w.stop(t)
	t.Logf("Run returned %v after cancel", time.Since(stopped))
	if got := getOffset(t, rdb, keys.Offset("products", "indexer")); got != ids[4].String() {
		t.Fatalf("offset = %q, want %v", got, ids[4])
	}
	lock := keys.Lock(redstream.ConsumerLockName("products", "indexer"))
	if n := rdb.Exists(context.Background(), lock).Val(); n != 0 {
		t.Fatal("lock not released")
	}

	// Abandoned: a handler that gives up on cancellation is not committed.
	more := addMessages(t, rdb, keys.Stream("products"), 6, 1)
	entered2 := make(chan struct{})
	h2 := redstream.HandlerFunc(func(ctx context.Context, b *redstream.Batch) error {
		close(entered2)
		<-ctx.Done()
		return ctx.Err()
	})
	c2 := newConsumer(t, rdb, "products", "indexer", h2, opts)
	w2 := start(t, c2.Run)
	<-entered2
	w2.stop(t)
	if got := getOffset(t, rdb, keys.Offset("products", "indexer")); got != ids[4].String() {
		t.Fatalf("offset = %q after an abandoned batch, want %v (not %v)", got, ids[4], more[0])
	}
}

func TestConsumerHandlerPanic(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ids := addMessages(t, rdb, keys.Stream("products"), 1, 2)
	var n atomic.Int32
	h := redstream.HandlerFunc(func(ctx context.Context, b *redstream.Batch) error {
		if n.Add(1) == 1 {
			panic("boom")
		}
		return nil
	})
	c := newConsumer(t, rdb, "products", "indexer", h, fastOptions(ns))
	start(t, c.Run)
	eventually(t, 5*time.Second, "a commit after the panic", func() bool { return c.Stats().Committed == ids[1] })
	if st := c.Stats(); st.Errors != 1 {
		t.Fatalf("Stats() = %+v, want 1 error", st)
	}
}

func TestConsumerOptions(t *testing.T) {
	t.Parallel()
	rdb, _ := testenv.Redis(t)
	h := redstream.HandlerFunc(func(context.Context, *redstream.Batch) error { return nil })
	for i, tc := range []struct {
		rdb          redis.UniversalClient
		stream, name string
		h            redstream.Handler
		opts         *redstream.ConsumerOptions
	}{
		{nil, "s", "c", h, nil},
		{rdb, "", "c", h, nil},
		{rdb, "s", "", h, nil},
		{rdb, "s", "c", nil, nil},
		{rdb, "s", "c", h, &redstream.ConsumerOptions{BatchSize: -1}},
		{rdb, "s", "c", h, &redstream.ConsumerOptions{Block: -time.Second}},
	} {
		if _, err := redstream.NewConsumer(tc.rdb, tc.stream, tc.name, tc.h, tc.opts); err == nil {
			t.Errorf("case %d: NewConsumer accepted invalid arguments", i)
		}
	}
	c, err := redstream.NewConsumer(rdb, "s", "c", h, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatalf("Run with a done context: %v", err)
	}
}

func TestConsumerInvalidOffset(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	rdb.Set(context.Background(), keys.Offset("s", "c"), "garbage", 0)
	c := newConsumer(t, rdb, "s", "c", &recorder{}, fastOptions(ns))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Run(ctx); !errors.Is(err, redstream.ErrInvalidID) {
		t.Fatalf("Run: %v, want ErrInvalidID", err)
	}
	if n := rdb.Exists(ctx, keys.Lock(redstream.ConsumerLockName("s", "c"))).Val(); n != 0 {
		t.Fatal("lock not released after a fatal error")
	}
}

// faultyHook fails the next n commands for which match returns true.
type faultyHook struct {
	mu    sync.Mutex
	n     int
	match func(args []any) bool
}

func (h *faultyHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *faultyHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		fail := h.n > 0 && h.match(cmd.Args())
		if fail {
			h.n--
		}
		h.mu.Unlock()
		if fail {
			err := errors.New("injected fault")
			cmd.SetErr(err)
			return err
		}
		return next(ctx, cmd)
	}
}

func (h *faultyHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// scriptSHA returns the SHA1 of the offset script file name, as run.
func scriptSHA(t testing.TB, name string) string {
	t.Helper()
	lib, err := os.ReadFile("offset_lib.lua")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(append(lib, src...))
	return hex.EncodeToString(sum[:])
}

// TestConsumerRedisFaults fails reads, then commits: the consumer backs
// off and retries each alone, without handing the batch to the handler
// again.
func TestConsumerRedisFaults(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ids := addMessages(t, rdb, keys.Stream("products"), 1, 3)
	commitSHA := scriptSHA(t, "offset_commit.lua")
	reads := &faultyHook{n: 3, match: func(args []any) bool { return args[0] == "xread" }}
	commits := &faultyHook{n: 2, match: func(args []any) bool { return len(args) > 1 && args[1] == commitSHA }}
	rdb.AddHook(reads)
	rdb.AddHook(commits)

	var calls atomic.Int32
	h := redstream.HandlerFunc(func(context.Context, *redstream.Batch) error {
		calls.Add(1)
		return nil
	})
	c := newConsumer(t, rdb, "products", "indexer", h, fastOptions(ns))
	start(t, c.Run)
	eventually(t, 5*time.Second, "the commit", func() bool { return c.Stats().Committed == ids[2] })
	if got := calls.Load(); got != 1 {
		t.Fatalf("handler called %d times, want 1", got)
	}
	if st := c.Stats(); st.Errors != 5 || st.Batches != 1 {
		t.Fatalf("Stats() = %+v, want 5 errors and 1 batch", st)
	}
}

// TestConsumerPoolClient runs a consumer on a client that is not a
// *redis.Client (a one-shard ring), whose blocking reads go through the
// pool and cannot be interrupted: it still consumes, and stops within
// Block.
func TestConsumerPoolClient(t *testing.T) {
	t.Parallel()
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"one": opts.Addr}, DB: opts.DB, Password: opts.Password})
	t.Cleanup(func() { _ = ring.Close() })
	ns := testenv.Namespace(t, ring)
	keys := redstream.NewKeys(ns)
	ids := addMessages(t, ring, keys.Stream("products"), 1, 5)

	copts := fastOptions(ns)
	copts.Block = 200 * time.Millisecond
	a := newConsumer(t, ring, "products", "indexer", &recorder{}, copts)
	b := newConsumer(t, ring, "products", "indexer", &recorder{}, copts)
	wa, wb := start(t, a.Run), start(t, b.Run)
	eventually(t, 5*time.Second, "5 messages", func() bool {
		return a.Stats().Committed == ids[4] || b.Stats().Committed == ids[4]
	})
	for _, w := range []*worker{wa, wb} {
		stopped := time.Now()
		w.stop(t)
		if d := time.Since(stopped); d > 3*time.Second {
			t.Fatalf("Run returned %v after cancel", d)
		}
	}
}
