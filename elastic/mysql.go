package elastic

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// MySQL and MariaDB: the SQL of TableLoader, Backfill and Verify.
//
// A document is JSON_OBJECT of the row's columns, each made a JSON value
// of the type Elasticsearch expects:
//
//	DATETIME, TIMESTAMP  "2024-01-02T03:04:05.123456Z": a DATETIME is read
//	                     as UTC (go-sql-driver/mysql's loc default, in which
//	                     GORM writes time.Time), a TIMESTAMP from its instant
//	                     whatever the session's time_zone
//	DATE, TIME, YEAR     as MySQL writes them ("2024-01-02", "03:04:05", 2024)
//	DECIMAL              a JSON number with the column's digits, no float
//	TINYINT(1)           true or false (MySQL's BOOLEAN); other integers,
//	                     numbers
//	JSON                 the JSON value itself (on MariaDB, a LONGTEXT column
//	                     with a json_valid check)
//	BINARY, BLOB, BIT    base64 (BIT as its number)
//	NULL                 null

// mysqlColumn is a column as information_schema describes it.
type mysqlColumn struct {
	name       string
	dataType   string // "bigint", "datetime", "longtext"
	columnType string // "bigint(20) unsigned", "tinyint(1)"
	precision  int    // fractional seconds digits of DATETIME and TIMESTAMP
	json       bool   // a JSON column (MariaDB: a json_valid check)
}

// mysqlColumnsQuery reads the columns of a table, with whether each is a
// JSON column: %s is the test of that, mysqlJSONType on MySQL or
// mariaDBJSONCheck on MariaDB, whose JSON is a LONGTEXT with the check
// json_valid(`name`) (MySQL's CHECK_CONSTRAINTS has no TABLE_NAME).
const mysqlColumnsQuery = "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, COALESCE(c.DATETIME_PRECISION, 0), %s " +
	"FROM information_schema.COLUMNS c " +
	"WHERE c.TABLE_SCHEMA = COALESCE(?, DATABASE()) AND c.TABLE_NAME = ? " +
	"ORDER BY c.ORDINAL_POSITION"

const (
	mysqlJSONType    = "c.DATA_TYPE = 'json'"
	mariaDBJSONCheck = "c.DATA_TYPE = 'json' OR EXISTS (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS k " +
		"WHERE k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME " +
		"AND k.CHECK_CLAUSE = CONCAT('json_valid(\x60', REPLACE(c.COLUMN_NAME, '\x60', '\x60\x60'), '\x60)'))"
)

// mysqlColumns reads the columns of table ("name" or "database.name"),
// in their order.
func mysqlColumns(ctx context.Context, db *sql.DB, table string) ([]mysqlColumn, error) {
	schema, name := splitMySQLTable(table)
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return nil, fmt.Errorf("elastic: read the server's version: %w", err)
	}
	isJSON := mysqlJSONType
	if strings.Contains(version, "MariaDB") {
		isJSON = mariaDBJSONCheck
	}
	rows, err := db.QueryContext(ctx, fmt.Sprintf(mysqlColumnsQuery, isJSON), schema, name)
	if err != nil {
		return nil, fmt.Errorf("elastic: read the columns of %s: %w", table, err)
	}
	defer rows.Close()
	var cols []mysqlColumn
	for rows.Next() {
		var c mysqlColumn
		if err := rows.Scan(&c.name, &c.dataType, &c.columnType, &c.precision, &c.json); err != nil {
			return nil, fmt.Errorf("elastic: read the columns of %s: %w", table, err)
		}
		c.dataType = strings.ToLower(c.dataType)
		c.columnType = strings.ToLower(c.columnType)
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("elastic: read the columns of %s: %w", table, err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("elastic: table %s does not exist (or has no columns)", table)
	}
	return cols, nil
}

// splitMySQLTable splits "database.table"; schema is nil (the
// connection's database) for a bare name.
func splitMySQLTable(table string) (schema any, name string) {
	if db, t, ok := strings.Cut(table, "."); ok {
		return db, t
	}
	return nil, table
}

// mysqlTableIdent quotes a table name, optionally qualified by its
// database.
func mysqlTableIdent(table string) string {
	parts := strings.Split(table, ".")
	for i, p := range parts {
		parts[i] = mysqlIdent(p)
	}
	return strings.Join(parts, ".")
}

// mysqlIdent quotes an identifier in backticks.
func mysqlIdent(name string) string { return "`" + strings.ReplaceAll(name, "`", "``") + "`" }

// mysqlString quotes a string literal (for column names in JSON_OBJECT).
func mysqlString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

func findColumn(cols []mysqlColumn, table, name string) (mysqlColumn, error) {
	for _, c := range cols {
		if strings.EqualFold(c.name, name) {
			return c, nil
		}
	}
	return mysqlColumn{}, fmt.Errorf("elastic: table %s has no column %q (or does not exist)", table, name)
}

// mysqlKeyType is the keyType of a column.
func mysqlKeyType(c mysqlColumn) keyType {
	k := keyType{name: c.columnType, unsigned: strings.Contains(c.columnType, "unsigned")}
	switch c.dataType {
	case "tinyint":
		k.bits = 8
	case "smallint":
		k.bits = 16
	case "mediumint":
		k.bits = 24
	case "int", "integer":
		k.bits = 32
	case "bigint":
		k.bits = 64
	}
	return k
}

// mysqlJSONValue returns the expression of column c's JSON value.
func mysqlJSONValue(c mysqlColumn) string {
	q := "t." + mysqlIdent(c.name)
	switch {
	case c.json:
		return "JSON_EXTRACT(" + q + ", '$')"
	case c.columnType == "tinyint(1)":
		return "JSON_EXTRACT(CASE WHEN " + q + " IS NULL THEN 'null' WHEN " + q + " <> 0 THEN 'true' ELSE 'false' END, '$')"
	case c.dataType == "datetime":
		return "DATE_FORMAT(" + q + ", " + mysqlDateFormat(c.precision) + ")"
	case c.dataType == "timestamp":
		// The instant, not its rendering in the session's time zone.
		return "DATE_FORMAT(TIMESTAMPADD(MICROSECOND, UNIX_TIMESTAMP(" + q + ") * 1000000, '1970-01-01'), " +
			mysqlDateFormat(c.precision) + ")"
	case c.dataType == "bit":
		return "CAST(" + q + " AS UNSIGNED)"
	case strings.Contains(c.dataType, "binary"), strings.Contains(c.dataType, "blob"):
		return "REPLACE(REPLACE(TO_BASE64(" + q + "), '\\n', ''), '\\r', '')"
	}
	return q
}

// mysqlDateFormat is the DATE_FORMAT pattern of an ES date in UTC with
// the column's fractional seconds.
func mysqlDateFormat(precision int) string {
	if precision > 0 {
		return "'%Y-%m-%dT%H:%i:%s.%fZ'"
	}
	return "'%Y-%m-%dT%H:%i:%sZ'"
}

// newMySQLTableLoader is NewTableLoader on MySQL and MariaDB.
func newMySQLTableLoader(ctx context.Context, db *sql.DB, opts TableOptions) (*TableLoader, error) {
	cols, err := mysqlColumns(ctx, db, opts.Table)
	if err != nil {
		return nil, err
	}
	col := func(name string) (mysqlColumn, error) { return findColumn(cols, opts.Table, name) }
	pk, err := col(opts.PrimaryKey)
	if err != nil {
		return nil, err
	}
	q := func(c mysqlColumn) string { return "t." + mysqlIdent(c.name) }
	docCols := cols
	if len(opts.Columns) > 0 {
		docCols = make([]mysqlColumn, len(opts.Columns))
		for i, name := range opts.Columns {
			if docCols[i], err = col(name); err != nil {
				return nil, err
			}
		}
	}
	pairs := make([]string, len(docCols))
	for i, c := range docCols {
		pairs[i] = mysqlString(c.name) + ", " + mysqlJSONValue(c)
	}
	sel := []string{"CAST(" + q(pk) + " AS CHAR) AS id", "JSON_OBJECT(" + strings.Join(pairs, ", ") + ") AS doc"}
	l := &TableLoader{db: db, kind: mysqlDB, pk: mysqlKeyType(pk)}
	if opts.SoftDeleteColumn != "" {
		c, err := col(opts.SoftDeleteColumn)
		if err != nil {
			return nil, err
		}
		sel = append(sel, "("+q(c)+" IS NOT NULL) AS deleted")
	}
	if opts.VersionColumn != "" {
		c, err := col(opts.VersionColumn)
		if err != nil {
			return nil, err
		}
		switch {
		case c.dataType == "datetime":
			l.tsVersion = true
			sel = append(sel, "TIMESTAMPDIFF(MICROSECOND, '1970-01-01', "+q(c)+") AS version")
		case c.dataType == "timestamp":
			l.tsVersion = true
			sel = append(sel, "CAST(UNIX_TIMESTAMP("+q(c)+") * 1000000 AS SIGNED) AS version")
		case mysqlKeyType(c).bits > 0 || c.dataType == "decimal":
			sel = append(sel, "CAST("+q(c)+" AS SIGNED) AS version")
		default:
			return nil, fmt.Errorf("elastic: version column %s.%s has type %s; want an integer, a DATETIME or a TIMESTAMP",
				opts.Table, c.name, c.columnType)
		}
	}
	if opts.RoutingColumn != "" {
		c, err := col(opts.RoutingColumn)
		if err != nil {
			return nil, err
		}
		sel = append(sel, "CAST("+q(c)+" AS CHAR) AS routing")
	}
	// Load appends the placeholders of the ids and the closing parenthesis.
	l.query = "SELECT " + strings.Join(sel, ", ") + " FROM " + mysqlTableIdent(opts.Table) + " t WHERE " +
		q(pk) + " IN ("
	return l, nil
}

// mysqlLoadArgs returns the statement and arguments that load ids: the
// generated query with one placeholder per id, or a custom query with the
// ids as one JSON array of strings.
func (l *TableLoader) mysqlLoadArgs(ids []string) (string, []any, error) {
	if l.custom {
		arr, err := json.Marshal(ids)
		if err != nil {
			return "", nil, fmt.Errorf("elastic: ids as a JSON array: %w", err)
		}
		return l.query, []any{string(arr)}, nil
	}
	if len(ids) == 0 {
		return "", nil, errors.New("elastic: no ids to load")
	}
	var b strings.Builder
	b.Grow(len(l.query) + 2*len(ids))
	b.WriteString(l.query)
	args := make([]any, len(ids))
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('?')
		args[i] = id
	}
	b.WriteByte(')')
	return b.String(), args, nil
}

// mysqlClockMicros reads the server's UTC clock in microseconds since the
// Unix epoch.
const mysqlClockMicros = "SELECT TIMESTAMPDIFF(MICROSECOND, '1970-01-01', UTC_TIMESTAMP(6))"

// newMySQLKeyWalker is newKeyWalker on MySQL and MariaDB.
func newMySQLKeyWalker(ctx context.Context, db *sql.DB, table, pk, to string) (*keyWalker, error) {
	cols, err := mysqlColumns(ctx, db, table)
	if err != nil {
		return nil, err
	}
	c, err := findColumn(cols, table, pk)
	if err != nil {
		return nil, err
	}
	return &keyWalker{db: db, kind: mysqlDB, rawTable: table, table: mysqlTableIdent(table), pk: mysqlIdent(c.name),
		key: mysqlKeyType(c), to: to}, nil
}

// mysqlBound is the placeholder of a key bound: integers are compared as
// integers (a string would be compared as a float, which loses the
// bigints past 2^53).
func (w *keyWalker) mysqlBound() string {
	switch {
	case w.key.bits == 0:
		return "?"
	case w.key.unsigned:
		return "CAST(? AS UNSIGNED)"
	}
	return "CAST(? AS SIGNED)"
}

// mysqlNext is next on MySQL.
func (w *keyWalker) mysqlNext(cond string) string {
	return fmt.Sprintf("SELECT CAST(t.%[1]s AS CHAR) AS k FROM %[2]s t WHERE %[3]s ORDER BY t.%[1]s LIMIT ?", w.pk, w.table, cond)
}

// mysqlTableRows returns information_schema's estimate of a table's rows.
func (w *keyWalker) mysqlTableRows(ctx context.Context) (float64, error) {
	schema, name := splitMySQLTable(w.rawTable)
	var n sql.NullFloat64
	err := w.db.QueryRowContext(ctx, `SELECT TABLE_ROWS FROM information_schema.TABLES
		WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?`, schema, name).Scan(&n)
	if err != nil || !n.Valid {
		return 0, errors.Join(err, errors.New("no estimate"))
	}
	return n.Float64, nil
}

// mysqlDataException returns the MySQL error in err's chain when it is a
// data exception (SQLSTATE class 22, such as 22007, an incorrect date
// value); nil otherwise.
func mysqlDataException(err error) error {
	var e *mysql.MySQLError
	if errors.As(err, &e) && e.SQLState[0] == '2' && e.SQLState[1] == '2' {
		return e
	}
	return nil
}
