package elastic_test

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"gorm.io/gorm"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/internal/testenv"
)

// Item has a column of every type a MySQL document maps: dates in three
// precisions and a TIMESTAMP, DECIMAL, booleans and tiny integers, JSON,
// binary, unsigned, floats and NULLs; a DATETIME(6) version column and
// GORM's soft delete.
type Item struct {
	ID        int64     `gorm:"primaryKey"`
	Title     string    `gorm:"size:200"`
	Amount    string    `gorm:"type:decimal(30,10)"`
	Active    bool      // tinyint(1): a boolean
	Maybe     *bool     // NULL or a boolean
	Level     int8      // tinyint(4): a number
	Big       uint64    `gorm:"type:bigint unsigned"`
	Ratio     float64   // double
	Attrs     []byte    `gorm:"type:json"`
	Data      []byte    `gorm:"type:blob"`
	Note      *string   `gorm:"size:50"`
	Day       time.Time `gorm:"type:date"`
	Seconds   time.Time `gorm:"type:datetime"`
	Stamp     time.Time `gorm:"type:timestamp(6)"`
	UpdatedAt time.Time `gorm:"type:datetime(6)"`
	DeletedAt gorm.DeletedAt
}

// newMySQLSetup is newSetup on MariaDB: GORM with the plugin on a fresh
// database, a Redis namespace and an index.
func newMySQLSetup(t *testing.T, models ...any) (*setup, string) {
	t.Helper()
	rdb, ns := testenv.Redis(t)
	db := testenv.MySQLGORM(t, nil)
	p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns})
	must(t, db.Use(redstream.NewPlugin(p)))
	must(t, db.AutoMigrate(models...))
	es, srv := target(t)
	index := "t-" + strings.ToLower(ns)
	t.Cleanup(func() {
		if res, err := es.Indices.Delete([]string{index}); err == nil {
			res.Body.Close()
		}
	})
	var name string
	must(t, db.Raw("SELECT DATABASE()").Scan(&name).Error)
	dsn := strings.Replace(mysqlDSN(t), "/redstream_test?", "/"+name+"?", 1)
	return &setup{db: db, rdb: rdb, ns: ns, keys: p.Keys(), es: es, srv: srv, index: index}, dsn
}

// mysqlDSN returns a DSN for the server of MYSQL_URL with database
// redstream_test, whose session time zone is five hours east of UTC: the
// documents must not depend on it.
func mysqlDSN(t *testing.T) string {
	t.Helper()
	dsn := testenv.MySQLDatabase(t) // a throw-away database, for the server's DSN
	i := strings.LastIndex(dsn, "/")
	return dsn[:i] + "/redstream_test?time_zone=%27%2B05%3A00%27"
}

func randomItem(r *rand.Rand, id int64) Item {
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func() time.Time { return base.Add(time.Duration(r.Int64N(int64(5 * 365 * 24 * time.Hour)))) }
	it := Item{
		ID:      id,
		Title:   fmt.Sprintf("item %d \"quoted\" ü ✓ \\ %d", id, r.IntN(1000)),
		Amount:  fmt.Sprintf("%d.%010d", r.Int64N(1e18), r.Int64N(1e10)),
		Active:  r.IntN(2) == 0,
		Level:   int8(r.IntN(200) - 100),
		Big:     1<<62 + r.Uint64N(1<<40), // past 2^53: exact digits or float loss shows (an index maps it as long)
		Ratio:   r.Float64() * 1e6,
		Attrs:   fmt.Appendf(nil, `{"n":%d,"tags":["a","b"],"nested":{"ok":true,"nil":null}}`, r.IntN(100)),
		Data:    []byte{0, 255, byte(id), '\n', 10},
		Day:     at().Truncate(24 * time.Hour),
		Seconds: at(),
		Stamp:   at(),
	}
	if r.IntN(2) == 0 {
		b := r.IntN(2) == 0
		it.Maybe = &b
		n := fmt.Sprint("note ", id)
		it.Note = &n
	}
	return it
}

// TestMySQLEndToEnd: a mixed write load through the plugin on MariaDB,
// synced by a consumer into the index; then verify finds nothing
// missing, extra or stale, and every document equals its row, field by
// field, each column of the JSON type its SQL type calls for, whatever
// the loader's session time zone.
func TestMySQLEndToEnd(t *testing.T) {
	t.Parallel()
	s, dsn := newMySQLSetup(t, &Item{})
	ctx := context.Background()
	loaderDB := testenv.MySQLSQL(t, dsn)
	loader, err := elastic.NewTableLoader(ctx, loaderDB, elastic.TableOptions{
		Table: "items", SoftDeleteColumn: "deleted_at", VersionColumn: "updated_at",
	})
	must(t, err)
	h, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index})
	must(t, err)
	c, err := redstream.NewConsumer(s.rdb, "items", "indexer", h, &redstream.ConsumerOptions{
		Namespace: s.ns, Block: 100 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	must(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	r := rand.New(rand.NewPCG(1, 2))
	const n = 60
	for id := int64(1); id <= n; id++ {
		it := randomItem(r, id)
		must(t, s.db.Create(&it).Error)
	}
	for range 3 * n {
		id := 1 + r.Int64N(n)
		switch op := r.IntN(10); {
		case op < 5:
			it := randomItem(r, id)
			it.UpdatedAt = time.Time{}
			must(t, s.db.Unscoped().Model(&Item{ID: id}).Select("*").Omit("id", "deleted_at").Updates(&it).Error)
		case op < 7:
			must(t, s.db.Model(&Item{ID: id}).Update("title", fmt.Sprint("renamed ", r.IntN(1e6))).Error)
		case op < 8:
			must(t, s.db.Delete(&Item{ID: id}).Error) // soft
		case op < 9:
			must(t, s.db.Unscoped().Delete(&Item{ID: id}).Error) // hard
		default:
			_ = s.db.Transaction(func(tx *gorm.DB) error {
				must(t, tx.Model(&Item{ID: id}).Update("title", "rolled back").Error)
				return errors.New("rollback")
			})
		}
	}
	// The marker is the last write: once indexed, every write before it
	// has been handled.
	marker := randomItem(r, n+1)
	must(t, s.db.Create(&marker).Error)
	eventually(t, "the marker", func() bool { _, _, found := doc(t, s.es, s.index, fmt.Sprint(n+1)); return found })
	if err := refresh(s); err != nil {
		t.Fatal(err)
	}

	rep, err := elastic.Verify(ctx, loaderDB, s.es, loader, elastic.VerifyOptions{Table: "items", Index: s.index, PageSize: 7})
	must(t, err)
	if !rep.InSync() || !rep.Versioned {
		t.Fatalf("verify: %+v, want in sync (0 missing, 0 extra, 0 stale) and versioned", rep)
	}

	var rows []Item
	must(t, s.db.Order("id").Find(&rows).Error)
	if len(rows) < n/2 || rep.Rows < int64(len(rows)) || rep.Documents != int64(len(rows)) {
		t.Fatalf("%d live rows, report %+v", len(rows), rep)
	}
	for _, row := range rows {
		checkItemDocument(t, s, row)
	}
	if st := h.Stats(); st.DeadLettered != 0 {
		t.Errorf("dead-lettered %d documents", st.DeadLettered)
	}
}

// checkItemDocument compares the document of row with the row, field by
// field.
func checkItemDocument(t *testing.T, s *setup, row Item) {
	t.Helper()
	id := fmt.Sprint(row.ID)
	res, err := s.es.Get(s.index, id)
	must(t, err)
	defer res.Body.Close()
	var got struct {
		Version int64                      `json:"_version"`
		Source  map[string]json.RawMessage `json:"_source"`
	}
	must(t, json.NewDecoder(res.Body).Decode(&got))
	dt := func(tm time.Time, layout string) string { return `"` + tm.UTC().Format(layout) + `"` }
	const micro, whole = "2006-01-02T15:04:05.000000Z", "2006-01-02T15:04:05Z"
	str := func(v string) string { b, _ := json.Marshal(v); return string(b) }
	want := map[string]string{
		"id":         id,
		"title":      str(row.Title),
		"amount":     row.Amount, // the column's digits, a JSON number
		"active":     fmt.Sprint(row.Active),
		"maybe":      "null",
		"level":      fmt.Sprint(row.Level),
		"big":        fmt.Sprint(row.Big),
		"ratio":      "", // compared as a float below
		"attrs":      "", // compared as JSON below
		"data":       str(base64.StdEncoding.EncodeToString(row.Data)),
		"note":       "null",
		"day":        str(row.Day.Format("2006-01-02")),
		"seconds":    dt(row.Seconds, whole),
		"stamp":      dt(row.Stamp, micro),
		"updated_at": dt(row.UpdatedAt, micro),
		"deleted_at": "null",
	}
	if row.Maybe != nil {
		want["maybe"] = fmt.Sprint(*row.Maybe)
	}
	if row.Note != nil {
		want["note"] = str(*row.Note)
	}
	if len(got.Source) != len(want) {
		t.Errorf("document %s has fields %v, want %d", id, keys(got.Source), len(want))
	}
	for field, w := range want {
		g, ok := got.Source[field]
		switch {
		case !ok:
			t.Errorf("document %s: no field %s", id, field)
		case field == "ratio":
			var f float64
			if err := json.Unmarshal(g, &f); err != nil || f != row.Ratio {
				t.Errorf("document %s: ratio = %s, want %v", id, g, row.Ratio)
			}
		case field == "attrs":
			var a, b any
			if json.Unmarshal(g, &a) != nil || json.Unmarshal(row.Attrs, &b) != nil || fmt.Sprint(a) != fmt.Sprint(b) || g[0] != '{' {
				t.Errorf("document %s: attrs = %s, want the object %s", id, g, row.Attrs)
			}
		case !bytes.Equal(g, []byte(w)):
			t.Errorf("document %s: %s = %s, want %s", id, field, g, w)
		}
	}
	if v := row.UpdatedAt.UnixMicro(); got.Version != v {
		t.Errorf("document %s: _version %d, want updated_at in microseconds %d", id, got.Version, v)
	}
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func refresh(s *setup) error {
	res, err := s.es.Indices.Refresh(s.es.Indices.Refresh.WithIndex(s.index))
	if err != nil {
		return err
	}
	res.Body.Close()
	return nil
}

// Sku has a string key, MySQL's case-insensitive collation, and an
// integer version column.
type Sku struct {
	Code    string `gorm:"primaryKey;size:40"`
	Label   string
	Version int64
}

// TestMySQLBackfillVerify: keyset pages over a string key and over an
// integer one with a range, then verify with missing, extra and stale
// documents repaired, on MariaDB.
func TestMySQLBackfillVerify(t *testing.T) {
	t.Parallel()
	s, _ := newMySQLSetup(t, &Sku{}, &Item{})
	ctx := context.Background()
	db, err := s.db.DB()
	must(t, err)
	for i, code := range []string{"b", `a"1`, "C", "<x>", "d`2"} {
		must(t, redstream.SkipCapture(s.db).Create(&Sku{Code: code, Label: "l" + code, Version: int64(i + 1)}).Error)
	}
	r := &recorder{}
	res, err := elastic.Backfill(ctx, db, r, elastic.BackfillOptions{Table: "skus", PrimaryKey: "code", PageSize: 2})
	must(t, err)
	// utf8mb4_general_ci: < before a, C between b and d.
	want := []string{`{"id":"\u003cx\u003e"} {"id":"a\"1"}`, `{"id":"b"} {"id":"C"}`, "{\"id\":\"d`2\"}"}
	if got := r.pages(); !slices.Equal(got, want) || res.Rows != 5 {
		t.Errorf("pages = %q (%d rows), want %q", got, res.Rows, want)
	}

	// Integer keys past 2^53 compare as integers, not as floats.
	big := int64(1) << 60
	for _, id := range []int64{big, big + 1, big + 2, 5} {
		must(t, redstream.SkipCapture(s.db).Create(&Item{ID: id, Title: fmt.Sprint(id), Amount: "1"}).Error)
	}
	r = &recorder{}
	_, err = elastic.Backfill(ctx, db, r, elastic.BackfillOptions{Table: "items", From: fmt.Sprint(big), To: fmt.Sprint(big + 1)})
	must(t, err)
	if got, want := r.pages(), []string{fmt.Sprintf(`{"id":"%d"}`, big+1)}; !slices.Equal(got, want) {
		t.Errorf("range pages = %q, want %q", got, want)
	}

	loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "skus", PrimaryKey: "code", VersionColumn: "version"})
	must(t, err)
	h, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index, Refresh: "true"})
	must(t, err)
	_, err = elastic.Backfill(ctx, db, h, elastic.BackfillOptions{Table: "skus", PrimaryKey: "code", PageSize: 2})
	must(t, err)
	opts := elastic.VerifyOptions{Table: "skus", PrimaryKey: "code", Index: s.index, PageSize: 2}
	rep, err := elastic.Verify(ctx, db, s.es, loader, opts)
	must(t, err)
	if !rep.InSync() || rep.Rows != 5 || rep.Documents != 5 {
		t.Fatalf("in sync: %+v", rep)
	}
	src, v, _ := doc(t, s.es, s.index, `a"1`)
	if src["label"] != `la"1` || v != 2 {
		t.Errorf(`document a"1 = %v version %d, want label la"1, version 2`, src, v)
	}

	must(t, redstream.SkipCapture(s.db).Create(&Sku{Code: "e", Version: 1}).Error)                          // missing
	must(t, redstream.SkipCapture(s.db).Model(&Sku{Code: "b"}).Updates(map[string]any{"version": 9}).Error) // stale
	must(t, redstream.SkipCapture(s.db).Delete(&Sku{Code: "C"}).Error)                                      // extra
	rep, err = elastic.Verify(ctx, db, s.es, loader, opts)
	must(t, err)
	if !sampleIs(rep.Missing, 1, "e") || !sampleIs(rep.Stale, 1, "b") || !sampleIs(rep.Extra, 1, "C") {
		t.Fatalf("differences: %+v", rep)
	}
	opts.Repair = elastic.Reindex(h, "skus")
	_, err = elastic.Verify(ctx, db, s.es, loader, opts)
	must(t, err)
	opts.Repair = nil
	if rep, err = elastic.Verify(ctx, db, s.es, loader, opts); err != nil || !rep.InSync() {
		t.Fatalf("after the repair: %+v, %v", rep, err)
	}
}

// TestMySQLCustomQuery: a document.query receives the ids as a JSON
// array in its one placeholder; JSON_TABLE turns them into rows.
func TestMySQLCustomQuery(t *testing.T) {
	t.Parallel()
	s, _ := newMySQLSetup(t, &Sku{})
	ctx := context.Background()
	db, err := s.db.DB()
	must(t, err)
	for _, code := range []string{"a", "b", "c"} {
		must(t, s.db.Create(&Sku{Code: code, Label: "l" + code, Version: 3}).Error)
	}
	loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Query: `
		SELECT s.code AS id, JSON_OBJECT('label', UPPER(s.label), 'n', s.version) AS doc, s.version AS version,
			s.code = 'c' AS deleted
		FROM skus s
		WHERE s.code IN (SELECT k FROM JSON_TABLE(?, '$[*]' COLUMNS (k VARCHAR(40) PATH '$')) AS ids)`})
	must(t, err)
	docs, err := loader.Load(ctx, []string{"a", "c", "zz", `x"y`})
	must(t, err)
	slices.SortFunc(docs, func(a, b elastic.Document) int { return strings.Compare(a.ID, b.ID) })
	if len(docs) != 2 || docs[0].ID != "a" || string(docs[0].Source) != `{"label":"LA","n":3}` ||
		docs[0].Version != 3 || !docs[0].HasVersion || docs[0].Deleted || !docs[1].Deleted {
		t.Fatalf("docs = %+v", docs)
	}
}

// TestMySQLLoaderErrors: a missing table or column, and a version column
// of another type, are refused with the name; CheckID knows MySQL's
// integer types.
func TestMySQLLoaderErrors(t *testing.T) {
	t.Parallel()
	db := testenv.MySQLSQL(t, testenv.MySQLDatabase(t))
	ctx := context.Background()
	_, err := db.ExecContext(ctx, "CREATE TABLE u (id INT UNSIGNED PRIMARY KEY, t TINYINT, label TEXT)")
	must(t, err)
	for _, c := range []struct {
		opts elastic.TableOptions
		want string
	}{
		{elastic.TableOptions{Table: "nope"}, "nope"},
		{elastic.TableOptions{Table: "u", PrimaryKey: "code"}, `"code"`},
		{elastic.TableOptions{Table: "u", Columns: []string{"label", "x"}}, `"x"`},
		{elastic.TableOptions{Table: "u", VersionColumn: "label"}, "label"},
	} {
		if _, err := elastic.NewTableLoader(ctx, db, c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewTableLoader(%+v) = %v, want an error naming %s", c.opts, err, c.want)
		}
	}
	l, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "u"})
	must(t, err)
	for _, id := range []string{"0", "7", "4294967295"} {
		if err := l.CheckID(id); err != nil {
			t.Errorf("CheckID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"-1", "4294967296", "07", "+7", "7.0", "x"} {
		if err := l.CheckID(id); err == nil {
			t.Errorf("CheckID(%q) = nil, want an error", id)
		}
	}
}

// wrappedDriver stands for a driver wrapper (tracing, metrics): its type
// is not go-sql-driver/mysql's (nor its connector's, as it has no
// OpenConnector), so the database is told by its version.
type wrappedDriver struct{}

func (wrappedDriver) Open(dsn string) (driver.Conn, error) { return mysql.MySQLDriver{}.Open(dsn) }

func init() { sql.Register("wrapped-mysql", wrappedDriver{}) }

// TestMySQLWrappedDriver: through a driver the loader does not know, the
// server's version string tells MySQL from PostgreSQL.
func TestMySQLWrappedDriver(t *testing.T) {
	t.Parallel()
	dsn := testenv.MySQLDatabase(t)
	db, err := sql.Open("wrapped-mysql", dsn)
	must(t, err)
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	_, err = db.ExecContext(ctx, "CREATE TABLE w (id BIGINT PRIMARY KEY, ok TINYINT(1))")
	must(t, err)
	_, err = db.ExecContext(ctx, "INSERT INTO w VALUES (1, 1), (2, 0)")
	must(t, err)
	l, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "w"})
	must(t, err)
	docs, err := l.Load(ctx, []string{"2", "1", "3"})
	must(t, err)
	slices.SortFunc(docs, func(a, b elastic.Document) int { return strings.Compare(a.ID, b.ID) })
	if len(docs) != 2 || string(docs[0].Source) != `{"id":1,"ok":true}` || string(docs[1].Source) != `{"id":2,"ok":false}` {
		t.Fatalf("docs = %+v", docs)
	}
}
