package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/bsm/redislock"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"golang.org/x/sync/errgroup"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// workerSet is everything one worker process runs.
type workerSet struct {
	streams []*streamWorkers
	group   *redstream.Group // nil when worker.balance is false
}

// streamWorkers are the workers of one configured stream: per shard stream
// a consumer, a delayer and a trimmer, all sharing one Elasticsearch
// handler.
type streamWorkers struct {
	cfg       *StreamConfig
	handler   *elastic.Handler
	shards    []string
	consumers []*redstream.Consumer
	delayers  []*redstream.Delayer
	trimmers  []*redstream.Trimmer
}

func runWorker(ctx context.Context, e *env, args []string) int {
	fs := e.flagSet("worker", "--config FILE [--listen ADDR]")
	path := e.configFlag(fs)
	listen := fs.String("listen", "", "HTTP `address` for /metrics, /healthz and /readyz (overrides worker.listen)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, code, ok := e.loadConfig(*path)
	if !ok {
		return code
	}
	if *listen != "" {
		cfg.Worker.Listen = *listen
	}
	logger := newLogger(cfg.Log, e.stderr)
	if err := worker(ctx, cfg, logger); err != nil {
		logger.ErrorContext(ctx, "redstream: worker failed", "error", err)
		return exitFailure
	}
	return exitOK
}

// worker runs until ctx ends or a worker fails for good. When ctx ends,
// the workers get worker.shutdown_timeout to finish their batches and
// release their leases; past it, worker closes the connections under
// them. Either way it returns only once every goroutine it started has
// ended.
func worker(ctx context.Context, cfg *Config, logger *slog.Logger) error {
	nstreams := 0
	for i := range cfg.Streams {
		nstreams += len(cfg.Streams[i].Streams())
	}
	// Each consumer and delayer keeps a connection for its blocking reads.
	svc, err := connect(ctx, cfg, need{redis: true, db: true, es: true}, 2*nstreams+10)
	if err != nil {
		return err
	}
	defer svc.close()

	m := newMetrics(svc.rdb, redstream.NewKeys(cfg.Redis.Namespace), cfg.Worker.Group)
	ws, err := buildWorkers(ctx, cfg, svc, logger, m.timed)
	if err != nil {
		return err
	}
	if cfg.Worker.balance() {
		if ws.group, err = redstream.NewGroup(svc.rdb, cfg.Worker.Group, ws.units(), &redstream.GroupOptions{
			Namespace: cfg.Redis.Namespace, HeartbeatTTL: cfg.Worker.HeartbeatTTL.Duration, Logger: logger,
		}); err != nil {
			return err
		}
	}
	m.watch(ws)
	health := newHealth(ws, cfg.Worker.StallTimeout.Duration)

	ln, err := net.Listen("tcp", cfg.Worker.Listen)
	if err != nil {
		return fmt.Errorf("worker.listen: %w", err)
	}
	var ready atomic.Bool
	srv := &http.Server{Handler: httpHandler(m, health, &ready), ReadHeaderTimeout: 10 * time.Second}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 5*time.Second)
		defer cancel()
		// The endpoints are not the sync: a scrape or probe still in
		// flight after 5 s (or a connection whose request never came) is
		// cut, and does not turn a clean stop into a failure.
		if err := srv.Shutdown(sctx); err != nil {
			logger.WarnContext(ctx, "redstream: closing the HTTP connections still open", "error", err)
			_ = srv.Close()
		}
		return nil
	})
	g.Go(func() error { health.run(gctx); return nil })
	n := 0
	for _, sw := range ws.streams {
		for i := range sw.shards {
			c, d, t := sw.consumers[i], sw.delayers[i], sw.trimmers[i]
			// A trimmer takes its lock only while it trims: every process
			// runs every trimmer.
			g.Go(func() error { return t.Run(gctx) })
			n++
			if ws.group == nil {
				g.Go(func() error { return c.Run(gctx) })
				g.Go(func() error { return d.Run(gctx) })
			}
		}
	}
	if ws.group != nil {
		g.Go(func() error { return ws.group.Run(gctx) })
	}
	ready.Store(true)
	logger.InfoContext(ctx, "redstream: worker started", "streams", n, "listen", ln.Addr().String(), "version", buildVersion())

	// Every return below receives from done: the group, and this goroutine
	// with it, has ended.
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		ready.Store(false)
		return err
	case <-ctx.Done():
	}
	ready.Store(false)
	timeout := cfg.Worker.ShutdownTimeout.Duration
	logger.InfoContext(ctx, "redstream: stopping", "timeout", timeout)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			return err
		}
		logger.InfoContext(ctx, "redstream: stopped")
		return nil
	case <-t.C:
	}
	// What still runs waits on I/O that ctx does not end: a commit or a
	// lease release on a detached context, a read from a stalled Redis.
	// Closing the connections fails it at once. Leases left behind expire
	// after worker.lock_ttl.
	logger.WarnContext(ctx, "redstream: closing the connections to end the workers", "timeout", timeout)
	_ = srv.Close()
	svc.close()
	return errors.Join(fmt.Errorf("workers did not stop within worker.shutdown_timeout (%v)", timeout), <-done)
}

// units returns the units a group spreads: per shard, its consumer and
// delayer, run together.
func (ws *workerSet) units() []redstream.Unit {
	var units []redstream.Unit
	for _, sw := range ws.streams {
		for i, shard := range sw.shards {
			c, d := sw.consumers[i], sw.delayers[i]
			units = append(units, redstream.Unit{
				Name: shard,
				Lock: redstream.ConsumerLockName(shard, sw.cfg.Consumer),
				Run: func(ctx context.Context) error {
					ug, uctx := errgroup.WithContext(ctx)
					ug.Go(func() error { return c.Run(uctx) })
					ug.Go(func() error { return d.Run(uctx) })
					return ug.Wait()
				},
			})
		}
	}
	return units
}

// buildWorkers prepares the indexes and creates every worker; wrap, when
// not nil, wraps each consumer's handler. Nothing runs yet.
func buildWorkers(ctx context.Context, cfg *Config, svc *services, logger *slog.Logger,
	wrap func(h redstream.Handler, stream, consumer string) redstream.Handler) (*workerSet, error) {
	ns := cfg.Redis.Namespace
	ttl := cfg.Worker.LockTTL.Duration
	ws := &workerSet{}
	for i := range cfg.Streams {
		s := &cfg.Streams[i]
		field := fmt.Sprintf("streams[%d]", i)
		if err := ensureIndex(ctx, svc, redstream.NewKeys(ns), s); err != nil {
			return nil, fmt.Errorf("%s.index %s: %w", field, s.Index, err)
		}
		h, err := newHandler(ctx, svc, cfg, s, logger)
		if err != nil {
			return nil, fmt.Errorf("%s (table %s): %w", field, s.Table, err)
		}
		sw := &streamWorkers{cfg: s, handler: h, shards: s.Streams()}
		for _, name := range sw.shards {
			var ch redstream.Handler = h
			if wrap != nil {
				ch = wrap(h, name, s.Consumer)
			}
			c, err := redstream.NewConsumer(svc.rdb, name, s.Consumer, ch, &redstream.ConsumerOptions{
				Namespace: ns, BatchSize: s.BatchSize, LockTTL: ttl, MaxPayloadBytes: s.MaxPayloadBytes,
				MinBackoff: cfg.Worker.MinBackoff.Duration, MaxBackoff: cfg.Worker.MaxBackoff.Duration, Logger: logger,
			})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", field, err)
			}
			d, err := redstream.NewDelayer(svc.rdb, name, s.Delay.Duration, &redstream.DelayerOptions{
				Namespace: ns, BatchSize: s.BatchSize, LockTTL: ttl,
				MinBackoff: cfg.Worker.MinBackoff.Duration, MaxBackoff: cfg.Worker.MaxBackoff.Duration, Logger: logger,
			})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", field, err)
			}
			t, err := redstream.NewTrimmer(svc.rdb, name, s.TrimConsumers, &redstream.TrimmerOptions{
				Namespace: ns, Interval: s.TrimInterval.Duration, LockTTL: ttl, Logger: logger,
			})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", field, err)
			}
			sw.consumers = append(sw.consumers, c)
			sw.delayers = append(sw.delayers, d)
			sw.trimmers = append(sw.trimmers, t)
		}
		ws.streams = append(ws.streams, sw)
	}
	return ws, nil
}

// newHandler returns the Elasticsearch handler of stream s.
func newHandler(ctx context.Context, svc *services, cfg *Config, s *StreamConfig, logger *slog.Logger) (*elastic.Handler, error) {
	loader, err := newLoader(ctx, svc, s)
	if err != nil {
		return nil, err
	}
	es := &cfg.Elasticsearch
	return elastic.NewHandler(svc.es, loader, &elastic.Options{
		Index:        s.Index,
		Pipeline:     s.Pipeline,
		MaxBulkBytes: s.MaxBulkBytes,
		Concurrency:  s.Concurrency,
		// Items answered 429 or 5xx are resent inside the batch on the
		// same schedule as the client's retries of a whole request.
		MaxItemRetries:  es.MaxRetries,
		RetryBackoff:    es.RetryBackoff.Duration,
		MaxRetryBackoff: es.MaxRetryBackoff.Duration,
		Refresh:         es.Refresh,
		Logger:          logger,
	})
}

func newLoader(ctx context.Context, svc *services, s *StreamConfig) (*elastic.TableLoader, error) {
	return elastic.NewTableLoader(ctx, svc.db, elastic.TableOptions{
		Table:            s.Table,
		PrimaryKey:       s.PrimaryKey,
		Columns:          s.Document.Columns,
		Query:            s.Document.Query,
		SoftDeleteColumn: s.SoftDeleteColumn,
		VersionColumn:    s.VersionColumn,
		RoutingColumn:    s.RoutingColumn,
	})
}

// ensureIndex creates the stream's index with its mapping file when
// nothing of that name exists: the physical index "<index>-<time>" and the
// alias <index> pointing at it, in one request, so that a reindex can
// later swap the alias. An existing index or alias is left as it is.
// Without a mapping file it does nothing: Elasticsearch creates a concrete
// index on the first write. Worker processes starting together create
// one index: the first takes a lock in Redis, the others find its alias.
func ensureIndex(ctx context.Context, svc *services, keys redstream.Keys, s *StreamConfig) error {
	if s.mapping == nil {
		return nil
	}
	if exists, err := indexOrAliasExists(ctx, svc.es, s.Index); err != nil || exists {
		return err
	}
	lock, err := redislock.New(svc.rdb).Obtain(ctx, keys.Lock("create-index:"+s.Index), 30*time.Second,
		&redislock.Options{RetryStrategy: redislock.LinearBackoff(100 * time.Millisecond), Metadata: "@" + redstream.DefaultHolder()})
	if err != nil {
		return fmt.Errorf("take the index creation lock: %w", err)
	}
	defer lock.Release(context.WithoutCancel(ctx))
	if exists, err := indexOrAliasExists(ctx, svc.es, s.Index); err != nil || exists {
		return err
	}
	name := elastic.PhysicalName(s.Index, time.Now())
	if err := elastic.CreateAliasedIndex(ctx, svc.es, name, s.mapping, s.Index); err != nil {
		return fmt.Errorf("create %s with %s: %w", name, s.Mapping, err)
	}
	return nil
}

// indexOrAliasExists reports whether an index or an alias is named name.
func indexOrAliasExists(ctx context.Context, es esapi.Transport, name string) (bool, error) {
	res, err := esapi.IndicesExistsRequest{Index: []string{name}}.Do(ctx, es)
	if err != nil {
		return false, err
	}
	res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("check whether it exists: %s", res.Status())
}
