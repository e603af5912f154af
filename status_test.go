package redstream_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// TestReadStatus builds every part of a status by hand, with ids in the
// past so that the ages are known, and reads it back.
func TestReadStatus(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	at := func(age time.Duration) string { return fmt.Sprintf("%d-0", now.Add(-age).UnixMilli()) }
	add := func(key, id string) {
		t.Helper()
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, ID: id, Values: []any{"payload", `{"id":1}`}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Main stream: entries 60 s, 30 s and 10 s old.
	ids := []string{at(time.Minute), at(30 * time.Second), at(10 * time.Second)}
	for _, id := range ids {
		add(keys.Stream("products"), id)
	}
	// Delay stream: entries 20 s and 5 s old.
	add(keys.Delay("products"), at(20*time.Second))
	add(keys.Delay("products"), at(5*time.Second))
	// "indexer" has processed the first entry, "cache" all of them; "new"
	// has no offset.
	rdb.Set(ctx, keys.Offset("products", "indexer"), ids[0], 0)
	rdb.Set(ctx, keys.Offset("products", "cache"), ids[2], 0)
	for range 2 {
		add(keys.DeadLetter("products", "indexer"), "*")
	}
	// The indexer's lease is held by a named holder, the delayer's by a
	// Ruby-style token with no expiry; the trimmer's is free.
	l, err := redstream.TryLease(ctx, rdb, redstream.ConsumerLockName("products", "indexer"),
		&redstream.LeaseOptions{Namespace: ns, Holder: "web-1:42", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release(ctx)
	rdb.Set(ctx, keys.Lock(redstream.ConsumerLockName(redstream.DelayStream("products"), redstream.DelayerName)), "0123456789abcdef", 0)

	st, err := redstream.ReadStatus(ctx, rdb, keys, "products", "indexer", "cache", "new")
	if err != nil {
		t.Fatal(err)
	}
	// Ages are measured against TIME read after ours: up to a few seconds
	// more on a slow machine.
	near := func(got, want time.Duration) bool { return got >= want && got < want+5*time.Second }
	if st.Stream != "products" || st.Length != 3 || st.Unconfirmed != 2 || !near(st.OldestUnconfirmed, 20*time.Second) {
		t.Errorf("stream: %+v", st)
	}
	if len(st.Consumers) != 3 {
		t.Fatalf("consumers: %+v", st.Consumers)
	}
	idx, cache, nw := st.Consumers[0], st.Consumers[1], st.Consumers[2]
	if idx.Name != "indexer" || !idx.HasOffset || idx.Offset.String() != ids[0] || !near(idx.Lag, 30*time.Second) || idx.DeadLetters != 2 {
		t.Errorf("indexer: %+v", idx)
	}
	if !idx.Lease.Held || idx.Lease.Holder != "web-1:42" || idx.Lease.TTL <= 0 || idx.Lease.TTL > time.Minute {
		t.Errorf("indexer lease: %+v", idx.Lease)
	}
	if cache.Name != "cache" || !cache.HasOffset || cache.Offset.String() != ids[2] || cache.Lag != 0 || cache.Lease.Held || cache.DeadLetters != 0 {
		t.Errorf("cache (caught up): %+v", cache)
	}
	if nw.Name != "new" || nw.HasOffset || !nw.Offset.IsZero() || !near(nw.Lag, time.Minute) {
		t.Errorf("new (no offset): %+v", nw)
	}
	if st.Delayer != (redstream.LockStatus{Held: true}) {
		t.Errorf("delayer lease (a Ruby token, no expiry): %+v", st.Delayer)
	}
	if st.Trimmer != (redstream.LockStatus{}) {
		t.Errorf("trimmer lease: %+v", st.Trimmer)
	}
}

// TestReadStatusEmpty reads a stream that does not exist, with no
// consumer.
func TestReadStatusEmpty(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	st, err := redstream.ReadStatus(context.Background(), rdb, redstream.NewKeys(ns), "nothing")
	if err != nil {
		t.Fatal(err)
	}
	if want := (redstream.StreamStatus{Stream: "nothing", Consumers: []redstream.ConsumerStatus{}}); !reflect.DeepEqual(st, want) {
		t.Errorf("ReadStatus = %+v, want %+v", st, want)
	}
}

func TestReadStatusInvalidOffset(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	rdb.Set(ctx, keys.Offset("products", "indexer"), "garbage", 0)
	if _, err := redstream.ReadStatus(ctx, rdb, keys, "products", "indexer"); !errors.Is(err, redstream.ErrInvalidID) {
		t.Errorf("ReadStatus with an invalid offset: %v, want ErrInvalidID", err)
	}
}

// ReadStatus reports what `redstream status` prints: how far each consumer
// is, who holds the leases, and what waits in the delay and dead-letter
// streams.
func ExampleReadStatus() {
	rdb, ns, cleanup := exampleRedis()
	defer cleanup()
	ctx := context.Background()

	keys := redstream.NewKeys(ns)
	for id := 1; id <= 3; id++ {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Stream("products"), Values: []any{"payload", fmt.Sprintf(`{"id":%d}`, id)}})
	}
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: keys.Delay("products"), Values: []any{"payload", `{"id":3}`}})
	lease, err := redstream.TryLease(ctx, rdb, redstream.ConsumerLockName("products", "indexer"),
		&redstream.LeaseOptions{Namespace: ns, Holder: "web-1:42"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lease.Release(ctx)

	st, err := redstream.ReadStatus(ctx, rdb, keys, "products", "indexer")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("length:", st.Length, "unconfirmed:", st.Unconfirmed)
	for _, c := range st.Consumers {
		fmt.Println(c.Name, "has offset:", c.HasOffset, "lease held by:", c.Lease.Holder, "dead letters:", c.DeadLetters)
	}
	fmt.Println("delayer lease held:", st.Delayer.Held)
	// Output:
	// length: 3 unconfirmed: 1
	// indexer has offset: false lease held by: web-1:42 dead letters: 0
	// delayer lease held: false
}
