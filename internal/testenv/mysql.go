package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"gorm.io/gorm"

	gormmysql "gorm.io/driver/mysql"

	"github.com/redstream-go/redstream/internal/dburl"
)

// DefaultMySQLURL is the MySQL or MariaDB server used when MYSQL_URL is
// not set: the MariaDB `make services` starts.
const DefaultMySQLURL = "mysql://redstream:redstream@127.0.0.1:3306/redstream_test"

const mysqlHint = "is it running? Start MariaDB with `make services` (scripts/services.sh)"

// MySQLURL returns $MYSQL_URL or
// mysql://redstream:redstream@127.0.0.1:3306/redstream_test. Either form
// of internal/dburl is accepted: a mysql:// URL or the driver's DSN.
func MySQLURL() string {
	if v := os.Getenv("MYSQL_URL"); v != "" {
		return v
	}
	return DefaultMySQLURL
}

// MySQLDatabase creates a fresh database ("t_" followed by random hex) on
// the MySQL server of [MySQLURL] and returns a go-sql-driver/mysql DSN for
// it, with parseTime=true (GORM scans time.Time) and loc=UTC.
//
// The test fails if the server is unreachable. On cleanup the database is
// dropped; connections opened through [MySQLGORM] or [MySQLSQL] after
// MySQLDatabase was called are closed before that.
func MySQLDatabase(t testing.TB) string {
	t.Helper()
	name := "t_" + RandomHex(6)
	dsn, err := NewMySQLDatabase(name)
	if err != nil {
		t.Fatalf("testenv: %v\n%s", err, mysqlHint)
	}
	t.Cleanup(func() {
		if err := MySQLAdminExec("DROP DATABASE IF EXISTS `"+name+"`", cleanupTimeout); err != nil {
			t.Errorf("testenv: drop MySQL database %s: %v", name, err)
		}
	})
	return dsn
}

// NewMySQLDatabase creates the database name on the server of [MySQLURL]
// and returns a DSN for it, as [MySQLDatabase] does; the caller drops it
// (benchmarks, which have no testing.TB cleanup of their own, use it).
func NewMySQLDatabase(name string) (string, error) {
	cfg, err := mysqlConfig()
	if err != nil {
		return "", err
	}
	if err := MySQLAdminExec("CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4", connectTimeout); err != nil {
		return "", fmt.Errorf("create MySQL database %s: %w", name, err)
	}
	cfg.DBName = name
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	return cfg.FormatDSN(), nil
}

// MySQLAdminExec runs one statement on a short-lived connection to the
// server of [MySQLURL], giving up after timeout.
func MySQLAdminExec(stmt string, timeout time.Duration) error {
	cfg, err := mysqlConfig()
	if err != nil {
		return err
	}
	db, err := sql.Open(dburl.MySQL, cfg.FormatDSN())
	if err != nil {
		return fmt.Errorf("open %s: %w", cfg.Addr, err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("on MySQL %s: %w", cfg.Addr, err)
	}
	return nil
}

// mysqlConfig parses [MySQLURL].
func mysqlConfig() (*mysql.Config, error) {
	driver, dsn, err := dburl.Parse(MySQLURL())
	if err != nil || driver != dburl.MySQL {
		return nil, fmt.Errorf("MYSQL_URL %q is not a MySQL URL or DSN (%v)", MySQLURL(), err)
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("MYSQL_URL: %w", err)
	}
	return cfg, nil
}

// MySQLGORM opens a fresh [MySQLDatabase] with gorm.io/driver/mysql and
// returns the *gorm.DB, as [GORM] does for PostgreSQL.
func MySQLGORM(t testing.TB, cfg *gorm.Config) *gorm.DB {
	t.Helper()
	return openGORM(t, gormmysql.Open(MySQLDatabase(t)), cfg, "MySQL", mysqlHint)
}

// MySQLSQL opens a *sql.DB on a go-sql-driver/mysql dsn and checks that
// it connects. The test fails if it cannot. The *sql.DB is closed on
// cleanup.
func MySQLSQL(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(dburl.MySQL, dsn)
	if err != nil {
		t.Fatalf("testenv: open MySQL: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		t.Fatalf("testenv: connect to MySQL: %v\n%s", err, mysqlHint)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("testenv: close database: %v", err)
		}
	})
	return db
}
