package redstream_test

import (
	"context"
	"testing"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// TestLeaseHolder: the lock value names the holder after its token, and the
// fenced commit and the release still match the whole value.
func TestLeaseHolder(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	ctx := context.Background()
	for _, c := range []struct{ holder, want string }{
		{"web-1:42", "web-1:42"},
		{"", redstream.DefaultHolder()},
	} {
		l, err := redstream.TryLease(ctx, rdb, "holder", &redstream.LeaseOptions{Namespace: ns, Holder: c.holder})
		if err != nil {
			t.Fatal(err)
		}
		value, err := rdb.Get(ctx, l.Key()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := redstream.LockHolder(value); got != c.want {
			t.Errorf("holder %q: LockHolder(%q) = %q, want %q", c.holder, value, got, c.want)
		}
		if err := l.CommitOffset(ctx, "s", "c", redstream.ID{MS: 1}); err != nil {
			t.Errorf("commit under a named lease: %v", err)
		}
		if err := l.Release(ctx); err != nil {
			t.Errorf("release: %v", err)
		}
		if n, _ := rdb.Exists(ctx, l.Key()).Result(); n != 0 {
			t.Errorf("lock left after release")
		}
	}
	// A Ruby gem lock: a random hex token, no holder.
	if got := redstream.LockHolder("0123456789abcdef0123456789abcdef"); got != "" {
		t.Errorf("LockHolder of a bare token = %q", got)
	}
}
