package elastic_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/elastic/estest"
	"github.com/redstream-go/redstream/internal/testenv"
)

// target returns a client for the cluster at ELASTICSEARCH_URL when set,
// else for a fresh test server (also returned, for fault injection).
func target(t *testing.T) (*elasticsearch.Client, *estest.Server) {
	t.Helper()
	if url := os.Getenv("ELASTICSEARCH_URL"); url != "" {
		es, err := elasticsearch.NewClient(elasticsearch.Config{
			Addresses: []string{url},
			Username:  os.Getenv("ELASTICSEARCH_USERNAME"),
			Password:  os.Getenv("ELASTICSEARCH_PASSWORD"),
			APIKey:    os.Getenv("ELASTICSEARCH_API_KEY"),
		})
		if err != nil {
			t.Fatal(err)
		}
		return es, nil
	}
	srv := estest.New(t)
	return srv.Client(t), srv
}

// needServer skips a test that injects faults when it runs against a real
// cluster, which cannot be made to fail on demand.
func needServer(t *testing.T, srv *estest.Server) {
	t.Helper()
	if srv != nil {
		return
	}
	// Only the explicit opt-in ELASTICSEARCH_URL replaces the test server.
	if os.Getenv("ELASTICSEARCH_URL") == "" {
		t.Fatal("no test server and ELASTICSEARCH_URL is not set")
	}
	t.Skip("needs the test server's fault injection, which a real cluster (ELASTICSEARCH_URL) lacks")
}

// Product is the synced model.
type Product struct {
	ID        int64
	Title     string
	Price     int
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt
}

type setup struct {
	db    *gorm.DB
	rdb   *redis.Client
	ns    string
	keys  redstream.Keys
	es    *elasticsearch.Client
	srv   *estest.Server
	index string
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	rdb, ns := testenv.Redis(t)
	db := testenv.GORM(t, nil)
	p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns})
	must(t, db.Use(redstream.NewPlugin(p)))
	must(t, db.AutoMigrate(&Product{}))
	es, srv := target(t)
	index := "t-" + strings.ToLower(ns)
	t.Cleanup(func() {
		if res, err := es.Indices.Delete([]string{index}); err == nil {
			res.Body.Close()
		}
	})
	return &setup{db: db, rdb: rdb, ns: ns, keys: p.Keys(), es: es, srv: srv, index: index}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// sqlDB returns the setup's database handle.
func (s *setup) sqlDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := s.db.DB()
	must(t, err)
	return db
}

// doc reads a document with GET _doc (realtime).
func doc(t *testing.T, es esapi.Transport, index, id string) (src map[string]any, version int64, found bool) {
	t.Helper()
	get := func() (*esapi.Response, error) {
		return esapi.GetRequest{Index: index, DocumentID: id}.Do(context.Background(), es)
	}
	res, err := get()
	// Under an injected storm the test's own reads are refused too, and a
	// real engine answers 503 (no_shard_available_action_exception) while
	// the primary shard of an index the handler just created is still
	// starting: retry.
	for deadline := time.Now().Add(10 * time.Second); err == nil && time.Now().Before(deadline) &&
		(res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable); {
		res.Body.Close()
		time.Sleep(10 * time.Millisecond)
		res, err = get()
	}
	must(t, err)
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return nil, 0, false
	}
	if res.IsError() {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("get %s/%s: %s", index, id, b)
	}
	var r struct {
		Found   bool           `json:"found"`
		Version int64          `json:"_version"`
		Source  map[string]any `json:"_source"`
	}
	must(t, json.NewDecoder(res.Body).Decode(&r))
	return r.Source, r.Version, r.Found
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEndToEnd: GORM plugin → Consumer → Handler → index, for create,
// update, soft delete, hard delete and rollback.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg)
		loader, err := elastic.NewTableLoader(context.Background(), s.sqlDB(t), elastic.TableOptions{
			Table: "products", SoftDeleteColumn: "deleted_at",
		})
		must(t, err)
		h, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index})
		must(t, err)
		s.run(t, "products", h)

		a, b, c := Product{Title: "a", Price: 1}, Product{Title: "b", Price: 2}, Product{Title: "c", Price: 3}
		must(t, s.db.Create(&[]*Product{&a, &b, &c}).Error)
		eventually(t, "created documents", func() bool {
			return s.titleIs(t, "1", "a")() && s.titleIs(t, "2", "b")() && s.titleIs(t, "3", "c")()
		})
		src, _, _ := s.doc(t, "1")
		if src["price"] != float64(1) || src["id"] != float64(1) {
			t.Errorf("document 1 = %v, want the row as JSON", src)
		}

		must(t, s.db.Model(&a).Update("title", "a2").Error)
		eventually(t, "updated document", s.titleIs(t, "1", "a2"))

		must(t, s.db.Delete(&b).Error) // soft delete
		eventually(t, "soft-deleted document removed", s.absent(t, "2"))

		must(t, s.db.Unscoped().Delete(&c).Error)
		eventually(t, "deleted document removed", s.absent(t, "3"))

		_ = s.db.Transaction(func(tx *gorm.DB) error {
			must(t, tx.Create(&Product{ID: 99, Title: "rolled back"}).Error)
			return errors.New("rollback")
		})
		// A marker written after the rollback: once it is indexed, the
		// rolled-back write would have been too.
		must(t, s.db.Create(&Product{ID: 100, Title: "marker"}).Error)
		eventually(t, "marker", s.titleIs(t, "100", "marker"))
		if _, _, found := s.doc(t, "99"); found {
			t.Error("rolled-back row was indexed")
		}
		// The handler counts an item once it has read the engine's answer,
		// which may come after the test sees the document.
		eventually(t, "counted writes", func() bool { st := h.Stats(); return st.Indexed >= 5 && st.Deleted >= 2 })
		if st := h.Stats(); st.DeadLettered != 0 || st.Conflicts != 0 {
			t.Errorf("stats = %+v", st)
		}
	})
}

// Test429Storm: whole requests and single items answered 429 end with every
// document correct.
func Test429Storm(t *testing.T) {
	t.Parallel()
	es, srv := target(t)
	needServer(t, srv)
	s := newEngineSetup(t, engineTarget{elastic.Elasticsearch, es, srv})
	loader, err := elastic.NewTableLoader(context.Background(), s.sqlDB(t), elastic.TableOptions{Table: "products"})
	must(t, err)
	h, err := elastic.NewHandler(s.es, loader, &elastic.Options{
		Index: s.index, RetryBackoff: 5 * time.Millisecond, MaxRetryBackoff: 20 * time.Millisecond, MaxBulkBytes: 400,
	})
	must(t, err)
	rows := make([]Product, 50)
	for i := range rows {
		rows[i].Title = fmt.Sprint("p", i+1)
	}
	s.srv.RejectNext(3)
	for _, id := range []string{"3", "17", "42"} {
		s.srv.FailItem(s.index, id, http.StatusTooManyRequests, "es_rejected_execution_exception",
			"rejected execution of coordinating operation", 4)
	}
	s.srv.FailItem(s.index, "8", http.StatusServiceUnavailable, "unavailable_shards_exception", "primary shard is not active", 2)
	must(t, s.db.Create(&rows).Error)
	s.run(t, "products", h)
	eventually(t, "every document correct", func() bool {
		for i := range rows {
			if id := fmt.Sprint(i + 1); !s.titleIs(t, id, "p"+id)() {
				return false
			}
		}
		return true
	})
	if st := h.Stats(); st.Retried == 0 || st.DeadLettered != 0 || st.Requests < 2 {
		t.Errorf("stats = %+v, want retries, several requests and nothing dead-lettered", st)
	}
}

// TextPrice stores its price as text, so one row can break the index's
// long mapping.
type TextPrice struct {
	ID    int64
	Price string
}

// TestMappingErrorDeadLetters: a document the index's mapping refuses is
// dead-lettered with its reason, the engine's own error type
// (Engine.MappingErrorType), and the rest of the stream goes on.
func TestMappingErrorDeadLetters(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg, &TextPrice{})
		s.createIndex(t, `{"mappings":{"properties":{"price":{"type":"long"}}}}`)
		loader, err := elastic.NewTableLoader(context.Background(), s.sqlDB(t), elastic.TableOptions{Table: "text_prices"})
		must(t, err)
		h, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index})
		must(t, err)
		s.run(t, "text_prices", h)

		must(t, s.db.Create(&[]TextPrice{{Price: "12"}, {Price: "abc"}, {Price: "7"}}).Error)
		must(t, s.db.Create(&TextPrice{Price: "9"}).Error) // a later batch still flows
		eventually(t, "later documents", func() bool { _, _, found := s.doc(t, "4"); return found })
		for _, id := range []string{"1", "3", "4"} {
			if _, _, found := s.doc(t, id); !found {
				t.Errorf("document %s not indexed", id)
			}
		}
		if _, _, found := s.doc(t, "2"); found {
			t.Error("poison document indexed")
		}
		ctx := context.Background()
		dlq := s.keys.DeadLetter("text_prices", "indexer")
		eventually(t, "dead letter", func() bool { return s.rdb.XLen(ctx, dlq).Val() == 1 })
		entries, err := s.rdb.XRange(ctx, dlq, "-", "+").Result()
		must(t, err)
		e := entries[0].Values
		want := fmt.Sprintf("document 2 rejected: 400 %s: ", tg.engine.MappingErrorType())
		if e["payload"] != `{"id":2}` || !strings.Contains(fmt.Sprint(e["error"]), want) {
			t.Errorf("dead letter = %v, want an error containing %q", e, want)
		}
		if st := h.Stats(); st.DeadLettered != 1 {
			t.Errorf("stats = %+v", st)
		}
	})
}

// TestVersioning: with a version column, an older state never overwrites
// a newer one.
func TestVersioning(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg)
		var mu sync.Mutex
		state := elastic.Document{ID: "1", Source: json.RawMessage(`{"title":"new"}`), Version: 5, HasVersion: true}
		loader := elastic.LoaderFunc(func(ctx context.Context, ids []string) ([]elastic.Document, error) {
			mu.Lock()
			defer mu.Unlock()
			return []elastic.Document{state}, nil
		})
		h, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index})
		must(t, err)
		batch := func() *redstream.Batch {
			return &redstream.Batch{Stream: "products", Messages: []redstream.Message{{
				ID: redstream.MustParseID("1-0"), Stream: "products", Payload: json.RawMessage(`{"id":1}`),
			}}}
		}
		ctx := context.Background()
		must(t, h.HandleBatch(ctx, batch()))
		// A stale reader (a deposed worker, a slow replica) comes later with
		// an older state.
		mu.Lock()
		state = elastic.Document{ID: "1", Source: json.RawMessage(`{"title":"old"}`), Version: 3, HasVersion: true}
		mu.Unlock()
		must(t, h.HandleBatch(ctx, batch()))
		src, version, found := s.doc(t, "1")
		if !found || src["title"] != "new" || version != 5 {
			t.Errorf("document = %v version %d, want the newer state (version 5)", src, version)
		}
		if st := h.Stats(); st.Conflicts != 1 {
			t.Errorf("stats = %+v, want one conflict", st)
		}
		// The same version again is accepted (replays are idempotent).
		mu.Lock()
		state = elastic.Document{ID: "1", Source: json.RawMessage(`{"title":"new"}`), Version: 5, HasVersion: true}
		mu.Unlock()
		must(t, h.HandleBatch(ctx, batch()))
		if st := h.Stats(); st.Conflicts != 1 {
			t.Errorf("stats = %+v, replay of an equal version must not conflict", st)
		}
	})
}

// TestVersionColumn: the table loader reads versions from updated_at, and
// deletes hard-deleted rows with the database clock as version.
func TestVersionColumn(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg)
		loader, err := elastic.NewTableLoader(context.Background(), s.sqlDB(t), elastic.TableOptions{
			Table: "products", SoftDeleteColumn: "deleted_at", VersionColumn: "updated_at",
		})
		must(t, err)
		h, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index})
		must(t, err)
		s.run(t, "products", h)
		p := Product{Title: "v1"}
		must(t, s.db.Create(&p).Error)
		eventually(t, "v1", s.titleIs(t, "1", "v1"))
		_, version, _ := s.doc(t, "1")
		if want := p.UpdatedAt.UnixMicro(); version != want {
			t.Errorf("version = %d, want updated_at in microseconds %d", version, want)
		}
		must(t, s.db.Model(&p).Update("title", "v2").Error)
		eventually(t, "v2", s.titleIs(t, "1", "v2"))
		must(t, s.db.Unscoped().Delete(&p).Error)
		eventually(t, "deleted", s.absent(t, "1"))
	})
}

// Tenant is a row routed by its tenant.
type Tenant struct {
	ID        int64
	Tenant    string
	Title     string
	DeletedAt gorm.DeletedAt
}

// TestRouting: documents are written, and soft-deleted, with their
// row's routing, into an index that requires one.
func TestRouting(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg, &Tenant{})
		s.createIndex(t, `{"mappings":{"_routing":{"required":true}}}`)
		loader, err := elastic.NewTableLoader(context.Background(), s.sqlDB(t), elastic.TableOptions{
			Table: "tenants", SoftDeleteColumn: "deleted_at", RoutingColumn: "tenant",
		})
		must(t, err)
		h, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index})
		must(t, err)
		s.run(t, "tenants", h)

		x, y := Tenant{Tenant: "acme", Title: "x"}, Tenant{Tenant: "globex", Title: "y"}
		must(t, s.db.Create(&[]*Tenant{&x, &y}).Error)
		eventually(t, "routed documents", func() bool {
			dx, _ := s.get(t, "1", "acme")
			dy, _ := s.get(t, "2", "globex")
			return dx.Found && dy.Found
		})
		if d, _ := s.get(t, "1", "acme"); d.Routing != "acme" || d.Source["title"] != "x" {
			t.Errorf("document 1 = %+v", d)
		}
		// Both engines refuse a read without the routing the index requires.
		if _, status := s.get(t, "1", ""); status != http.StatusBadRequest {
			t.Errorf("GET without routing: %d, want 400", status)
		}
		must(t, s.db.Delete(&x).Error) // soft: the row, and its routing, are still read
		eventually(t, "soft-deleted routed document gone", func() bool {
			_, status := s.get(t, "1", "acme")
			return status == http.StatusNotFound
		})
		if st := h.Stats(); st.DeadLettered != 0 {
			t.Errorf("stats = %+v", st)
		}
	})
}

// TestPipeline: with Options.Pipeline, indexed documents go through the
// ingest pipeline (deletes need none), with their external versions; a
// pipeline that does not exist fails each document, which is
// dead-lettered with the engine's reason, and creates no index.
func TestPipeline(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg)
		ctx := context.Background()
		pipeline := s.index + "-tag"
		res, err := esapi.IngestPutPipelineRequest{PipelineID: pipeline, Body: strings.NewReader(
			`{"processors":[{"set":{"field":"synced_by","value":"redstream"}},{"set":{"field":"price","value":0,"override":false}}]}`,
		)}.Do(ctx, s.es)
		must(t, err)
		res.Body.Close()
		if res.IsError() {
			t.Fatalf("PUT pipeline: %s", res.Status())
		}
		t.Cleanup(func() {
			if res, err := (esapi.IngestDeletePipelineRequest{PipelineID: pipeline}).Do(context.Background(), s.es); err == nil {
				res.Body.Close()
			}
		})
		loader, err := elastic.NewTableLoader(ctx, s.sqlDB(t), elastic.TableOptions{
			Table: "products", Columns: []string{"id", "title", "updated_at"}, VersionColumn: "updated_at",
		})
		must(t, err)
		h, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index, Pipeline: pipeline})
		must(t, err)
		s.run(t, "products", h)

		a, b := Product{Title: "a", Price: 7}, Product{Title: "b"}
		must(t, s.db.Create(&[]*Product{&a, &b}).Error)
		eventually(t, "documents through the pipeline", func() bool { return s.titleIs(t, "1", "a")() && s.titleIs(t, "2", "b")() })
		src, version, _ := s.doc(t, "1")
		if src["synced_by"] != "redstream" || src["price"] != float64(0) || version != a.UpdatedAt.UnixMicro() {
			t.Errorf("document 1 = %v, version %d; want the pipeline's fields and version %d", src, version, a.UpdatedAt.UnixMicro())
		}
		must(t, s.db.Unscoped().Delete(&b).Error)
		eventually(t, "deleted document gone", s.absent(t, "2"))
		if st := h.Stats(); st.DeadLettered != 0 {
			t.Errorf("stats = %+v", st)
		}

		// A pipeline that does not exist: each document is dead-lettered
		// with the engine's reason, and no index is created.
		missing := s.index + "-none"
		hm, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: missing, Pipeline: s.index + "-nope"})
		must(t, err)
		t.Cleanup(func() { deleteIndex(s.es, missing) })
		batch := &redstream.Batch{Stream: "products", Messages: []redstream.Message{
			{ID: redstream.MustParseID("1-0"), Stream: "products", Payload: json.RawMessage(`{"id":1}`)},
		}}
		must(t, hm.HandleBatch(ctx, batch))
		dead := batch.DeadLettered()[batch.Messages[0].ID]
		want := "400 illegal_argument_exception: pipeline with id [" + s.index + "-nope] does not exist"
		if dead == nil || !strings.Contains(dead.Error(), want) {
			t.Errorf("dead letter %v, want one containing %q", dead, want)
		}
		res, err = esapi.IndicesExistsRequest{Index: []string{missing}}.Do(ctx, s.es)
		must(t, err)
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("HEAD %s: %d, want 404: a failed pipeline creates no index", missing, res.StatusCode)
		}
	})
}

func TestMessageID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		payload, want string
		ok            bool
	}{
		{`{"id":1}`, "1", true},
		{`{"id":18446744073709551615}`, "18446744073709551615", true},
		{`{"id":-4}`, "-4", true},
		{`{"id":"a-uuid"}`, "a-uuid", true},
		{`{"id":1.5}`, "", false},
		{`{"id":[1,"x"]}`, "", false},
		{`{"id":null}`, "", false},
		{`{"id":""}`, "", false},
		{`{"other":1}`, "", false},
		{`[1]`, "", false},
	} {
		got, err := elastic.MessageID([]byte(tc.payload))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("MessageID(%s) = %q, %v; want %q ok=%v", tc.payload, got, err, tc.want, tc.ok)
		}
	}
}

// TestBulkSplitting: a batch larger than MaxBulkBytes goes out in several
// requests.
func TestBulkSplitting(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg)
		loader, err := elastic.NewTableLoader(context.Background(), s.sqlDB(t), elastic.TableOptions{
			Table: "products", Columns: []string{"id", "title"},
		})
		must(t, err)
		h, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index, MaxBulkBytes: 300, Concurrency: 3})
		must(t, err)
		rows := make([]Product, 40)
		for i := range rows {
			rows[i].Title = fmt.Sprint("p", i+1)
		}
		must(t, s.db.Create(&rows).Error)
		s.run(t, "products", h)
		eventually(t, "all documents", func() bool { return s.titleIs(t, "40", "p40")() && s.titleIs(t, "1", "p1")() })
		src, _, _ := s.doc(t, "1")
		if _, ok := src["price"]; ok {
			t.Errorf("document has column price, want only id and title: %v", src)
		}
		if st := h.Stats(); st.Requests < 5 {
			t.Errorf("requests = %d, want several", st.Requests)
		}
	})
}

// TestNewHandlerErrors: missing options are errors, not panics.
func TestNewHandlerErrors(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg)
		loader := elastic.LoaderFunc(func(context.Context, []string) ([]elastic.Document, error) { return nil, nil })
		if _, err := elastic.NewHandler(s.es, loader, nil); err == nil {
			t.Error("nil options accepted")
		}
		if _, err := elastic.NewHandler(s.es, nil, &elastic.Options{Index: "x"}); err == nil {
			t.Error("nil loader accepted")
		}
		if _, err := elastic.NewTableLoader(context.Background(), s.sqlDB(t), elastic.TableOptions{Table: "nope"}); err == nil ||
			!strings.Contains(err.Error(), "nope") {
			t.Errorf("missing table: %v", err)
		}
		if _, err := elastic.NewTableLoader(context.Background(), s.sqlDB(t), elastic.TableOptions{
			Table: "products", VersionColumn: "title",
		}); err == nil || !strings.Contains(err.Error(), "version column") {
			t.Errorf("text version column: %v", err)
		}
	})
}

// TestHandleBatchDirect: a Handler driven without a Consumer reports what
// it dead-lettered through Batch.DeadLettered.
func TestHandleBatchDirect(t *testing.T) {
	t.Parallel()
	es, _ := target(t)
	index := "t-direct-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	loader := elastic.LoaderFunc(func(context.Context, []string) ([]elastic.Document, error) { return nil, nil })
	h, err := elastic.NewHandler(es, loader, &elastic.Options{Index: index})
	must(t, err)
	bad := redstream.Message{ID: redstream.MustParseID("5-0"), Payload: json.RawMessage(`{"sku":"x"}`)}
	b := &redstream.Batch{Stream: "products", Messages: []redstream.Message{
		bad, {ID: redstream.MustParseID("5-1"), Payload: json.RawMessage(`{"id":1}`)},
	}}
	must(t, h.HandleBatch(context.Background(), b))
	dead := b.DeadLettered()
	if len(dead) != 1 || dead[bad.ID] == nil || !strings.Contains(dead[bad.ID].Error(), `"id"`) {
		t.Errorf("dead-lettered = %v, want the message without an id", dead)
	}
}

// mustProducer returns a producer, or panics on options the test got wrong.
func mustProducer(rdb redis.UniversalClient, opts *redstream.ProducerOptions) *redstream.Producer {
	p, err := redstream.NewProducer(rdb, opts)
	if err != nil {
		panic(err)
	}
	return p
}
