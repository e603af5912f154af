package redstream_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/testenv"
)

// scenario is one way of writing; each runs in every mode.
type scenario struct {
	name string
	run  func(t *testing.T, e *env)
}

var scenarios = []scenario{
	{"create", func(t *testing.T, e *env) {
		must(t, e.db.Create(&Product{Title: "a"}).Error)
		e.want(t, "products", ids(1), ids(1))
	}},
	{"create_duplicate_key_fails", func(t *testing.T, e *env) {
		must(t, e.db.Create(&Product{ID: 1, Title: "a"}).Error)
		if err := e.db.Create(&Product{ID: 1, Title: "b"}).Error; err == nil {
			t.Fatal("duplicate create succeeded")
		}
		e.want(t, "products", ids(1), ids(1))
	}},
	{"create_slice", func(t *testing.T, e *env) {
		must(t, e.db.Create(&[]Product{{Title: "a"}, {Title: "b"}, {Title: "c"}}).Error)
		e.want(t, "products", ids(1, 2, 3), ids(1, 2, 3))
	}},
	{"create_pointer_slice_in_batches", func(t *testing.T, e *env) {
		ps := []*Product{{Title: "a"}, {Title: "b"}, {Title: "c"}, {Title: "d"}, {Title: "e"}}
		must(t, e.db.CreateInBatches(ps, 2).Error)
		e.want(t, "products", ids(1, 2, 3, 4, 5), ids(1, 2, 3, 4, 5))
	}},
	{"create_from_map", func(t *testing.T, e *env) {
		must(t, e.db.Model(&Product{}).Create(map[string]any{"title": "m", "price": 1}).Error)
		e.want(t, "products", ids(1), ids(1))
	}},
	{"save_new_existing_unchanged_missing", func(t *testing.T, e *env) {
		p := Product{Title: "a"}
		must(t, e.db.Save(&p).Error) // create
		p.Price = 5
		must(t, e.db.Save(&p).Error) // update
		must(t, e.db.Save(&p).Error) // unchanged, but PostgreSQL reports the matched row
		must(t, e.db.Save(&Product{ID: 99, Title: "upsert"}).Error)
		e.want(t, "products", ids(1, 1, 1, 99), ids(1, 1, 1, 99))
	}},
	{"updates_update_update_columns", func(t *testing.T, e *env) {
		p := Product{Title: "a"}
		must(t, e.db.Create(&p).Error)
		must(t, e.db.Model(&p).Updates(map[string]any{"price": 2}).Error)
		must(t, e.db.Model(&p).Update("title", "b").Error)
		must(t, e.db.Model(&p).UpdateColumns(Product{Price: 3}).Error)
		must(t, e.db.Model(&p).UpdateColumn("price", 4).Error)
		e.want(t, "products", ids(1, 1, 1, 1, 1), ids(1, 1, 1, 1, 1))
	}},
	{"update_matching_no_row_writes_nothing", func(t *testing.T, e *env) {
		p := Product{Title: "a"}
		must(t, e.db.Create(&p).Error)
		res := e.db.Model(&p).Where("price = ?", -1).Update("price", 5)
		must(t, res.Error)
		if res.RowsAffected != 0 {
			t.Fatalf("rows = %d", res.RowsAffected)
		}
		e.want(t, "products", ids(1), ids(1))
	}},
	{"update_by_primary_key_condition", func(t *testing.T, e *env) {
		must(t, e.db.Create(&[]Product{{Title: "a"}, {Title: "b"}, {Title: "c"}}).Error)
		must(t, e.db.Model(&Product{}).Where(map[string]any{"id": []int64{1, 3}}).Update("price", 9).Error)
		must(t, e.db.Model(&Product{}).Where(&Product{ID: 2}).Update("price", 9).Error)
		e.want(t, "products", ids(1, 2, 3, 1, 3, 2), ids(1, 2, 3, 1, 3, 2))
	}},
	{"update_returning_into_slice", func(t *testing.T, e *env) {
		must(t, e.db.Create(&[]Product{{Title: "a", Price: 1}, {Title: "b", Price: 1}, {Title: "c", Price: 0}}).Error)
		var ps []Product
		err := e.db.Model(&ps).Clauses(clause.Returning{Columns: []clause.Column{{Name: "id"}}}).
			Where("price > ?", 0).Update("price", 7).Error
		if e.mysql {
			// MariaDB has RETURNING for INSERT and DELETE only, yet
			// gorm.io/driver/mysql sends it with UPDATE too: the server
			// refuses the statement, and nothing changes.
			if err == nil {
				t.Fatal("UPDATE … RETURNING succeeded on MariaDB")
			}
			e.want(t, "products", ids(1, 2, 3), ids(1, 2, 3))
			return
		}
		must(t, err)
		e.want(t, "products", ids(1, 2, 3, 1, 2), ids(1, 2, 3, 1, 2))
	}},
	{"batch_update_unknown_keys_warns", func(t *testing.T, e *env) {
		must(t, e.db.Create(&[]Product{{Title: "a", Price: 1}, {Title: "b", Price: 1}}).Error)
		before := e.p.Stats().Uncaptured
		must(t, e.db.Model(&Product{}).Where("price > ?", 0).Update("price", 5).Error)
		must(t, e.db.Model(&Product{}).Where("price > ?", 0).Update("price", 6).Error)
		if got := e.p.Stats().Uncaptured - before; got != 2 {
			t.Errorf("Uncaptured = %d, want 2", got)
		}
		logs := e.logs.String()
		if n := strings.Count(logs, "not captured"); n != 2 {
			// Two call sites (two lines): one warning each.
			t.Errorf("warnings naming Producer.Bulk = %d, want 2:\n%s", n, logs)
		}
		if !strings.Contains(logs, "hooks_test.go:") {
			t.Errorf("warning does not name the call site:\n%s", logs)
		}
		e.want(t, "products", ids(1, 2), ids(1, 2))
	}},
	{"batch_update_same_call_site_warns_once", func(t *testing.T, e *env) {
		must(t, e.db.Create(&Product{Title: "a", Price: 1}).Error)
		for range 3 {
			must(t, e.db.Model(&Product{}).Where("price > ?", 0).Update("price", 5).Error)
		}
		if n := strings.Count(e.logs.String(), "not captured"); n != 1 {
			t.Errorf("warnings = %d, want 1", n)
		}
	}},
	{"delete_soft_unscoped_by_key", func(t *testing.T, e *env) {
		ps := []Product{{Title: "a"}, {Title: "b"}, {Title: "c"}, {Title: "d"}, {Title: "e"}}
		must(t, e.db.Create(&ps).Error)
		must(t, e.db.Delete(&ps[0]).Error)                          // soft delete by value
		must(t, e.db.Unscoped().Delete(&ps[1]).Error)               // hard delete
		must(t, e.db.Delete(&Product{}, 3).Error)                   // by key
		must(t, e.db.Delete(&Product{}, []int64{4, 5}).Error)       // by keys
		must(t, e.db.Unscoped().Delete(&Product{}, []int{1}).Error) // hard delete of the soft-deleted one
		e.want(t, "products", ids(1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1), ids(1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1))
	}},
	{"delete_by_raw_condition_warns", func(t *testing.T, e *env) {
		must(t, e.db.Create(&Product{Title: "x"}).Error)
		must(t, e.db.Where("title = ?", "x").Delete(&Product{}).Error)
		if got := e.p.Stats().Uncaptured; got != 1 {
			t.Errorf("Uncaptured = %d, want 1", got)
		}
		e.want(t, "products", ids(1), ids(1))
	}},
	{"upserts", func(t *testing.T, e *env) {
		must(t, e.db.Create(&Product{ID: 1, Title: "a"}).Error)
		must(t, e.db.Clauses(clause.OnConflict{UpdateAll: true}).Create(&Product{ID: 1, Title: "b"}).Error)
		res := e.db.Clauses(clause.OnConflict{DoNothing: true}).Create(&Product{ID: 1, Title: "c"})
		must(t, res.Error)
		if e.mysql {
			// gorm.io/driver/mysql writes DoNothing as ON DUPLICATE KEY
			// UPDATE id = id, and on MariaDB reads the row back with
			// RETURNING, so RowsAffected is 1 and the untouched row is
			// captured once more: a message too many, never one too few.
			if res.RowsAffected != 1 {
				t.Fatalf("do-nothing rows = %d, want 1 (the row RETURNING read)", res.RowsAffected)
			}
			var p Product
			must(t, e.db.First(&p, 1).Error)
			if p.Title != "b" {
				t.Errorf("title = %q after the upserts, want b", p.Title)
			}
			e.want(t, "products", ids(1, 1, 1), ids(1, 1, 1))
			return
		}
		if res.RowsAffected != 0 {
			t.Fatalf("do-nothing rows = %d", res.RowsAffected)
		}
		e.want(t, "products", ids(1, 1), ids(1, 1))
	}},
	{"transaction_commit", func(t *testing.T, e *env) {
		must(t, e.db.Transaction(func(tx *gorm.DB) error {
			must(t, tx.Create(&Product{Title: "a"}).Error)
			must(t, tx.Create(&Product{Title: "b"}).Error)
			// Nothing before COMMIT: the delay messages go out just before it.
			e.want(t, "products", nil, nil)
			return nil
		}))
		e.want(t, "products", ids(1, 2), ids(1, 2))
	}},
	{"transaction_error_and_panic", func(t *testing.T, e *env) {
		err := e.db.Transaction(func(tx *gorm.DB) error {
			must(t, tx.Create(&Product{Title: "a"}).Error)
			return errors.New("boom")
		})
		if err == nil {
			t.Fatal("no error")
		}
		func() {
			defer func() { _ = recover() }()
			_ = e.db.Transaction(func(tx *gorm.DB) error {
				must(t, tx.Create(&Product{Title: "b"}).Error)
				panic("boom")
			})
		}()
		e.want(t, "products", nil, nil)
	}},
	{"transaction_same_record_once_per_commit", func(t *testing.T, e *env) {
		must(t, e.db.Transaction(func(tx *gorm.DB) error {
			p := Product{Title: "a"}
			must(t, tx.Create(&p).Error)
			must(t, tx.Model(&p).Update("price", 1).Error)
			must(t, tx.Save(&p).Error)
			return nil
		}))
		e.want(t, "products", ids(1), ids(1))
	}},
	{"manual_begin_commit_rollback", func(t *testing.T, e *env) {
		tx := e.db.Begin()
		must(t, tx.Error)
		p := Product{Title: "a"}
		must(t, tx.Create(&p).Error)
		must(t, tx.Model(&p).Update("price", 3).Error)
		must(t, tx.Create(&Product{Title: "b"}).Error)
		e.want(t, "products", nil, nil)
		must(t, tx.Commit().Error)
		e.want(t, "products", ids(1, 2), ids(1, 2))

		tx = e.db.Begin()
		must(t, tx.Create(&Product{Title: "c"}).Error)
		must(t, tx.Rollback().Error)
		e.want(t, "products", ids(1, 2), ids(1, 2))
	}},
	{"nested_transactions", func(t *testing.T, e *env) {
		create := func(tx *gorm.DB, title string) { must(t, tx.Create(&Product{ID: int64(title[0]), Title: title}).Error) }
		// a{b{c✗}d}e: c is rolled back to its savepoint.
		must(t, e.db.Transaction(func(tx *gorm.DB) error {
			create(tx, "a")
			_ = tx.Transaction(func(tx *gorm.DB) error {
				create(tx, "b")
				_ = tx.Transaction(func(tx *gorm.DB) error {
					create(tx, "c")
					return errors.New("rollback c")
				})
				create(tx, "d")
				return nil
			})
			create(tx, "e")
			return nil
		}))
		// f{g{h}✗}i: the middle level fails after its inner one succeeded.
		must(t, e.db.Transaction(func(tx *gorm.DB) error {
			create(tx, "f")
			_ = tx.Transaction(func(tx *gorm.DB) error {
				create(tx, "g")
				must(t, tx.Transaction(func(tx *gorm.DB) error { create(tx, "h"); return nil }))
				return errors.New("rollback g and h")
			})
			create(tx, "i")
			return nil
		}))
		e.want(t, "products", ids('a', 'b', 'd', 'e', 'f', 'i'), ids('a', 'b', 'd', 'e', 'f', 'i'))
		var n int64
		must(t, e.db.Model(&Product{}).Count(&n).Error)
		if n != 6 {
			t.Errorf("rows = %d, want 6", n)
		}
	}},
	{"savepoint_and_rollback_to", func(t *testing.T, e *env) {
		tx := e.db.Begin()
		must(t, tx.Create(&Product{ID: 1}).Error)
		must(t, tx.SavePoint("s1").Error)
		must(t, tx.Create(&Product{ID: 2}).Error)
		must(t, tx.SavePoint("s2").Error)
		must(t, tx.Create(&Product{ID: 3}).Error)
		must(t, tx.RollbackTo("s1").Error) // drops 2 and 3, and s2
		must(t, tx.Create(&Product{ID: 4}).Error)
		must(t, tx.RollbackTo("s1").Error) // s1 survives its rollback
		must(t, tx.Create(&Product{ID: 5}).Error)
		must(t, tx.Commit().Error)
		e.want(t, "products", ids(1, 5), ids(1, 5))
	}},
	{"raw_savepoint_statements", func(t *testing.T, e *env) {
		tx := e.db.Begin()
		must(t, tx.Create(&Product{ID: 1}).Error)
		must(t, tx.Exec("SAVEPOINT s2").Error)
		must(t, tx.Create(&Product{ID: 2}).Error)
		must(t, tx.Exec("ROLLBACK TO s2").Error)
		quote := `"` // a quoted identifier: PostgreSQL's double quotes, MySQL's backticks
		if e.mysql {
			quote = "`"
		}
		must(t, tx.Exec("savepoint "+quote+"Keep"+quote).Error)
		must(t, tx.Create(&Product{ID: 3}).Error)
		must(t, tx.Exec("RELEASE SAVEPOINT "+quote+"Keep"+quote).Error)
		must(t, tx.Commit().Error)
		e.want(t, "products", ids(1, 3), ids(1, 3))
	}},
	{"session_and_context_copies", func(t *testing.T, e *env) {
		ctx := context.Background()
		must(t, e.db.WithContext(ctx).Create(&Product{ID: 1}).Error)
		must(t, e.db.Session(&gorm.Session{}).Create(&Product{ID: 2}).Error)
		must(t, e.db.Session(&gorm.Session{NewDB: true}).Create(&Product{ID: 3}).Error)
		must(t, e.db.Session(&gorm.Session{SkipDefaultTransaction: true}).Create(&Product{ID: 4}).Error)
		must(t, e.db.Session(&gorm.Session{PrepareStmt: true}).Create(&Product{ID: 5}).Error)
		must(t, e.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			must(t, tx.Session(&gorm.Session{}).Create(&Product{ID: 6}).Error)
			must(t, tx.WithContext(ctx).Create(&Product{ID: 7}).Error)
			must(t, tx.Session(&gorm.Session{PrepareStmt: true}).Create(&Product{ID: 8}).Error)
			return nil
		}))
		e.want(t, "products", ids(1, 2, 3, 4, 5, 6, 7, 8), ids(1, 2, 3, 4, 5, 6, 7, 8))
	}},
	{"prepared_session_nested_rollback", func(t *testing.T, e *env) {
		ps := e.db.Session(&gorm.Session{PrepareStmt: true})
		must(t, ps.Transaction(func(tx *gorm.DB) error {
			must(t, tx.Create(&Product{ID: 1}).Error)
			_ = tx.Transaction(func(tx *gorm.DB) error {
				must(t, tx.Create(&Product{ID: 2}).Error)
				return errors.New("rollback 2")
			})
			return nil
		}))
		e.want(t, "products", ids(1), ids(1))
	}},
	{"failed_statement_then_commit", func(t *testing.T, e *env) {
		tx := e.db.Begin()
		must(t, tx.Create(&Product{ID: 1}).Error)
		if err := tx.Exec("SELECT no_such_column FROM products").Error; err == nil {
			t.Fatal("bad statement succeeded")
		}
		if e.mysql {
			// MySQL undoes the failed statement alone: the transaction
			// goes on and commits with its row.
			must(t, tx.Commit().Error)
			e.want(t, "products", ids(1), ids(1))
			return
		}
		if err := tx.Commit().Error; err == nil {
			t.Fatal("commit of an aborted transaction succeeded")
		}
		// The delay message went out before the failed COMMIT; it is
		// harmless (consumers re-read the row). No main-stream message.
		e.want(t, "products", ids(1), nil)
	}},
	{"skip_capture", func(t *testing.T, e *env) {
		must(t, redstream.SkipCapture(e.db).Create(&Product{Title: "a"}).Error)
		e.want(t, "products", nil, nil)
	}},
	{"model_hook_error_rolls_back", func(t *testing.T, e *env) {
		must(t, e.db.AutoMigrate(&Hooked{}))
		must(t, e.db.Create(&Hooked{Title: "ok"}).Error)
		if err := e.db.Create(&Hooked{Title: "fail"}).Error; err == nil {
			t.Fatal("hook error not returned")
		}
		e.want(t, "hookeds", ids(1), ids(1))
	}},
}

// Hooked fails its AfterCreate hook for the title "fail".
type Hooked struct {
	ID    int64
	Title string
}

func (h *Hooked) AfterCreate(*gorm.DB) error {
	if h.Title == "fail" {
		return errors.New("hook refused")
	}
	return nil
}

func TestPluginWrites(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					t.Parallel()
					e := newEnv(t, m)
					sc.run(t, e)
					st := e.p.Stats()
					if st.DelayFailures != 0 || st.QueueFailures != 0 {
						t.Errorf("stats = %+v, want no failures", st)
					}
				})
			}
		})
	}
}

// TestPluginMainAfterVisible proves that a main-stream message never
// reaches Redis before its row is visible to another connection: a Redis
// hook looks each id up on a separate connection just before every
// main-stream pipeline is sent.
func TestPluginMainAfterVisible(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			rdb, ns := testenv.Redis(t)
			obs := &observer{t: t, streamKey: redstream.NewKeys(ns).Stream("products")}
			rdb.AddHook(obs)
			e := newEnvWith(t, m, rdb, ns)
			obs.db = e.sqlDB(t)
			obs.query = "SELECT count(*) FROM products WHERE id = " + e.param(1)

			must(t, e.db.Create(&Product{Title: "implicit"}).Error)
			must(t, e.db.Create(&[]Product{{Title: "s1"}, {Title: "s2"}}).Error)
			must(t, e.db.Transaction(func(tx *gorm.DB) error {
				must(t, tx.Create(&Product{Title: "tx"}).Error)
				return tx.Transaction(func(tx *gorm.DB) error {
					return tx.Create(&Product{Title: "nested"}).Error
				})
			}))
			tx := e.db.Begin()
			must(t, tx.Create(&Product{Title: "manual"}).Error)
			must(t, tx.Commit().Error)
			if got := obs.checked.Load(); got != 6 {
				t.Errorf("observer checked %d ids, want 6", got)
			}
		})
	}
}

type observer struct {
	t         *testing.T
	db        *sql.DB
	streamKey string
	query     string // counts the rows of one id
	checked   atomic.Int64
}

func (o *observer) DialHook(next redis.DialHook) redis.DialHook { return next }
func (o *observer) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		o.check(ctx, []redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}
func (o *observer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		o.check(ctx, cmds)
		return next(ctx, cmds)
	}
}

func (o *observer) check(ctx context.Context, cmds []redis.Cmder) {
	for _, c := range cmds {
		key, payloads := streamWrite(c)
		if key != o.streamKey {
			continue
		}
		for _, payload := range payloads {
			o.checkOne(ctx, payload)
		}
	}
}

func (o *observer) checkOne(ctx context.Context, payload string) {
	var p struct{ ID int64 }
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		o.t.Errorf("payload %v: %v", payload, err)
		return
	}
	var n int
	if err := o.db.QueryRowContext(ctx, o.query, p.ID).Scan(&n); err != nil {
		o.t.Errorf("observer query: %v", err)
	}
	if n != 1 {
		o.t.Errorf("main-stream message for id %d sent before its row is visible", p.ID)
	}
	o.checked.Add(1)
}

// faultHook fails every command or pipeline that writes to a key for which
// fail returns true.
type faultHook struct {
	fail  func(key string) bool
	calls atomic.Int64 // pipelines and single commands seen
	log   []string
	mu    sync.Mutex
}

var errInjected = errors.New("injected redis failure")

func (f *faultHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (f *faultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !handshake(cmd) {
			f.calls.Add(1)
		}
		f.mu.Lock()
		f.log = append(f.log, fmt.Sprint(cmd.Args()))
		f.mu.Unlock()
		if f.hit([]redis.Cmder{cmd}) {
			cmd.SetErr(errInjected)
			return errInjected
		}
		return next(ctx, cmd)
	}
}
func (f *faultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !handshake(cmds[0]) {
			f.calls.Add(1)
		}
		f.mu.Lock()
		f.log = append(f.log, fmt.Sprintf("pipeline of %d: %v", len(cmds), cmds[0].Args()))
		f.mu.Unlock()
		if f.hit(cmds) {
			for _, c := range cmds {
				c.SetErr(errInjected)
			}
			return errInjected
		}
		return next(ctx, cmds)
	}
}

// handshake reports whether cmd belongs to a new connection's handshake
// (HELLO, CLIENT SETINFO), which is not a round trip of the write measured.
func handshake(cmd redis.Cmder) bool {
	return cmd.Name() == "hello" || cmd.Name() == "client"
}

func (f *faultHook) hit(cmds []redis.Cmder) bool {
	if f.fail == nil {
		return false
	}
	for _, c := range cmds {
		if key := mainStreamWrite(c); key != "" && f.fail(key) {
			return true
		}
	}
	return false
}

// TestPluginRedisDownBeforeCommit: when the delay messages cannot be
// written, the transaction is rolled back and the caller gets the error.
func TestPluginRedisDownBeforeCommit(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			// A client whose server is gone: nothing listens on the port.
			down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
			t.Cleanup(func() { down.Close() })
			e := newEnvWith(t, m, down, "down")
			err := e.db.Create(&Product{Title: "a"}).Error
			if err == nil {
				t.Fatal("create succeeded with Redis down")
			}
			if !strings.Contains(err.Error(), "redstream") {
				t.Errorf("error %q does not say where it came from", err)
			}
			err = e.db.Transaction(func(tx *gorm.DB) error { return tx.Create(&Product{Title: "b"}).Error })
			if err == nil {
				t.Fatal("transaction committed with Redis down")
			}
			var n int64
			must(t, redstream.SkipCapture(e.db).Model(&Product{}).Count(&n).Error)
			if n != 0 {
				t.Errorf("rows = %d, want 0: the writes must be rolled back", n)
			}
			if got := e.p.Stats().DelayFailures; got != 2 {
				t.Errorf("DelayFailures = %d, want 2", got)
			}
		})
	}
}

// TestPluginRedisDownAfterCommit: when the main-stream write after COMMIT
// fails, the data stays committed, the caller sees no error, the failure is
// counted, and every delay message is there for the Delayer.
func TestPluginRedisDownAfterCommit(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			rdb, ns := testenv.Redis(t)
			keys := redstream.NewKeys(ns)
			rdb.AddHook(&faultHook{fail: func(key string) bool { return key == keys.Stream("products") }})
			e := newEnvWith(t, m, rdb, ns)
			must(t, e.db.Create(&Product{Title: "a"}).Error)
			must(t, e.db.Transaction(func(tx *gorm.DB) error {
				must(t, tx.Create(&Product{Title: "b"}).Error)
				return tx.Create(&Product{Title: "c"}).Error
			}))
			var n int64
			must(t, e.db.Model(&Product{}).Count(&n).Error)
			if n != 3 {
				t.Errorf("rows = %d, want 3", n)
			}
			st := e.p.Stats()
			if st.QueueFailures != 2 || st.DelayMessages != 3 {
				t.Errorf("stats = %+v, want 2 queue failures and 3 delay messages", st)
			}
			e.want(t, "products", ids(1, 2, 3), nil)
			if !strings.Contains(e.logs.String(), "Delayer") {
				t.Errorf("failure not logged:\n%s", e.logs.String())
			}
		})
	}
}

// TestPluginRoundTrips: a 1,000-row slice create writes exactly 1,000 delay
// and 1,000 main-stream messages in two round trips.
func TestPluginRoundTrips(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			rdb, ns := testenv.Redis(t)
			counter := &faultHook{}
			rdb.AddHook(counter)
			e := newEnvWith(t, m, rdb, ns)
			rows := make([]Product, 1000)
			for i := range rows {
				rows[i].Title = fmt.Sprint("p", i)
			}
			before := counter.calls.Load()
			must(t, e.db.Create(&rows).Error)
			if got := counter.calls.Load() - before; got != 2 {
				t.Errorf("round trips = %d, want 2; single commands: %v", got, counter.log)
			}
			ctx := context.Background()
			// Each delay message is deleted with its main-stream message,
			// unless they are kept.
			wantLeft := int64(0)
			if m.keep {
				wantLeft = 1000
			}
			if n := rdb.XLen(ctx, e.keys.Delay("products")).Val(); n != wantLeft {
				t.Errorf("delay messages left = %d, want %d", n, wantLeft)
			}
			if st := e.p.Stats(); st.DelayMessages != 1000 {
				t.Errorf("delay messages written = %d, want 1000", st.DelayMessages)
			}
			if n := rdb.XLen(ctx, e.keys.Stream("products")).Val(); n != 1000 {
				t.Errorf("main messages = %d, want 1000", n)
			}
		})
	}
}

// TestPluginForeignTransaction: a transaction opened on a connection the
// plugin does not wrap (db.Connection) gets delay messages only; an
// implicit one there still gets both.
func TestPluginForeignTransaction(t *testing.T) {
	t.Parallel()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, m)
			must(t, e.db.Connection(func(c *gorm.DB) error {
				return c.Transaction(func(tx *gorm.DB) error {
					return tx.Create(&Product{Title: "in user tx"}).Error
				})
			}))
			e.want(t, "products", ids(1), nil)
			if got := e.p.Stats().ForeignTxDelay; got != 1 {
				t.Errorf("ForeignTxDelay = %d, want 1", got)
			}
			if !strings.Contains(e.logs.String(), "Delayer") {
				t.Errorf("no warning logged:\n%s", e.logs.String())
			}
			must(t, e.db.Connection(func(c *gorm.DB) error {
				return c.Create(&Product{Title: "implicit"}).Error
			}))
			e.want(t, "products", ids(1, 2), ids(2))
		})
	}
}

// TestPluginForeignRollback: a rolled-back foreign transaction leaves only
// its delay message, which consumers treat as "re-read the row".
func TestPluginForeignRollback(t *testing.T) {
	t.Parallel()
	for _, m := range []mode{modes[0], mysqlModes[0]} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, m)
			_ = e.db.Connection(func(c *gorm.DB) error {
				return c.Transaction(func(tx *gorm.DB) error {
					must(t, tx.Create(&Product{Title: "gone"}).Error)
					return errors.New("rollback")
				})
			})
			e.want(t, "products", ids(1), nil)
		})
	}
}
