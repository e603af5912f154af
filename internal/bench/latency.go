package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/jackc/pgx/v5"
	"github.com/opensearch-project/opensearch-go/v4"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/elastic/estest"
	"github.com/redstream-go/redstream/internal/testenv"
)

// seedRows is how many rows exist before the first run, so that updates
// have rows to pick from from the start.
const seedRows = 10_000

// runLatency measures, write by write, the time from COMMIT returning to
// the Elasticsearch bulk request holding the row being acknowledged, at a
// steady write rate.
//
// A scheduler releases writes at the target rate, each with its due time,
// into a queue that never blocks it (open loop: a slow write does not delay
// the next one). Writer goroutines take them and create a row, or update a
// random existing one, through GORM with the plugin. A pgx tracer notes when
// each COMMIT returned. A Consumer with the Elasticsearch handler, a Delayer
// and a Trimmer run in the same process, as the worker binary runs them;
// the handler is wrapped to note when each batch's bulk requests were
// acknowledged. A write is acknowledged by the first batch holding its id
// that began loading rows after its COMMIT returned.
func runLatency(ctx context.Context, cfg *config, rep *report) error {
	s, err := newSpace(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	tr := newTracker()

	// The application side: GORM on pgx with a tracer for COMMIT, and the
	// plugin on its own Redis client.
	a, err := openApp(s, cfg.writers, redstream.ProducerOptions{AsyncPublish: cfg.asyncPublish}, tr)
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.db.Exec(`INSERT INTO products (title, price, updated_at) SELECT 'seed ' || g, g % 100, now() FROM generate_series(1, ?) g`, seedRows).Error; err != nil {
		return err
	}

	// The worker side: its own Redis client and database pool.
	wk, err := startWorker(ctx, s, tr, time.Minute, engineES)
	if err != nil {
		return err
	}
	defer wk.close()

	rep.declare(figure{name: "p50", unit: "ms", desc: "COMMIT returned → ES bulk acknowledged, median"})
	rep.declare(figure{name: "p90", unit: "ms", desc: "COMMIT returned → ES bulk acknowledged, 90th percentile"})
	rep.declare(figure{name: "p99", unit: "ms", desc: "COMMIT returned → ES bulk acknowledged, 99th percentile", target: "≤ 50"})
	rep.declare(figure{name: "max", unit: "ms", desc: "COMMIT returned → ES bulk acknowledged, maximum"})
	rep.declare(figure{name: "rate", unit: "writes/s", desc: fmt.Sprintf("achieved write rate (target %d/s)", cfg.rate), target: fmt.Sprintf("%d", cfg.rate)})
	rep.declare(figure{name: "start-lag-p99", unit: "ms", desc: "due time → writer start, 99th percentile (the writers keeping up)"})
	rep.declare(figure{name: "write-p50", unit: "ms", desc: "one write through GORM + plugin, median"})
	rep.declare(figure{name: "unacked", unit: "writes", desc: "writes never acknowledged within 30 s of the run's end (want 0)"})
	rep.declare(figure{name: "errors", unit: "writes", desc: "writes that failed"})

	maxID := &atomic.Int64{}
	maxID.Store(seedRows)
	for run := range cfg.runs {
		err := rep.run(run, func() error {
			if err := wk.alive(); err != nil {
				return err
			}
			return latencyRun(ctx, cfg, rep, a, tr, maxID)
		})
		if err != nil {
			return err
		}
	}
	where := "the project's ES test server, in process"
	if os.Getenv("ELASTICSEARCH_URL") != "" {
		where = "Elasticsearch at ELASTICSEARCH_URL"
	}
	publish := "synchronous publish (the default)"
	if cfg.asyncPublish {
		publish = "AsyncPublish"
	}
	rep.note("%d writes/s for %s per run after %s warm-up, %d writers, %.0f%% updates, %s, into %s.",
		cfg.rate, cfg.duration, cfg.warmup, cfg.writers, 100*cfg.updates, publish, where)
	return nil
}

// latencyRun runs one paced write run and records its figures.
func latencyRun(ctx context.Context, cfg *config, rep *report, a *app, tr *tracker, maxID *atomic.Int64) error {
	tr.reset()
	period := time.Second / time.Duration(cfg.rate)
	warm := int(cfg.warmup / period)
	total := warm + int(cfg.duration/period)
	res, err := paced(ctx, cfg.rate, total, warm, cfg.writers, func(ctx context.Context, w *write) error {
		var err error
		if rand.Float64() < cfg.updates {
			w.id = 1 + rand.Int64N(maxID.Load())
			err = a.db.WithContext(context.WithValue(ctx, writeKey{}, w)).Model(&product{ID: w.id}).
				Updates(map[string]any{"price": rand.IntN(1000), "title": "updated"}).Error
		} else {
			err = a.create(ctx, w, rand.IntN(1000))
			if err == nil {
				for {
					m := maxID.Load()
					if w.model.ID <= m || maxID.CompareAndSwap(m, w.model.ID) {
						break
					}
				}
			}
		}
		if err != nil {
			tr.forget(w)
		}
		return err
	})
	if err != nil {
		return err
	}
	if n := res.failed; n > 0 && n*100 > int64(total) {
		return fmt.Errorf("%d of %d writes failed, e.g. %v", n, total, res.firstErr)
	}
	unacked := tr.wait(ctx, 30*time.Second)

	tr.mu.Lock() // a late acknowledgement may still come in
	defer tr.mu.Unlock()
	_, rate, lag, took := res.achieved(func(w *write) bool { return !w.commit.IsZero() })
	lat := acked(res.writes)
	if len(lat) == 0 {
		return errors.New("no write was acknowledged")
	}
	rep.add("p50", ms(percentile(lat, 0.50)))
	rep.add("p90", ms(percentile(lat, 0.90)))
	rep.add("p99", ms(percentile(lat, 0.99)))
	rep.add("max", ms(lat[len(lat)-1]))
	rep.add("rate", rate)
	rep.add("start-lag-p99", ms(percentile(lag, 0.99)))
	rep.add("write-p50", ms(percentile(took, 0.50)))
	rep.add("unacked", float64(unacked))
	rep.add("errors", float64(res.failed))
	return nil
}

// acked returns, sorted, COMMIT → acknowledgement of every measured write
// that was acknowledged. The caller holds the tracker's lock.
func acked(writes []*write) []time.Duration {
	var lat []time.Duration
	for _, w := range writes {
		if w.measured && !w.commit.IsZero() && !w.ack.IsZero() {
			lat = append(lat, w.ack.Sub(w.commit))
		}
	}
	slices.Sort(lat)
	return lat
}

// ms returns d in milliseconds.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentile returns the q-quantile of sorted ds (nearest rank).
func percentile(ds []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

type writeKey struct{}

// commitTracer notes, on the write in the query's context, when a COMMIT
// returned successfully, and tells its tracker.
type commitTracer struct{ t *tracker }

func (commitTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (c commitTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if data.Err != nil || data.CommandTag.String() != "COMMIT" {
		return
	}
	if w, ok := ctx.Value(writeKey{}).(*write); ok {
		c.t.committed(w, time.Now())
	}
}

// tracker matches commits to acknowledgements, per row id.
type tracker struct {
	mu      sync.Mutex
	pending map[int64][]*write
	open    int
}

func newTracker() *tracker {
	return &tracker{pending: map[int64][]*write{}}
}

func (t *tracker) reset() {
	t.mu.Lock()
	t.pending = map[int64][]*write{}
	t.open = 0
	t.mu.Unlock()
}

// committed records w's COMMIT. It runs before the plugin writes the
// main-stream message, so the batch acknowledging w cannot come first.
func (t *tracker) committed(w *write, at time.Time) {
	id := w.id
	if w.model != nil {
		id = w.model.ID
	}
	t.mu.Lock()
	w.commit = at
	w.id = id
	t.pending[id] = append(t.pending[id], w)
	t.open++
	t.mu.Unlock()
}

// forget drops a failed write.
func (t *tracker) forget(w *write) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ws := t.pending[w.id]
	if i := slices.Index(ws, w); i >= 0 {
		t.pending[w.id] = slices.Delete(ws, i, i+1)
		t.open--
	}
}

// acked records that a batch that began loading at start had its bulk
// requests acknowledged at at: every pending write of its ids committed
// before start is acknowledged.
func (t *tracker) acked(ids []int64, start, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		ws := t.pending[id]
		kept := ws[:0]
		for _, w := range ws {
			if w.commit.Before(start) {
				w.ack = at
				t.open--
				continue
			}
			kept = append(kept, w)
		}
		if len(kept) == 0 {
			delete(t.pending, id)
		} else {
			t.pending[id] = kept
		}
	}
}

// wait waits until every committed write is acknowledged or timeout
// passes, and returns how many are not.
func (t *tracker) wait(ctx context.Context, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		t.mu.Lock()
		n := t.open
		t.mu.Unlock()
		if n == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ackHandler wraps the Elasticsearch handler, telling the tracker when
// each batch was acknowledged.
type ackHandler struct {
	h redstream.Handler
	t *tracker
}

func (a *ackHandler) HandleBatch(ctx context.Context, b *redstream.Batch) error {
	start := time.Now()
	if err := a.h.HandleBatch(ctx, b); err != nil {
		return err
	}
	at := time.Now()
	ids := make([]int64, 0, len(b.Messages))
	for _, m := range b.Messages {
		s, err := elastic.MessageID(m.Payload)
		if err != nil {
			continue
		}
		if id, err := strconv.ParseInt(s, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	a.t.acked(ids, start, at)
	return nil
}

// latencyES returns a client and a fresh index name on engine: for
// engineES, the cluster at ELASTICSEARCH_URL when set, else an in-process
// test server; for engineOpenSearch, the node at OPENSEARCH_URL. The
// returned func deletes the index or stops the server.
func latencyES(engine string) (esapi.Transport, string, func(), error) {
	index := "bench-" + testenv.RandomHex(4)
	var es esapi.Transport
	switch url := os.Getenv("ELASTICSEARCH_URL"); {
	case engine == engineOpenSearch:
		url := os.Getenv("OPENSEARCH_URL")
		if url == "" {
			return nil, "", nil, errors.New("OPENSEARCH_URL is not set (make opensearch starts a node and prints it)")
		}
		c, err := elastic.NewOpenSearchClient(opensearch.Config{Addresses: strings.Split(url, ",")})
		if err != nil {
			return nil, "", nil, err
		}
		es = c
	case url != "":
		c, err := elasticsearch.NewClient(elasticsearch.Config{
			Addresses: strings.Split(url, ","),
			Username:  os.Getenv("ELASTICSEARCH_USERNAME"),
			Password:  os.Getenv("ELASTICSEARCH_PASSWORD"),
			APIKey:    os.Getenv("ELASTICSEARCH_API_KEY"),
		})
		if err != nil {
			return nil, "", nil, err
		}
		es = c
	default:
		srv := estest.NewServer()
		c, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{srv.URL}})
		if err != nil {
			srv.Close()
			return nil, "", nil, err
		}
		return c, index, srv.Close, nil
	}
	return es, index, func() {
		res, err := esapi.IndicesDeleteRequest{Index: []string{index}}.Do(context.Background(), es)
		if err == nil {
			res.Body.Close()
		}
	}, nil
}
