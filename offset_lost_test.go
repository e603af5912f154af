package redstream_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// gate is a handler that records like recorder and holds the first batch
// holding the entry id until release is closed; held is closed once it
// waits.
type gate struct {
	recorder
	id            string
	once          sync.Once
	held, release chan struct{}
}

func (g *gate) HandleBatch(ctx context.Context, b *redstream.Batch) error {
	if g.id != "" && slices.ContainsFunc(b.Messages, func(m redstream.Message) bool { return m.ID.String() == g.id }) {
		g.once.Do(func() {
			close(g.held)
			<-g.release
		})
	}
	return g.recorder.HandleBatch(ctx, b)
}

// TestConsumerFollowsLostCommits plays what a consumer meets after a Redis
// failover to a replica that had not received everything: the new master
// holds entries, written there after the switch, whose ids lie between
// the offset it stores and what the consumer read or committed on the old
// master. Going on from its own offset, the consumer would never read
// them. It must notice and go on from the stored offset: when a commit
// finds the stored offset older than its own (the fenced commit script
// compares), when a commit finds that the entry it commits is not in the
// stream (it was read from the old master), and when it is idle (a read
// that found nothing checks the stored offset).
func TestConsumerFollowsLostCommits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		block time.Duration
		// read: the entry the consumer reads from the old master and
		// commits on the new one ("" for none).
		read string
		// offset: the offset the new master stores; lost: the entries
		// written there after the switch, which the consumer must read.
		offset string
		lost   []string
		// after: the new master also has an entry after the consumer's
		// offset.
		after bool
		last  string // the offset the consumer ends at
	}{
		// A long Block: no idle check runs during the test, so the
		// consumer learns of the lost commits from its next commit.
		{name: "offset lost, then a commit", block: 10 * time.Second, offset: "104-0", lost: []string{"105-5", "106-5"}, after: true, last: "110-0"},
		{name: "offset lost, then idle", block: 100 * time.Millisecond, offset: "104-0", lost: []string{"105-5", "106-5"}, last: "106-5"},
		{name: "read on the old master, committed on the new", block: 10 * time.Second, read: "110-0", offset: "109-0", lost: []string{"109-5"}, last: "109-5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rdb, ns := testenv.Redis(t)
			keys := redstream.NewKeys(ns)
			stream, offset := keys.Stream("products"), keys.Offset("products", "indexer")
			add := func(p redis.Cmdable, id string) {
				p.XAdd(ctx, &redis.XAddArgs{Stream: stream, ID: id, Values: []any{"payload", `{"id":"` + id + `"}`}})
			}
			var first []string
			for i := range 10 {
				first = append(first, itoa(100+i)+"-0")
				add(rdb, first[i])
			}

			g := &gate{id: tc.read, held: make(chan struct{}), release: make(chan struct{})}
			defer func() {
				select {
				case <-g.release:
				default:
					close(g.release)
				}
			}()
			logs := &logBuffer{}
			opts := fastOptions(ns)
			opts.Block = tc.block
			opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
			c := newConsumer(t, rdb, "products", "indexer", g, opts)
			start(t, c.Run)
			eventually(t, 5*time.Second, "the first 10 entries", func() bool { return c.Stats().Committed.String() == "109-0" })
			if tc.read != "" {
				add(rdb, tc.read)
				select {
				case <-g.held:
				case <-time.After(5 * time.Second):
					t.Fatalf("the consumer did not read %s", tc.read)
				}
			} else {
				time.Sleep(50 * time.Millisecond) // the consumer waits in its next read
			}

			// The failover: the new master has the stream as far as the
			// offset it stores, then what writers added there after the
			// switch.
			_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Del(ctx, stream)
				for _, id := range first {
					if redstream.MustParseID(id).Compare(redstream.MustParseID(tc.offset)) <= 0 {
						add(p, id)
					}
				}
				for _, id := range tc.lost {
					add(p, id)
				}
				if tc.after {
					add(p, "110-0")
				}
				p.Set(ctx, offset, tc.offset, 0)
				return nil
			})
			must(t, err)
			if tc.read != "" {
				close(g.release)
			}

			eventually(t, 5*time.Second, "the offset at "+tc.last, func() bool {
				return getOffset(t, rdb, offset) == tc.last && c.Stats().Committed.String() == tc.last
			})
			_, seen := g.snapshot()
			var got []string
			for _, id := range seen[10:] {
				got = append(got, id.String())
			}
			for _, want := range tc.lost {
				if !slices.Contains(got, want) {
					t.Errorf("after the failover the consumer handled %v; %s, written on the new master after its stored offset, is missing", got, want)
				}
			}
			if !strings.Contains(logs.String(), "Redis does not hold what this consumer read or committed") ||
				!strings.Contains(logs.String(), "stored="+tc.offset) {
				t.Errorf("no warning naming the stored offset; logs:\n%s", logs)
			}
		})
	}
}

// TestDelayerFollowsLostMoves plays a Delayer after a Redis failover to a
// replica that had not received its last moves: the new master stores an
// older offset, still holds the delay messages after it, and lacks their
// main-stream copies. Going on from its own offset, the Delayer would
// skip them and, at its next move, trim them away: the changes would be
// lost. It must go on from the stored offset and move them.
func TestDelayerFollowsLostMoves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	delay, main := keys.Delay("products"), keys.Stream("products")
	add := func(p redis.Cmdable, key, id string) {
		p.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: id, Values: []any{"payload", `{"id":"` + id + `"}`}})
	}
	// Ids of 1970: every message is due at once.
	for i := range 10 {
		add(rdb, delay, itoa(100+i)+"-0")
	}
	logs := &logBuffer{}
	opts := fastDelayerOptions(ns)
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	d := newDelayer(t, rdb, "products", time.Second, opts)
	start(t, d.Run)
	eventually(t, 5*time.Second, "the 10 messages moved", func() bool { return d.Stats().Committed.String() == "109-0" })
	time.Sleep(50 * time.Millisecond) // the delayer waits for a new message

	// The failover: the new master got the moves up to 104-0 only, and
	// one delay message written after the switch.
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, delay, main)
		for i := range 10 {
			id := itoa(100+i) + "-0"
			if i < 5 {
				p.XAdd(ctx, &redis.XAddArgs{Stream: main, Values: []any{"payload", `{"id":"` + id + `"}`}})
			} else {
				add(p, delay, id)
			}
		}
		add(p, delay, "110-0")
		p.Set(ctx, keys.Offset(redstream.DelayStream("products"), redstream.DelayerName), "104-0", 0)
		return nil
	})
	must(t, err)

	eventually(t, 5*time.Second, "the delayer's offset at 110-0", func() bool { return d.Stats().Committed.String() == "110-0" })
	got := streamPayloads(t, rdb, main)
	for i := 5; i <= 10; i++ {
		want := `{"id":"` + itoa(100+i) + `-0"}`
		if !slices.Contains(got, want) {
			t.Errorf("main stream %v lacks %s, a delay message the new master still held", got, want)
		}
	}
	if !strings.Contains(logs.String(), "Redis does not hold the delayer's offset") || !strings.Contains(logs.String(), "stored=104-0") {
		t.Errorf("no warning naming the stored offset; logs:\n%s", logs)
	}
}
