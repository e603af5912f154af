package redstream_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

func TestAssignBalancedAndSticky(t *testing.T) {
	t.Parallel()
	var units []string
	for s := range 2 {
		for shard := range 6 {
			units = append(units, fmt.Sprintf("stream%d-%d", s, shard))
		}
	}
	loads := func(a map[string]string) map[string]int {
		l := map[string]int{}
		for _, m := range a {
			l[m]++
		}
		return l
	}
	three := redstream.Assign(units, []string{"a", "b", "c"})
	if l := loads(three); l["a"] != 4 || l["b"] != 4 || l["c"] != 4 {
		t.Fatalf("12 units on 3 members: loads %v, want 4 each", l)
	}
	// Every member computes the same: order does not matter.
	if again := redstream.Assign(reversed(units), []string{"c", "a", "b"}); !maps.Equal(again, three) {
		t.Fatal("assignment depends on the order of its inputs")
	}
	four := redstream.Assign(units, []string{"a", "b", "c", "d"})
	if l := loads(four); l["a"] != 3 || l["b"] != 3 || l["c"] != 3 || l["d"] != 3 {
		t.Fatalf("12 units on 4 members: loads %v, want 3 each", l)
	}
	moved := 0
	for u, m := range four {
		if three[u] != m {
			moved++
		}
	}
	// The joining member takes 3; bounded loads may move one or two more.
	if moved < 3 || moved > 5 {
		t.Errorf("a fourth member moved %d units, want 3 to 5", moved)
	}
	t.Logf("3 → 4 members moved %d of 12 units", moved)
	thirteen := redstream.Assign(append(slices.Clone(units), "extra"), []string{"a", "b", "c"})
	l := slices.Sorted(maps.Values(loads(thirteen)))
	if !slices.Equal(l, []int{4, 4, 5}) {
		t.Errorf("13 units on 3 members: loads %v, want 4, 4, 5", l)
	}
	if redstream.Assign(units, nil) != nil {
		t.Error("assignment without members")
	}
}

func reversed(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

// groupMember is one in-process member of a test group: a consumer per
// stream, each holding its lease under the member's name.
type groupMember struct {
	name  string
	group *redstream.Group
	w     *worker
}

func newGroupMember(t *testing.T, rdb redis.UniversalClient, ns, name string, streams []string) *groupMember {
	t.Helper()
	var units []redstream.Unit
	for _, s := range streams {
		c, err := redstream.NewConsumer(rdb, s, "indexer", redstream.HandlerFunc(func(context.Context, *redstream.Batch) error { return nil }),
			&redstream.ConsumerOptions{Namespace: ns, LockTTL: time.Second, Block: 100 * time.Millisecond, Holder: name})
		if err != nil {
			t.Fatal(err)
		}
		units = append(units, redstream.Unit{Name: s, Lock: redstream.ConsumerLockName(s, "indexer"), Run: c.Run})
	}
	g, err := redstream.NewGroup(rdb, "workers", units, &redstream.GroupOptions{
		Namespace: ns, Member: name, HeartbeatTTL: 3 * time.Second, Interval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &groupMember{name: name, group: g, w: start(t, g.Run)}
}

// holders returns the holder of each stream's consumer lease.
func holders(t *testing.T, rdb redis.Cmdable, ns string, streams []string) map[string]string {
	t.Helper()
	keys := redstream.NewKeys(ns)
	out := map[string]string{}
	for _, s := range streams {
		v, err := rdb.Get(context.Background(), keys.Lock(redstream.ConsumerLockName(s, "indexer"))).Result()
		if err == redis.Nil {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[s] = redstream.LockHolder(v)
	}
	return out
}

// heldAsAssigned reports whether every stream's lease is held by its owner
// among members.
func heldAsAssigned(t *testing.T, rdb redis.Cmdable, ns string, streams, members []string) bool {
	return maps.Equal(holders(t, rdb, ns, streams), redstream.Assign(streams, members))
}

// TestGroupSpreadsAndHandsOver: three members spread six units two by
// two; a member that stops hands its units over at once (no lease TTL to
// wait for); with a stable membership no lease moves.
func TestGroupSpreadsAndHandsOver(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	var streams []string
	for i := range 6 {
		streams = append(streams, fmt.Sprintf("s%d", i))
	}
	a := newGroupMember(t, rdb, ns, "a", streams)
	b := newGroupMember(t, rdb, ns, "b", streams)
	c := newGroupMember(t, rdb, ns, "c", streams)
	eventually(t, 10*time.Second, "every lease held by its owner", func() bool {
		return heldAsAssigned(t, rdb, ns, streams, []string{"a", "b", "c"})
	})
	if got, err := redstream.ReadMembers(context.Background(), rdb, redstream.NewKeys(ns), "workers"); err != nil || !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("ReadMembers = %v, %v; want a, b, c", got, err)
	}
	for _, m := range []*groupMember{a, b, c} {
		if n := len(m.group.Stats().Owned); n != 2 {
			t.Errorf("%s owns %d units, want 2", m.name, n)
		}
	}

	// A stable membership: for 2 s, no lease changes hands.
	want := holders(t, rdb, ns, streams)
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if h := holders(t, rdb, ns, streams); !maps.Equal(h, want) {
			t.Fatalf("with a stable membership the leases moved: %v, then %v", want, h)
		}
	}
	before := a.group.Stats().MovesIn + b.group.Stats().MovesIn

	stopped := time.Now()
	c.w.stop(t)
	eventually(t, 5*time.Second, "every lease held by its owner after c stopped", func() bool {
		return heldAsAssigned(t, rdb, ns, streams, []string{"a", "b"})
	})
	took := time.Since(stopped)
	t.Logf("units moved %v after a member stopped", took)
	if took > 2*time.Second {
		t.Errorf("a stopping member's units moved after %v, want well under the lease TTL + heartbeat TTL", took)
	}
	if st := a.group.Stats(); !slices.Equal(st.Members, []string{"a", "b"}) {
		t.Errorf("members = %v after c left, want a, b", st.Members)
	}
	// c's two units moved to a and b, who count them.
	eventually(t, 5*time.Second, "the moves counted", func() bool {
		return a.group.Stats().MovesIn+b.group.Stats().MovesIn-before >= 2
	})
}

// TestGroupAdoptsUnservedUnit: the owner the assignment picks for a unit
// does not serve it (its config lacks the unit, as during a rolling
// deploy); another member serves it once its lock has stayed free for
// AdoptAfter.
func TestGroupAdoptsUnservedUnit(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	all := []string{"u0", "u1", "u2", "u3"}
	// b serves another stream only; a is there before b joins, so it
	// starts with b in the group and owns half of its units.
	b := newGroupMember(t, rdb, ns, "b", []string{"other"})
	eventually(t, 5*time.Second, "b in the group", func() bool { return len(b.group.Stats().Members) == 1 })
	a := newGroupMember(t, rdb, ns, "a", all)
	owners := redstream.Assign(all, []string{"a", "b"})
	unserved := 0
	for _, o := range owners {
		if o == "b" {
			unserved++
		}
	}
	eventually(t, 10*time.Second, "every unit served by a", func() bool {
		h := holders(t, rdb, ns, all)
		return h["u0"] == "a" && h["u1"] == "a" && h["u2"] == "a" && h["u3"] == "a"
	})
	if st := a.group.Stats(); st.Adoptions != int64(unserved) || len(st.Owned) != len(all)-unserved {
		t.Errorf("a: %+v, want %d adoptions of the units b owns and does not serve", st, unserved)
	}
}
