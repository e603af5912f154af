package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/go-sql-driver/mysql"   // also the "mysql" database/sql driver
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/opensearch-project/opensearch-go/v4"
	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/internal/backoff"
	"github.com/redstream-go/redstream/internal/dburl"
)

// connectTimeout bounds the first contact with each service.
const connectTimeout = 10 * time.Second

// newLogger returns the logger the configuration asks for, writing to w.
func newLogger(cfg LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level)) // validated
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newRedis returns a client for the configured deployment and checks that
// it answers. poolMin is the least pool size the caller needs (the worker
// keeps connections for blocking reads).
func newRedis(ctx context.Context, cfg RedisConfig, poolMin int) (redis.UniversalClient, error) {
	tlsCfg, err := redisTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	pool := max(cfg.PoolSize, poolMin)
	var rdb redis.UniversalClient
	switch {
	case cfg.URL != "":
		o, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		o.Username = cmp.Or(cfg.Username, o.Username)
		o.Password = cmp.Or(cfg.Password, o.Password)
		if tlsCfg != nil {
			o.TLSConfig = tlsCfg
		}
		o.PoolSize = max(o.PoolSize, pool)
		rdb = redis.NewClient(o)
	case len(cfg.Cluster.Addrs) > 0:
		// A PoolSize of 0 is the client's default.
		rdb = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: cfg.Cluster.Addrs, Username: cfg.Username, Password: cfg.Password,
			TLSConfig: tlsCfg, PoolSize: pool,
		})
	default:
		s := cfg.Sentinel
		rdb = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: s.Master, SentinelAddrs: s.Addrs,
			SentinelUsername: s.Username, SentinelPassword: s.Password,
			Username: cfg.Username, Password: cfg.Password, DB: s.DB,
			TLSConfig: tlsCfg, PoolSize: pool,
		})
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("connect to Redis: %w", err)
	}
	return rdb, nil
}

func redisTLS(cfg TLSConfig) (*tls.Config, error) {
	if !cfg.Enabled && cfg.CAFile == "" && cfg.CertFile == "" {
		return nil, nil
	}
	t := &tls.Config{ServerName: cfg.ServerName, InsecureSkipVerify: cfg.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pool, err := certPool(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
		}
		t.RootCAs = pool
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

func certPool(path string) (*x509.CertPool, error) {
	certs, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certs) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// newDB opens the database, PostgreSQL or MySQL as its URL says, and
// checks that it answers. A MySQL connection interpolates its parameters
// (one round trip a query rather than prepare, execute and close) unless
// the URL says otherwise.
func newDB(ctx context.Context, cfg DatabaseConfig) (*sql.DB, error) {
	driver, dsn := cfg.driver, cfg.dsn
	if driver == "" {
		var err error
		if driver, dsn, err = dburl.Parse(cfg.URL); err != nil {
			return nil, fmt.Errorf("database.url: %w", err)
		}
	}
	if driver == dburl.MySQL {
		mc, err := mysql.ParseDSN(dsn)
		if err != nil {
			return nil, fmt.Errorf("database.url: %w", err)
		}
		if !strings.Contains(dsn, "interpolateParams=") {
			mc.InterpolateParams = true
		}
		dsn = mc.FormatDSN()
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("database.url: %w", err)
	}
	if cfg.MaxOpenConns > 0 {
		db.SetMaxOpenConns(cfg.MaxOpenConns)
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		name := "PostgreSQL"
		if driver == dburl.MySQL {
			name = "MySQL"
		}
		return nil, fmt.Errorf("connect to %s: %w", name, err)
	}
	return db, nil
}

// newES returns a client of the cluster at elasticsearch.urls, of the
// engine elasticsearch.engine names, that retries 429 and 502-504 with
// exponential backoff and jitter, bounds each attempt by
// elasticsearch.timeout, and checks that the cluster answers and runs that
// engine; and its transport, whose idle connections the caller closes when
// done.
func newES(ctx context.Context, cfg ESConfig) (esapi.Transport, *http.Transport, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" || cfg.InsecureSkipVerify {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // asked for in the config
	}
	if cfg.CAFile != "" {
		pool, err := certPool(cfg.CAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("elasticsearch.ca_file: %w", err)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	var rt http.RoundTripper = tr
	if cfg.Timeout.Duration > 0 {
		rt = &timeoutTransport{rt: tr, timeout: cfg.Timeout.Duration}
	}
	engine := elastic.Engine(cfg.Engine)
	var es esapi.Transport
	if engine == elastic.OpenSearch {
		oc := opensearch.Config{
			Addresses:     cfg.URLs,
			Username:      cfg.Username,
			Password:      cfg.Password,
			RetryOnStatus: cfg.RetryOnStatus,
			MaxRetries:    cfg.MaxRetries,
			RetryBackoff:  cfg.retryBackoff,
			Transport:     rt,
		}
		if cfg.AWS.Region != "" {
			sg, err := elastic.AWSSigner(ctx, cfg.AWS.Region, cfg.AWS.Service)
			if err != nil {
				return nil, nil, fmt.Errorf("elasticsearch.aws: %w", err)
			}
			oc.Signer = sg
		}
		c, err := elastic.NewOpenSearchClient(oc)
		if err != nil {
			return nil, nil, fmt.Errorf("elasticsearch (engine opensearch): %w", err)
		}
		es = c
	} else {
		c, err := elasticsearch.NewClient(elasticsearch.Config{
			Addresses:     cfg.URLs,
			Username:      cfg.Username,
			Password:      cfg.Password,
			APIKey:        cfg.APIKey,
			RetryOnStatus: cfg.RetryOnStatus,
			MaxRetries:    cfg.MaxRetries,
			RetryBackoff:  cfg.retryBackoff,
			Transport:     rt,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("elasticsearch: %w", err)
		}
		es = c
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := checkEngine(pctx, es, engine, &cfg, rt); err != nil {
		tr.CloseIdleConnections()
		return nil, nil, err
	}
	return es, tr, nil
}

// checkEngine asks the cluster, through the client and so with its
// retries, whether it answers and runs the configured engine. The
// Elasticsearch client refuses a cluster that is not Elasticsearch with a
// message that names no fix: the cluster is then asked again through the
// bare transport, to name the engine it runs and the line to change.
func checkEngine(ctx context.Context, es esapi.Transport, engine elastic.Engine, cfg *ESConfig, rt http.RoundTripper) error {
	mismatch := func(got elastic.Engine, version string) error {
		return fmt.Errorf("connect to %s: the cluster at %s runs %s %s; set elasticsearch.engine: %s",
			engineName(engine), cfg.URLs[0], engineName(got), version, got)
	}
	if engine == elastic.OpenSearch {
		got, version, err := elastic.DetectEngine(ctx, es)
		if err != nil {
			return fmt.Errorf("connect to OpenSearch: %w", err)
		}
		if got != engine {
			return mismatch(got, version)
		}
		return nil
	}
	res, err := esapi.InfoRequest{}.Do(ctx, es)
	if err != nil {
		if got, version, derr := elastic.DetectEngine(ctx, &authTransport{rt: rt, cfg: cfg}); derr == nil && got != engine {
			return mismatch(got, version)
		}
		return fmt.Errorf("connect to Elasticsearch: %w", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		return fmt.Errorf("connect to Elasticsearch: %s", res.Status())
	}
	return nil
}

// engineName is the engine's name as the docs write it.
func engineName(e elastic.Engine) string {
	if e == elastic.OpenSearch {
		return "OpenSearch"
	}
	return "Elasticsearch"
}

// authTransport sends a request to the first of elasticsearch.urls with
// its credentials, for the engine check before a client is trusted.
type authTransport struct {
	rt  http.RoundTripper
	cfg *ESConfig
}

// Perform implements esapi.Transport.
func (a *authTransport) Perform(req *http.Request) (*http.Response, error) {
	u, err := url.Parse(a.cfg.URLs[0])
	if err != nil {
		return nil, err
	}
	req.URL.Scheme, req.URL.Host = u.Scheme, u.Host
	req.URL.Path = strings.TrimSuffix(u.Path, "/") + req.URL.Path
	switch {
	case a.cfg.APIKey != "":
		req.Header.Set("Authorization", "ApiKey "+a.cfg.APIKey)
	case a.cfg.Username != "":
		req.SetBasicAuth(a.cfg.Username, a.cfg.Password)
	}
	return a.rt.RoundTrip(req)
}

// timeoutTransport bounds each request attempt to Elasticsearch, reading
// the response body included. A node that stops answering (a hung
// process, a connection that died without a reset) then fails the attempt,
// which the client retries and the consumer backs off from, instead of
// holding the worker on a request that never ends.
type timeoutTransport struct {
	rt      http.RoundTripper
	timeout time.Duration
}

// RoundTrip implements http.RoundTripper.
func (t *timeoutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
	res, err := t.rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		timedOut := ctx.Err() != nil && req.Context().Err() == nil
		cancel()
		if timedOut {
			return nil, fmt.Errorf("no answer within elasticsearch.timeout (%v): %w", t.timeout, err)
		}
		return nil, err
	}
	res.Body = &cancelBody{ReadCloser: res.Body, cancel: cancel}
	return res, nil
}

// cancelBody ends its request's context when the body is closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// retryBackoff is the pause before the client's attempt-th retry (from
// 1) of a request: elasticsearch.retry_backoff doubling up to
// elasticsearch.max_retry_backoff, with jitter over its upper half.
func (cfg *ESConfig) retryBackoff(attempt int) time.Duration {
	return backoff.Nth(cfg.RetryBackoff.Duration, cfg.MaxRetryBackoff.Duration, attempt-1)
}

// services bundles the connections a subcommand opened.
type services struct {
	rdb  redis.UniversalClient
	db   *sql.DB
	es   esapi.Transport // an *elasticsearch.Client or an *opensearch.Client
	esTr *http.Transport // es's

	closeOnce sync.Once
}

// need says which services a subcommand connects to.
type need struct{ redis, db, es bool }

func connect(ctx context.Context, cfg *Config, n need, poolMin int) (*services, error) {
	s := &services{}
	var err error
	if n.redis {
		if s.rdb, err = newRedis(ctx, cfg.Redis, poolMin); err != nil {
			return nil, err
		}
	}
	if n.db {
		if s.db, err = newDB(ctx, cfg.Database); err != nil {
			s.close()
			return nil, err
		}
	}
	if n.es {
		if s.es, s.esTr, err = newES(ctx, cfg.Elasticsearch); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// close closes the connections: Redis calls fail from then on, those in
// flight included; the database lets the queries in flight end first.
// Only the first call does anything.
func (s *services) close() {
	s.closeOnce.Do(func() {
		if s.rdb != nil {
			_ = s.rdb.Close()
		}
		if s.db != nil {
			_ = s.db.Close()
		}
		if c, ok := s.es.(io.Closer); ok { // the OpenSearch client's background work
			_ = c.Close()
		}
		if s.esTr != nil {
			s.esTr.CloseIdleConnections()
		}
	})
}
