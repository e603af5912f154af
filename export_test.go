package redstream

import (
	"cmp"
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Exports for the tests of package redstream_test only.

var (
	MaxID        = maxID
	ErrLeaseHeld = errLeaseHeld
)

// SetLogRate sets how often c logs during an outage: every every, and
// every long once the outage is long old. Call it before Run.
func SetLogRate(c *Consumer, every, long time.Duration) { c.logEvery, c.logLong = every, long }

// Lease is a lease as the workers hold it.
type Lease = lease

// LeaseOptions configures AcquireLease and TryLease. A nil *LeaseOptions
// means all defaults.
type LeaseOptions struct {
	// Namespace selects the key layout (see NewKeys). Default: "" (none).
	Namespace string

	// TTL is the lock key's time-to-live. The lease is refreshed every
	// TTL/3, and its work context is cancelled once TTL has passed since
	// the last successful refresh. Default: DefaultLockTTL.
	TTL time.Duration

	// Holder names the lease's holder for operators: it is stored in the
	// lock value after the random token (see LockHolder). Default:
	// DefaultHolder().
	Holder string

	// Logger receives lease events (loss, refresh errors).
	// Default: slog.Default().
	Logger *slog.Logger
}

func leaseConfig(opts *LeaseOptions) (Keys, time.Duration, *slog.Logger, error) {
	var o LeaseOptions
	if opts != nil {
		o = *opts
	}
	ttl, err := leaseTTL(o.TTL)
	if err != nil {
		return Keys{}, 0, nil, err
	}
	return NewKeys(o.Namespace), ttl, cmp.Or(o.Logger, slog.Default()), nil
}

// TryLease tries once to obtain the lock named lockname (for example
// ConsumerLockName("products", "indexer")) and returns errLeaseHeld when
// another holder has it. The lease's context derives from ctx. The caller
// must Release the lease. On a *redis.ClusterClient, the lock and its
// notify list must share a hash slot (brace the stream name in the lock
// name: "consumer:{products}:indexer"); otherwise TryLease returns an error
// at once.
func TryLease(ctx context.Context, rdb redis.UniversalClient, lockname string, opts *LeaseOptions) (*Lease, error) {
	keys, ttl, log, err := leaseConfig(opts)
	if err != nil {
		return nil, err
	}
	if err := checkClusterLock(rdb, keys, lockname); err != nil {
		return nil, err
	}
	return newLeaser(rdb, keys, lockname, ttl, log).withHolder(holderOf(opts)).try(ctx)
}

// AcquireLease obtains the lock named lockname, waiting for as long as ctx
// allows while another holder has it. A waiter blocks on the lock's notify
// list, so it wakes as soon as the holder releases the lock (within a few
// milliseconds), and as soon as the lock key of a vanished holder expires.
// On a *redis.Client it waits on a dedicated connection and returns at once
// when ctx ends; other clients wait on a pool connection, for at most a
// second at a time. It returns ctx's error when ctx ends first. The lease's
// context derives from ctx. The caller must Release the lease. On a
// *redis.ClusterClient the lock name must be braced as for TryLease.
func AcquireLease(ctx context.Context, rdb redis.UniversalClient, lockname string, opts *LeaseOptions) (*Lease, error) {
	keys, ttl, log, err := leaseConfig(opts)
	if err != nil {
		return nil, err
	}
	if err := checkClusterLock(rdb, keys, lockname); err != nil {
		return nil, err
	}
	return newLeaser(rdb, keys, lockname, ttl, log).withHolder(holderOf(opts)).acquire(ctx)
}

func holderOf(opts *LeaseOptions) string {
	if opts == nil {
		return ""
	}
	return opts.Holder
}
