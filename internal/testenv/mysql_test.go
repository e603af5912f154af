package testenv

import (
	"context"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
)

func TestMySQLURLDefault(t *testing.T) {
	t.Setenv("MYSQL_URL", "")
	if got := MySQLURL(); got != DefaultMySQLURL {
		t.Errorf("MySQLURL() = %q, want %q", got, DefaultMySQLURL)
	}
	t.Setenv("MYSQL_URL", "u:p@tcp(example.invalid:1)/db")
	if got := MySQLURL(); got != "u:p@tcp(example.invalid:1)/db" {
		t.Errorf("MySQLURL() = %q, want $MYSQL_URL", got)
	}
}

// TestMySQLDatabaseIsolation: two tests' databases hold the same table
// name apart, and each is dropped when its test ends.
func TestMySQLDatabaseIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var names []string
	t.Run("sub", func(t *testing.T) {
		for _, label := range []string{"a", "b"} {
			dsn := MySQLDatabase(t)
			cfg, err := mysql.ParseDSN(dsn)
			if err != nil {
				t.Fatal(err)
			}
			if !schemaName.MatchString(cfg.DBName) || !cfg.ParseTime {
				t.Fatalf("DSN %q: want a database t_<hex> and parseTime", dsn)
			}
			names = append(names, cfg.DBName)
			db := MySQLSQL(t, dsn)
			if _, err := db.ExecContext(ctx, "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, label TEXT NOT NULL)"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO items (label) VALUES (?)", label); err != nil {
				t.Fatal(err)
			}
			var got string
			if err := db.QueryRowContext(ctx, "SELECT group_concat(label) FROM items").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != label {
				t.Errorf("database %s holds %q, want %q", cfg.DBName, got, label)
			}
		}
	})
	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("databases %q, want two distinct ones", names)
	}
	cfg, err := mysqlConfig()
	if err != nil {
		t.Fatal(err)
	}
	admin := MySQLSQL(t, cfg.FormatDSN())
	for _, name := range names {
		var n int
		if err := admin.QueryRowContext(ctx,
			"SELECT count(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("database %s still exists after the subtest ended", name)
		}
	}
}

func TestMySQLGORM(t *testing.T) {
	t.Parallel()
	type Item struct {
		ID    int64
		Label string
	}
	db := MySQLGORM(t, nil)
	if err := db.AutoMigrate(&Item{}); err != nil {
		t.Fatal(err)
	}
	if err := db.Create(&Item{Label: "x"}).Error; err != nil {
		t.Fatal(err)
	}
	var it Item
	if err := db.First(&it).Error; err != nil || it.Label != "x" || it.ID != 1 {
		t.Fatalf("First = %+v, %v", it, err)
	}
}

func TestMySQLUnreachableHint(t *testing.T) {
	t.Setenv("MYSQL_URL", "mysql://redstream:redstream@127.0.0.1:1/redstream_test?timeout=5s")
	for name, fn := range map[string]func(testing.TB){
		"MySQLDatabase": func(tb testing.TB) { MySQLDatabase(tb) },
		"MySQLGORM":     func(tb testing.TB) { MySQLGORM(tb, nil) },
		"MySQLSQL":      func(tb testing.TB) { MySQLSQL(tb, "redstream:redstream@tcp(127.0.0.1:1)/x?timeout=5s") },
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
