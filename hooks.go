package redstream

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// skipKey is the gorm setting SkipCapture sets.
const skipKey = "redstream:skip"

// startedKey marks a statement whose transaction the plugin opened.
const startedKey = "redstream:started_transaction"

// SkipCapture returns db marked so that the plugin captures none of the
// writes made through it. Use it for writes that Producer.Bulk already
// covers, or for tables no consumer needs.
func SkipCapture(db *gorm.DB) *gorm.DB { return db.Set(skipKey, true) }

// Plugin is a GORM plugin that captures every created, updated and deleted
// record and writes its message through a Producer:
//
//   - a delay message for each record of a transaction, all in one pipeline
//     just before COMMIT; if that write fails the transaction is rolled back
//     and the error is returned, so no change is ever unknown to Redis;
//   - a main-stream message for each record, all in one pipeline right after
//     COMMIT; a failure here is logged and counted in Producer.Stats (the
//     write is committed, and the Delayer delivers the message later). By
//     default Commit returns once they are written; with
//     ProducerOptions.AsyncPublish a background writer sends them;
//   - nothing on ROLLBACK, and nothing for what a rollback to a savepoint
//     undoes.
//
// Each record is written once per transaction, however often it changed in
// it. Writes that affect no row (RowsAffected 0) write nothing.
//
// This holds for GORM's implicit per-statement transaction, db.Transaction
// (nested too, through savepoints), Begin/Commit/Rollback, PrepareStmt mode,
// and Session and WithContext copies. With SkipDefaultTransaction, the
// plugin opens a transaction around each captured write itself, so the
// delay message still precedes the commit.
//
// Register the plugin right after gorm.Open (or through gorm.Config.Plugins)
// and before deriving sessions: it wraps the connection pool, and a session
// taken earlier keeps the unwrapped pool.
//
// Limits:
//   - A batch write whose primary keys the plugin cannot know
//     (db.Model(&Product{}).Where("price < ?", 10).Updates(…), a delete by a
//     raw condition) is not captured: the plugin logs a warning once per call
//     site naming Producer.Bulk, and counts it in ProducerStats.Uncaptured.
//     Keys given as a primary-key condition (Delete(&Product{}, 3),
//     Where(&Product{ID: 3}), Where(map[string]any{"id": ids})) or read back
//     with a RETURNING clause into a slice are captured. Raw SQL (db.Exec) is
//     never captured. Wrap such writes in Producer.Bulk or BulkQuery.
//   - A transaction opened outside GORM's pool (db.Connection, a *sql.Tx or
//     *sql.Conn handed to the dialector) is invisible to the plugin: such
//     writes get their delay message inside the transaction, and no
//     main-stream message; the Delayer delivers them after its delay. This is
//     logged once and counted in ProducerStats.ForeignTxDelay.
//   - If the connection fails after COMMIT was sent, the commit's outcome is
//     unknown and no main-stream message is written; the delay message
//     covers it. A COMMIT that fails after the delay write (a deferred
//     constraint, a transaction already aborted by an error) leaves its delay
//     messages behind; consumers re-read the rows and find them unchanged.
//
// On MySQL and MariaDB (gorm.io/driver/mysql) the plugin holds the same
// guarantees; what differs is the database's:
//   - MySQL has no UPDATE … RETURNING, so a key-less batch update is never
//     captured (it warns, as above). MariaDB has RETURNING for INSERT and
//     DELETE only, and refuses the UPDATE … RETURNING gorm.io/driver/mysql
//     sends when asked to.
//   - Upserts are INSERT … ON DUPLICATE KEY UPDATE, whose RowsAffected is
//     2 for an updated row, 0 for an unchanged one, and, on MariaDB where
//     GORM reads the row back with RETURNING, 1 either way; OnConflict
//     DoNothing is captured there too (a message too many, never one too
//     few). Save of a record whose key is set updates it, and inserts it
//     when no row changed.
//   - A statement that fails inside a transaction undoes itself alone: the
//     transaction goes on and may commit.
//   - Savepoint names compare without regard to case.
//
// A Plugin is safe for concurrent use; one Plugin may serve one *gorm.DB.
type Plugin struct {
	producer *Producer
	models   map[reflect.Type]bool // nil: every model

	warned  sync.Map // call site → struct{}
	foreign sync.Once
}

// NewPlugin returns a plugin writing through p. With models given (values
// or pointers of model structs), only those models are captured; with none,
// every model with a primary key is.
func NewPlugin(p *Producer, models ...any) *Plugin {
	pl := &Plugin{producer: p}
	if len(models) > 0 {
		pl.models = make(map[reflect.Type]bool, len(models))
		for _, m := range models {
			t := reflect.TypeOf(m)
			for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice) {
				t = t.Elem()
			}
			pl.models[t] = true
		}
	}
	return pl
}

// Name implements gorm.Plugin.
func (pl *Plugin) Name() string { return "redstream" }

// Initialize implements gorm.Plugin: it wraps db's connection pool and
// registers the plugin's callbacks.
func (pl *Plugin) Initialize(db *gorm.DB) error {
	switch cp := db.ConnPool.(type) {
	case *gorm.PreparedStmtDB:
		// Wrap inside, so GORM still sees its own prepared-statement types
		// (SavePoint, RollbackTo and the migrator assert them).
		if _, ok := cp.ConnPool.(*pool); !ok {
			cp.ConnPool = &pool{ConnPool: cp.ConnPool, plugin: pl}
		}
	case *pool, gorm.TxCommitter:
		// Already wrapped, or a transaction handed in by the caller.
	default:
		w := &pool{ConnPool: cp, plugin: pl}
		db.ConnPool = w
		db.Statement.ConnPool = w
	}
	cb := db.Callback()
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	add(cb.Create().Before("gorm:before_create").Register("redstream:begin_create", pl.begin))
	add(cb.Create().After("gorm:after_create").Before("gorm:commit_or_rollback_transaction").Register("redstream:capture_create", pl.capture))
	add(cb.Create().After("gorm:commit_or_rollback_transaction").Register("redstream:commit_create", pl.commit))
	add(cb.Update().Before("gorm:before_update").Register("redstream:begin_update", pl.begin))
	add(cb.Update().After("gorm:after_update").Before("gorm:commit_or_rollback_transaction").Register("redstream:capture_update", pl.capture))
	add(cb.Update().After("gorm:commit_or_rollback_transaction").Register("redstream:commit_update", pl.commit))
	add(cb.Delete().Before("gorm:before_delete").Register("redstream:begin_delete", pl.begin))
	add(cb.Delete().After("gorm:after_delete").Before("gorm:commit_or_rollback_transaction").Register("redstream:capture_delete", pl.capture))
	add(cb.Delete().After("gorm:commit_or_rollback_transaction").Register("redstream:commit_delete", pl.commit))
	add(cb.Raw().After("gorm:raw").Register("redstream:savepoints", pl.savepoints))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("redstream: register callbacks: %w", err)
	}
	return nil
}

// tracks reports whether the plugin captures writes of the model sch.
func (pl *Plugin) tracks(sch *schema.Schema) bool {
	if sch == nil || len(sch.PrimaryFields) == 0 {
		return false
	}
	return pl.models == nil || pl.models[sch.ModelType]
}

func (pl *Plugin) skipped(db *gorm.DB) bool {
	if db.DryRun || !pl.tracks(db.Statement.Schema) {
		return true
	}
	skip, _ := db.Get(skipKey)
	b, _ := skip.(bool)
	return b
}

// begin opens a transaction around a captured write that would otherwise
// run in autocommit (SkipDefaultTransaction), so that its delay message is
// written before the row is committed.
func (pl *Plugin) begin(db *gorm.DB) {
	if db.Error != nil || !db.SkipDefaultTransaction || pl.skipped(db) {
		return
	}
	if _, ok := db.Statement.ConnPool.(gorm.TxCommitter); ok {
		return // already in a transaction
	}
	tx := db.Begin()
	switch {
	case tx.Error == nil:
		db.Statement.ConnPool = tx.Statement.ConnPool
		db.InstanceSet(startedKey, true)
	case errors.Is(tx.Error, gorm.ErrInvalidTransaction):
		// The pool cannot begin transactions; capture falls back to
		// writing both messages after the statement.
	default:
		db.AddError(tx.Error)
	}
}

// commit ends the transaction begin opened, and publishes the main-stream
// messages of a write whose implicit transaction the plugin could not see.
func (pl *Plugin) commit(db *gorm.DB) {
	if _, ok := db.InstanceGet(startedKey); ok {
		if db.Error != nil {
			db.Rollback()
		} else {
			db.Commit()
		}
		db.Statement.ConnPool = db.ConnPool
	}
	if v, ok := db.InstanceGet(pendingKey); ok && db.Error == nil {
		pl.publish(db.Statement.Context, v.([]entry))
	}
}

// pendingKey holds the entries of a write in an implicit transaction that
// GORM opened on a connection the plugin does not wrap (db.Connection).
const pendingKey = "redstream:pending"

// capture records the messages of a finished create, update or delete.
func (pl *Plugin) capture(db *gorm.DB) {
	if db.Error != nil || db.RowsAffected == 0 || pl.skipped(db) {
		return
	}
	stmt := db.Statement
	entries, err := statementEntries(stmt)
	if err != nil {
		db.AddError(err)
		return
	}
	if len(entries) == 0 {
		pl.uncaptured(db)
		return
	}
	if tx := findTx(stmt.ConnPool); tx != nil {
		tx.add(entries)
		return
	}
	ctx := stmt.Context
	if _, ok := stmt.ConnPool.(gorm.TxCommitter); ok {
		// A transaction the plugin did not open: write the delay
		// messages now, inside it.
		if err := pl.producer.write(ctx, true, entries, len(entries)); err != nil {
			db.AddError(err)
			return
		}
		_, gormStarted := db.InstanceGet("gorm:started_transaction")
		_, pluginStarted := db.InstanceGet(startedKey)
		if gormStarted || pluginStarted {
			// GORM's or the plugin's own per-statement transaction:
			// commit publishes once it has committed.
			db.InstanceSet(pendingKey, entries)
			return
		}
		pl.producer.stats.foreign.Add(int64(len(entries)))
		pl.foreign.Do(func() {
			pl.producer.log.WarnContext(ctx, "redstream: write in a transaction opened outside the plugin's pool; "+
				"its main-stream messages come from the Delayer after its delay",
				"table", stmt.Table, "caller", callSite())
		})
		return
	}
	// Autocommit on a pool that cannot begin transactions: the row is
	// already committed.
	if err := pl.producer.write(ctx, true, entries, len(entries)); err != nil {
		db.AddError(err)
		return
	}
	pl.publish(ctx, entries)
}

// publish writes the main-stream messages of committed entries; a failure
// is logged and counted, never returned, as the data is committed.
func (pl *Plugin) publish(ctx context.Context, entries []entry) {
	p := pl.producer
	if p.opts.AsyncPublish {
		p.publishAsync(context.WithoutCancel(ctx), entries)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.PublishTimeout)
	defer cancel()
	p.publishNow(ctx, entries)
}

func (pl *Plugin) uncaptured(db *gorm.DB) {
	pl.producer.stats.uncaptured.Add(1)
	site := callSite()
	if _, seen := pl.warned.LoadOrStore(site, struct{}{}); seen {
		return
	}
	pl.producer.log.WarnContext(db.Statement.Context,
		"redstream: write with unknown primary keys is not captured; wrap it in Producer.Bulk or Producer.BulkQuery",
		"table", db.Statement.Table, "rows", db.RowsAffected, "caller", site)
}

// statementEntries returns the entries of the records a statement wrote:
// from its model value, else from a primary-key condition.
func statementEntries(stmt *gorm.Statement) ([]entry, error) {
	ctx, sch := stmt.Context, stmt.Schema
	rv := stmt.ReflectValue
	for rv.IsValid() && (rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface) {
		if rv.IsNil() {
			rv = reflect.Value{}
			break
		}
		rv = rv.Elem()
	}
	var entries []entry
	if rv.IsValid() {
		switch {
		case rv.Kind() == reflect.Map,
			(rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) && rv.Type().Elem().Kind() == reflect.Map:
			keys, err := mapKeys(rv, sch)
			if err != nil {
				return nil, err
			}
			return keyEntries(ctx, sch, keys)
		case rv.Type() == sch.ModelType || ((rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) && indirectType(rv.Type().Elem()) == sch.ModelType):
			var err error
			if entries, err = appendEntries(ctx, nil, sch, rv); err != nil {
				return nil, err
			}
		}
	}
	if len(entries) > 0 {
		return dedupe(entries), nil
	}
	keys := whereKeys(stmt)
	if len(keys) == 0 {
		return nil, nil
	}
	return keyEntries(ctx, sch, keys)
}

func indirectType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// keyEntries builds the entries of records known only by primary key (one
// value per key column each), through a model value holding that key, so
// that Namer and Payloader apply.
func keyEntries(ctx context.Context, sch *schema.Schema, keys [][]any) ([]entry, error) {
	entries := make([]entry, 0, len(keys))
	for _, key := range keys {
		rv := reflect.New(sch.ModelType).Elem()
		for i, f := range sch.PrimaryFields {
			if err := f.Set(ctx, rv, key[i]); err != nil {
				return nil, fmt.Errorf("redstream: set primary key of %s: %w", sch.Name, err)
			}
		}
		e, ok, err := structEntry(ctx, sch, rv)
		if err != nil {
			return nil, err
		}
		if ok {
			entries = append(entries, e)
		}
	}
	return dedupe(entries), nil
}

// mapKeys reads the primary keys of a map or a slice of maps (a Create from
// a map), by column name or field name.
func mapKeys(rv reflect.Value, sch *schema.Schema) ([][]any, error) {
	var keys [][]any
	one := func(m reflect.Value) {
		for m.Kind() == reflect.Pointer || m.Kind() == reflect.Interface {
			if m.IsNil() {
				return
			}
			m = m.Elem()
		}
		if m.Kind() != reflect.Map || m.Type().Key().Kind() != reflect.String {
			return
		}
		key := make([]any, len(sch.PrimaryFields))
		for i, f := range sch.PrimaryFields {
			v := m.MapIndex(reflect.ValueOf(f.DBName).Convert(m.Type().Key()))
			if !v.IsValid() {
				v = m.MapIndex(reflect.ValueOf(f.Name).Convert(m.Type().Key()))
			}
			if !v.IsValid() || (v.Kind() == reflect.Interface && v.IsNil()) || v.IsZero() {
				return
			}
			key[i] = v.Interface()
		}
		keys = append(keys, key)
	}
	if rv.Kind() == reflect.Map {
		one(rv)
	} else {
		for i := range rv.Len() {
			one(rv.Index(i))
		}
	}
	return keys, nil
}

// whereKeys returns the primary keys a statement's WHERE clause restricts
// it to, when it has a top-level "pk = v" or "pk IN (…)" condition joined
// by AND. Only single-column keys are recognised.
func whereKeys(stmt *gorm.Statement) [][]any {
	if len(stmt.Schema.PrimaryFields) != 1 {
		return nil
	}
	pk := stmt.Schema.PrimaryFields[0]
	c, ok := stmt.Clauses["WHERE"]
	if !ok {
		return nil
	}
	where, ok := c.Expression.(clause.Where)
	if !ok {
		return nil
	}
	for _, e := range where.Exprs {
		if _, ok := e.(clause.OrConditions); ok {
			return nil // "a OR b" at the top: no key bounds every row
		}
	}
	isPK := func(col any) bool {
		var name string
		switch c := col.(type) {
		case clause.Column:
			if c.Raw {
				return false
			}
			name = c.Name
		case string:
			name = c
		default:
			return false
		}
		return name == clause.PrimaryKey || name == pk.DBName || name == pk.Name
	}
	var values []any
	var find func(exprs []clause.Expression) bool
	find = func(exprs []clause.Expression) bool {
		for _, e := range exprs {
			switch x := e.(type) {
			case clause.IN:
				if isPK(x.Column) {
					values = flatten(x.Values)
					return true
				}
			case clause.Eq:
				if isPK(x.Column) && x.Value != nil {
					values = flatten([]any{x.Value})
					return true
				}
			case clause.AndConditions:
				if find(x.Exprs) {
					return true
				}
			}
		}
		return false
	}
	if !find(where.Exprs) {
		return nil
	}
	keys := make([][]any, 0, len(values))
	for _, v := range values {
		if v == nil || reflect.ValueOf(v).IsZero() {
			continue
		}
		keys = append(keys, []any{v})
	}
	return keys
}

// flatten expands slice values (but not []byte) one level.
func flatten(values []any) []any {
	var out []any
	for _, v := range values {
		rv := reflect.ValueOf(v)
		if rv.IsValid() && (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) && rv.Type().Elem().Kind() != reflect.Uint8 {
			for i := range rv.Len() {
				out = append(out, rv.Index(i).Interface())
			}
			continue
		}
		out = append(out, v)
	}
	return out
}

// dedupe drops repeated entries, keeping the first of each.
func dedupe(entries []entry) []entry {
	if len(entries) < 2 {
		return entries
	}
	seen := make(map[entry]struct{}, len(entries))
	out := entries[:0:0]
	for _, e := range entries {
		if _, ok := seen[e]; ok {
			continue
		}
		seen[e] = struct{}{}
		out = append(out, e)
	}
	return out
}

// savepoints keeps each transaction's savepoint marks in step with the
// SAVEPOINT, ROLLBACK TO and RELEASE statements run through GORM (GORM's
// SavePoint, RollbackTo and nested Transaction issue them with Exec).
func (pl *Plugin) savepoints(db *gorm.DB) {
	if db.Error != nil {
		return
	}
	tx := findTx(db.Statement.ConnPool)
	if tx == nil {
		return
	}
	words := strings.Fields(db.Statement.SQL.String())
	if len(words) < 2 {
		return
	}
	name := func(i int) string {
		if i >= len(words) {
			return ""
		}
		return identifier(strings.TrimSuffix(words[i], ";"))
	}
	switch strings.ToUpper(words[0]) {
	case "SAVEPOINT":
		tx.savepoint(name(1))
	case "ROLLBACK":
		i := 1
		if strings.EqualFold(words[i], "TRANSACTION") || strings.EqualFold(words[i], "WORK") {
			i++
		}
		if i < len(words) && strings.EqualFold(words[i], "TO") {
			i++
			if i < len(words) && strings.EqualFold(words[i], "SAVEPOINT") {
				i++
			}
			tx.rollbackTo(name(i))
		}
	case "RELEASE":
		i := 1
		if strings.EqualFold(words[i], "SAVEPOINT") {
			i++
		}
		tx.release(name(i))
	}
}

// identifier normalises a savepoint name: as PostgreSQL does, names in
// double quotes keep their case and others fold to lower case; MySQL
// compares savepoint names without regard to case, quoted in backticks or
// not.
func identifier(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	if len(s) >= 2 && s[0] == '`' && s[len(s)-1] == '`' {
		s = strings.ReplaceAll(s[1:len(s)-1], "``", "`")
	}
	return strings.ToLower(s)
}

// callSite returns "file:line" of the first caller outside GORM and this
// package (test files of this package count as callers).
func callSite() string {
	pcs := make([]uintptr, 48)
	n := runtime.Callers(2, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		internal := strings.Contains(f.File, "/gorm.io/") ||
			(filepath.Dir(f.File) == packageDir && !strings.HasSuffix(f.File, "_test.go"))
		if !internal && f.File != "" && !strings.HasPrefix(f.Function, "runtime.") {
			return fmt.Sprintf("%s:%d", f.File, f.Line)
		}
		if !more {
			return "unknown"
		}
	}
}

var packageDir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}()

// pool wraps GORM's connection pool so that every transaction GORM begins
// is a *txn the plugin sees commit and roll back. It implements
// gorm.ConnPoolBeginner, never gorm.TxBeginner (GORM tries that first, and
// its BeginTx must return *sql.Tx).
type pool struct {
	gorm.ConnPool
	plugin *Plugin
}

var (
	_ gorm.ConnPoolBeginner = (*pool)(nil)
	_ gorm.GetDBConnector   = (*pool)(nil)
	_ gorm.Tx               = (*txn)(nil)
)

// BeginTx implements gorm.ConnPoolBeginner.
func (p *pool) BeginTx(ctx context.Context, opts *sql.TxOptions) (gorm.ConnPool, error) {
	var (
		tx  gorm.Tx
		err error
	)
	switch b := p.ConnPool.(type) {
	case gorm.TxBeginner:
		tx, err = b.BeginTx(ctx, opts)
	case gorm.ConnPoolBeginner:
		var cp gorm.ConnPool
		if cp, err = b.BeginTx(ctx, opts); err == nil {
			var ok bool
			if tx, ok = cp.(gorm.Tx); !ok {
				return cp, nil // not a transaction the plugin can follow
			}
		}
	default:
		return nil, gorm.ErrInvalidTransaction
	}
	if err != nil {
		return nil, err
	}
	return &txn{Tx: tx, pool: p, ctx: ctx}, nil
}

// GetDBConn implements gorm.GetDBConnector, so that db.DB() works.
func (p *pool) GetDBConn() (*sql.DB, error) {
	switch c := p.ConnPool.(type) {
	case *sql.DB:
		return c, nil
	case gorm.GetDBConnector:
		return c.GetDBConn()
	}
	return nil, gorm.ErrInvalidDB
}

// Ping pings the database.
func (p *pool) Ping() error {
	db, err := p.GetDBConn()
	if err != nil {
		return err
	}
	return db.Ping()
}

// txn is a transaction begun through pool: it collects the entries of the
// writes made in it and writes them around its commit.
type txn struct {
	gorm.Tx
	pool *pool
	ctx  context.Context // the BeginTx context, for the delay write

	mu      sync.Mutex
	pending []entry
	marks   []savepointMark
}

type savepointMark struct {
	name string
	n    int // len(pending) when the savepoint was set
}

// findTx returns the *txn behind a statement's ConnPool, unwrapping GORM's
// prepared-statement transactions (nested ones too), or nil.
func findTx(cp gorm.ConnPool) *txn {
	for {
		switch c := cp.(type) {
		case *txn:
			return c
		case *gorm.PreparedStmtTX:
			cp = c.Tx
		default:
			return nil
		}
	}
}

func (t *txn) add(entries []entry) {
	t.mu.Lock()
	t.pending = append(t.pending, entries...)
	t.mu.Unlock()
}

func (t *txn) savepoint(name string) {
	t.mu.Lock()
	t.marks = append(t.marks, savepointMark{name: name, n: len(t.pending)})
	t.mu.Unlock()
}

// rollbackTo drops what was recorded after the newest savepoint name, and
// the savepoints set after it; name itself stays, as in PostgreSQL.
func (t *txn) rollbackTo(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.marks) - 1; i >= 0; i-- {
		if t.marks[i].name == name {
			t.pending = t.pending[:t.marks[i].n]
			t.marks = t.marks[:i+1]
			return
		}
	}
}

// release forgets the newest savepoint name and those set after it.
func (t *txn) release(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := len(t.marks) - 1; i >= 0; i-- {
		if t.marks[i].name == name {
			t.marks = t.marks[:i]
			return
		}
	}
}

func (t *txn) take() []entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	entries := dedupe(t.pending)
	t.pending, t.marks = nil, nil
	return entries
}

// Commit writes the transaction's delay messages in one pipeline, commits,
// then writes its main-stream messages in one pipeline. If the delay write
// fails, it rolls back and returns that error instead of committing. A
// failed main-stream write is logged and counted, never returned.
func (t *txn) Commit() error {
	entries := t.take()
	if len(entries) == 0 {
		return t.Tx.Commit()
	}
	pl := t.pool.plugin
	if err := pl.producer.write(t.ctx, true, entries, len(entries)); err != nil {
		if rbErr := t.Tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			err = errors.Join(err, fmt.Errorf("rollback: %w", rbErr))
		}
		return fmt.Errorf("redstream: transaction rolled back: %w", err)
	}
	if err := t.Tx.Commit(); err != nil {
		return err
	}
	pl.publish(t.ctx, entries)
	return nil
}

// Rollback drops the transaction's recorded messages and rolls back.
func (t *txn) Rollback() error {
	t.take()
	return t.Tx.Rollback()
}

// GetDBConn implements gorm.GetDBConnector, so that tx.DB() works inside a
// transaction.
func (t *txn) GetDBConn() (*sql.DB, error) { return t.pool.GetDBConn() }
