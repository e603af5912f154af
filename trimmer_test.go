package redstream_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// addIDs appends entries with the given explicit ids to the stream key.
func addIDs(t testing.TB, rdb redis.Cmdable, key string, ids ...string) {
	t.Helper()
	ctx := context.Background()
	for _, id := range ids {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: id, Values: []any{"payload", `{"id":1}`}}).Err(); err != nil {
			t.Fatalf("xadd %s: %v", id, err)
		}
	}
}

// streamIDs returns the ids of the stream key.
func streamIDs(t testing.TB, rdb redis.Cmdable, key string) string {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	return fmt.Sprint(ids)
}

func newTrimmer(t testing.TB, rdb redis.UniversalClient, stream string, consumers []string, opts *redstream.TrimmerOptions) *redstream.Trimmer {
	t.Helper()
	tr, err := redstream.NewTrimmer(rdb, stream, consumers, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// TestTrimmerMinimum trims up to and including the numeric minimum of the
// offsets, with ids whose parts have different digit counts.
func TestTrimmerMinimum(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		ids     []string
		a, b    string
		want    string
		trimmed int64
		wantMin string
	}{
		{"ms digits", []string{"998-0", "999-0", "1000-0", "1001-0"}, "999-0", "1000-0", "[1000-0 1001-0]", 2, "999-0"},
		{"seq digits", []string{"5-8", "5-9", "5-10", "5-11"}, "5-10", "5-9", "[5-10 5-11]", 2, "5-9"},
		{"equal", []string{"7-0", "7-1", "8-0"}, "7-1", "7-1", "[8-0]", 2, "7-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rdb, ns := testenv.Redis(t)
			keys := redstream.NewKeys(ns)
			ctx := context.Background()
			addIDs(t, rdb, keys.Stream("s"), tc.ids...)
			rdb.Set(ctx, keys.Offset("s", "a"), tc.a, 0)
			rdb.Set(ctx, keys.Offset("s", "b"), tc.b, 0)
			tr := newTrimmer(t, rdb, "s", []string{"a", "b"}, &redstream.TrimmerOptions{Namespace: ns})
			n, err := tr.Trim(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.trimmed {
				t.Errorf("Trim removed %d, want %d", n, tc.trimmed)
			}
			if got := streamIDs(t, rdb, keys.Stream("s")); got != tc.want {
				t.Errorf("stream = %s, want %s", got, tc.want)
			}
			if st := tr.Stats(); st.Min.String() != tc.wantMin || st.Trims != 1 || st.Trimmed != int64(tc.trimmed) {
				t.Errorf("Stats() = %+v", st)
			}
		})
	}
}

// TestTrimmerMissingOffset does not trim while a configured consumer has
// no offset, unless told to ignore it as the Ruby gem does.
func TestTrimmerMissingOffset(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	addIDs(t, rdb, keys.Stream("s"), "1-0", "2-0", "3-0")
	rdb.Set(ctx, keys.Offset("s", "a"), "2-0", 0)

	tr := newTrimmer(t, rdb, "s", []string{"a", "new"}, &redstream.TrimmerOptions{Namespace: ns})
	n, err := tr.Trim(ctx)
	if !errors.Is(err, redstream.ErrNoOffset) || n != 0 {
		t.Fatalf("Trim = %d, %v; want 0, ErrNoOffset", n, err)
	}
	if st := tr.Stats(); st.BlockedBy != "new" || st.Errors != 0 {
		t.Fatalf("Stats() = %+v, want BlockedBy new", st)
	}
	if got := streamIDs(t, rdb, keys.Stream("s")); got != "[1-0 2-0 3-0]" {
		t.Fatalf("stream = %s, want untouched", got)
	}

	ruby := newTrimmer(t, rdb, "s", []string{"a", "new"}, &redstream.TrimmerOptions{Namespace: ns, IgnoreMissingOffsets: true})
	if n, err := ruby.Trim(ctx); err != nil || n != 2 {
		t.Fatalf("Trim ignoring missing offsets = %d, %v; want 2, nil", n, err)
	}
	if got := streamIDs(t, rdb, keys.Stream("s")); got != "[3-0]" {
		t.Fatalf("stream = %s, want [3-0]", got)
	}

	// Run says why it does not trim.
	logs := &syncBuffer{}
	logged := newTrimmer(t, rdb, "s", []string{"a", "late"}, &redstream.TrimmerOptions{
		Namespace: ns,
		Interval:  10 * time.Millisecond,
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
	})
	w := start(t, logged.Run)
	eventually(t, 5*time.Second, "the blocked trim to be logged", func() bool {
		return strings.Contains(logs.String(), "consumer has no committed offset: late")
	})
	w.stop(t)
	if n := strings.Count(logs.String(), "trimming blocked"); n != 1 {
		t.Fatalf("logged the blocked trim %d times, want once:\n%s", n, logs)
	}
	// A consumer without an offset is normal at start-up: an expected
	// state, logged at Info.
	if !strings.Contains(logs.String(), `level=INFO msg="redstream: trimming blocked`) {
		t.Fatalf("the blocked trim is not logged at Info:\n%s", logs)
	}

	// Once the new consumer commits, the default trimmer trims again.
	rdb.Set(ctx, keys.Offset("s", "new"), "3-0", 0)
	if n, err := tr.Trim(ctx); err != nil || n != 0 {
		t.Fatalf("Trim = %d, %v; want 0 (a is at 2-0), nil", n, err)
	}
	if st := tr.Stats(); st.BlockedBy != "" {
		t.Fatalf("Stats() = %+v, want unblocked", st)
	}
}

// TestTrimmerConcurrent runs several trimmers at once; between trims they
// hold no lease.
func TestTrimmerConcurrent(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	ids := addMessages(t, rdb, keys.Stream("s"), 1, 100)
	rdb.Set(ctx, keys.Offset("s", "a"), ids[59].String(), 0)
	rdb.Set(ctx, keys.Offset("s", "b"), ids[39].String(), 0)

	var trimmers []*redstream.Trimmer
	for range 4 {
		tr := newTrimmer(t, rdb, "s", []string{"a", "b"}, &redstream.TrimmerOptions{Namespace: ns, Interval: 20 * time.Millisecond})
		trimmers = append(trimmers, tr)
		start(t, tr.Run)
	}
	eventually(t, 5*time.Second, "a trim to b's offset", func() bool {
		return rdb.XLen(ctx, keys.Stream("s")).Val() == 60
	})
	rdb.Set(ctx, keys.Offset("s", "b"), ids[89].String(), 0)
	eventually(t, 5*time.Second, "a trim to a's offset", func() bool {
		return rdb.XLen(ctx, keys.Stream("s")).Val() == 40
	})
	if first := rdb.XRangeN(ctx, keys.Stream("s"), "-", "+", 1).Val(); first[0].ID != ids[60].String() {
		t.Fatalf("first entry %s, want %v", first[0].ID, ids[60])
	}
	// A trimmer counts its trim after XTRIM has answered, so the count
	// may lag the stream's length for a moment.
	var trimmed int64
	eventually(t, 5*time.Second, "the trimmers to count 60 trimmed", func() bool {
		trimmed = 0
		for _, tr := range trimmers {
			trimmed += tr.Stats().Trimmed
		}
		return trimmed >= 60
	})
	if trimmed != 60 {
		t.Fatalf("trimmers report %d trimmed, want 60", trimmed)
	}
	lock := keys.Lock(redstream.TrimmerLockName("s"))
	eventually(t, 5*time.Second, "an idle moment without the lock", func() bool {
		return rdb.Exists(ctx, lock).Val() == 0
	})
}

func TestTrimmerOptions(t *testing.T) {
	t.Parallel()
	rdb, _ := testenv.Redis(t)
	for i, tc := range []struct {
		rdb       redis.UniversalClient
		stream    string
		consumers []string
		opts      *redstream.TrimmerOptions
	}{
		{nil, "s", []string{"a"}, nil},
		{rdb, "", []string{"a"}, nil},
		{rdb, "s", nil, nil},
		{rdb, "s", []string{""}, nil},
		{rdb, "s", []string{"a"}, &redstream.TrimmerOptions{Interval: -1}},
	} {
		if _, err := redstream.NewTrimmer(tc.rdb, tc.stream, tc.consumers, tc.opts); err == nil {
			t.Errorf("case %d: NewTrimmer accepted invalid arguments", i)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTrimmerHold never trims past a hold (Keys.Hold), the way a reindex
// keeps the messages it has still to replay, and trims on once the hold
// moves or goes.
func TestTrimmerHold(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	addIDs(t, rdb, keys.Stream("s"), "1-0", "2-0", "3-0", "4-0", "5-0")
	rdb.Set(ctx, keys.Offset("s", "a"), "4-0", 0)
	rdb.HSet(ctx, keys.Hold("s"), "reindex", "2-0", "other", "3-0")
	tr := newTrimmer(t, rdb, "s", []string{"a"}, &redstream.TrimmerOptions{Namespace: ns})
	if _, err := tr.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := streamIDs(t, rdb, keys.Stream("s")), "[3-0 4-0 5-0]"; got != want {
		t.Fatalf("with holds at 2-0 and 3-0: stream = %s, want %s", got, want)
	}
	rdb.HDel(ctx, keys.Hold("s"), "reindex")
	if _, err := tr.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := streamIDs(t, rdb, keys.Stream("s")), "[4-0 5-0]"; got != want {
		t.Fatalf("with a hold at 3-0: stream = %s, want %s", got, want)
	}
	rdb.Del(ctx, keys.Hold("s"))
	if _, err := tr.Trim(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := streamIDs(t, rdb, keys.Stream("s")), "[5-0]"; got != want {
		t.Fatalf("without holds: stream = %s, want %s", got, want)
	}
	rdb.HSet(ctx, keys.Hold("s"), "reindex", "not an id")
	if _, err := tr.Trim(ctx); err == nil || !strings.Contains(err.Error(), "hold of reindex") {
		t.Fatalf("Trim with a malformed hold: %v", err)
	}
}
