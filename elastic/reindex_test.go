package elastic_test

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"gorm.io/gorm"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/internal/testenv"
)

// newMapping is the new index's mapping: title gains a keyword sub-field,
// which the old index lacks.
const newMapping = `{"settings":{"number_of_shards":1},"mappings":{"properties":{"id":{"type":"long"},"title":{"type":"text","fields":{"raw":{"type":"keyword"}}},"price":{"type":"long"}}}}`

// call sends req to es and returns the status and body of the answer.
func call(t *testing.T, es esapi.Transport, req esapi.Request) (int, []byte) {
	t.Helper()
	res, err := req.Do(context.Background(), es)
	must(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	must(t, err)
	return res.StatusCode, b
}

// aliasTargets returns the indexes behind alias, sorted.
func aliasTargets(t *testing.T, es esapi.Transport, alias string) []string {
	t.Helper()
	code, b := call(t, es, esapi.IndicesGetAliasRequest{Name: []string{alias}})
	if code == http.StatusNotFound {
		return nil
	}
	var body map[string]any
	if code != http.StatusOK || json.Unmarshal(b, &body) != nil {
		t.Fatalf("GET _alias/%s: %d %s", alias, code, b)
	}
	var out []string
	for ix := range body {
		out = append(out, ix)
	}
	slices.Sort(out)
	return out
}

// indexExists reports whether the index name exists.
func indexExists(t *testing.T, es esapi.Transport, name string) bool {
	t.Helper()
	code, _ := call(t, es, esapi.IndicesExistsRequest{Index: []string{name}})
	return code == http.StatusOK
}

// refreshIndex makes what was written to name searchable.
func refreshIndex(t *testing.T, es esapi.Transport, name string) {
	t.Helper()
	if code, b := call(t, es, esapi.IndicesRefreshRequest{Index: []string{name}}); code != http.StatusOK {
		t.Fatalf("refresh %s: %d %s", name, code, b)
	}
}

// mappingOf returns the mapping of the index behind alias, as JSON.
func mappingOf(t *testing.T, es esapi.Transport, alias string) string {
	t.Helper()
	_, b := call(t, es, esapi.IndicesGetMappingRequest{Index: []string{alias}})
	var v any
	must(t, json.Unmarshal(b, &v))
	out, _ := json.Marshal(v)
	return string(out)
}

// loadWriter writes a mixed load through GORM: creates, updates, soft
// deletes, restores, hard deletes and rolled-back transactions.
type loadWriter struct {
	db  *gorm.DB
	rng *rand.Rand
	ids []int64
	ops atomic.Int64
}

var errRollback = errors.New("rolled back on purpose")

func (w *loadWriter) step(ctx context.Context) error {
	db := w.db.WithContext(ctx)
	n := w.rng.IntN(100)
	if len(w.ids) == 0 || n < 25 {
		p := Product{Title: fmt.Sprintf("t%x", w.rng.Uint32()), Price: w.rng.IntN(1000)}
		if err := db.Create(&p).Error; err != nil {
			return err
		}
		w.ids = append(w.ids, p.ID)
		return nil
	}
	i := w.rng.IntN(len(w.ids))
	id := w.ids[i]
	switch {
	case n < 60:
		return db.Model(&Product{ID: id}).Updates(map[string]any{"title": fmt.Sprintf("t%x", w.rng.Uint32()), "price": w.rng.IntN(1000)}).Error
	case n < 70:
		return db.Delete(&Product{ID: id}).Error
	case n < 75:
		return db.Unscoped().Model(&Product{ID: id}).Updates(map[string]any{"deleted_at": nil, "title": "restored"}).Error
	case n < 85:
		w.ids = slices.Delete(w.ids, i, i+1)
		return db.Unscoped().Delete(&Product{ID: id}).Error
	default:
		err := db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Model(&Product{ID: id}).Update("title", "never").Error; err != nil {
				return err
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			return err
		}
		return nil
	}
}

// run writes until stop is closed, then returns the first error.
func (w *loadWriter) run(stop <-chan struct{}, every time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				done <- nil
				return
			case <-tick.C:
			}
			if err := w.step(context.Background()); err != nil {
				done <- err
				return
			}
			w.ops.Add(1)
		}
	}()
	return done
}

// checkDocs compares every row with its document on alias: live rows
// indexed with their title and price, no other document.
func checkDocs(t *testing.T, s *engineSetup, alias string) {
	t.Helper()
	var rows []Product
	must(t, s.db.Find(&rows).Error)
	for _, r := range rows {
		code, b := call(t, s.es, esapi.GetRequest{Index: alias, DocumentID: strconv.FormatInt(r.ID, 10)})
		var d engineDoc
		if code != http.StatusOK || json.Unmarshal(b, &d) != nil || !d.Found {
			t.Fatalf("row %d has no document: %d %s", r.ID, code, b)
		}
		if d.Source["title"] != r.Title || d.Source["price"] != float64(r.Price) {
			t.Fatalf("document %d = %v; row %+v", r.ID, d.Source, r)
		}
	}
	code, b := call(t, s.es, esapi.CountRequest{Index: []string{alias}})
	var c struct{ Count int }
	if code != http.StatusOK || json.Unmarshal(b, &c) != nil {
		t.Fatalf("count %s: %d %s", alias, code, b)
	}
	if c.Count != len(rows) {
		t.Fatalf("%d documents for %d live rows", c.Count, len(rows))
	}
}

// mysqlProduct is the table of Product on MySQL: its version column keeps
// microseconds (GORM's DATETIME(3) would give two updates of one row in a
// millisecond one version, the later one refused as stale).
type mysqlProduct struct {
	ID        int64
	Title     string
	Price     int
	UpdatedAt time.Time `gorm:"type:datetime(6)"`
	DeletedAt gorm.DeletedAt
}

func (mysqlProduct) TableName() string { return "products" }

// TestReindexUnderLoad rebuilds the index behind an alias while a mixed
// write load runs, the live consumer writes through the alias and a
// trimmer trims the stream: afterwards the alias points at the new index
// alone, with the new mapping, and every document equals its row; the old
// index is gone. On each engine, with and without a version column
// (without one, only the order of backfill and replay keeps older states
// from overwriting newer ones).
func TestReindexUnderLoad(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		for _, version := range []string{"updated_at", ""} {
			t.Run("version="+version, func(t *testing.T) {
				t.Parallel()
				runReindexUnderLoad(t, newEngineSetup(t, tg, &Product{}), version)
			})
		}
	})
}

// TestMySQLReindexUnderLoad is TestReindexUnderLoad on MariaDB: the
// backfill, the replay's reads and the verification read MySQL.
func TestMySQLReindexUnderLoad(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		for _, version := range []string{"updated_at", ""} {
			t.Run("version="+version, func(t *testing.T) {
				t.Parallel()
				runReindexUnderLoad(t, newEngineSetupOn(t, tg, testenv.MySQLGORM(t, nil), &mysqlProduct{}), version)
			})
		}
	})
}

func runReindexUnderLoad(t *testing.T, s *engineSetup, version string) {
	ctx := context.Background()
	sqlDB := sqlDB(t, s.db)
	alias := s.index
	old := alias + "-old"
	t.Cleanup(func() { deleteIndexes(s.es, alias+"-*") })
	must(t, elastic.CreateAliasedIndex(ctx, s.es, old, nil, alias))
	loader, err := elastic.NewTableLoader(ctx, sqlDB, elastic.TableOptions{
		Table: "products", SoftDeleteColumn: "deleted_at", VersionColumn: version,
	})
	must(t, err)
	live, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: alias})
	must(t, err)
	w := &loadWriter{db: s.db, rng: rand.New(rand.NewPCG(1, uint64(len(version))))}
	for range 1500 {
		must(t, w.step(ctx))
	}
	c := s.run(t, "products", live)
	tr, err := redstream.NewTrimmer(s.rdb, "products", []string{"indexer"}, &redstream.TrimmerOptions{Namespace: s.ns, Interval: 20 * time.Millisecond})
	must(t, err)
	tctx, stopTrim := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = tr.Run(tctx) }()
	defer func() { stopTrim(); wg.Wait() }()

	stop := make(chan struct{})
	werr := w.run(stop, 2*time.Millisecond)
	var phases []string
	ri, err := elastic.NewReindexer(s.rdb, sqlDB, s.es, loader, elastic.ReindexOptions{
		Name: "products", Alias: alias, Body: []byte(newMapping), Table: "products", Namespace: s.ns,
		PageSize: 25,
		Progress: func(st elastic.ReindexStatus) {
			if len(phases) == 0 || phases[len(phases)-1] != st.Phase {
				phases = append(phases, st.Phase)
			}
			time.Sleep(time.Millisecond) // let the load overlap every phase
		},
	})
	must(t, err)
	res, err := ri.Run(ctx)
	close(stop)
	must(t, <-werr)
	if err != nil {
		t.Fatalf("reindex: %v (phases %v)", err, phases)
	}
	if !slices.Contains(phases, elastic.PhaseBackfill) || !slices.Contains(phases, elastic.PhaseReplay) {
		t.Errorf("phases reported %v", phases)
	}
	if res.Old != old || !res.OldDeleted || res.Replayed == 0 {
		t.Errorf("result %+v", res)
	}
	if got := aliasTargets(t, s.es, alias); !slices.Equal(got, []string{res.Index}) {
		t.Fatalf("alias points at %v, want [%s]", got, res.Index)
	}
	if indexExists(t, s.es, old) {
		t.Errorf("old index %s still exists", old)
	}
	// The load is over: the live consumer catches up, into the new index.
	end, err := s.rdb.XInfoStream(ctx, s.keys.Stream("products")).Result()
	must(t, err)
	eventually(t, "the live consumer to catch up", func() bool {
		return c.Stats().Committed.String() == end.LastGeneratedID
	})
	refreshIndex(t, s.es, alias)
	checkDocs(t, s, alias)
	rep, err := elastic.Verify(ctx, sqlDB, s.es, loader, elastic.VerifyOptions{Table: "products", Index: alias})
	must(t, err)
	if !rep.InSync() {
		t.Fatalf("verify on the alias: %+v", rep)
	}
	if m := mappingOf(t, s.es, alias); !strings.Contains(m, `"raw":{"type":"keyword"}`) {
		t.Fatalf("new mapping not in effect: %s", m)
	}
	// Nothing of the reindex is left: no state, no hold, a log record.
	if n := s.rdb.Exists(ctx, s.keys.Reindex("products"), s.keys.Hold("products")).Val(); n != 0 {
		t.Errorf("%d reindex keys left", n)
	}
	if n := s.rdb.LLen(ctx, s.keys.ReindexLog("products")).Val(); n != 1 {
		t.Errorf("%d log records", n)
	}
	t.Logf("%d writes during the reindex; %d rows backfilled, %d messages replayed; trimmer %+v",
		w.ops.Load(), res.Rows, res.Replayed, tr.Stats())
}

// hooked is an esapi.Transport that calls before (when set) with each
// request before sending it, and after with each request answered. An
// error of before is the request's.
type hooked struct {
	next          esapi.Transport
	before, after func(r *http.Request, body string) error
}

func (h *hooked) Perform(r *http.Request) (*http.Response, error) {
	var body string
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body.Close()
		body = string(b)
		r.Body = io.NopCloser(strings.NewReader(body))
	}
	if h.before != nil {
		if err := h.before(r, body); err != nil {
			return nil, err
		}
	}
	res, err := h.next.Perform(r)
	if err == nil && h.after != nil {
		if err := h.after(r, body); err != nil {
			res.Body.Close()
			return nil, err
		}
	}
	return res, err
}

// reindexFixture is a table of rows indexed behind an alias, and a
// Reindexer of it whose requests go through a hooked transport.
type reindexFixture struct {
	*engineSetup
	sqlDB    *sql.DB
	alias    string
	old      string
	loader   *elastic.TableLoader
	live     *elastic.Handler    // writes through the alias
	consumer *redstream.Consumer // the live consumer, when the test runs one
	tr       *hooked
}

func newReindexFixture(t *testing.T, tg engineTarget, rows int) *reindexFixture {
	t.Helper()
	return newVersionedReindexFixture(t, tg, rows, "")
}

// newVersionedReindexFixture is newReindexFixture with version as the
// version column ("" for none).
func newVersionedReindexFixture(t *testing.T, tg engineTarget, rows int, version string) *reindexFixture {
	t.Helper()
	s := newEngineSetup(t, tg, &Product{})
	ctx := context.Background()
	f := &reindexFixture{engineSetup: s, sqlDB: sqlDB(t, s.db), alias: s.index, old: s.index + "-old", tr: &hooked{next: s.es}}
	t.Cleanup(func() { deleteIndexes(s.es, f.alias+"-*") })
	must(t, elastic.CreateAliasedIndex(ctx, s.es, f.old, nil, f.alias))
	var err error
	f.loader, err = elastic.NewTableLoader(ctx, f.sqlDB, elastic.TableOptions{Table: "products", SoftDeleteColumn: "deleted_at", VersionColumn: version})
	must(t, err)
	f.live, err = elastic.NewHandler(s.es, f.loader, &elastic.Options{Index: f.alias})
	must(t, err)
	for i := range rows {
		must(t, s.db.Create(&Product{Title: fmt.Sprint("p", i+1), Price: i + 1}).Error)
	}
	_, err = elastic.Backfill(ctx, f.sqlDB, f.live, elastic.BackfillOptions{Table: "products"})
	must(t, err)
	return f
}

// caughtUp waits until the live consumer has committed the last entry of
// the stream.
func (f *reindexFixture) caughtUp(t *testing.T) {
	t.Helper()
	end, err := f.rdb.XInfoStream(context.Background(), f.keys.Stream("products")).Result()
	must(t, err)
	eventually(t, "the live consumer to catch up", func() bool {
		return f.consumer.Stats().Committed.String() == end.LastGeneratedID
	})
}

// reindexer returns a Reindexer of the fixture's alias through its hooked
// transport; opts.Body defaults to newMapping.
func (f *reindexFixture) reindexer(t *testing.T, opts elastic.ReindexOptions) *elastic.Reindexer {
	t.Helper()
	opts.Name, opts.Alias, opts.Table, opts.Namespace = "products", f.alias, "products", f.ns
	if opts.Body == nil {
		opts.Body = []byte(newMapping)
	}
	opts.PageSize = cmp.Or(opts.PageSize, 10)
	opts.LockTTL = cmp.Or(opts.LockTTL, time.Second)
	ri, err := elastic.NewReindexer(f.rdb, f.sqlDB, f.tr, f.loader, opts)
	must(t, err)
	return ri
}

// phase returns the phase of the reindex in progress ("" for none).
func (f *reindexFixture) phase() string {
	return f.rdb.HGet(context.Background(), f.keys.Reindex("products"), "phase").Val()
}

// checkNew checks the alias points at index alone, waits for the live
// consumer (when one runs) to catch up, refreshes the alias and checks
// that every row has its document there.
func (f *reindexFixture) checkNew(t *testing.T, index string) {
	t.Helper()
	if got := aliasTargets(t, f.es, f.alias); !slices.Equal(got, []string{index}) {
		t.Fatalf("alias points at %v, want [%s]", got, index)
	}
	if f.consumer != nil {
		f.caughtUp(t)
	}
	refreshIndex(t, f.es, f.alias)
	checkDocs(t, f.engineSetup, f.alias)
}

// isBulkTo reports a bulk request writing to index.
func isBulkTo(r *http.Request, body, index string) bool {
	return strings.HasSuffix(r.URL.Path, "/_bulk") && strings.Contains(body, `"_index":"`+index+`"`)
}

// isSwap reports the request that moves the alias.
func isSwap(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Path == "/_aliases"
}

// TestReindexReplaysChangesDuringBackfill: a row updated after the
// backfill read its page, and a row created and one deleted then, reach
// the new index through the replay; the backfill's older state of the
// updated row, written after the update, does not stay (no version
// column: the replay runs after the backfill).
func TestReindexReplaysChangesDuringBackfill(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		f := newReindexFixture(t, tg, 30)
		var once sync.Once
		f.tr.before = func(r *http.Request, body string) error {
			if f.phase() == elastic.PhaseBackfill && strings.HasSuffix(r.URL.Path, "/_bulk") && strings.Contains(body, `"_id":"1"`) {
				once.Do(func() {
					must(t, f.db.Model(&Product{ID: 1}).Update("title", "after the page was read").Error)
					must(t, f.db.Create(&Product{Title: "new", Price: 99}).Error)
					must(t, f.db.Unscoped().Delete(&Product{ID: 30}).Error)
				})
			}
			return nil
		}
		res, err := f.reindexer(t, elastic.ReindexOptions{}).Run(context.Background())
		must(t, err)
		if res.Replayed < 3 {
			t.Errorf("replayed %d messages, want at least 3", res.Replayed)
		}
		f.checkNew(t, res.Index)
	})
}

// TestReindexSwapGap: a change the live consumer writes to the old index
// just before the swap (read from the stream before the replay's last
// pass ended... and after it) is in the new index after the swap: the
// reindex replays up to the stream's end at the swap.
func TestReindexSwapGap(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		f := newReindexFixture(t, tg, 20)
		ctx := context.Background()
		var once sync.Once
		f.tr.before = func(r *http.Request, body string) error {
			if isSwap(r) {
				once.Do(func() {
					// The live consumer's work, as it would do it: the change
					// is queued and written through the alias, to the old index.
					p := Product{Title: "just before the swap", Price: 7}
					must(t, f.db.Create(&p).Error)
					must(t, f.db.Model(&Product{ID: 3}).Update("title", "updated just before the swap").Error)
					b := &redstream.Batch{Stream: "products", Consumer: "indexer", Attempt: 1, Messages: []redstream.Message{
						{ID: redstream.ID{MS: 1}, Stream: "products", Payload: json.RawMessage(fmt.Sprintf(`{"id":%d}`, p.ID))},
						{ID: redstream.ID{MS: 2}, Stream: "products", Payload: json.RawMessage(`{"id":3}`)},
					}}
					must(t, f.live.HandleBatch(ctx, b))
				})
			}
			return nil
		}
		res, err := f.reindexer(t, elastic.ReindexOptions{}).Run(ctx)
		must(t, err)
		f.checkNew(t, res.Index)
	})
}

// TestReindexLiveConsumerWritesLast: after the swap the reindex replays
// the changes the live consumer may have written to the old index just
// before it, while the consumer writes the new index too. Here a row
// changes just before the swap, and changes once more after the reindex
// read it for that replay, the running consumer writing that last change
// to the new index before the replay's write lands: the new index must
// still end with the row's last state, with no version column (the
// replay's older state lands last) and with one after a soft delete, which
// leaves the version unchanged (external_gte takes the replay's equal
// version and brings the document back). The replay republishes what it
// wrote after the swap, and the consumer writes those rows last
// (TestReindexReplayRacesLiveConsumer plays the consumer's part by hand).
func TestReindexLiveConsumerWritesLast(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		for _, tc := range []struct {
			name, version string
			last          func(db *gorm.DB) error
		}{
			{"no version, an update", "", func(db *gorm.DB) error {
				return db.Model(&Product{ID: 5}).Update("title", "the last state").Error
			}},
			{"version, a soft delete", "updated_at", func(db *gorm.DB) error {
				return db.Delete(&Product{ID: 5}).Error
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f := newVersionedReindexFixture(t, tg, 10, tc.version)
				f.consumer = f.run(t, "products", f.live)
				ctx := context.Background()
				var before, finishing sync.Once
				var raced atomic.Bool
				f.tr.before = func(r *http.Request, body string) error {
					if isSwap(r) {
						before.Do(func() {
							must(t, f.db.Model(&Product{ID: 5}).Update("title", "just before the swap").Error)
						})
					}
					if f.phase() == elastic.PhaseSwapped && isBulkTo(r, body, f.phaseIndex()) && strings.Contains(body, `"_id":"5"`) {
						// The replay has read row 5 after the swap.
						finishing.Do(func() {
							raced.Store(true)
							must(t, tc.last(f.db))
							f.caughtUp(t)
						})
					}
					return nil
				}
				res, err := f.reindexer(t, elastic.ReindexOptions{}).Run(ctx)
				must(t, err)
				f.tr.before = nil
				if !raced.Load() {
					t.Fatal("the replay after the swap never wrote row 5")
				}
				f.checkNew(t, res.Index)
			})
		}
	})
}

// TestReindexReplayKeepsUp: writes that add more changes while the replay
// writes each batch than a page holds (20 new rows with each replayed
// bulk, pages of 25) still let the replay catch up and the reindex end: a
// batch replays the changes waiting up to ReplayBatch, not a page of them,
// so a pass finds fewer changes than the last.
func TestReindexReplayKeepsUp(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		f := newReindexFixture(t, tg, 40)
		var once sync.Once
		var created atomic.Int32
		f.tr.before = func(r *http.Request, body string) error {
			if !isBulkTo(r, body, f.phaseIndex()) {
				return nil
			}
			switch f.phase() {
			case elastic.PhaseBackfill: // a backlog of 100 changes for the replay
				once.Do(func() {
					for i := range 100 {
						must(t, f.db.Model(&Product{ID: int64(i%40 + 1)}).Update("title", fmt.Sprint("during the backfill ", i)).Error)
					}
				})
			case elastic.PhaseReplay:
				for range 20 {
					must(t, f.db.Create(&Product{Title: "during the replay", Price: 1}).Error)
					created.Add(1)
				}
			}
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := f.reindexer(t, elastic.ReindexOptions{PageSize: 25}).Run(ctx)
		if err != nil {
			t.Fatalf("Run = %v; %d rows created by the replay's writes", err, created.Load())
		}
		f.tr.before = nil
		f.checkNew(t, res.Index)
	})
}

// byteMapping is newMapping with price a byte: a price above 127 does not
// fit, and either engine refuses that document.
const byteMapping = `{"settings":{"number_of_shards":1},"mappings":{"properties":{"id":{"type":"long"},"title":{"type":"text","fields":{"raw":{"type":"keyword"}}},"price":{"type":"byte"}}}}`

// TestReindexRefusesUnverified: a document the new index rejects (the new
// mapping refuses its price) makes the verification find it missing, with
// no change to explain it: the alias is not swapped, the reindex stays to
// be run again; Force swaps anyway; the alias is never left without its
// index.
func TestReindexRefusesUnverified(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		f := newReindexFixture(t, tg, 20)
		ctx := context.Background()
		// Written behind the plugin's back: no change in the stream explains it.
		_, err := f.sqlDB.ExecContext(ctx, "UPDATE products SET price = 1000 WHERE id = 15")
		must(t, err)
		res, err := f.reindexer(t, elastic.ReindexOptions{Body: []byte(byteMapping)}).Run(ctx)
		if !errors.Is(err, elastic.ErrVerifyFailed) {
			t.Fatalf("Run = %v, want ErrVerifyFailed", err)
		}
		if !slices.Equal(res.Unexplained, []string{"15"}) || res.Verify.Missing.Count != 1 {
			t.Errorf("result %+v", res)
		}
		if got := aliasTargets(t, f.es, f.alias); !slices.Equal(got, []string{f.old}) {
			t.Fatalf("alias points at %v after a refused swap, want [%s]", got, f.old)
		}
		if f.phase() != elastic.PhaseVerify {
			t.Fatalf("phase %q after a refused swap", f.phase())
		}
		// Forced, the swap happens; the document stays missing (it is rejected).
		res, err = f.reindexer(t, elastic.ReindexOptions{Body: []byte(byteMapping), Force: true}).Run(ctx)
		must(t, err)
		if !res.Resumed || !slices.Equal(res.Unexplained, []string{"15"}) {
			t.Errorf("forced result %+v", res)
		}
		if got := aliasTargets(t, f.es, f.alias); !slices.Equal(got, []string{res.Index}) {
			t.Fatalf("alias points at %v, want [%s]", got, res.Index)
		}
	})
}

// TestReindexSwapRefusedWhenAliasMoved: the swap removes the alias from
// the old index with must_exist, so when someone else moved the alias
// meanwhile the swap fails as a whole, with each engine's own answer
// (Elasticsearch 8: 404 resource_not_found_exception; OpenSearch 2.12 and
// later: 404 aliases_not_found_exception), and the alias stays where they
// put it. Abort then gives the reindex up.
func TestReindexSwapRefusedWhenAliasMoved(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		f := newReindexFixture(t, tg, 10)
		ctx := context.Background()
		other := f.alias + "-other"
		must(t, elastic.CreateAliasedIndex(ctx, f.es, other, nil, ""))
		var once sync.Once
		f.tr.before = func(r *http.Request, body string) error {
			if isSwap(r) {
				once.Do(func() {
					move := fmt.Sprintf(`{"actions":[{"remove":{"index":%q,"alias":%q}},{"add":{"index":%q,"alias":%q}}]}`, f.old, f.alias, other, f.alias)
					if code, b := call(t, f.es, esapi.IndicesUpdateAliasesRequest{Body: strings.NewReader(move)}); code != http.StatusOK {
						t.Errorf("move the alias: %d %s", code, b)
					}
				})
			}
			return nil
		}
		_, err := f.reindexer(t, elastic.ReindexOptions{}).Run(ctx)
		want := map[elastic.Engine]string{
			elastic.Elasticsearch: `404 Not Found {"error":{"root_cause":[{"type":"resource_not_found_exception","reason":"required alias [` + f.alias + `] does not exist"`,
			elastic.OpenSearch:    `404 Not Found {"error":{"root_cause":[{"type":"aliases_not_found_exception","reason":"aliases [` + f.alias + `] missing"`,
		}[tg.engine]
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Run = %v, want an error with %s", err, want)
		}
		if got := aliasTargets(t, f.es, f.alias); !slices.Equal(got, []string{other}) {
			t.Fatalf("alias points at %v after a refused swap, want [%s]", got, other)
		}
		if f.phase() != elastic.PhaseSwap {
			t.Fatalf("phase %q after a refused swap", f.phase())
		}
		index, err := f.reindexer(t, elastic.ReindexOptions{}).Abort(ctx)
		must(t, err)
		if index == "" || indexExists(t, f.es, index) {
			t.Errorf("Abort: new index %q left", index)
		}
	})
}

// TestReindexAbort gives up a reindex before its swap: the new index, the
// state and the holds go; the alias still points at the old index.
func TestReindexAbort(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		f := newReindexFixture(t, tg, 20)
		ctx, cancel := context.WithCancel(context.Background())
		var index string
		ri := f.reindexer(t, elastic.ReindexOptions{Progress: func(st elastic.ReindexStatus) { index = st.Index; cancel() }})
		if _, err := ri.Run(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
		if f.phase() != elastic.PhaseBackfill || !f.rdb.HExists(context.Background(), f.keys.Hold("products"), elastic.ReindexHolder).Val() {
			t.Fatal("no state or hold left by an interrupted reindex")
		}
		got, err := ri.Abort(context.Background())
		must(t, err)
		if got != index {
			t.Errorf("Abort deleted %q, want %q", got, index)
		}
		if indexExists(t, f.es, index) {
			t.Errorf("new index %s left", index)
		}
		if n := f.rdb.Exists(context.Background(), f.keys.Reindex("products"), f.keys.Hold("products"), f.keys.Backfill("products", index)).Val(); n != 0 {
			t.Errorf("%d keys left", n)
		}
		if got := aliasTargets(t, f.es, f.alias); !slices.Equal(got, []string{f.old}) {
			t.Fatalf("alias points at %v, want [%s]", got, f.old)
		}
	})
}

// TestReindexLock refuses a second reindex of the stream while one runs.
func TestReindexLock(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		f := newReindexFixture(t, tg, 20)
		ctx := context.Background()
		inside, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		first := f.reindexer(t, elastic.ReindexOptions{Progress: func(elastic.ReindexStatus) {
			once.Do(func() { close(inside); <-release })
		}})
		done := make(chan error, 1)
		go func() { _, err := first.Run(ctx); done <- err }()
		<-inside
		_, err := f.reindexer(t, elastic.ReindexOptions{}).Run(ctx)
		if !errors.Is(err, elastic.ErrReindexRunning) || !strings.Contains(err.Error(), redstream.DefaultHolder()) {
			t.Errorf("second Run = %v, want ErrReindexRunning naming the holder", err)
		}
		if _, err := f.reindexer(t, elastic.ReindexOptions{}).Abort(ctx); !errors.Is(err, elastic.ErrReindexRunning) {
			t.Errorf("Abort while running = %v, want ErrReindexRunning", err)
		}
		st, err := elastic.ReadReindexStatus(ctx, f.rdb, f.keys, "products", []string{"products"})
		must(t, err)
		if st == nil || st.Phase != elastic.PhaseBackfill || st.Holder != redstream.DefaultHolder() || st.Rows == 0 {
			t.Errorf("status while running: %+v", st)
		}
		close(release)
		must(t, <-done)
		if st, err := elastic.ReadReindexStatus(ctx, f.rdb, f.keys, "products", []string{"products"}); err != nil || st != nil {
			t.Errorf("status after the reindex: %+v, %v", st, err)
		}
	})
}

// TestReindexInterrupted interrupts a reindex at each step (during the
// backfill, during the replay, just before and just after the swap) and
// runs it again: it resumes and completes, and the alias points at one
// complete index at every moment.
func TestReindexInterrupted(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		for _, tc := range []struct {
			name  string
			at    func(f *reindexFixture, r *http.Request, body string, before bool) bool
			phase string
		}{
			{"backfill", func(f *reindexFixture, r *http.Request, body string, before bool) bool {
				return before && f.phase() == elastic.PhaseBackfill && isBulkTo(r, body, f.phaseIndex()) && strings.Contains(body, `"_id":"15"`)
			}, elastic.PhaseBackfill},
			{"replay", func(f *reindexFixture, r *http.Request, body string, before bool) bool {
				return before && f.phase() == elastic.PhaseReplay && isBulkTo(r, body, f.phaseIndex())
			}, elastic.PhaseReplay},
			{"before swap", func(f *reindexFixture, r *http.Request, body string, before bool) bool {
				return before && isSwap(r)
			}, elastic.PhaseSwap},
			{"after swap", func(f *reindexFixture, r *http.Request, body string, before bool) bool {
				return !before && isSwap(r)
			}, elastic.PhaseSwap},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				f := newReindexFixture(t, tg, 40)
				ctx, cancel := context.WithCancel(context.Background())
				var fired atomic.Bool
				var changes atomic.Int32
				interrupt := func(before bool) func(r *http.Request, body string) error {
					return func(r *http.Request, body string) error {
						// Changes go on during the reindex.
						if changes.Add(1)%3 == 0 {
							must(t, f.db.Create(&Product{Title: "during", Price: 1}).Error)
						}
						if !fired.Load() && tc.at(f, r, body, before) {
							fired.Store(true)
							cancel()
							return context.Canceled
						}
						return nil
					}
				}
				f.tr.before, f.tr.after = interrupt(true), interrupt(false)
				// Rows changed before the replay: the replay has work.
				must(t, f.db.Model(&Product{ID: 2}).Update("title", "changed").Error)
				_, err := f.reindexer(t, elastic.ReindexOptions{PageSize: 5}).Run(ctx)
				if err == nil || !fired.Load() {
					t.Fatalf("Run = %v; interrupted %v", err, fired.Load())
				}
				if got := f.phase(); got != tc.phase {
					t.Fatalf("interrupted in phase %q, want %q", got, tc.phase)
				}
				targets := aliasTargets(t, f.es, f.alias)
				if len(targets) != 1 {
					t.Fatalf("alias points at %v after the interruption", targets)
				}
				f.tr.before, f.tr.after = nil, nil
				// A second run waits for nothing: the first released its lock.
				res, err := f.reindexer(t, elastic.ReindexOptions{}).Run(context.Background())
				must(t, err)
				if !res.Resumed {
					t.Error("the second run did not resume")
				}
				f.checkNew(t, res.Index)
				if indexExists(t, f.es, f.old) {
					t.Errorf("old index %s left", f.old)
				}
			})
		}
	})
}

// phaseIndex returns the new index of the reindex in progress.
func (f *reindexFixture) phaseIndex() string {
	return f.rdb.HGet(context.Background(), f.keys.Reindex("products"), "index").Val()
}

// TestReindexReplayGap: entries the replay still needed, removed by a
// trimmer that does not honour holds, stop the reindex with ErrReplayGap
// before the swap.
func TestReindexReplayGap(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		f := newReindexFixture(t, tg, 20)
		ctx := context.Background()
		var once sync.Once
		ri := f.reindexer(t, elastic.ReindexOptions{Progress: func(elastic.ReindexStatus) {
			once.Do(func() {
				for i := range 3 {
					must(t, f.db.Model(&Product{ID: int64(i + 1)}).Update("title", "changed").Error)
				}
				// A trimmer of old: up to the second change, hold or not.
				ids := f.rdb.XRange(ctx, f.keys.Stream("products"), "-", "+").Val()
				must(t, f.rdb.XTrimMinID(ctx, f.keys.Stream("products"), ids[len(ids)-1].ID).Err())
			})
		}})
		_, err := ri.Run(ctx)
		if !errors.Is(err, elastic.ErrReplayGap) {
			t.Fatalf("Run = %v, want ErrReplayGap", err)
		}
		if got := aliasTargets(t, f.es, f.alias); !slices.Equal(got, []string{f.old}) {
			t.Fatalf("alias points at %v, want [%s]", got, f.old)
		}
	})
}

// TestReindexMigrate: a concrete index named like the alias is refused
// without Migrate; with it, the swap deletes the index and creates the
// alias of its name in one request.
func TestReindexMigrate(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg, &Product{})
		ctx := context.Background()
		sqlDB := sqlDB(t, s.db)
		t.Cleanup(func() { deleteIndexes(s.es, s.index+"-*") })
		loader, err := elastic.NewTableLoader(ctx, sqlDB, elastic.TableOptions{Table: "products", SoftDeleteColumn: "deleted_at"})
		must(t, err)
		live, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index})
		must(t, err)
		for i := range 15 {
			must(t, s.db.Create(&Product{Title: fmt.Sprint("p", i), Price: i}).Error)
		}
		// Written through the name: the engine creates a concrete index.
		_, err = elastic.Backfill(ctx, sqlDB, live, elastic.BackfillOptions{Table: "products"})
		must(t, err)
		opts := elastic.ReindexOptions{Name: "products", Alias: s.index, Table: "products", Namespace: s.ns, Body: []byte(newMapping), PageSize: 4}
		ri, err := elastic.NewReindexer(s.rdb, sqlDB, s.es, loader, opts)
		must(t, err)
		if _, err := ri.Run(ctx); !errors.Is(err, elastic.ErrNotAlias) {
			t.Fatalf("Run on a concrete index = %v, want ErrNotAlias", err)
		}
		if n := s.rdb.Exists(ctx, s.keys.Reindex("products"), s.keys.Hold("products")).Val(); n != 0 {
			t.Errorf("a refused reindex left %d keys", n)
		}
		opts.Migrate = true
		ri, err = elastic.NewReindexer(s.rdb, sqlDB, s.es, loader, opts)
		must(t, err)
		res, err := ri.Run(ctx)
		must(t, err)
		if res.Old != s.index || !res.OldDeleted {
			t.Errorf("result %+v", res)
		}
		if got := aliasTargets(t, s.es, s.index); !slices.Equal(got, []string{res.Index}) {
			t.Fatalf("alias points at %v, want [%s]", got, res.Index)
		}
		refreshIndex(t, s.es, s.index)
		checkDocs(t, s, s.index)
	})
}

// deleteIndexes deletes the indexes matching pattern by name: a real
// cluster refuses wildcards in deletes (action.destructive_requires_name).
func deleteIndexes(es esapi.Transport, pattern string) {
	ctx := context.Background()
	res, err := esapi.IndicesGetRequest{Index: []string{pattern}}.Do(ctx, es)
	if err != nil {
		return
	}
	var body map[string]json.RawMessage
	err = json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if err != nil || len(body) == 0 {
		return
	}
	names := make([]string, 0, len(body))
	for n := range body {
		names = append(names, n)
	}
	if res, err := (esapi.IndicesDeleteRequest{Index: names}).Do(ctx, es); err == nil {
		res.Body.Close()
	}
}
