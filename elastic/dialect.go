package elastic

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/stdlib"
)

// The SQL of TableLoader, Backfill and Verify is written once per
// database: PostgreSQL's in source.go and backfill.go, MySQL's and
// MariaDB's in mysql.go. Which one a *sql.DB speaks is told by its driver
// (pgx or go-sql-driver/mysql), or, for another driver (a wrapper), by
// the server's version string.

// dbKind is the database a *sql.DB talks to.
type dbKind int

const (
	postgres dbKind = iota
	mysqlDB
)

func (k dbKind) String() string {
	if k == mysqlDB {
		return "MySQL"
	}
	return "PostgreSQL"
}

// kindOf tells which database db talks to.
func kindOf(ctx context.Context, db *sql.DB) (dbKind, error) {
	switch db.Driver().(type) {
	case *stdlib.Driver:
		return postgres, nil
	case *mysql.MySQLDriver:
		return mysqlDB, nil
	}
	var v string
	if err := db.QueryRowContext(ctx, "SELECT version()").Scan(&v); err != nil {
		return 0, fmt.Errorf("elastic: read the database's version: %w", err)
	}
	if strings.Contains(v, "PostgreSQL") {
		return postgres, nil
	}
	return mysqlDB, nil
}

// keyType is what the loader, Backfill and Verify need to know of a
// primary key's type.
type keyType struct {
	name     string // as the database writes it: "bigint", "bigint(20) unsigned"
	bits     int    // an integer key's size; 0 for other types
	unsigned bool
}

// checkID checks that id is an integer of the key's range written as the
// database writes it ("7", not "07", "+7" or "7.0"); any id passes for a
// key that is not an integer.
func (k keyType) checkID(id string, kind dbKind) error {
	if k.bits == 0 {
		return nil
	}
	var n func() string
	if k.unsigned {
		v, err := strconv.ParseUint(id, 10, k.bits)
		if err != nil {
			return fmt.Errorf("not a %s (the primary key's type)", k.name)
		}
		n = func() string { return strconv.FormatUint(v, 10) }
	} else {
		v, err := strconv.ParseInt(id, 10, k.bits)
		if err != nil {
			return fmt.Errorf("not a %s (the primary key's type)", k.name)
		}
		n = func() string { return strconv.FormatInt(v, 10) }
	}
	// ParseInt also takes "+7", "07" and "-0"; checked without allocating,
	// as this runs for every message.
	digits := strings.TrimPrefix(id, "-")
	if id[0] == '+' || (digits[0] == '0' && (len(digits) > 1 || len(digits) < len(id))) {
		return fmt.Errorf("not written as %s writes the %s %s", kind, k.name, n())
	}
	return nil
}
