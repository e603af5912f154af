package elastic_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
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

// engineTarget is a cluster of one engine and a client of it: the
// Elasticsearch client for Elasticsearch, the OpenSearch client for
// OpenSearch, each as the package's users hand it over.
type engineTarget struct {
	engine elastic.Engine
	es     esapi.Transport
	// srv is the test server behind es, for its fault injection; nil on
	// a real cluster.
	srv *estest.Server
}

// nilClient is a nil client of the target's engine, as an esapi.Transport.
func (tg engineTarget) nilClient() esapi.Transport {
	if tg.engine == elastic.OpenSearch {
		return (*opensearch.Client)(nil)
	}
	return (*elasticsearch.Client)(nil)
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

// eachEngine runs fn as a subtest per engine, in parallel: the handler,
// backfill and verify tests, which both engines must pass, each asserting
// its engine's own answer where the two differ (docs/ENGINES.md).
func eachEngine(t *testing.T, fn func(t *testing.T, tg engineTarget)) {
	t.Helper()
	for _, tg := range engineTargets(t) {
		t.Run(string(tg.engine), func(t *testing.T) {
			t.Parallel()
			fn(t, tg)
		})
	}
}

// engineSetup is a schema, a Redis namespace and an index of one test on
// one engine.
type engineSetup struct {
	engineTarget
	db    *gorm.DB
	rdb   *redis.Client
	ns    string
	keys  redstream.Keys
	index string
}

// newEngineSetup migrates models (Product when none is given) into a
// fresh schema, with the GORM plugin queuing their changes, and names an
// index that is deleted when the test ends.
func newEngineSetup(t *testing.T, tg engineTarget, models ...any) *engineSetup {
	t.Helper()
	if len(models) == 0 {
		models = []any{&Product{}}
	}
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
	t.Cleanup(func() { deleteIndex(tg.es, s.index) })
	return s
}

// deleteIndex deletes index, if it exists.
func deleteIndex(es esapi.Transport, index string) {
	if res, err := (esapi.IndicesDeleteRequest{Index: []string{index}}).Do(context.Background(), es); err == nil {
		res.Body.Close()
	}
}

// sqlDB returns the setup's database handle.
func (s *engineSetup) sqlDB(t *testing.T) *sql.DB {
	t.Helper()
	return sqlDB(t, s.db)
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

// createIndex creates the setup's index with body (none when empty).
func (s *engineSetup) createIndex(t *testing.T, body string) {
	t.Helper()
	req := esapi.IndicesCreateRequest{Index: s.index}
	if body != "" {
		req.Body = strings.NewReader(body)
	}
	res, err := req.Do(context.Background(), s.es)
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

// doc reads a document of the setup's index (GET _doc, realtime).
func (s *engineSetup) doc(t *testing.T, id string) (src map[string]any, version int64, found bool) {
	t.Helper()
	return doc(t, s.es, s.index, id)
}

func (s *engineSetup) titleIs(t *testing.T, id, title string) func() bool {
	return func() bool { src, _, found := s.doc(t, id); return found && src["title"] == title }
}

func (s *engineSetup) absent(t *testing.T, id string) func() bool {
	return func() bool { _, _, found := s.doc(t, id); return !found }
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
