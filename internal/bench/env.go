package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// space is one run's own PostgreSQL schema and Redis key namespace.
type space struct {
	schema string
	dsn    string // DATABASE_URL with search_path set to the schema
	ns     string
	keys   redstream.Keys
	rdb    *redis.Client
}

// newSpace creates a fresh schema and picks a fresh namespace; close
// removes both.
func newSpace(ctx context.Context) (*space, error) {
	suffix := randomHex(5)
	s := &space{schema: "bench_" + suffix, ns: "bench" + suffix}
	s.keys = redstream.NewKeys(s.ns)
	dsn, err := withSearchPath(testenv.DatabaseURL(), s.schema)
	if err != nil {
		return nil, err
	}
	s.dsn = dsn
	if err := adminExec(ctx, "CREATE SCHEMA "+pgx.Identifier{s.schema}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create schema: %w", err)
	}
	if s.rdb, err = openRedis(ctx); err != nil {
		s.dropSchema()
		return nil, err
	}
	return s, nil
}

// close drops the schema and deletes the namespace's keys, even when ctx
// has ended.
func (s *space) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if s.rdb != nil {
		_ = deleteKeys(ctx, s.rdb, s.ns+":*")
		_ = s.rdb.Close()
	}
	s.dropSchema()
}

func (s *space) dropSchema() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = adminExec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s.schema}.Sanitize()+" CASCADE")
}

// openDB opens the space's schema with database/sql.
func (s *space) openDB(ctx context.Context) (*sql.DB, error) {
	db, err := sql.Open("pgx", s.dsn)
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// fillStream appends one message {"id":n} per n in [1, count] to the main
// stream name, 1,000 XADDs per pipeline, and returns the last id.
func (s *space) fillStream(ctx context.Context, name string, count int) (redstream.ID, error) {
	key := s.keys.Stream(name)
	var last string
	for start := 1; start <= count; start += 1000 {
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.Cmd, 0, 1000)
		for id := start; id < start+1000 && id <= count; id++ {
			cmds = append(cmds, pipe.Do(ctx, "xadd", key, "*", "payload", `{"id":`+strconv.Itoa(id)+`}`))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return redstream.ID{}, fmt.Errorf("fill stream: %w", err)
		}
		last = cmds[len(cmds)-1].Val().(string)
	}
	return redstream.ParseID(last)
}

// openRedis returns a new client on REDIS_URL.
func openRedis(ctx context.Context) (*redis.Client, error) {
	opts, err := redis.ParseURL(testenv.RedisURL())
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("connect to Redis: %w", err)
	}
	return rdb, nil
}

func deleteKeys(ctx context.Context, rdb *redis.Client, pattern string) error {
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

func adminExec(ctx context.Context, stmt string) error {
	db, err := sql.Open("pgx", testenv.DatabaseURL())
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(ctx, stmt)
	return err
}

// withSearchPath returns dsn with its search_path set to schema.
func withSearchPath(dsn, schema string) (string, error) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return strings.TrimSpace(dsn) + " search_path=" + schema, nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// errStopped reports that the run was interrupted.
var errStopped = errors.New("interrupted")
