package redstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream/internal/backoff"
)

// DefaultTrimInterval is how long a Trimmer waits between trims.
const DefaultTrimInterval = 30 * time.Second

// ErrNoOffset is returned, wrapped with the consumer's name, by
// Trimmer.Trim when a configured consumer has not committed an offset yet
// and TrimmerOptions.IgnoreMissingOffsets is false.
var ErrNoOffset = errors.New("redstream: consumer has no committed offset")

// TrimmerOptions configures a Trimmer. A nil *TrimmerOptions means all
// defaults; zero fields mean their default, negative ones are an error.
type TrimmerOptions struct {
	// Namespace selects the key layout (see NewKeys). Default: "" (none).
	Namespace string

	// Interval is the wait between two trims. Default: DefaultTrimInterval.
	Interval time.Duration

	// LockTTL is the TTL of the trimmer's lease, held only while trimming.
	// Default: DefaultLockTTL.
	LockTTL time.Duration

	// IgnoreMissingOffsets trims to the minimum of the offsets that exist,
	// ignoring consumers that have not committed one yet, as the Ruby gem
	// does. A consumer added to a stream that is trimmed this way misses
	// the messages trimmed before its first commit. Default: false, a
	// consumer without an offset blocks trimming.
	IgnoreMissingOffsets bool

	// Holder names this trimmer's lease holder for operators: it is
	// stored in the lock value after the random token, where LockHolder
	// and `redstream status` read it. Default: DefaultHolder().
	Holder string

	// Logger receives the trimmer's log lines: failures at the bounded
	// rate ConsumerOptions.Logger describes, the reason trimming is
	// blocked once (Info).
	// Default: slog.Default().
	Logger *slog.Logger
}

// TrimmerStats is a snapshot of a Trimmer's progress.
type TrimmerStats struct {
	// Min is the minimum offset the last trim trimmed up to (inclusive).
	Min ID
	// BlockedBy names the consumer without an offset that blocked the last
	// trim; empty when it was not blocked.
	BlockedBy string
	// Trims, Trimmed and Errors count, since the Trimmer was created:
	// XTRIM calls, entries they removed, and failed trims.
	Trims, Trimmed, Errors int64
}

// Trimmer removes from a stream the messages that every configured consumer
// has processed: everything up to and including the numeric minimum of
// their committed offsets, with XTRIM MINID. It also keeps every message
// after a hold (Keys.Hold), such as the one a reindex places on the
// messages it has still to replay. It replaces the Ruby gem's
// trimmer and takes the same lock ("trimmer:<stream>"), but only for the
// moment of a trim, so any number of trimmers, Go or Ruby, can run.
//
// A Trimmer is safe for concurrent use: Stats and Trim may be called at any
// time, also while Run runs.
type Trimmer struct {
	worker
	stream    string
	consumers []string
	key       string   // stream key
	holds     string   // hold hash key
	offsets   []string // offset keys, in consumers' order
	interval  time.Duration
	ignore    bool

	// Guarded by worker.mu:
	lowest    ID
	blockedBy string
	trims     int64
	trimmed   int64
}

// NewTrimmer returns a trimmer of stream for the named consumers. It
// returns an error for a nil client, an empty stream, no or empty consumer
// names, negative options, or, on a *redis.ClusterClient, a stream whose
// keys would not share a hash slot (see Keys.CheckCluster).
func NewTrimmer(rdb redis.UniversalClient, stream string, consumers []string, opts *TrimmerOptions) (*Trimmer, error) {
	o := optionsOf(opts)
	if err := checkWorkerArgs(rdb, "trimmer", stream); err != nil {
		return nil, err
	}
	if len(consumers) == 0 || slices.Contains(consumers, "") {
		return nil, errors.New("redstream: trimmer needs consumer names")
	}
	if err := checkWorkerOptions("trimmer", int64(o.Interval), int64(o.LockTTL)); err != nil {
		return nil, err
	}
	ttl, err := leaseTTL(o.LockTTL)
	if err != nil {
		return nil, err
	}
	keys := NewKeys(o.Namespace)
	if err := checkClusterKeys(rdb, keys, stream, consumers...); err != nil {
		return nil, err
	}
	t := &Trimmer{
		stream:    stream,
		consumers: slices.Clone(consumers),
		key:       keys.Stream(stream),
		holds:     keys.Hold(stream),
		interval:  cmp.Or(o.Interval, DefaultTrimInterval),
		ignore:    o.IgnoreMissingOffsets,
	}
	for _, c := range consumers {
		t.offsets = append(t.offsets, keys.Offset(stream, c))
	}
	t.worker.init(rdb, workerConfig{
		kind: "trimmer", keys: keys, lockname: TrimmerLockName(stream), ttl: ttl,
		holder: o.Holder, log: cmp.Or(o.Logger, slog.Default()).With("stream", stream),
	})
	return t, nil
}

// Stats returns a snapshot of the trimmer's progress.
func (t *Trimmer) Stats() TrimmerStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return TrimmerStats{Min: t.lowest, BlockedBy: t.blockedBy, Trims: t.trims, Trimmed: t.trimmed, Errors: t.errs}
}

// Run trims at once, then every Interval, until ctx ends; it then returns
// nil. Failures are logged (at a bounded rate while they last, see
// ConsumerOptions.Logger) and retried at the next interval. Run must not
// be called more than once at a time.
func (t *Trimmer) Run(ctx context.Context) error {
	stop, err := t.start()
	if err != nil {
		return err
	}
	defer stop()
	// A consumer without an offset yet is normal at start-up, an expected
	// state: logged at Info, once per blocking consumer, and once when
	// trimming goes on. TrimmerStats.BlockedBy (the worker's
	// redstream_trimmer_blocked) tells how long it lasts.
	var errs logLimiter
	blockedBy := ""
	for {
		_, err := t.Trim(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrNoOffset):
			if by := t.Stats().BlockedBy; by != blockedBy {
				t.log.InfoContext(ctx, "redstream: trimming blocked until every consumer has committed an offset", "error", err)
				blockedBy = by
			}
		case err != nil:
			errs.fail(ctx, t.log, "redstream: trim failed", err, t.interval)
		default:
			errs.recover(ctx, t.log, "redstream: trimmer recovered")
			if blockedBy != "" {
				t.log.InfoContext(ctx, "redstream: trimming unblocked")
				blockedBy = ""
			}
		}
		if !backoff.Sleep(ctx, t.interval) {
			return nil
		}
	}
}

// Trim trims the stream once and returns how many entries it removed. It
// reads the consumers' offsets, takes their numeric minimum, and, holding
// the trimmer lease for just that long, runs XTRIM MINID with the id after
// the minimum (XTRIM keeps the id it is given). It returns 0 and nil when
// another trimmer holds the lease (that one is trimming) or there is
// nothing to trim, and an error wrapping ErrNoOffset when a consumer has no
// offset and missing offsets are not ignored.
func (t *Trimmer) Trim(ctx context.Context) (int64, error) {
	n, err := t.trim(ctx)
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case errors.Is(err, ErrNoOffset):
	case err != nil:
		t.errs++
	default:
		t.trimmed += int64(n)
	}
	return n, err
}

func (t *Trimmer) trim(ctx context.Context) (int64, error) {
	lowest, err := t.minOffset(ctx)
	if err != nil || lowest.IsZero() {
		return 0, err
	}
	l, err := t.lr.try(ctx)
	if errors.Is(err, errLeaseHeld) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	// Losing the lock at the end of a trim changes nothing: ignore the error.
	defer func() { _ = l.Release(ctx) }()
	n, err := t.rdb.XTrimMinID(l.Context(), t.key, lowest.Next().String()).Result()
	if err != nil {
		return 0, fmt.Errorf("redstream: xtrim: %w", err)
	}
	t.update(func() {
		t.lowest = lowest
		t.trims++
	})
	return n, nil
}

// minOffset returns the numeric minimum of the consumers' offsets and of
// the holds; the zero ID when there is nothing to trim.
func (t *Trimmer) minOffset(ctx context.Context) (ID, error) {
	// One GET per key in a pipeline, rather than MGET, so that a cluster
	// client can route keys of unbraced stream names to their slots.
	var holds *redis.MapStringStringCmd
	cmds, err := t.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range t.offsets {
			p.Get(ctx, k)
		}
		holds = p.HGetAll(ctx, t.holds)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return ID{}, fmt.Errorf("redstream: read offsets: %w", err)
	}
	var lowest ID
	found, blockedBy := false, ""
	for i, c := range cmds[:len(t.offsets)] {
		s, err := c.(*redis.StringCmd).Result()
		if errors.Is(err, redis.Nil) {
			if !t.ignore && blockedBy == "" {
				blockedBy = t.consumers[i]
			}
			continue
		}
		if err != nil {
			return ID{}, fmt.Errorf("redstream: read offsets: %w", err)
		}
		id, err := ParseID(s)
		if err != nil {
			return ID{}, fmt.Errorf("redstream: offset of %s: %w", t.consumers[i], err)
		}
		if !found || id.Less(lowest) {
			lowest, found = id, true
		}
	}
	t.mu.Lock()
	t.blockedBy = blockedBy
	t.mu.Unlock()
	if blockedBy != "" {
		return ID{}, fmt.Errorf("%w: %s", ErrNoOffset, blockedBy)
	}
	hs, err := holds.Result()
	if err != nil {
		return ID{}, fmt.Errorf("redstream: read holds: %w", err)
	}
	for holder, s := range hs {
		id, err := ParseID(s)
		if err != nil {
			return ID{}, fmt.Errorf("redstream: hold of %s: %w", holder, err)
		}
		if found && id.Less(lowest) {
			lowest = id
		}
	}
	return lowest, nil
}
