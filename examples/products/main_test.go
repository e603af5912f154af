package main

import (
	"bytes"
	"context"
	"database/sql"
	"strings"
	"testing"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// TestRun runs the app for two seconds against a fresh schema and Redis
// namespace: it creates products and writes their messages.
func TestRun(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		dsn := testenv.Schema(t)
		testRun(t, dsn, testenv.SQL(t, dsn))
	})
	t.Run("mysql", func(t *testing.T) {
		t.Parallel()
		dsn := testenv.MySQLDatabase(t)
		testRun(t, dsn, testenv.MySQLSQL(t, dsn))
	})
}

func testRun(t *testing.T, dsn string, db *sql.DB) {
	rdb, ns := testenv.Redis(t)
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	args := []string{"-duration", "2s", "-interval", "5ms", "-bulk-every", "300ms", "-database", dsn, "-redis", testenv.RedisURL(), "-namespace", ns}
	if code := run(ctx, args, func(string) string { return "" }, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if out := stdout.String(); !strings.Contains(out, "created") || strings.Contains(out, " 0 bulk") {
		t.Errorf("no summary, or no bulk change: %q", out)
	}
	var rows, deleted int
	if err := db.QueryRowContext(ctx, "SELECT count(*), count(deleted_at) FROM products").Scan(&rows, &deleted); err != nil {
		t.Fatal(err)
	}
	if rows == 0 {
		t.Fatal("no products created")
	}
	keys := redstream.NewKeys(ns)
	queued, err := rdb.XLen(ctx, keys.Stream("products")).Result()
	if err != nil {
		t.Fatal(err)
	}
	delayed, err := rdb.XLen(ctx, keys.Delay("products")).Result()
	if err != nil {
		t.Fatal(err)
	}
	// Every create writes a main-stream message, which replaces its delay
	// message. Only the last operation's are left: one the run's deadline
	// cut short after its delay messages, and rolled back — a write, or a
	// bulk price change of up to 20 rows (Producer.Bulk writes the delay
	// messages of its refs before it runs the update).
	if queued < int64(rows) || delayed > 20 {
		t.Errorf("%d rows, but %d main-stream and %d delay messages", rows, queued, delayed)
	}
	t.Logf("%s%d rows (%d soft-deleted), %d messages", stdout.String(), rows, deleted, queued)
	if code := run(ctx, []string{"-setup", "-database", dsn}, func(string) string { return "" }, &stdout, &stderr); code != 0 {
		t.Errorf("-setup on an existing table: exit %d\n%s", code, stderr.String())
	}
}
