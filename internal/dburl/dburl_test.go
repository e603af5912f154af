package dburl

import "testing"

func TestParse(t *testing.T) {
	for _, c := range []struct{ in, driver, dsn string }{
		{"postgres://u:p@h:5432/db?sslmode=disable", Postgres, "postgres://u:p@h:5432/db?sslmode=disable"},
		{"postgresql://h/db", Postgres, "postgresql://h/db"},
		{"host=h user=u dbname=db sslrootcert=/etc/ca.pem", Postgres, "host=h user=u dbname=db sslrootcert=/etc/ca.pem"},
		{"mysql://u:p%40ss@h:3307/db?parseTime=true", MySQL, "u:p@ss@tcp(h:3307)/db?parseTime=true"},
		{"mysql://u@h/db", MySQL, "u@tcp(h:3306)/db"},
		{"mysql://u@[::1]:3306/db", MySQL, "u@tcp([::1]:3306)/db"},
		{"u:p@tcp(127.0.0.1:3306)/db?loc=UTC", MySQL, "u:p@tcp(127.0.0.1:3306)/db?loc=UTC"},
		{"u@unix(/run/mysqld/mysqld.sock)/db", MySQL, "u@unix(/run/mysqld/mysqld.sock)/db"},
		{"u:p@/db", MySQL, "u:p@/db"},
	} {
		driver, dsn, err := Parse(c.in)
		if err != nil || driver != c.driver || dsn != c.dsn {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q", c.in, driver, dsn, err, c.driver, c.dsn)
		}
	}
	for _, bad := range []string{"", "mysql://u@h/db?parseTime=maybe", "u@tcp(h/db", "mysql://h/a/b"} {
		if d, dsn, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %q, %q, nil; want an error", bad, d, dsn)
		}
	}
}
