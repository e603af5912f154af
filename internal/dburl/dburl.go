// Package dburl tells a PostgreSQL database URL from a MySQL or MariaDB
// one and turns it into what database/sql's drivers take.
package dburl

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// The database/sql driver names Parse returns.
const (
	Postgres = "pgx"   // github.com/jackc/pgx/v5/stdlib
	MySQL    = "mysql" // github.com/go-sql-driver/mysql
)

// Parse returns the database/sql driver for a database URL and the data
// source name to open it with:
//
//   - postgres://… and postgresql://… URLs, and PostgreSQL's keyword/value
//     form (host=… dbname=…), open with pgx as they are;
//   - mysql://user:password@host:port/database?param=value opens with
//     go-sql-driver/mysql as user:password@tcp(host:port)/database?param=value
//     (port 3306 when none is given; the parameters are the driver's);
//   - the driver's own form (user:password@tcp(host:3306)/database,
//     user@unix(/run/mysqld/mysqld.sock)/database) opens with it as it is.
func Parse(s string) (driver, dsn string, err error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", "", fmt.Errorf("empty database URL")
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		return Postgres, s, nil
	case strings.HasPrefix(s, "mysql://"):
		dsn, err := fromURL(s)
		if err != nil {
			return "", "", err
		}
		return MySQL, dsn, nil
	case isMySQLDSN(s):
		if _, err := mysql.ParseDSN(s); err != nil {
			return "", "", fmt.Errorf("MySQL data source name: %w", err)
		}
		return MySQL, s, nil
	}
	return Postgres, s, nil
}

// isMySQLDSN reports whether s is in the form of go-sql-driver/mysql:
// [user[:password]@][net[(addr)]]/dbname[?params]. PostgreSQL's
// keyword/value form has a "=" before any "/".
func isMySQLDSN(s string) bool {
	slash := strings.IndexByte(s, '/')
	if slash < 0 {
		return false
	}
	head := s[:slash]
	return !strings.ContainsAny(head, "= \t") || strings.Contains(head, "@tcp(") || strings.Contains(head, "@unix(")
}

// fromURL turns mysql://user:password@host:port/database?params into the
// driver's form.
func fromURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("MySQL URL: %w", err)
	}
	cfg := mysql.NewConfig()
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "3306"
	}
	cfg.Net = "tcp"
	cfg.Addr = net.JoinHostPort(host, port)
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	if strings.Contains(cfg.DBName, "/") {
		return "", fmt.Errorf("MySQL URL: database name %q has a slash", cfg.DBName)
	}
	// The parameters are the driver's; ParseDSN checks them.
	dsn := cfg.FormatDSN()
	if u.RawQuery != "" {
		dsn += "?" + u.RawQuery
	}
	if _, err := mysql.ParseDSN(dsn); err != nil {
		return "", fmt.Errorf("MySQL URL: %w", err)
	}
	return dsn, nil
}
