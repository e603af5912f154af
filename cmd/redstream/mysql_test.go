package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	gormmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// newMySQLFixture is newFixture on MariaDB: the binary gets the
// database as go-sql-driver/mysql's DSN in DATABASE_URL.
func newMySQLFixture(t *testing.T, streamYAML string) *fixture {
	t.Helper()
	f := &fixture{dsn: testenv.MySQLDatabase(t), mysql: true}
	f.rdb, f.ns = testenv.Redis(t)
	db, err := gorm.Open(gormmysql.Open(f.dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	if err := db.AutoMigrate(&product{}); err != nil {
		t.Fatal(err)
	}
	if err := db.Use(redstream.NewPlugin(mustProducer(f.rdb, &redstream.ProducerOptions{Namespace: f.ns}))); err != nil {
		t.Fatal(err)
	}
	f.db = db
	return f.configure(t, streamYAML)
}

// TestMySQLChaos is TestChaos on MariaDB: workers killed with SIGKILL
// under a mixed write load, then verify in sync and every document equal
// to its row.
func TestMySQLChaos(t *testing.T) {
	t.Parallel()
	f := newMySQLFixture(t, chaosStreamYAML)
	producer := mustProducer(f.rdb, &redstream.ProducerOptions{Namespace: f.ns})
	runChaos[product](t, f, producer, "products")
}

// TestMySQLBackfillVerify: backfill and verify of the binary on MariaDB,
// by the database URL in both forms (mysql:// and the driver's DSN);
// verify finds a row written without the plugin, and --repair fixes it.
func TestMySQLBackfillVerify(t *testing.T) {
	t.Parallel()
	f := newMySQLFixture(t, "    soft_delete_column: deleted_at\n    version_column: updated_at\n")
	plain := f.insertRows(t, 23)
	for _, url := range []string{f.dsn, mysqlURL(t, f.dsn)} {
		f.vars["DATABASE_URL"] = url
		r := runBin(t, f.vars, "backfill", "--config", f.config, "--stream", "products", "--page", "5")
		if r.code != 0 || !strings.Contains(r.stdout, ": 23 indexed,") {
			t.Fatalf("backfill with %s: exit %d\n%s%s", url, r.code, r.stdout, r.stderr)
		}
		if rep := chaosVerify(t, f, "products"); !rep.InSync || rep.Rows != 23 || !rep.Versioned {
			t.Fatalf("verify with %s: %+v", url, rep)
		}
	}
	for id := uint64(1); id <= 23; id++ {
		if title, ok := docTitle(f.es, id); !ok || title != fmt.Sprint("p", id) {
			t.Fatalf("document %d: %q, %v", id, title, ok)
		}
	}
	if err := plain.Exec("INSERT INTO products (id, title, price, updated_at) VALUES (24, 'p24', 24, UTC_TIMESTAMP(6))").Error; err != nil {
		t.Fatal(err)
	}
	if rep := chaosVerify(t, f, "products"); rep.InSync || rep.Missing.Count != 1 || rep.Missing.First[0] != "24" {
		t.Fatalf("verify after a raw insert: %+v", rep)
	}
	// --repair queues the id for the worker; the worker syncs it.
	if rep, r := f.verify(t, "--repair"); r.code != exitFailure || rep.Queued != 1 {
		t.Fatalf("verify --repair: exit %d, %+v", r.code, rep)
	}
	startBin(t, f.vars, "worker", "--config", f.config)
	within(t, time.Minute, "the worker to index the repaired row", func() bool { return chaosVerify(t, f, "products").InSync })
	src, _, _ := f.es.Doc("products", "24")
	var doc map[string]any
	if err := json.Unmarshal(src, &doc); err != nil || doc["title"] != "p24" || doc["deleted_at"] != nil {
		t.Fatalf("document 24 = %s", src)
	}
	if s, ok := doc["updated_at"].(string); !ok || !strings.HasSuffix(s, "Z") {
		t.Errorf("updated_at = %v, want an ES date in UTC", doc["updated_at"])
	}
}

// mysqlURL turns the driver's DSN of testenv into a mysql:// URL.
func mysqlURL(t *testing.T, dsn string) string {
	t.Helper()
	cred, rest, _ := strings.Cut(dsn, "@tcp(")
	addr, rest, _ := strings.Cut(rest, ")")
	return "mysql://" + cred + "@" + addr + rest
}
