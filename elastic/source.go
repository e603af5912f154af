package elastic

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Document is the state of one record to write to the index.
type Document struct {
	// ID is the record's primary key as text: the document's _id.
	ID string
	// Source is the document body (a JSON object). Ignored when Deleted.
	Source json.RawMessage
	// Deleted makes the document a delete (a soft-deleted row).
	Deleted bool
	// Version, when HasVersion, is sent with version_type=external_gte, so
	// that an older state never overwrites a newer one.
	Version    int64
	HasVersion bool
	// Routing, when not empty, routes the document to a shard.
	Routing string
}

// Loader loads the current state of the records with the given ids (as
// text). A record it returns no Document for is deleted from the index.
// Loaders are called concurrently only if the caller does so.
type Loader interface {
	Load(ctx context.Context, ids []string) ([]Document, error)
}

// LoaderFunc adapts a function to a Loader.
type LoaderFunc func(ctx context.Context, ids []string) ([]Document, error)

// Load implements Loader.
func (f LoaderFunc) Load(ctx context.Context, ids []string) ([]Document, error) { return f(ctx, ids) }

var _ Loader = LoaderFunc(nil)

// TableOptions describe how to read documents from one table of PostgreSQL,
// MySQL or MariaDB.
type TableOptions struct {
	// Table is the table name, optionally schema-qualified ("app.products").
	// Required unless Query is set.
	Table string
	// PrimaryKey is the key column. Default: DefaultPrimaryKey ("id").
	PrimaryKey string
	// Columns, when set, limits the document to these columns. Default: the
	// whole row (PostgreSQL's row_to_json; on MySQL, JSON_OBJECT of every
	// column, each of the JSON type its SQL type calls for: see the
	// package documentation).
	Columns []string
	// Query, when set, replaces the generated query. It returns one row
	// per found record with the columns "id" (text) and "doc" (json, jsonb
	// or text), and optionally "version" (bigint), "deleted" (bool) and
	// "routing" (text). On PostgreSQL it receives the ids as $1, a text[]
	// array. Example:
	//
	//	SELECT p.id::text AS id, json_build_object('title', p.title, 'tags', array_agg(t.name)) AS doc
	//	FROM products p LEFT JOIN tags t ON t.product_id = p.id
	//	WHERE p.id = ANY($1::bigint[]) GROUP BY p.id
	//
	// MySQL has no arrays: there the query's one placeholder (?) receives
	// the ids as a JSON array of strings, which JSON_TABLE (MySQL 8,
	// MariaDB 10.6) turns into rows:
	//
	//	SELECT CAST(p.id AS CHAR) AS id, JSON_OBJECT('title', p.title, 'tags', JSON_ARRAYAGG(t.name)) AS doc
	//	FROM products p LEFT JOIN tags t ON t.product_id = p.id
	//	WHERE p.id IN (SELECT k FROM JSON_TABLE(?, '$[*]' COLUMNS (k BIGINT PATH '$')) AS ids)
	//	GROUP BY p.id
	Query string
	// SoftDeleteColumn, when set, turns rows where that column is not NULL
	// into deletes (e.g. "deleted_at"). Default: none.
	SoftDeleteColumn string
	// VersionColumn, when set, enables stale-write protection: documents are
	// written with version_type=external_gte and the column's value as
	// version — integers as they are, timestamps in microseconds since the
	// Unix epoch (a MySQL DATETIME read as UTC). A hard-deleted row is then deleted with the database's
	// current time as version (timestamp columns only), so that a late,
	// older write cannot bring it back while the index keeps the tombstone
	// (index.gc_deletes, 60 s by default). Default: none.
	VersionColumn string
	// RoutingColumn, when set, routes each document by that column.
	// Default: none.
	RoutingColumn string
}

// TableLoader is a Loader reading one table, one query per call (WHERE
// pk = ANY($1) on PostgreSQL, WHERE pk IN (?, …) on MySQL). It is safe
// for concurrent use.
type TableLoader struct {
	db        *sql.DB
	kind      dbKind
	query     string
	custom    bool
	tsVersion bool    // the version column is a timestamp
	pk        keyType // the primary key's type; zero with a custom query
}

var (
	_ IDChecker       = (*TableLoader)(nil)
	_ DeleteVersioner = (*TableLoader)(nil)
)

// DefaultPrimaryKey is the primary key column of TableOptions,
// BackfillOptions and VerifyOptions when they name none.
const DefaultPrimaryKey = "id"

// NewTableLoader prepares a TableLoader: it checks that the table and
// columns exist and reads their types. db's driver tells PostgreSQL (pgx)
// from MySQL and MariaDB (go-sql-driver/mysql); through another driver,
// the server's version string does.
func NewTableLoader(ctx context.Context, db *sql.DB, opts TableOptions) (*TableLoader, error) {
	if db == nil {
		return nil, errors.New("elastic: NewTableLoader needs a database")
	}
	kind, err := kindOf(ctx, db)
	if err != nil {
		return nil, err
	}
	if opts.Query != "" {
		return &TableLoader{db: db, kind: kind, query: opts.Query, custom: true}, nil
	}
	if opts.Table == "" {
		return nil, errors.New("elastic: TableOptions needs Table or Query")
	}
	opts.PrimaryKey = cmp.Or(opts.PrimaryKey, DefaultPrimaryKey)
	if kind == mysqlDB {
		return newMySQLTableLoader(ctx, db, opts)
	}
	table := tableIdent(opts.Table)
	colType := func(col string) (string, error) { return columnType(ctx, db, opts.Table, col) }
	pkType, err := colType(opts.PrimaryKey)
	if err != nil {
		return nil, err
	}
	q := func(col string) string { return "t." + pgx.Identifier{col}.Sanitize() }
	doc := "row_to_json(t)::text"
	if len(opts.Columns) > 0 {
		cols := make([]string, len(opts.Columns))
		for i, c := range opts.Columns {
			if _, err := colType(c); err != nil {
				return nil, err
			}
			cols[i] = q(c)
		}
		doc = "(SELECT row_to_json(x)::text FROM (SELECT " + strings.Join(cols, ", ") + ") x)"
	}
	sel := []string{q(opts.PrimaryKey) + "::text AS id", doc + " AS doc"}
	l := &TableLoader{db: db, pk: keyType{name: pkType, bits: intBits(pkType)}}
	if opts.SoftDeleteColumn != "" {
		if _, err := colType(opts.SoftDeleteColumn); err != nil {
			return nil, err
		}
		sel = append(sel, "("+q(opts.SoftDeleteColumn)+" IS NOT NULL) AS deleted")
	}
	if opts.VersionColumn != "" {
		typ, err := colType(opts.VersionColumn)
		if err != nil {
			return nil, err
		}
		switch {
		case strings.HasPrefix(typ, "timestamp"):
			l.tsVersion = true
			sel = append(sel, "(extract(epoch FROM "+q(opts.VersionColumn)+") * 1000000)::bigint AS version")
		case typ == "bigint" || typ == "integer" || typ == "smallint" || strings.HasPrefix(typ, "numeric"):
			sel = append(sel, q(opts.VersionColumn)+"::bigint AS version")
		default:
			return nil, fmt.Errorf("elastic: version column %s.%s has type %s; want an integer or a timestamp",
				opts.Table, opts.VersionColumn, typ)
		}
	}
	if opts.RoutingColumn != "" {
		if _, err := colType(opts.RoutingColumn); err != nil {
			return nil, err
		}
		sel = append(sel, q(opts.RoutingColumn)+"::text AS routing")
	}
	l.query = "SELECT " + strings.Join(sel, ", ") + " FROM " + table + " t WHERE " +
		q(opts.PrimaryKey) + " = ANY($1::text[]::" + pkType + "[])"
	return l, nil
}

// CheckID implements IDChecker: for an integer primary key (smallint,
// integer, bigint; on MySQL also tinyint, mediumint and the unsigned
// ones), an id must be an integer of the key's range written as the
// database prints it ("7", not "07" or "7.0"), or it could never name a
// row. Other key types accept any id; the database has the last word on
// those.
func (l *TableLoader) CheckID(id string) error { return l.pk.checkID(id, l.kind) }

// Load implements Loader.
func (l *TableLoader) Load(ctx context.Context, ids []string) ([]Document, error) {
	query, args := l.query, []any{ids}
	if l.kind == mysqlDB {
		if len(ids) == 0 {
			return nil, nil
		}
		var err error
		if query, args, err = l.mysqlLoadArgs(ids); err != nil {
			return nil, err
		}
	}
	rows, err := l.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("elastic: load rows: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("elastic: load rows: %w", err)
	}
	// The scan targets are made once, not per row; the sources are copied
	// into one buffer that the documents share (each capped to its own
	// bytes).
	var (
		id      string
		src     sql.RawBytes
		version sql.NullInt64
		deleted sql.NullBool
		routing sql.NullString
		other   any
	)
	dest := make([]any, len(cols))
	for i, c := range cols {
		switch c {
		case "id":
			dest[i] = &id
		case "doc":
			dest[i] = &src
		case "version":
			dest[i] = &version
		case "deleted":
			dest[i] = &deleted
		case "routing":
			dest[i] = &routing
		default:
			dest[i] = &other
		}
	}
	docs := make([]Document, 0, len(ids))
	var arena []byte
	ends := make([]int, 0, len(ids))
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("elastic: scan row: %w", err)
		}
		arena = l.appendSource(arena, src)
		ends = append(ends, len(arena))
		docs = append(docs, Document{
			ID:      id,
			Version: version.Int64, HasVersion: version.Valid,
			Deleted: deleted.Bool,
			Routing: routing.String,
		})
	}
	start := 0
	for i, end := range ends {
		docs[i].Source = json.RawMessage(arena[start:end:end])
		start = end
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("elastic: load rows: %w", err)
	}
	return docs, nil
}

// appendSource appends a document's source to arena: as it is from
// PostgreSQL; compacted from MySQL, whose JSON functions put a space after
// every colon and comma (a source that is not JSON is left to the index
// to refuse).
func (l *TableLoader) appendSource(arena, src []byte) []byte {
	if l.kind != mysqlDB {
		return append(arena, src...)
	}
	n := len(arena)
	buf := bytes.NewBuffer(arena)
	if err := json.Compact(buf, src); err != nil {
		return append(arena[:n], src...)
	}
	return buf.Bytes()
}

// DeleteVersion implements DeleteVersioner: with a timestamp
// VersionColumn, the version of a hard-deleted row's delete is the
// database's clock in microseconds; with any other, there is none (ok is
// false).
func (l *TableLoader) DeleteVersion(ctx context.Context) (version int64, ok bool, err error) {
	if !l.tsVersion {
		return 0, false, nil
	}
	clock := "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
	if l.kind == mysqlDB {
		clock = mysqlClockMicros
	}
	var v int64
	if err := l.db.QueryRowContext(ctx, clock).Scan(&v); err != nil {
		return 0, false, fmt.Errorf("elastic: read the database clock: %w", err)
	}
	return v, true, nil
}

// DeleteVersioner is implemented by a Loader whose documents carry
// versions (Document.HasVersion). For the ids of a batch Load returned no
// Document for (hard-deleted rows), the Handler asks it once for the
// version to send the deletes with, so that a late write of an older state
// cannot bring a deleted document back while the index keeps the delete's
// tombstone. ok false sends the deletes without a version. TableLoader
// implements it.
type DeleteVersioner interface {
	DeleteVersion(ctx context.Context) (version int64, ok bool, err error)
}

// intBits returns the size of an integer PostgreSQL type as format_type
// writes it, 0 for other types.
func intBits(pgType string) int {
	switch pgType {
	case "smallint":
		return 16
	case "integer":
		return 32
	case "bigint":
		return 64
	}
	return 0
}

// tableIdent returns a table name, optionally schema-qualified
// ("app.products"), as a quoted SQL identifier.
func tableIdent(table string) string {
	return pgx.Identifier(strings.Split(table, ".")).Sanitize()
}

// columnType returns the type of column col of table as PostgreSQL writes
// it ("bigint", "timestamp with time zone"): the one query that checks a
// table and its key before the loader, Backfill or Verify read it.
func columnType(ctx context.Context, db *sql.DB, table, col string) (string, error) {
	var typ string
	err := db.QueryRowContext(ctx, `SELECT format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped`,
		tableIdent(table), col).Scan(&typ)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("elastic: table %s has no column %q (or does not exist)", table, col)
	}
	if err != nil {
		return "", fmt.Errorf("elastic: read the type of %s.%s: %w", table, col, err)
	}
	return typ, nil
}
