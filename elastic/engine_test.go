package elastic_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/opensearch-project/opensearch-go/v4"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/elastic/estest"
	"github.com/redstream-go/redstream/internal/testenv"
)

// Both clients fit the handler's transport.
var (
	_ esapi.Transport = (*opensearch.Client)(nil)
)

// engineTarget is a cluster of one engine and a client of it.
type engineTarget struct {
	engine elastic.Engine
	es     esapi.Transport
	// srv is the test server, for fault injection; nil for a real cluster.
	srv *estest.Server
}

// engineTargets returns the clusters the engine tests run against: the
// Elasticsearch 8 test server (or the cluster at ELASTICSEARCH_URL), and
// the OpenSearch node at OPENSEARCH_URL, which make test starts.
func engineTargets(t *testing.T) []engineTarget {
	t.Helper()
	es, srv := target(t)
	targets := []engineTarget{{elastic.Elasticsearch, es, srv}}
	url := testenv.OpenSearchURL(t)
	oc, err := elastic.NewOpenSearchClient(opensearch.Config{Addresses: []string{url}})
	must(t, err)
	t.Cleanup(func() { _ = oc.Close() })
	return append(targets, engineTarget{engine: elastic.OpenSearch, es: oc})
}

// eachEngine runs fn as a subtest per engine, in parallel.
func eachEngine(t *testing.T, fn func(t *testing.T, tg engineTarget)) {
	t.Helper()
	for _, tg := range engineTargets(t) {
		t.Run(string(tg.engine), func(t *testing.T) {
			t.Parallel()
			fn(t, tg)
		})
	}
}

// engineSetup is a schema, a Redis namespace and an index of one test.
type engineSetup struct {
	engineTarget
	db    *gorm.DB
	rdb   *redis.Client
	ns    string
	keys  redstream.Keys
	index string
}

func newEngineSetup(t *testing.T, tg engineTarget, models ...any) *engineSetup {
	t.Helper()
	return newEngineSetupOn(t, tg, testenv.GORM(t, nil), models...)
}

// newEngineSetupOn is newEngineSetup on the database of db (PostgreSQL or
// MySQL), which it migrates to models.
func newEngineSetupOn(t *testing.T, tg engineTarget, db *gorm.DB, models ...any) *engineSetup {
	t.Helper()
	rdb, ns := testenv.Redis(t)
	p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns})
	must(t, db.Use(redstream.NewPlugin(p)))
	must(t, db.AutoMigrate(models...))
	s := &engineSetup{engineTarget: tg, db: db, rdb: rdb, ns: ns, keys: p.Keys(), index: "e-" + strings.ToLower(ns)}
	t.Cleanup(func() {
		if res, err := (esapi.IndicesDeleteRequest{Index: []string{s.index}}).Do(context.Background(), tg.es); err == nil {
			res.Body.Close()
		}
	})
	return s
}

// run consumes stream with h until the test ends.
func (s *engineSetup) run(t *testing.T, stream string, h redstream.Handler) *redstream.Consumer {
	t.Helper()
	c, err := redstream.NewConsumer(s.rdb, stream, "indexer", h, &redstream.ConsumerOptions{
		Namespace: s.ns, Block: 100 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != nil {
			t.Errorf("consumer: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// createIndex creates the setup's index with body.
func (s *engineSetup) createIndex(t *testing.T, body string) {
	t.Helper()
	res, err := esapi.IndicesCreateRequest{Index: s.index, Body: strings.NewReader(body)}.Do(context.Background(), s.es)
	must(t, err)
	defer res.Body.Close()
	if res.IsError() {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("create index: %s %s", res.Status(), b)
	}
}

// engineDoc is a document as GET _doc (realtime) returns it.
type engineDoc struct {
	Found   bool           `json:"found"`
	Version int64          `json:"_version"`
	Routing string         `json:"_routing"`
	Source  map[string]any `json:"_source"`
}

// get reads a document of the setup's index, with routing when not empty.
// A GET without the routing an index requires is an error: status is its
// status then.
func (s *engineSetup) get(t *testing.T, id, routing string) (d engineDoc, status int) {
	t.Helper()
	res, err := esapi.GetRequest{Index: s.index, DocumentID: id, Routing: routing}.Do(context.Background(), s.es)
	must(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	must(t, err)
	if res.StatusCode == http.StatusOK {
		must(t, json.Unmarshal(b, &d))
	}
	return d, res.StatusCode
}

func (s *engineSetup) titleIs(t *testing.T, id, title string) func() bool {
	return func() bool { d, _ := s.get(t, id, ""); return d.Found && d.Source["title"] == title }
}

func (s *engineSetup) absent(t *testing.T, id string) func() bool {
	return func() bool { _, status := s.get(t, id, ""); return status == http.StatusNotFound }
}

// TestEngineSync: the same handler, given either engine's client, keeps
// an index in sync through creates, updates, soft and hard deletes, with
// the row's updated_at as external version; and refuses an older state.
func TestEngineSync(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg, &Product{})
		loader, err := elastic.NewTableLoader(context.Background(), sqlDB(t, s.db), elastic.TableOptions{
			Table: "products", SoftDeleteColumn: "deleted_at", VersionColumn: "updated_at",
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
		must(t, s.db.Model(&a).Update("title", "a2").Error)
		eventually(t, "updated document", s.titleIs(t, "1", "a2"))
		d, _ := s.get(t, "1", "")
		if want := a.UpdatedAt.UnixMicro(); d.Version != want {
			t.Errorf("version = %d, want updated_at in microseconds %d", d.Version, want)
		}
		must(t, s.db.Delete(&b).Error) // soft
		eventually(t, "soft-deleted document gone", s.absent(t, "2"))
		must(t, s.db.Unscoped().Delete(&c).Error) // hard
		eventually(t, "hard-deleted document gone", s.absent(t, "3"))

		// A stale state (a deposed worker's read) is refused by the
		// engine's external versioning, counted, and never applied.
		stale := elastic.LoaderFunc(func(context.Context, []string) ([]elastic.Document, error) {
			return []elastic.Document{{ID: "1", Source: json.RawMessage(`{"title":"stale"}`), Version: d.Version - 1, HasVersion: true}}, nil
		})
		hs, err := elastic.NewHandler(s.es, stale, &elastic.Options{Index: s.index})
		must(t, err)
		must(t, hs.HandleBatch(context.Background(), &redstream.Batch{Stream: "products", Messages: []redstream.Message{{
			ID: redstream.MustParseID("1-0"), Stream: "products", Payload: json.RawMessage(`{"id":1}`),
		}}}))
		if st := hs.Stats(); st.Conflicts != 1 || st.Indexed != 0 {
			t.Errorf("stale write: stats = %+v, want one conflict", st)
		}
		if d, _ := s.get(t, "1", ""); d.Source["title"] != "a2" {
			t.Errorf("after a stale write the document is %v", d.Source)
		}
		// The handler counts an item once it has read the engine's answer,
		// which may come after the test sees the document gone.
		eventually(t, "counted writes", func() bool { st := h.Stats(); return st.Indexed >= 4 && st.Deleted >= 2 })
		if st := h.Stats(); st.DeadLettered != 0 || st.Conflicts != 0 {
			t.Errorf("stats = %+v", st)
		}
	})
}

// Tenant is a row routed by its tenant.
type Tenant struct {
	ID        int64
	Tenant    string
	Title     string
	DeletedAt gorm.DeletedAt
}

// TestEngineRouting: documents are written, and soft-deleted, with their
// row's routing, into an index that requires one.
func TestEngineRouting(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg, &Tenant{})
		s.createIndex(t, `{"mappings":{"_routing":{"required":true}}}`)
		loader, err := elastic.NewTableLoader(context.Background(), sqlDB(t, s.db), elastic.TableOptions{
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

// TestEnginePoisonDocument: a document the index's mapping refuses is
// dead-lettered with the engine's own error type (Engine.MappingErrorType)
// and the rest of the stream goes on.
func TestEnginePoisonDocument(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		s := newEngineSetup(t, tg, &TextPrice{})
		s.createIndex(t, `{"mappings":{"properties":{"price":{"type":"long"}}}}`)
		loader, err := elastic.NewTableLoader(context.Background(), sqlDB(t, s.db), elastic.TableOptions{Table: "text_prices"})
		must(t, err)
		h, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index})
		must(t, err)
		s.run(t, "text_prices", h)

		must(t, s.db.Create(&[]TextPrice{{Price: "12"}, {Price: "abc"}, {Price: "7"}}).Error)
		must(t, s.db.Create(&TextPrice{Price: "9"}).Error) // a later batch still flows
		eventually(t, "later document", func() bool { d, _ := s.get(t, "4", ""); return d.Found })
		for _, id := range []string{"1", "3"} {
			if d, _ := s.get(t, id, ""); !d.Found {
				t.Errorf("document %s not indexed", id)
			}
		}
		if d, _ := s.get(t, "2", ""); d.Found {
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
	})
}

// TestDetectEngine: each cluster names its engine, and Engine names its
// differences.
func TestDetectEngine(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		got, version, err := elastic.DetectEngine(context.Background(), tg.es)
		must(t, err)
		if got != tg.engine || version == "" {
			t.Errorf("DetectEngine = %q %q, want %q", got, version, tg.engine)
		}
		major := map[elastic.Engine]string{elastic.Elasticsearch: "8.", elastic.OpenSearch: "2."}[tg.engine]
		if !strings.HasPrefix(version, major) {
			t.Errorf("version %q, want %s*", version, major)
		}
	})
}

func sqlDB(t *testing.T, db *gorm.DB) *sql.DB {
	t.Helper()
	d, err := db.DB()
	must(t, err)
	return d
}
