package redstream_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// exampleRedis connects to the test Redis and returns a fresh namespace and
// a function that deletes its keys and closes the client.
func exampleRedis() (*redis.Client, string, func()) {
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(opts)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	ns := "example" + hex.EncodeToString(b)
	return rdb, ns, func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, ns+":*", 100).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		_ = rdb.Close()
	}
}

func ExampleConsumer() {
	rdb, ns, cleanup := exampleRedis()
	defer cleanup()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Three messages, as a producer writes them.
	keys := redstream.NewKeys(ns)
	for id := 1; id <= 3; id++ {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Stream("products"), Values: []any{"payload", fmt.Sprintf(`{"id":%d}`, id)}})
	}

	seen := 0
	h := redstream.HandlerFunc(func(ctx context.Context, b *redstream.Batch) error {
		for _, m := range b.Messages {
			fmt.Println(string(m.Payload))
			seen++
		}
		if seen == 3 {
			cancel() // stop after this batch, which is still committed
		}
		return nil
	})
	c, err := redstream.NewConsumer(rdb, "products", "indexer", h, &redstream.ConsumerOptions{Namespace: ns})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Run(ctx); err != nil {
		fmt.Println(err)
	}
	st := c.Stats()
	fmt.Println("committed:", st.Messages, "messages in", st.Batches, "batch")
	// Output:
	// {"id":1}
	// {"id":2}
	// {"id":3}
	// committed: 3 messages in 1 batch
}

func ExampleDelayer() {
	rdb, ns, cleanup := exampleRedis()
	defer cleanup()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// A delay message, as a producer writes it before its transaction commits.
	keys := redstream.NewKeys(ns)
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Delay("products"), Values: []any{"payload", `{"id":7}`}})

	// Production delays are minutes; this one is short so that the example
	// ends quickly.
	d, err := redstream.NewDelayer(rdb, "products", 50*time.Millisecond, &redstream.DelayerOptions{Namespace: ns})
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	for d.Stats().Moved < 1 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		fmt.Println(err)
	}
	msgs := rdb.XRange(context.Background(), keys.Stream("products"), "-", "+").Val()
	fmt.Println("main stream:", msgs[0].Values["payload"])
	fmt.Println("delay stream length:", rdb.XLen(context.Background(), keys.Delay("products")).Val())
	// Output:
	// main stream: {"id":7}
	// delay stream length: 0
}

func ExampleTrimmer() {
	rdb, ns, cleanup := exampleRedis()
	defer cleanup()
	ctx := context.Background()

	keys := redstream.NewKeys(ns)
	for _, id := range []string{"999-0", "1000-0", "1000-1"} {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Stream("products"), ID: id, Values: []any{"payload", `{"id":1}`}})
	}
	// Two consumers of the stream: the slower one has processed up to 999-0.
	rdb.Set(ctx, keys.Offset("products", "indexer"), "1000-0", 0)
	rdb.Set(ctx, keys.Offset("products", "cache"), "999-0", 0)

	t, err := redstream.NewTrimmer(rdb, "products", []string{"indexer", "cache"}, &redstream.TrimmerOptions{Namespace: ns})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Run trims every Interval; Trim trims once.
	n, err := t.Trim(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("trimmed:", n)
	for _, m := range rdb.XRange(ctx, keys.Stream("products"), "-", "+").Val() {
		fmt.Println("kept:", m.ID)
	}
	// Output:
	// trimmed: 1
	// kept: 1000-0
	// kept: 1000-1
}
