package main

import (
	"context"
	"database/sql"
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
	suffix := testenv.RandomHex(5)
	s := &space{schema: "bench_" + suffix, ns: "bench" + suffix}
	s.keys = redstream.NewKeys(s.ns)
	dsn, err := testenv.WithSearchPath(testenv.DatabaseURL(), s.schema)
	if err != nil {
		return nil, err
	}
	// The run's connections carry the schema's name, so that its
	// PostgreSQL backends can be told from others (see pgBackendTicks).
	if s.dsn, err = withParam(dsn, "application_name", s.schema); err != nil {
		return nil, err
	}
	if err := testenv.AdminExec(testenv.DatabaseURL(), "CREATE SCHEMA "+pgx.Identifier{s.schema}.Sanitize(), time.Minute); err != nil {
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
		_ = testenv.DeleteNamespace(ctx, s.rdb, s.ns)
		_ = s.rdb.Close()
	}
	s.dropSchema()
}

func (s *space) dropSchema() {
	_ = testenv.AdminExec(testenv.DatabaseURL(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{s.schema}.Sanitize()+" CASCADE", 2*time.Minute)
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

// createItems creates the table items in db with n rows (ids 1 to n) and
// analyzes it.
func createItems(ctx context.Context, db *sql.DB, n int) error {
	for _, q := range []string{
		`CREATE TABLE items (id bigint PRIMARY KEY, title text, price int, updated_at timestamptz)`,
		fmt.Sprintf(`INSERT INTO items SELECT g, 'item ' || g, g %% 100, now() FROM generate_series(1, %d) g`, n),
		`ANALYZE items`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create the table items: %w", err)
		}
	}
	return nil
}

// itemsConfig returns a worker configuration whose one stream, items,
// syncs the table items of dsn (Redis namespace ns) into index on the
// cluster at esURL; worker and stream are more lines of those sections,
// indented and each ending in a newline.
func itemsConfig(redisURL, ns, dsn, esURL, index, worker, stream string) string {
	q := strconv.Quote
	return fmt.Sprintf(`redis:
  url: %s
  namespace: %s
database:
  url: %s
elasticsearch:
  urls: [%s]
worker:
  listen: 127.0.0.1:0
%slog:
  level: warn
streams:
  - name: items
    table: items
    index: %s
%s`, q(redisURL), q(ns), q(dsn), q(esURL), worker, q(index), stream)
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

// withParam adds a connection parameter to a URL or keyword/value DSN.
func withParam(dsn, key, value string) (string, error) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return strings.TrimSpace(dsn) + " " + key + "=" + value, nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("parse database URL: %w", err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String(), nil
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

// errStopped reports that the run was interrupted.
var errStopped = errors.New("interrupted")
