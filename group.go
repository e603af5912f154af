package redstream

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of GroupOptions.
const (
	// DefaultHeartbeatTTL is how long a group member counts as alive after
	// its last heartbeat.
	DefaultHeartbeatTTL = 5 * time.Second
	// DefaultGroupInterval is how often a member renews its heartbeat,
	// reads the membership and the holders of the units, and acts on
	// them.
	DefaultGroupInterval = 500 * time.Millisecond
)

//go:embed group_heartbeat.lua
var luaHeartbeatSrc string

var luaHeartbeat = redis.NewScript(luaHeartbeatSrc)

// Unit is one piece of work a Group spreads over its members, typically
// the consumer and the delayer of one stream or shard.
type Unit struct {
	// Name identifies the unit; every member names a unit alike.
	Name string
	// Lock is the name of the lock whose holder serves the unit, for
	// example ConsumerLockName(stream, consumer). A member learns who
	// serves a unit from it, so the workers Run starts must hold their
	// leases under the group member's name (ConsumerOptions.Holder).
	Lock string
	// Run serves the unit until its context ends, then returns nil. The
	// group calls it when the unit is this member's, and cancels its
	// context to hand the unit over; Run must then release its leases,
	// as the workers of this package do. An error ends Group.Run.
	Run func(ctx context.Context) error
}

// GroupOptions configures a Group. A nil *GroupOptions means all defaults;
// zero fields mean their default, negative ones are an error.
type GroupOptions struct {
	// Namespace selects the key layout (see NewKeys). Default: "" (none).
	Namespace string

	// Member names this member. It must be the holder name under which
	// the units' workers hold their leases. Default: DefaultHolder().
	Member string

	// HeartbeatTTL is how long the member counts as alive after its last
	// heartbeat: a member killed without leaving drops out after this
	// long. Default: DefaultHeartbeatTTL.
	HeartbeatTTL time.Duration

	// Interval is how often the member renews its heartbeat and acts on
	// the membership. Default: DefaultGroupInterval.
	Interval time.Duration

	// AdoptAfter is how long a unit's lock must stay free before a member
	// that is not the unit's owner serves it anyway, so that no unit stays
	// unserved when its owner cannot serve it (a member whose config lacks
	// the unit, one that cannot reach its keys). Default: 2 × Interval +
	// 1 s.
	AdoptAfter time.Duration

	// Logger receives the group's log lines. Default: slog.Default().
	Logger *slog.Logger
}

// GroupStats is a snapshot of a Group member's view.
type GroupStats struct {
	// Members are the live members, sorted, as last read.
	Members []string
	// Owned are the units assigned to this member; Running the units it
	// runs (its own, and those it adopted).
	Owned, Running []string
	// MovesIn counts the units this member began to hold after another
	// member held them; summed over the members, the lease moves.
	// Handovers counts the units it gave up for their owner, Adoptions
	// the units it served though they were not its own.
	MovesIn, Handovers, Adoptions int64
	// Errors counts failed heartbeats and reads.
	Errors int64
}

// Group spreads units of work over the worker processes that run it with
// the same name: each member announces itself with a heartbeat in Redis,
// every member computes the same assignment from the live members and the
// units (rendezvous hashing with bounded loads: each member owns ⌊U/N⌋ or
// ⌈U/N⌉ units, and a change of membership moves few of them), and runs the
// units it owns. There is no coordinator.
//
// The assignment is a preference, never a lock: the leases of the units'
// workers still decide who writes. A member hands a unit over only when
// its owner asks for it (it holds a want marker while it waits for the
// unit's lease), by cancelling the unit's Run, which finishes its batch,
// commits and releases the lease with a notify, so the owner starts within
// milliseconds. A unit whose lock stays free for AdoptAfter is served by
// any member, so a unit is never left unserved for long, whatever the
// members' configs. With a stable membership, no lease moves.
//
// A Group is safe for concurrent use: Stats may be called at any time. Run
// must not be called more than once at a time.
type Group struct {
	worker // the Run guard, the logger and the stats lock
	key    string
	keys   Keys
	member string
	units  []Unit
	ttl    time.Duration
	every  time.Duration
	adopt  time.Duration

	// Guarded by worker.mu:
	members                       []string
	owned, running                []string
	movesIn, handovers, adoptions int64
}

// NewGroup returns a member of the worker group name that spreads units
// over the group's members. It returns an error for a nil client, an empty
// name, no units, units without a name, a lock or a Run, duplicate unit
// names, or negative options.
func NewGroup(rdb redis.UniversalClient, name string, units []Unit, opts *GroupOptions) (*Group, error) {
	o := optionsOf(opts)
	switch {
	case rdb == nil:
		return nil, errors.New("redstream: nil redis client")
	case name == "":
		return nil, errors.New("redstream: group needs a name")
	case len(units) == 0:
		return nil, errors.New("redstream: group needs units")
	}
	if err := checkWorkerOptions("group", int64(o.HeartbeatTTL), int64(o.Interval), int64(o.AdoptAfter)); err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(units))
	for _, u := range units {
		if u.Name == "" || u.Lock == "" || u.Run == nil {
			return nil, fmt.Errorf("redstream: group unit %q needs a name, a lock and a Run", u.Name)
		}
		if seen[u.Name] {
			return nil, fmt.Errorf("redstream: group unit %q named twice", u.Name)
		}
		seen[u.Name] = true
	}
	keys := NewKeys(o.Namespace)
	g := &Group{
		key:    keys.Group(name),
		keys:   keys,
		member: cmp.Or(o.Member, DefaultHolder()),
		units:  slices.Clone(units),
		ttl:    cmp.Or(o.HeartbeatTTL, DefaultHeartbeatTTL),
		every:  cmp.Or(o.Interval, DefaultGroupInterval),
	}
	g.adopt = cmp.Or(o.AdoptAfter, 2*g.every+time.Second)
	g.kind = "group"
	g.rdb = rdb
	g.log = cmp.Or(o.Logger, slog.Default()).With("group", name, "member", g.member)
	return g, nil
}

// Stats returns a snapshot of the member's view.
func (g *Group) Stats() GroupStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return GroupStats{
		Members: slices.Clone(g.members), Owned: slices.Clone(g.owned), Running: slices.Clone(g.running),
		MovesIn: g.movesIn, Handovers: g.handovers, Adoptions: g.adoptions, Errors: g.errs,
	}
}

// unitState is what a member knows of one unit while it runs the group.
type unitState struct {
	cancel    context.CancelFunc // nil when not running here
	done      chan struct{}      // closed when the last Run returned
	freeSince time.Time          // when its lock was first seen free; zero when held
	holder    string             // the holder last seen
}

// Run takes part in the group until ctx ends: it renews the member's
// heartbeat, computes the assignment and starts and stops units every
// Interval. When ctx ends it stops its units (each hands its leases over
// as its Run returns), leaves the group at once, so that the others take
// the units over without waiting for the heartbeat to expire, and returns
// nil. It returns the first error a unit's Run returns.
func (g *Group) Run(ctx context.Context) error {
	stop, err := g.start()
	if err != nil {
		return err
	}
	defer stop()

	states := make(map[string]*unitState, len(g.units))
	for _, u := range g.units {
		states[u.Name] = &unitState{}
	}
	failed := make(chan error, len(g.units))
	var wg sync.WaitGroup
	defer func() {
		// Leave first: the others assign the units anew and wait for
		// their leases, which the units release as they stop.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseReleaseTimeout)
		defer cancel()
		if err := g.rdb.ZRem(lctx, g.key, g.member).Err(); err != nil {
			g.log.WarnContext(ctx, "redstream: group member could not leave; it drops out when its heartbeat expires", "error", err)
		}
		for _, st := range states {
			if st.cancel != nil {
				st.cancel()
			}
		}
		wg.Wait()
	}()

	var errs logLimiter
	tick := time.NewTicker(g.every)
	defer tick.Stop()
	for {
		if err := g.step(ctx, states, &wg, failed); err != nil {
			g.update(func() { g.errs++ })
			errs.fail(ctx, g.log, "redstream: group step failed", err, g.every)
		} else {
			errs.recover(ctx, g.log, "redstream: group recovered")
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case <-tick.C:
		}
	}
}

// step renews the heartbeat, reads the members and the units' holders, and
// starts or stops units accordingly.
func (g *Group) step(ctx context.Context, states map[string]*unitState, wg *sync.WaitGroup, failed chan<- error) error {
	members, err := luaHeartbeat.Run(ctx, g.rdb, []string{g.key}, g.member, g.ttl.Milliseconds()).StringSlice()
	if err != nil {
		return fmt.Errorf("redstream: group heartbeat: %w", err)
	}
	if !slices.Contains(members, g.member) { // cannot happen after our own ZADD, but stay safe
		members = append(members, g.member)
		slices.Sort(members)
	}
	names := make([]string, len(g.units))
	for i, u := range g.units {
		names[i] = u.Name
	}
	owner := Assign(names, members)

	cmds, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, u := range g.units {
			p.Get(ctx, g.keys.Lock(u.Lock))
			p.Get(ctx, g.keys.Want(u.Lock))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redstream: group read holders: %w", err)
	}

	now := time.Now()
	var owned, running []string
	var wants []string // locks to mark as wanted by this member
	for i, u := range g.units {
		st := states[u.Name]
		holder := LockHolder(cmds[2*i].(*redis.StringCmd).Val())
		if cmds[2*i].(*redis.StringCmd).Val() != "" && holder == "" {
			holder = "?" // a lock without a holder name (the Ruby gem's)
		}
		want := cmds[2*i+1].(*redis.StringCmd).Val()
		if holder == g.member && st.holder != "" && st.holder != g.member {
			g.update(func() { g.movesIn++ })
		}
		if holder != "" {
			st.holder = holder
		}
		if holder == "" {
			if st.freeSince.IsZero() {
				st.freeSince = now
			}
		} else {
			st.freeSince = time.Time{}
		}
		mine := owner[u.Name] == g.member
		if mine {
			owned = append(owned, u.Name)
		}
		switch {
		case mine:
			g.startUnit(ctx, u, st, wg, failed)
			if holder != "" && holder != g.member {
				wants = append(wants, u.Lock)
			}
		case st.cancel != nil && want != "" && want != g.member:
			g.log.InfoContext(ctx, "redstream: handing a unit over to its owner", "unit", u.Name, "to", want)
			g.stopUnit(st)
			g.update(func() { g.handovers++ })
		case st.cancel != nil && holder != "" && holder != g.member:
			// Not ours and held by another: waiting for it would only
			// take it from its owner later.
			g.stopUnit(st)
		case st.cancel == nil && !st.freeSince.IsZero() && now.Sub(st.freeSince) >= g.adopt:
			g.log.WarnContext(ctx, "redstream: serving a unit its owner does not serve", "unit", u.Name,
				"owner", owner[u.Name], "free_for", now.Sub(st.freeSince).Round(time.Millisecond))
			g.startUnit(ctx, u, st, wg, failed)
			g.update(func() { g.adoptions++ })
		}
		if st.cancel != nil {
			running = append(running, u.Name)
		}
	}
	if len(wants) > 0 {
		_, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, l := range wants {
				p.Set(ctx, g.keys.Want(l), g.member, 3*g.every)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("redstream: group mark wanted units: %w", err)
		}
	}
	g.update(func() { g.members, g.owned, g.running = members, owned, running })
	return nil
}

// startUnit runs u unless it runs already; a unit still stopping is
// started at a later step.
func (g *Group) startUnit(ctx context.Context, u Unit, st *unitState, wg *sync.WaitGroup, failed chan<- error) {
	if st.cancel != nil {
		return
	}
	if st.done != nil {
		select {
		case <-st.done:
		default:
			return // the previous Run has not returned yet
		}
	}
	uctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	st.cancel, st.done = cancel, done
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		if err := u.Run(uctx); err != nil {
			failed <- fmt.Errorf("redstream: group unit %s: %w", u.Name, err)
		}
	}()
}

// stopUnit cancels a unit's Run; it hands its leases over as it returns.
func (g *Group) stopUnit(st *unitState) {
	st.cancel()
	st.cancel = nil
}

// Assign returns the owner of each unit among members: the assignment
// every member of a Group computes. Each member gets ⌊U/N⌋ or ⌈U/N⌉ of
// the U units, and each unit goes to the member that ranks highest for
// it (rendezvous hashing) among those with room left, units taken in name
// order; so the assignment depends only on the two sets, and a member
// joining or leaving moves few units. It returns nil without members.
func Assign(units, members []string) map[string]string {
	if len(members) == 0 {
		return nil
	}
	units = slices.Sorted(slices.Values(units))
	members = slices.Sorted(slices.Values(members))
	floor, extra := len(units)/len(members), len(units)%len(members)
	load := make(map[string]int, len(members))
	full := 0 // members that took floor+1 units
	out := make(map[string]string, len(units))
	ranked := make([]string, len(members))
	score := make(map[string]uint64, len(members))
	for _, u := range units {
		copy(ranked, members)
		for _, m := range members {
			h := fnv.New64a()
			h.Write([]byte(u))
			h.Write([]byte{0})
			h.Write([]byte(m))
			score[m] = h.Sum64()
		}
		slices.SortFunc(ranked, func(a, b string) int {
			if c := cmp.Compare(score[b], score[a]); c != 0 {
				return c
			}
			return cmp.Compare(a, b)
		})
		for _, m := range ranked {
			if load[m] < floor || (load[m] == floor && full < extra) {
				out[u] = m
				load[m]++
				if load[m] == floor+1 {
					full++
				}
				break
			}
		}
	}
	return out
}
