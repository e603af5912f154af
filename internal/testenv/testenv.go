// Package testenv provides helpers that connect the project's tests to the
// PostgreSQL and Redis servers started by `make services`.
//
// Every helper gives the calling test its own isolated space: a unique Redis
// key namespace or a unique PostgreSQL schema. Everything is removed again
// through t.Cleanup, so tests may run in parallel against shared servers and
// leave nothing behind. The helpers are safe for concurrent use.
//
// The servers are located through the REDIS_URL and DATABASE_URL environment
// variables, the Redis Cluster of [RedisCluster] through
// REDIS_CLUSTER_ADDRS, and the Sentinel deployment of [UseSentinel] through
// REDIS_SENTINEL_ADDRS and REDIS_SENTINEL_MASTER,
// falling back to the addresses used by `make services`.
// An unreachable server fails the test (it is never skipped), with a hint on
// how to start it.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

const (
	// DefaultRedisURL is the Redis server used when REDIS_URL is not set.
	DefaultRedisURL = "redis://127.0.0.1:6379/0"
	// DefaultDatabaseURL is the PostgreSQL database used when DATABASE_URL is not set.
	DefaultDatabaseURL = "postgres://redstream:redstream@127.0.0.1:5432/redstream_test?sslmode=disable"

	servicesHint = "is it running? Start PostgreSQL and Redis with `make services` (scripts/services.sh)"

	connectTimeout = 10 * time.Second
	cleanupTimeout = time.Minute
	scanCount      = 1000
)

// RedisURL returns $REDIS_URL or redis://127.0.0.1:6379/0.
func RedisURL() string {
	if v := os.Getenv("REDIS_URL"); v != "" {
		return v
	}
	return DefaultRedisURL
}

// DatabaseURL returns $DATABASE_URL or
// postgres://redstream:redstream@127.0.0.1:5432/redstream_test?sslmode=disable.
func DatabaseURL() string {
	if v := os.Getenv("DATABASE_URL"); v != "" {
		return v
	}
	return DefaultDatabaseURL
}

// Redis returns a client for the test Redis server and a fresh, unique key
// namespace ("t" followed by random hex, e.g. "t3f9a1c2b7d"). Tests must put
// all their keys under "<ns>:".
//
// The test fails if Redis is unreachable. On cleanup every key matching
// "<ns>:*" is deleted and the client is closed.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	return RedisOptions(t, nil)
}

// RedisOptions is like [Redis] but lets adjust change the options parsed from
// [RedisURL] (e.g. MaxRetries, PoolSize) before the client connects. A nil
// adjust leaves them unchanged.
func RedisOptions(t testing.TB, adjust func(*redis.Options)) (*redis.Client, string) {
	t.Helper()
	opts, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("testenv: parse REDIS_URL %q: %v", RedisURL(), err)
	}
	if adjust != nil {
		adjust(opts)
	}
	rdb := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		t.Fatalf("testenv: cannot reach Redis at %s: %v\n%s", opts.Addr, err, servicesHint)
	}
	// Cleanups run last-in first-out: the keys are deleted before the client closes.
	t.Cleanup(func() {
		if err := rdb.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			t.Errorf("testenv: close Redis client: %v", err)
		}
	})
	return rdb, Namespace(t, rdb)
}

// Namespace returns a fresh, unique key namespace ("t" followed by random
// hex) and registers a cleanup that deletes every key matching "<ns>:*" on
// rdb, using SCAN and UNLINK. Cluster and ring clients are scanned on every
// shard.
//
// If rdb has already been closed when the cleanup runs, the keys are deleted
// through a new client built from rdb's options.
func Namespace(t testing.TB, rdb redis.UniversalClient) string {
	t.Helper()
	ns := "t" + RandomHex(5)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		err := DeleteNamespace(ctx, rdb, ns)
		if errors.Is(err, redis.ErrClosed) {
			if fresh := reopen(rdb); fresh != nil {
				err = DeleteNamespace(ctx, fresh, ns)
				_ = fresh.Close()
			}
		}
		if err != nil {
			t.Errorf("testenv: delete Redis keys %s:*: %v", ns, err)
		}
	})
	return ns
}

// DeleteNamespace deletes every key matching "<ns>:*" on every shard of rdb.
func DeleteNamespace(ctx context.Context, rdb redis.UniversalClient, ns string) error {
	pattern := ns + ":*"
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return deleteMatching(ctx, node, pattern, true)
		})
	case *redis.Ring:
		return c.ForEachShard(ctx, func(ctx context.Context, shard *redis.Client) error {
			return deleteMatching(ctx, shard, pattern, false)
		})
	default:
		return deleteMatching(ctx, rdb, pattern, false)
	}
}

// deleteMatching scans one server for keys matching pattern and unlinks them.
// With perKey set, keys are unlinked one by one (pipelined), as a cluster
// node refuses a multi-key command whose keys lie in different slots.
func deleteMatching(ctx context.Context, rdb redis.Cmdable, pattern string, perKey bool) error {
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, pattern, scanCount).Result()
		if err != nil {
			return fmt.Errorf("scan %q: %w", pattern, err)
		}
		if len(keys) > 0 {
			if perKey {
				_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					for _, k := range keys {
						p.Unlink(ctx, k)
					}
					return nil
				})
			} else {
				err = rdb.Unlink(ctx, keys...).Err()
			}
			if err != nil {
				return fmt.Errorf("unlink %d keys: %w", len(keys), err)
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// reopen returns a new client with the same options as rdb, or nil if rdb's
// type is unknown.
func reopen(rdb redis.UniversalClient) redis.UniversalClient {
	switch c := rdb.(type) {
	case *redis.Client:
		o := *c.Options()
		return redis.NewClient(&o)
	case *redis.ClusterClient:
		o := *c.Options()
		return redis.NewClusterClient(&o)
	case *redis.Ring:
		o := *c.Options()
		return redis.NewRing(&o)
	default:
		return nil
	}
}

// Schema creates a fresh PostgreSQL schema ("t_" followed by random hex) in
// the test database and returns a DSN for that database whose search_path is
// the new schema alone, so unqualified table names resolve inside it. For a
// URL DSN the search_path is added to the query, which pgx sends as a run-time
// parameter.
//
// The test fails if PostgreSQL is unreachable. On cleanup the schema is
// dropped with CASCADE; connections opened through [GORM] or [SQL] after
// Schema was called are closed before that.
func Schema(t testing.TB) string {
	t.Helper()
	name := "t_" + RandomHex(6)
	dsn, err := WithSearchPath(DatabaseURL(), name)
	if err != nil {
		t.Fatalf("testenv: DATABASE_URL: %v", err)
	}
	ident := pgx.Identifier{name}.Sanitize()
	if err := AdminExec(DatabaseURL(), "CREATE SCHEMA "+ident, connectTimeout); err != nil {
		t.Fatalf("testenv: create schema %s: %v\n%s", name, err, servicesHint)
	}
	t.Cleanup(func() {
		if err := AdminExec(DatabaseURL(), "DROP SCHEMA IF EXISTS "+ident+" CASCADE", cleanupTimeout); err != nil {
			t.Errorf("testenv: drop schema %s: %v", name, err)
		}
	})
	return dsn
}

// AdminExec runs one statement on a short-lived connection to dsn, giving up
// after timeout. Programs that need no testing.TB (benchmarks) use it
// to create and drop their schemas.
func AdminExec(dsn, stmt string, timeout time.Duration) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return fmt.Errorf("open %s: %w", redactDSN(dsn), err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("on %s: %w", redactDSN(dsn), err)
	}
	return nil
}

// WithSearchPath returns dsn with its search_path set to schema. Both the URL
// form and the keyword/value form of a PostgreSQL DSN are accepted.
func WithSearchPath(dsn, schema string) (string, error) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return strings.TrimSpace(dsn) + " search_path=" + schema, nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("parse database URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// redactDSN hides the password of a URL DSN, for error messages.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "the test database"
	}
	return u.Redacted()
}

// GORM opens a fresh [Schema] with gorm.io/driver/postgres and returns the
// *gorm.DB. A nil cfg means &gorm.Config{Logger: logger.Discard}. cfg is
// copied before use, so one Config may be passed to several calls; it should
// be one that has not been passed to gorm.Open itself. The underlying *sql.DB
// is closed on cleanup.
//
// The test fails if PostgreSQL is unreachable.
func GORM(t testing.TB, cfg *gorm.Config) *gorm.DB {
	t.Helper()
	dsn := Schema(t)
	return openGORM(t, postgres.Open(dsn), cfg, redactDSN(dsn), servicesHint)
}

// openGORM opens GORM on dialector with a copy of cfg (nil: a silent
// logger), failing the test with hint when it cannot; the connections are
// closed on cleanup.
func openGORM(t testing.TB, dialector gorm.Dialector, cfg *gorm.Config, what, hint string) *gorm.DB {
	t.Helper()
	var c gorm.Config
	if cfg == nil {
		c.Logger = logger.Discard
	} else {
		// gorm.Open stores its state in the Config it is given.
		c = *cfg
		c.Plugins = maps.Clone(cfg.Plugins)
		c.ClauseBuilders = maps.Clone(cfg.ClauseBuilders)
	}
	db, err := gorm.Open(dialector, &c)
	if err != nil {
		t.Fatalf("testenv: open GORM on %s: %v\n%s", what, err, hint)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatalf("testenv: GORM connection pool: %v", err)
	}
	t.Cleanup(func() {
		if err := sqlDB.Close(); err != nil {
			t.Errorf("testenv: close GORM database: %v", err)
		}
	})
	return db
}

// SQL opens a *sql.DB on dsn with the pgx driver ("pgx") and checks that it
// connects. The test fails if it cannot. The *sql.DB is closed on cleanup.
func SQL(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatalf("testenv: open %s: %v", redactDSN(dsn), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		t.Fatalf("testenv: connect to %s: %v\n%s", redactDSN(dsn), err, servicesHint)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("testenv: close database: %v", err)
		}
	})
	return db
}

// RandomHex returns 2*n random hexadecimal digits.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails: crypto/rand aborts the program instead
	return hex.EncodeToString(b)
}
