package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

var (
	redisNamespace = regexp.MustCompile(`^t[0-9a-f]{10}$`)
	schemaName     = regexp.MustCompile(`^t_[0-9a-f]{12}$`)
)

func TestURLDefaults(t *testing.T) {
	t.Setenv("REDIS_URL", "")
	t.Setenv("DATABASE_URL", "")
	if got := RedisURL(); got != DefaultRedisURL {
		t.Errorf("RedisURL() = %q, want %q", got, DefaultRedisURL)
	}
	if got := DatabaseURL(); got != DefaultDatabaseURL {
		t.Errorf("DatabaseURL() = %q, want %q", got, DefaultDatabaseURL)
	}
	t.Setenv("REDIS_URL", "redis://example.invalid:1/2")
	t.Setenv("DATABASE_URL", "postgres://u:p@example.invalid/db")
	if got := RedisURL(); got != "redis://example.invalid:1/2" {
		t.Errorf("RedisURL() = %q, want $REDIS_URL", got)
	}
	if got := DatabaseURL(); got != "postgres://u:p@example.invalid/db" {
		t.Errorf("DatabaseURL() = %q, want $DATABASE_URL", got)
	}
}

func TestNamespaceUnique(t *testing.T) {
	t.Parallel()
	rdb, _ := Redis(t)
	seen := make(map[string]bool)
	for range 100 {
		ns := Namespace(t, rdb)
		if !redisNamespace.MatchString(ns) {
			t.Fatalf("namespace %q does not match %v", ns, redisNamespace)
		}
		if seen[ns] {
			t.Fatalf("namespace %q returned twice", ns)
		}
		seen[ns] = true
	}
}

func TestRedisCleanup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, keep := Redis(t)
	if err := rdb.Set(ctx, keep+":survivor", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}

	var ns string
	t.Run("sub", func(t *testing.T) {
		sub, subNS := Redis(t)
		ns = subNS
		// More keys than one SCAN page holds, of several types.
		_, err := sub.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range 2500 {
				p.Set(ctx, fmt.Sprintf("%s:k:%d", ns, i), i, 0)
			}
			p.XAdd(ctx, &redis.XAddArgs{Stream: ns + ":stream", Values: []any{"f", "v"}})
			p.HSet(ctx, ns+":hash", "f", "v")
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := countKeys(t, sub, ns); n != 2502 {
			t.Fatalf("%d keys in %s, want 2502", n, ns)
		}
	})

	if n := countKeys(t, rdb, ns); n != 0 {
		t.Errorf("%d keys left in %s after the subtest ended", n, ns)
	}
	if n := countKeys(t, rdb, keep); n != 1 {
		t.Errorf("%d keys in the parent namespace %s, want 1", n, keep)
	}
}

func TestNamespaceClosedClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, _ := Redis(t)

	var ns string
	t.Run("sub", func(t *testing.T) {
		own := redis.NewClient(rdb.Options())
		ns = Namespace(t, own)
		if err := own.Set(ctx, ns+":k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := own.Close(); err != nil {
			t.Fatal(err)
		}
	})
	if n := countKeys(t, rdb, ns); n != 0 {
		t.Errorf("%d keys left in %s after its client was closed", n, ns)
	}
}

func TestRedisOptions(t *testing.T) {
	t.Parallel()
	rdb, ns := RedisOptions(t, func(o *redis.Options) {
		o.PoolSize = 3
		o.MaxRetries = -1
	})
	if got := rdb.Options().PoolSize; got != 3 {
		t.Errorf("PoolSize = %d, want 3", got)
	}
	if !redisNamespace.MatchString(ns) {
		t.Errorf("namespace %q does not match %v", ns, redisNamespace)
	}
}

func TestSchemaIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin := SQL(t, DatabaseURL())

	var names []string
	t.Run("sub", func(t *testing.T) {
		dbs := make(map[string]*sql.DB)
		for _, label := range []string{"a", "b"} {
			dsn := Schema(t)
			name := searchPath(t, dsn)
			names = append(names, name)
			db := SQL(t, dsn)
			var current string
			if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&current); err != nil {
				t.Fatal(err)
			}
			if current != name {
				t.Fatalf("current_schema() = %q, want %q", current, name)
			}
			// The same unqualified table name in both schemas.
			if _, err := db.ExecContext(ctx, "CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL)"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO items (label) VALUES ($1)", label); err != nil {
				t.Fatal(err)
			}
			dbs[label] = db
		}
		for label, db := range dbs {
			rows, err := db.QueryContext(ctx, "SELECT label FROM items")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for rows.Next() {
				var l string
				if err := rows.Scan(&l); err != nil {
					t.Fatal(err)
				}
				got = append(got, l)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			_ = rows.Close()
			if len(got) != 1 || got[0] != label {
				t.Errorf("schema %s holds %q, want [%q]", label, got, label)
			}
		}
	})

	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("schemas %q, want two distinct ones", names)
	}
	for _, name := range names {
		var exists bool
		err := admin.QueryRowContext(ctx,
			"SELECT EXISTS (SELECT 1 FROM information_schema.schemata WHERE schema_name = $1)", name).Scan(&exists)
		if err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Errorf("schema %s still exists after the subtest ended", name)
		}
	}
}

func TestWithSearchPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://u:p@h:5432/db?sslmode=disable", "postgres://u:p@h:5432/db?search_path=t_x&sslmode=disable"},
		{"postgresql://h/db?search_path=other", "postgresql://h/db?search_path=t_x"},
		{"host=h dbname=db ", "host=h dbname=db search_path=t_x"},
	} {
		got, err := WithSearchPath(tc.dsn, "t_x")
		if err != nil {
			t.Fatalf("withSearchPath(%q): %v", tc.dsn, err)
		}
		if got != tc.want {
			t.Errorf("withSearchPath(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
	}
}

type widget struct {
	ID   uint
	Name string
}

func TestGORM(t *testing.T) {
	t.Parallel()
	// One Config shared by concurrent opens must not couple the databases.
	shared := &gorm.Config{Logger: logger.Discard}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			db := GORM(t, shared)
			if err := db.AutoMigrate(&widget{}); err != nil {
				t.Error(err)
				return
			}
			if err := db.Create(&widget{Name: fmt.Sprint("w", i)}).Error; err != nil {
				t.Error(err)
				return
			}
			var all []widget
			if err := db.Find(&all).Error; err != nil {
				t.Error(err)
				return
			}
			if len(all) != 1 || all[0].Name != fmt.Sprint("w", i) {
				t.Errorf("widgets = %+v, want only w%d", all, i)
			}
		})
	}
	wg.Wait()
	if shared.Dialector != nil {
		t.Error("GORM modified the caller's Config")
	}

	db := GORM(t, nil)
	if err := db.AutoMigrate(&widget{}); err != nil {
		t.Fatal(err)
	}
}

// fatalTB records the message of Fatalf and ends the goroutine, like testing.T.
type fatalTB struct {
	*testing.T
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalMessage runs fn with a fatalTB and returns what it passed to Fatalf.
func fatalMessage(t *testing.T, fn func(testing.TB)) string {
	f := &fatalTB{T: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.msg
}

func TestUnreachableHint(t *testing.T) {
	// Port 1 on loopback refuses connections at once.
	t.Setenv("REDIS_URL", "redis://127.0.0.1:1/0")
	t.Setenv("DATABASE_URL", "postgres://redstream:redstream@127.0.0.1:1/redstream_test?sslmode=disable&connect_timeout=5")
	for name, fn := range map[string]func(testing.TB){
		"Redis":  func(tb testing.TB) { Redis(tb) },
		"Schema": func(tb testing.TB) { Schema(tb) },
		"GORM":   func(tb testing.TB) { GORM(tb, nil) },
		"SQL":    func(tb testing.TB) { SQL(tb, DatabaseURL()) },
	} {
		msg := fatalMessage(t, fn)
		if !strings.Contains(msg, "make services") {
			t.Errorf("%s: Fatalf(%q), want a hint to run `make services`", name, msg)
		}
		if strings.Contains(msg, "redstream:redstream@") {
			t.Errorf("%s: Fatalf(%q) shows the password", name, msg)
		}
	}
}

// countKeys returns how many keys match "<ns>:*".
func countKeys(t *testing.T, rdb *redis.Client, ns string) int {
	t.Helper()
	var n int
	iter := rdb.Scan(context.Background(), 0, ns+":*", 1000).Iterator()
	for iter.Next(context.Background()) {
		n++
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// searchPath returns the search_path parameter of a URL DSN.
func searchPath(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := u.Query().Get("search_path")
	if !schemaName.MatchString(name) {
		t.Fatalf("search_path %q does not match %v", name, schemaName)
	}
	return name
}
