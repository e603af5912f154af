package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// app is the application side of the paced scenarios: GORM on pgx, with a
// tracer noting when each COMMIT returned, and the plugin on the space's
// Redis client. It creates the products table.
type app struct {
	sql      *sql.DB
	db       *gorm.DB
	producer *redstream.Producer
}

// openApp opens the application side in s with a pool of writers idle
// connections and a producer with opts (its Namespace is the space's).
// With tr set, a tracer tells it about each write's COMMIT.
func openApp(s *space, writers int, opts redstream.ProducerOptions, tr *tracker) (*app, error) {
	cc, err := pgx.ParseConfig(s.dsn)
	if err != nil {
		return nil, err
	}
	if tr != nil {
		cc.Tracer = commitTracer{t: tr}
	}
	a := &app{sql: stdlib.OpenDB(*cc)}
	a.sql.SetMaxIdleConns(writers)
	if a.db, err = gorm.Open(postgres.New(postgres.Config{Conn: a.sql}), &gorm.Config{Logger: logger.Discard}); err != nil {
		a.close()
		return nil, err
	}
	if err := a.db.AutoMigrate(&product{}); err != nil {
		a.close()
		return nil, err
	}
	opts.Namespace = s.ns
	if a.producer, err = redstream.NewProducer(s.rdb, &opts); err != nil {
		a.close()
		return nil, err
	}
	if err := a.db.Use(redstream.NewPlugin(a.producer)); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

func (a *app) close() {
	if a.producer != nil {
		_ = a.producer.Close(context.Background())
	}
	_ = a.sql.Close()
}

// create creates one product through GORM with the plugin, for w.
func (a *app) create(ctx context.Context, w *write, price int) error {
	w.model = &product{Title: "bench", Price: price}
	return a.db.WithContext(context.WithValue(ctx, writeKey{}, w)).Create(w.model).Error
}

// syncWorker is the worker side, as the worker binary runs it, in process
// on its own Redis client and database pool: a Consumer "indexer" with the
// Elasticsearch handler (TableLoader with soft-delete and version columns),
// wrapped to tell the tracker when each batch was acknowledged, a Delayer
// and a Trimmer. The target is the project's ES test server, in process,
// or ELASTICSEARCH_URL when set.
type syncWorker struct {
	rdb     *redis.Client
	sql     *sql.DB
	h       *elastic.Handler
	c       *redstream.Consumer
	d       *redstream.Delayer
	t       *redstream.Trimmer
	esClose func()
	g       *errgroup.Group
	gctx    context.Context
	stop    context.CancelFunc
}

// startWorker starts the worker side of s, with a Delayer of delay,
// syncing to engine (see latencyES), reporting acknowledgements to tr.
func startWorker(ctx context.Context, s *space, tr *tracker, delay time.Duration, engine string) (_ *syncWorker, err error) {
	w := &syncWorker{}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	if w.rdb, err = openRedis(ctx); err != nil {
		return nil, err
	}
	if w.sql, err = s.openDB(ctx); err != nil {
		return nil, err
	}
	es, index, esClose, err := latencyES(engine)
	if err != nil {
		return nil, err
	}
	w.esClose = esClose
	loader, err := elastic.NewTableLoader(ctx, w.sql, elastic.TableOptions{
		Table: "products", SoftDeleteColumn: "deleted_at", VersionColumn: "updated_at",
	})
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if w.h, err = elastic.NewHandler(es, loader, &elastic.Options{Index: index, Logger: quiet}); err != nil {
		return nil, err
	}
	if w.c, err = redstream.NewConsumer(w.rdb, "products", "indexer", &ackHandler{h: w.h, t: tr},
		&redstream.ConsumerOptions{Namespace: s.ns, Logger: quiet}); err != nil {
		return nil, err
	}
	if w.d, err = redstream.NewDelayer(w.rdb, "products", delay, &redstream.DelayerOptions{Namespace: s.ns, Logger: quiet}); err != nil {
		return nil, err
	}
	if w.t, err = redstream.NewTrimmer(w.rdb, "products", []string{"indexer"}, &redstream.TrimmerOptions{Namespace: s.ns, Logger: quiet}); err != nil {
		return nil, err
	}
	// The consumer starts from the beginning either way; with its offset
	// set, the Trimmer does not report it as missing until the first commit.
	if err := w.rdb.Set(ctx, s.keys.Offset("products", "indexer"), "0-0", 0).Err(); err != nil {
		return nil, err
	}
	wctx, stop := context.WithCancel(ctx)
	w.stop = stop
	w.g, w.gctx = errgroup.WithContext(wctx)
	w.g.Go(func() error { return w.c.Run(w.gctx) })
	w.g.Go(func() error { return w.d.Run(w.gctx) })
	w.g.Go(func() error { return w.t.Run(w.gctx) })
	return w, nil
}

// alive returns an error when a worker has stopped.
func (w *syncWorker) alive() error {
	if err := w.gctx.Err(); err != nil {
		return fmt.Errorf("workers stopped: %w", errors.Join(err, w.g.Wait()))
	}
	return nil
}

func (w *syncWorker) close() {
	if w.stop != nil {
		w.stop()
		_ = w.g.Wait()
	}
	if w.esClose != nil {
		w.esClose()
	}
	if w.sql != nil {
		_ = w.sql.Close()
	}
	if w.rdb != nil {
		_ = w.rdb.Close()
	}
}
