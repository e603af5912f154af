package redstream

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// Offsets are stored the Ruby gem's way, one string key per consumer
// ("<ms>-<seq>"), and written only by fenced scripts: a commit checks the
// lease's lock value in the same script, so a deposed holder writes
// nothing, and an offset never moves backwards.
var (
	//go:embed offset_lib.lua
	luaOffsetLib string

	//go:embed offset_commit.lua
	luaCommitSrc string
	luaCommit    = redis.NewScript(luaOffsetLib + luaCommitSrc)
)

// CommitOffset sets the committed offset of consumer on stream to id, in one
// script that first checks that the lease's lock still holds this lease's
// value: a deposed holder commits nothing and gets ErrLockLost. The offset
// never moves backwards: committing an id at or before the stored one
// (compared numerically) leaves it unchanged and returns nil. In Redis
// Cluster, the lock and offset keys must share a slot (brace the stream
// name).
func (l *lease) CommitOffset(ctx context.Context, stream, consumer string, id ID) error {
	n, err := luaCommit.Run(ctx, l.lr.rdb, []string{l.lr.key, l.lr.keys.Offset(stream, consumer)}, l.value, id.String()).Int64()
	return l.commitResult(ctx, id, n, err)
}

// errOffsetMoved is what a commit returns when the stored offset is not the
// one its holder last read or committed.
var errOffsetMoved = errors.New("redstream: the committed offset is not the one this holder committed")

// commitAfter commits id, the last entry of a batch read from stream,
// as the offset at offsetKey like CommitOffset, provided the key still
// holds prev, the offset this holder read or committed last, and the
// stream holds the entry id; otherwise it writes nothing and returns
// errOffsetMoved.
//
// Under the lease only its holder writes the offset, so either check
// failing means the holder read from, or committed to, another node than
// this one: Redis failed over to a replica that had not received its last
// reads' entries or commits. An operator resetting the offset, or trimming
// the entry away, looks the same. Going on from id, the holder would skip
// the entries the new master got after the stored offset, which it never
// read; it must read the stored offset and go on from there.
func (l *lease) commitAfter(ctx context.Context, stream, offsetKey string, prev, id ID) error {
	n, err := luaCommit.Run(ctx, l.lr.rdb, []string{l.lr.key, offsetKey, stream}, l.value, id.String(), prev.String()).Int64()
	return l.commitResult(ctx, id, n, err)
}

// commitResult turns the commit script's reply into an error, and logs a
// commit that passed the fence.
func (l *lease) commitResult(ctx context.Context, id ID, n int64, err error) error {
	switch {
	case err != nil:
		return fmt.Errorf("redstream: commit offset %s: %w", id, err)
	case n == -2:
		return errOffsetMoved
	case n < 0:
		return ErrLockLost
	}
	l.committed(ctx, id, "moved", n == 1)
	return nil
}

// committed logs, at debug level, a commit that passed the fence:
// the lock, the lease's value (its random token and holder), the offset,
// and args. Every lease has a token of its own, so these lines show which
// holder committed which offsets of a unit, and that two holders never
// commit the same unit at once.
func (l *lease) committed(ctx context.Context, id ID, args ...any) {
	if l.lr.log.Enabled(ctx, slog.LevelDebug) {
		l.lr.log.DebugContext(ctx, "redstream: offset committed",
			append([]any{"lock", l.lr.name, "lease", l.value, "offset", id.String()}, args...)...)
	}
}

// readOffset returns the committed offset at key, or the zero ID when none
// has been committed.
func readOffset(ctx context.Context, rdb redis.UniversalClient, key string) (ID, error) {
	s, err := rdb.Get(ctx, key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return ID{}, nil
	case err != nil:
		return ID{}, fmt.Errorf("redstream: read offset: %w", err)
	}
	id, err := ParseID(s)
	if err != nil {
		return ID{}, fmt.Errorf("redstream: offset %s: %w", key, err)
	}
	return id, nil
}
