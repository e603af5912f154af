package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/sync/errgroup"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

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
	cc, err := pgx.ParseConfig(s.dsn)
	if err != nil {
		return err
	}
	cc.Tracer = commitTracer{}
	appSQL := stdlib.OpenDB(*cc)
	defer appSQL.Close()
	appSQL.SetMaxIdleConns(cfg.writers)
	db, err := gorm.Open(postgres.New(postgres.Config{Conn: appSQL}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return err
	}
	if err := db.AutoMigrate(&product{}); err != nil {
		return err
	}
	if err := db.Exec(`INSERT INTO products (title, price, updated_at) SELECT 'seed ' || g, g % 100, now() FROM generate_series(1, ?) g`, seedRows).Error; err != nil {
		return err
	}
	appRedis := s.rdb
	producer, err := redstream.NewProducer(appRedis, &redstream.ProducerOptions{Namespace: s.ns, AsyncPublish: cfg.asyncPublish})
	if err != nil {
		return err
	}
	defer producer.Close(context.Background())
	if err := db.Use(redstream.NewPlugin(producer)); err != nil {
		return err
	}

	// The worker side: its own Redis client and database pool.
	workerRedis, err := openRedis(ctx)
	if err != nil {
		return err
	}
	defer workerRedis.Close()
	workerSQL, err := s.openDB(ctx)
	if err != nil {
		return err
	}
	defer workerSQL.Close()
	es, index, esClose, err := latencyES()
	if err != nil {
		return err
	}
	defer esClose()
	loader, err := elastic.NewTableLoader(ctx, workerSQL, elastic.TableOptions{
		Table: "products", SoftDeleteColumn: "deleted_at", VersionColumn: "updated_at",
	})
	if err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h, err := elastic.NewHandler(es, loader, &elastic.Options{Index: index, Logger: quiet})
	if err != nil {
		return err
	}
	c, err := redstream.NewConsumer(workerRedis, "products", "indexer", &ackHandler{h: h, t: tr},
		&redstream.ConsumerOptions{Namespace: s.ns, Logger: quiet})
	if err != nil {
		return err
	}
	d, err := redstream.NewDelayer(workerRedis, "products", time.Minute, &redstream.DelayerOptions{Namespace: s.ns, Logger: quiet})
	if err != nil {
		return err
	}
	t, err := redstream.NewTrimmer(workerRedis, "products", []string{"indexer"}, &redstream.TrimmerOptions{Namespace: s.ns, Logger: quiet})
	if err != nil {
		return err
	}
	// The consumer starts from the beginning either way; with its offset
	// set, the Trimmer does not report it as missing until the first commit.
	if err := workerRedis.Set(ctx, s.keys.Offset("products", "indexer"), "0-0", 0).Err(); err != nil {
		return err
	}
	wctx, stopWorkers := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(wctx)
	g.Go(func() error { return c.Run(gctx) })
	g.Go(func() error { return d.Run(gctx) })
	g.Go(func() error { return t.Run(gctx) })
	defer func() {
		stopWorkers()
		_ = g.Wait()
	}()

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
			if err := gctx.Err(); err != nil {
				return fmt.Errorf("workers stopped: %w", errors.Join(err, g.Wait()))
			}
			return latencyRun(ctx, cfg, rep, db, tr, maxID)
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
func latencyRun(ctx context.Context, cfg *config, rep *report, db *gorm.DB, tr *tracker, maxID *atomic.Int64) error {
	tr.reset()
	period := time.Second / time.Duration(cfg.rate)
	warm := int(cfg.warmup / period)
	total := warm + int(cfg.duration/period)
	jobs := make(chan *write, total)
	var (
		wg     sync.WaitGroup
		errs   atomic.Int64
		firstE atomic.Value
	)
	for range cfg.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range jobs {
				w.start = time.Now()
				wctx := context.WithValue(ctx, writeKey{}, w)
				var err error
				if rand.Float64() < cfg.updates {
					w.id = 1 + rand.Int64N(maxID.Load())
					err = db.WithContext(wctx).Model(&product{ID: w.id}).
						Updates(map[string]any{"price": rand.IntN(1000), "title": "updated"}).Error
				} else {
					w.model = &product{Title: "bench", Price: rand.IntN(1000)}
					err = db.WithContext(wctx).Create(w.model).Error
					if err == nil {
						for {
							m := maxID.Load()
							if w.model.ID <= m || maxID.CompareAndSwap(m, w.model.ID) {
								break
							}
						}
					}
				}
				w.done = time.Now()
				if err != nil {
					errs.Add(1)
					firstE.CompareAndSwap(nil, err)
					tr.forget(w)
				}
			}
		}()
	}
	// The schedule: write i is due at start + i*period; the ticker only
	// decides when to release the writes that have come due.
	writes := make([]*write, 0, total)
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	sent := 0
	for sent < total && ctx.Err() == nil {
		due := min(int(time.Since(start)/period)+1, total)
		for ; sent < due; sent++ {
			w := &write{due: start.Add(time.Duration(sent) * period), measured: sent >= warm}
			writes = append(writes, w)
			jobs <- w
		}
		<-tick.C
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil {
		return errStopped
	}
	if n := errs.Load(); n > 0 && n*100 > int64(total) {
		return fmt.Errorf("%d of %d writes failed, e.g. %v", n, total, firstE.Load())
	}
	unacked := tr.wait(ctx, 30*time.Second)

	var lat, lag, took []time.Duration
	var first, last time.Time
	tr.mu.Lock() // a late acknowledgement may still come in
	defer tr.mu.Unlock()
	for _, w := range writes {
		if !w.measured || w.commit.IsZero() {
			continue
		}
		if first.IsZero() {
			first = w.due
		}
		if w.done.After(last) {
			last = w.done
		}
		lag = append(lag, w.start.Sub(w.due))
		took = append(took, w.done.Sub(w.start))
		if !w.ack.IsZero() {
			lat = append(lat, w.ack.Sub(w.commit))
		}
	}
	if len(lat) == 0 {
		return errors.New("no write was acknowledged")
	}
	slices.Sort(lat)
	slices.Sort(lag)
	slices.Sort(took)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	rep.add("p50", ms(percentile(lat, 0.50)))
	rep.add("p90", ms(percentile(lat, 0.90)))
	rep.add("p99", ms(percentile(lat, 0.99)))
	rep.add("max", ms(lat[len(lat)-1]))
	rep.add("rate", float64(len(took))/last.Sub(first).Seconds())
	rep.add("start-lag-p99", ms(percentile(lag, 0.99)))
	rep.add("write-p50", ms(percentile(took, 0.50)))
	rep.add("unacked", float64(unacked))
	rep.add("errors", float64(errs.Load()))
	return nil
}

// percentile returns the q-quantile of sorted ds (nearest rank).
func percentile(ds []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// write is one scheduled write and what happened to it.
type write struct {
	due, start, done time.Time
	measured         bool
	model            *product // a create's row (its ID is set by the INSERT)
	id               int64    // an update's row

	commit, ack time.Time // set under tracker.mu
}

type writeKey struct{}

// commitTracer notes, on the write in the query's context, when a COMMIT
// returned successfully.
type commitTracer struct{}

func (commitTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (commitTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if data.Err != nil || data.CommandTag.String() != "COMMIT" {
		return
	}
	if w, ok := ctx.Value(writeKey{}).(*write); ok {
		current.committed(w, time.Now())
	}
}

// current is the tracker of the running latency scenario, for the tracer
// (which pgx shares between connections).
var current *tracker

// tracker matches commits to acknowledgements, per row id.
type tracker struct {
	mu      sync.Mutex
	pending map[int64][]*write
	open    int
}

func newTracker() *tracker {
	t := &tracker{pending: map[int64][]*write{}}
	current = t
	return t
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

// latencyES returns a client and a fresh index name: on the cluster at
// ELASTICSEARCH_URL when set, else on an in-process test server. The
// returned func deletes the index or stops the server.
func latencyES() (*elasticsearch.Client, string, func(), error) {
	index := "bench-" + testenv.RandomHex(4)
	if url := os.Getenv("ELASTICSEARCH_URL"); url != "" {
		es, err := elasticsearch.NewClient(elasticsearch.Config{
			Addresses: strings.Split(url, ","),
			Username:  os.Getenv("ELASTICSEARCH_USERNAME"),
			Password:  os.Getenv("ELASTICSEARCH_PASSWORD"),
			APIKey:    os.Getenv("ELASTICSEARCH_API_KEY"),
		})
		if err != nil {
			return nil, "", nil, err
		}
		return es, index, func() {
			res, err := es.Indices.Delete([]string{index}, es.Indices.Delete.WithContext(context.Background()))
			if err == nil {
				res.Body.Close()
			}
		}, nil
	}
	srv := estest.NewServer()
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{srv.URL}})
	if err != nil {
		srv.Close()
		return nil, "", nil, err
	}
	return es, index, srv.Close, nil
}
