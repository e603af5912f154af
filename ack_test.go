package redstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// cutHook cuts the reply of the producer's main-stream script through a
// proxy: the script runs in Redis, the producer never hears back.
type cutHook struct{ proxy *testenv.Proxy }

func (h cutHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h cutHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if mainStreamWrite(cmd) == "" || cmd.Args()[0] == "xadd" {
			return next(ctx, cmd)
		}
		h.proxy.CutReplies(true)
		defer h.proxy.CutReplies(false)
		return next(ctx, cmd)
	}
}

func (h cutHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestAckReplyLost: the main-stream write and the removal of the delay
// message run, but their reply is lost on the wire. The commit still
// succeeds, the failure is counted, and the change is in the main stream
// (its delay message gone with it): delivered, never lost.
func TestAckReplyLost(t *testing.T) {
	t.Parallel()
	direct, ns := testenv.Redis(t)
	proxy := testenv.NewProxy(t, direct.Options().Addr)
	rdb, _ := testenv.RedisOptions(t, func(o *redis.Options) { o.Addr = proxy.Addr(); o.MaxRetries = -1 })
	e := newEnvWith(t, modes[0], rdb, ns)
	// A first write loads the script, so the next one runs it by its SHA.
	must(t, e.db.Create(&Product{ID: 1}).Error)
	rdb.AddHook(cutHook{proxy: proxy})
	must(t, e.db.Create(&Product{ID: 2}).Error)

	if st := e.p.Stats(); st.QueueFailures != 1 {
		t.Errorf("queue failures = %d, want the lost reply counted", st.QueueFailures)
	}
	e.want(t, "products", ids(1, 2), ids(1, 2))
}

// TestDelayerMovesOnlyUnconfirmed: delay messages deleted by their
// producer leave holes in the delay stream; the Delayer moves exactly the
// ones that remain, and trims the stream behind them.
func TestDelayerMovesOnlyUnconfirmed(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	delayed := addMessages(t, rdb, keys.Delay("products"), 1, 6)
	// Confirmed: 2, 4 and 5 (their main-stream messages were written).
	if err := rdb.XDel(ctx, keys.Delay("products"), delayed[1].String(), delayed[3].String(), delayed[4].String()).Err(); err != nil {
		t.Fatal(err)
	}
	opts := fastDelayerOptions(ns)
	opts.BatchSize = 2
	opts.Now = func() time.Time { return time.Now().Add(time.Hour) }
	d := newDelayer(t, rdb, "products", time.Minute, opts)
	start(t, d.Run)
	eventually(t, 5*time.Second, "the unconfirmed messages moved", func() bool { return d.Stats().Committed == delayed[5] })
	if got, want := streamPayloads(t, rdb, keys.Stream("products")), ids(1, 3, 6); !sameSet(got, want) {
		t.Fatalf("main stream = %v, want %v", got, want)
	}
	if n := rdb.XLen(ctx, keys.Delay("products")).Val(); n != 0 {
		t.Fatalf("delay stream has %d entries left", n)
	}
	if st := d.Stats(); st.Moved != 3 {
		t.Fatalf("moved %d, want 3", st.Moved)
	}
}

// TestAckKeepsDelayWhenMainFails: the main-stream XADD fails inside Redis
// (here the main stream's key holds a string: WRONGTYPE). The delay
// message must stay for the Delayer: it is removed only once its
// main-stream message is written, never by a command that runs anyway.
func TestAckKeepsDelayWhenMainFails(t *testing.T) {
	t.Parallel()
	for _, rows := range []int{1, 3} {
		rdb, ns := testenv.Redis(t)
		e := newEnvWith(t, modes[0], rdb, ns)
		ctx := context.Background()
		must(t, rdb.Set(ctx, e.keys.Stream("products"), "not a stream", time.Minute).Err())
		batch := make([]Product, rows)
		must(t, e.db.Create(&batch).Error)
		if st := e.p.Stats(); st.QueueFailures != 1 || st.DelayMessages != int64(rows) {
			t.Errorf("%d rows: stats = %+v, want 1 queue failure", rows, st)
		}
		if n := rdb.XLen(ctx, e.keys.Delay("products")).Val(); n != int64(rows) {
			t.Errorf("%d rows: delay messages left = %d, want all %d for the Delayer", rows, n, rows)
		}
	}
}
