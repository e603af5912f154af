package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/internal/dburl"
)

// Defaults of the configuration. testdata/redstream.example.yaml documents
// every field; keep the two in step (TestExampleDocumentsEveryField).
const (
	defaultPrimaryKey      = "id"
	defaultConsumer        = "indexer"
	defaultDelay           = 5 * time.Minute
	defaultListen          = ":9187"
	defaultGroup           = "workers"
	defaultStallTimeout    = 2 * time.Minute
	defaultShutdownTimeout = 30 * time.Second
	defaultESMaxRetries    = 5
	defaultESTimeout       = time.Minute
	// The pauses between the retries inside one Elasticsearch request (the
	// client's of a whole request, the handler's of refused items) double
	// from defaultESRetryBackoff up to defaultESMaxRetryBackoff.
	defaultESRetryBackoff    = 100 * time.Millisecond
	defaultESMaxRetryBackoff = time.Second
	defaultLogLevel          = "info"
	defaultLogFormat         = "text"
)

// Config is the whole configuration file.
type Config struct {
	Redis         RedisConfig    `yaml:"redis"`
	Database      DatabaseConfig `yaml:"database"`
	Elasticsearch ESConfig       `yaml:"elasticsearch"`
	Worker        WorkerConfig   `yaml:"worker"`
	Log           LogConfig      `yaml:"log"`
	Streams       []StreamConfig `yaml:"streams"`

	dir string // directory of the config file; relative paths resolve against it
}

// RedisConfig selects the Redis deployment: exactly one of URL, Cluster and
// Sentinel.
type RedisConfig struct {
	URL       string         `yaml:"url"`
	Cluster   ClusterConfig  `yaml:"cluster"`
	Sentinel  SentinelConfig `yaml:"sentinel"`
	Namespace string         `yaml:"namespace"`
	Username  string         `yaml:"username"`
	Password  string         `yaml:"password"`
	PoolSize  int            `yaml:"pool_size"`
	TLS       TLSConfig      `yaml:"tls"`
}

// ClusterConfig lists the seed nodes of a Redis Cluster.
type ClusterConfig struct {
	Addrs []string `yaml:"addrs"`
}

// SentinelConfig locates a master through Redis Sentinel.
type SentinelConfig struct {
	Master   string   `yaml:"master"`
	Addrs    []string `yaml:"addrs"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	DB       int      `yaml:"db"`
}

// TLSConfig configures TLS to Redis.
type TLSConfig struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// DatabaseConfig locates PostgreSQL, MySQL or MariaDB: the URL tells
// which (see internal/dburl).
type DatabaseConfig struct {
	URL          string `yaml:"url"`
	MaxOpenConns int    `yaml:"max_open_conns"`

	driver, dsn string // from URL, by validate
}

// ESConfig locates Elasticsearch.
type ESConfig struct {
	// Engine is the search engine the urls run: elasticsearch (the
	// default) or opensearch. Every other setting means the same for both.
	Engine             string   `yaml:"engine"`
	URLs               []string `yaml:"urls"`
	Username           string   `yaml:"username"`
	Password           string   `yaml:"password"`
	APIKey             string   `yaml:"api_key"`
	CAFile             string   `yaml:"ca_file"`
	InsecureSkipVerify bool     `yaml:"insecure_skip_verify"`
	MaxRetries         int      `yaml:"max_retries"`
	// RetryOnStatus lists the statuses of a whole request that the client
	// retries inside the request; any other error status fails the
	// request, and the consumer retries its batch after its backoff.
	RetryOnStatus   []int    `yaml:"retry_on_status"`
	RetryBackoff    duration `yaml:"retry_backoff"`
	MaxRetryBackoff duration `yaml:"max_retry_backoff"`
	Timeout         duration `yaml:"timeout"`
	Refresh         string   `yaml:"refresh"`
	// AWS signs requests with AWS SigV4 (Amazon OpenSearch Service).
	AWS AWSConfig `yaml:"aws"`
}

// AWSConfig configures AWS SigV4 signing of the requests to Amazon
// OpenSearch Service (engine opensearch only); the credentials come from
// the AWS SDK's default chain.
type AWSConfig struct {
	Region  string `yaml:"region"`
	Service string `yaml:"service"` // es (managed domains, the default) or aoss (Serverless)
}

// defaultRetryOnStatus are the whole-request statuses the client retries
// by default: overload (429: es_rejected_execution_exception,
// circuit_breaking_exception) and a node or proxy that is down or
// overloaded (502, 503, 504). 500 is left to the consumer: Elasticsearch
// answers it for an error it did not classify, which resending the same
// request at once seldom fixes.
var defaultRetryOnStatus = []int{429, 502, 503, 504}

// WorkerConfig configures `redstream worker`.
type WorkerConfig struct {
	Listen          string   `yaml:"listen"`
	StallTimeout    duration `yaml:"stall_timeout"`
	ShutdownTimeout duration `yaml:"shutdown_timeout"`
	LockTTL         duration `yaml:"lock_ttl"`
	// MinBackoff and MaxBackoff bound the workers' backoff between retries
	// of a failed batch or Redis call (redstream.ConsumerOptions).
	MinBackoff duration `yaml:"min_backoff"`
	MaxBackoff duration `yaml:"max_backoff"`
	// Balance spreads the streams' units over the worker processes of
	// Group (redstream.Group); false runs every unit in every process, one
	// active and the others on standby.
	Balance      *bool    `yaml:"balance"`
	Group        string   `yaml:"group"`
	HeartbeatTTL duration `yaml:"heartbeat_ttl"`
}

// balance reports whether the worker spreads its units over its group.
func (w *WorkerConfig) balance() bool { return w.Balance == nil || *w.Balance }

// LogConfig configures the log lines on stderr.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// StreamConfig is one synced table.
type StreamConfig struct {
	Name             string         `yaml:"name"`
	Table            string         `yaml:"table"`
	PrimaryKey       string         `yaml:"primary_key"`
	Index            string         `yaml:"index"`
	Mapping          string         `yaml:"mapping"`
	Pipeline         string         `yaml:"pipeline"`
	Document         DocumentConfig `yaml:"document"`
	SoftDeleteColumn string         `yaml:"soft_delete_column"`
	VersionColumn    string         `yaml:"version_column"`
	RoutingColumn    string         `yaml:"routing_column"`
	Consumer         string         `yaml:"consumer"`
	TrimConsumers    []string       `yaml:"trim_consumers"`
	BatchSize        int            `yaml:"batch_size"`
	MaxBulkBytes     int            `yaml:"max_bulk_bytes"`
	MaxPayloadBytes  int            `yaml:"max_payload_bytes"`
	Concurrency      int            `yaml:"concurrency"`
	Delay            duration       `yaml:"delay"`
	TrimInterval     duration       `yaml:"trim_interval"`
	Shards           int            `yaml:"shards"`

	mapping []byte // the mapping file's content, when set
}

// DocumentConfig chooses what a document holds: the whole row (the
// default), some columns, or the result of a query.
type DocumentConfig struct {
	Columns []string `yaml:"columns"`
	Query   string   `yaml:"query"`
}

// duration is a duration of the configuration file, a Go duration such as
// 500ms, 30s, 5m or 1h30m (or 0). Left out, null or "", it is unset and
// validate gives it its default.
type duration struct {
	time.Duration
	set bool
}

// UnmarshalYAML implements yaml.Unmarshaler. What it refuses, it reports
// as a *yaml.TypeError, so that decoding goes on and parseConfig names the
// field.
func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return valueError(n, "must be a duration (like 30s or 5m), not %s", describe(n))
	}
	if n.Value == "" {
		*d = duration{}
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return valueError(n, "%q is not a duration (like 30s or 5m)", n.Value)
	}
	*d = duration{Duration: v, set: true}
	return nil
}

// valueError is an UnmarshalYAML error that yaml.v3 collects with its own
// type errors, "line N: problem", rather than one that stops the decoding.
func valueError(n *yaml.Node, format string, a ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, a...)}}
}

// Streams returns the names of the Redis streams of s: the name itself, or
// "<name>-0" … "<name>-<shards-1>" (redstream.ShardName's names).
func (s *StreamConfig) Streams() []string { return redstream.ShardNames(s.Name, s.Shards) }

// ConfigError lists what is wrong with a configuration, one "field: problem"
// per line.
type ConfigError struct {
	File     string
	Problems []string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid config %s:", e.File)
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p)
	}
	return b.String()
}

// loadConfig reads, overrides from the environment, defaults and validates
// the configuration file at path. Every error it returns is a *ConfigError.
func loadConfig(path string, getenv func(string) string) (*Config, error) {
	if path == "" {
		return nil, &ConfigError{File: "(none)", Problems: []string{"--config: required (or set REDSTREAM_CONFIG)"}}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: path, Problems: []string{err.Error()}}
	}
	cfg, err := parseConfig(data)
	if err != nil {
		var ce *ConfigError
		if !errors.As(err, &ce) {
			ce = &ConfigError{Problems: []string{err.Error()}}
		}
		ce.File = path
		return nil, ce
	}
	cfg.dir = filepath.Dir(path)
	cfg.applyEnv(getenv)
	if problems := cfg.validate(); len(problems) > 0 {
		return nil, &ConfigError{File: path, Problems: problems}
	}
	return cfg, nil
}

// parseConfig decodes YAML, refusing unknown fields and trailing
// documents. Its error is a *ConfigError without File.
func parseConfig(data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ConfigError{Problems: []string{"the file is empty"}}
		}
		return nil, &ConfigError{Problems: decodeProblems(data, err)}
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &ConfigError{Problems: []string{"more than one YAML document"}}
	}
	return &cfg, nil
}

var (
	unknownField = regexp.MustCompile(`field (\S+) not found in type main\.(\w+)`)
	duplicateKey = regexp.MustCompile(`mapping key .* already defined`)
	errorLine    = regexp.MustCompile(`^line (\d+): `)
)

// sections names the configuration types in yamlMessage's rewrite.
var sections = map[string]string{
	"Config": "the top level", "RedisConfig": "redis", "ClusterConfig": "redis.cluster",
	"SentinelConfig": "redis.sentinel", "TLSConfig": "redis.tls", "DatabaseConfig": "database",
	"ESConfig": "elasticsearch", "AWSConfig": "elasticsearch.aws", "WorkerConfig": "worker", "LogConfig": "log",
	"StreamConfig": "a stream", "DocumentConfig": "a stream's document",
}

// decodeProblems lists what yaml.v3's error says is wrong, one problem per
// line. A value that does not fit its field is named by the field's path:
// "streams[0].batch_size: "lots" is not an integer", where yaml.v3 says
// "line 18: cannot unmarshal !!str `lots` into int".
func decodeProblems(data []byte, err error) []string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []string{yamlMessage(err.Error())} // a syntax error
	}
	// The decoder does not know the paths: walk the document again, along
	// the types, to find the values it refused.
	var root yaml.Node
	w := valueWalker{byLine: map[int][]string{}, budget: maxWalk}
	if yaml.Unmarshal(data, &root) == nil {
		w.walk(&root, reflect.TypeFor[Config](), "")
	}
	problems := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if !unknownField.MatchString(e) && !duplicateKey.MatchString(e) {
			if m := errorLine.FindStringSubmatch(e); m != nil {
				line, _ := strconv.Atoi(m[1])
				if named := w.byLine[line]; len(named) > 0 {
					problems = append(problems, named[0])
					w.byLine[line] = named[1:]
					continue
				}
			}
		}
		problems = append(problems, yamlMessage(e))
	}
	return problems
}

// yamlMessage rewrites one of yaml.v3's errors for people: "line 7: field
// tabel not found in type main.StreamConfig" becomes "line 7: unknown
// field "tabel" in a stream".
func yamlMessage(msg string) string {
	msg = strings.TrimPrefix(msg, "yaml: ")
	return unknownField.ReplaceAllStringFunc(msg, func(m string) string {
		sub := unknownField.FindStringSubmatch(m)
		return fmt.Sprintf("unknown field %q in %s", sub[1], sections[sub[2]])
	})
}

// maxWalk bounds the nodes valueWalker visits: aliases can make a short
// document a large tree.
const maxWalk = 1 << 16

// valueWalker finds the values of a document that do not fit their fields
// by decoding each one alone into its field's type, and keeps a
// "path: problem" for each, by the line yaml.v3 reports it on.
type valueWalker struct {
	byLine map[int][]string
	budget int
}

func (w *valueWalker) walk(n *yaml.Node, t reflect.Type, path string) {
	if w.budget--; w.budget < 0 {
		return
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch {
	case n.Kind == yaml.DocumentNode:
		for _, c := range n.Content {
			w.walk(c, t, path)
		}
		return
	case n.ShortTag() == "!!null":
		return // the decoder leaves the field as it is
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct && !isUnmarshaler(t):
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" {
				w.merge(v, t, path)
			} else if f, ok := fieldByTag(t, k.Value); ok {
				w.walk(v, f.Type, strings.TrimPrefix(path+"."+k.Value, "."))
			}
		}
		return
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, e := range n.Content {
			w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
		return
	}
	// A single value, or one of the wrong kind: decode it alone.
	var te *yaml.TypeError
	if !errors.As(n.Decode(reflect.New(t).Interface()), &te) {
		return
	}
	for _, e := range te.Errors {
		m := errorLine.FindStringSubmatch(e)
		if m == nil {
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := valueProblem(n, t, e[len(m[0]):])
		w.byLine[line] = append(w.byLine[line], cmp.Or(path, "the file")+": "+msg)
	}
}

// merge walks the value of a merge key ("<<: *defaults"): a mapping, or a
// list of them, merged into the mapping that holds the key.
func (w *valueWalker) merge(v *yaml.Node, t reflect.Type, path string) {
	if v.Kind == yaml.SequenceNode {
		for _, e := range v.Content {
			w.walk(e, t, path)
		}
		return
	}
	w.walk(v, t, path)
}

// fieldByTag returns the field of struct t whose yaml tag names key.
func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name != "" && name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func isUnmarshaler(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(reflect.TypeFor[yaml.Unmarshaler]())
}

// valueProblem says why n does not fit a field of type t; msg is yaml.v3's
// reason, kept for the types that explain themselves (duration).
func valueProblem(n *yaml.Node, t reflect.Type, msg string) string {
	if isUnmarshaler(t) {
		return msg
	}
	var want string
	switch t.Kind() {
	case reflect.String:
		want = "a string"
	case reflect.Int:
		want = "an integer"
	case reflect.Bool:
		want = "true or false"
	case reflect.Slice:
		want = "a list"
	case reflect.Struct:
		want = "a mapping"
	default:
		return msg
	}
	if n.Kind == yaml.ScalarNode {
		return fmt.Sprintf("%q is not %s", n.Value, want)
	}
	return fmt.Sprintf("must be %s, not %s", want, describe(n))
}

// describe names the kind of a YAML value for a message: a scalar by its
// value, quoted.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// applyEnv lets the environment override the file: DATABASE_URL,
// REDIS_URL (which replaces cluster and sentinel settings), REDIS_PASSWORD,
// ELASTICSEARCH_URL (comma-separated), ELASTICSEARCH_USERNAME,
// ELASTICSEARCH_PASSWORD and ELASTICSEARCH_API_KEY.
func (c *Config) applyEnv(getenv func(string) string) {
	if v := getenv("DATABASE_URL"); v != "" {
		c.Database.URL = v
	}
	if v := getenv("REDIS_URL"); v != "" {
		c.Redis.URL = v
		c.Redis.Cluster = ClusterConfig{}
		c.Redis.Sentinel = SentinelConfig{}
	}
	if v := getenv("REDIS_PASSWORD"); v != "" {
		c.Redis.Password = v
	}
	if v := getenv("ELASTICSEARCH_URL"); v != "" {
		c.Elasticsearch.URLs = nil
		for u := range strings.SplitSeq(v, ",") {
			if u = strings.TrimSpace(u); u != "" {
				c.Elasticsearch.URLs = append(c.Elasticsearch.URLs, u)
			}
		}
	}
	if v := getenv("ELASTICSEARCH_API_KEY"); v != "" {
		c.Elasticsearch.APIKey = v
		c.Elasticsearch.Username, c.Elasticsearch.Password = "", ""
	}
	if v := getenv("ELASTICSEARCH_USERNAME"); v != "" {
		c.Elasticsearch.Username = v
		c.Elasticsearch.APIKey = ""
	}
	if v := getenv("ELASTICSEARCH_PASSWORD"); v != "" {
		c.Elasticsearch.Password = v
	}
}

// validate fills defaults and returns every problem as "field: problem".
func (c *Config) validate() []string {
	var p problems

	r := &c.Redis
	modes := 0
	if r.URL != "" {
		modes++
		if _, err := redis.ParseURL(r.URL); err != nil {
			p.add("redis.url", "%v", err)
		}
	}
	if len(r.Cluster.Addrs) > 0 {
		modes++
		p.addrs("redis.cluster.addrs", r.Cluster.Addrs)
	}
	if r.Sentinel.Master != "" || len(r.Sentinel.Addrs) > 0 {
		modes++
		if r.Sentinel.Master == "" {
			p.add("redis.sentinel.master", "required with redis.sentinel.addrs")
		}
		if len(r.Sentinel.Addrs) == 0 {
			p.add("redis.sentinel.addrs", "required with redis.sentinel.master")
		}
		p.addrs("redis.sentinel.addrs", r.Sentinel.Addrs)
		if r.Sentinel.DB < 0 {
			p.add("redis.sentinel.db", "must not be negative")
		}
	}
	switch {
	case modes == 0:
		p.add("redis", "set one of url, cluster.addrs or sentinel (or REDIS_URL)")
	case modes > 1:
		p.add("redis", "url, cluster and sentinel exclude each other; set one")
	}
	if strings.ContainsAny(r.Namespace, " \t\r\n") {
		p.add("redis.namespace", "must not contain white space")
	}
	if r.PoolSize < 0 {
		p.add("redis.pool_size", "must not be negative")
	}
	if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
		p.add("redis.tls", "cert_file and key_file go together")
	}
	p.file("redis.tls.ca_file", c.path(&r.TLS.CAFile))
	p.file("redis.tls.cert_file", c.path(&r.TLS.CertFile))
	p.file("redis.tls.key_file", c.path(&r.TLS.KeyFile))

	if c.Database.URL == "" {
		p.add("database.url", "required (or set DATABASE_URL)")
	} else if driver, dsn, err := dburl.Parse(c.Database.URL); err != nil {
		p.add("database.url", "%v", err)
	} else {
		c.Database.driver, c.Database.dsn = driver, dsn
	}
	if c.Database.MaxOpenConns < 0 {
		p.add("database.max_open_conns", "must not be negative")
	}

	es := &c.Elasticsearch
	es.Engine = cmp.Or(es.Engine, string(elastic.Elasticsearch))
	if _, err := elastic.ParseEngine(es.Engine); err != nil {
		p.add("elasticsearch.engine", "must be elasticsearch or opensearch, not %q", es.Engine)
	} else if es.Engine == string(elastic.OpenSearch) && es.APIKey != "" {
		p.add("elasticsearch.api_key", "OpenSearch has no API keys; use username/password")
	}
	if aws := &es.AWS; aws.Region != "" || aws.Service != "" {
		aws.Service = cmp.Or(aws.Service, elastic.AWSServiceManaged)
		switch {
		case es.Engine != string(elastic.OpenSearch):
			p.add("elasticsearch.aws", "needs engine: opensearch (AWS signing is for Amazon OpenSearch Service)")
		case aws.Region == "":
			p.add("elasticsearch.aws.region", "required with elasticsearch.aws")
		case aws.Service != elastic.AWSServiceManaged && aws.Service != elastic.AWSServiceServerless:
			p.add("elasticsearch.aws.service", "must be es (managed domains) or aoss (Serverless), not %q", aws.Service)
		case es.Username != "" || es.APIKey != "":
			p.add("elasticsearch.aws", "excludes username/password and api_key: requests are signed with AWS credentials")
		}
	}
	if len(es.URLs) == 0 {
		p.add("elasticsearch.urls", "required (or set ELASTICSEARCH_URL)")
	}
	for i, u := range es.URLs {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			p.add(fmt.Sprintf("elasticsearch.urls[%d]", i), "%q is not an http(s) URL", u)
		}
	}
	if es.APIKey != "" && es.Username != "" {
		p.add("elasticsearch.api_key", "excludes username/password; use one")
	}
	if es.Password != "" && es.Username == "" {
		p.add("elasticsearch.password", "needs username")
	}
	p.file("elasticsearch.ca_file", c.path(&es.CAFile))
	p.nonNegative("elasticsearch.max_retries", es.MaxRetries)
	es.MaxRetries = cmp.Or(es.MaxRetries, defaultESMaxRetries)
	if es.RetryOnStatus == nil {
		es.RetryOnStatus = slices.Clone(defaultRetryOnStatus)
	} else if len(es.RetryOnStatus) == 0 {
		p.add("elasticsearch.retry_on_status", "must list at least one status; leave it out for the default %v", defaultRetryOnStatus)
	}
	seenStatus := map[int]bool{}
	for i, code := range es.RetryOnStatus {
		field := fmt.Sprintf("elasticsearch.retry_on_status[%d]", i)
		switch {
		case code != 429 && (code < 500 || code > 599):
			p.add(field, "%d is not 429 or a 5xx status: a resend cannot change the answer", code)
		case seenStatus[code]:
			p.add(field, "%d listed twice", code)
		}
		seenStatus[code] = true
	}
	p.backoff("elasticsearch.retry_backoff", &es.RetryBackoff, defaultESRetryBackoff,
		"elasticsearch.max_retry_backoff", &es.MaxRetryBackoff, defaultESMaxRetryBackoff)
	p.duration("elasticsearch.timeout", &es.Timeout, defaultESTimeout)
	if es.Timeout.set && es.Timeout.Duration == 0 {
		p.add("elasticsearch.timeout", "must be positive")
	}
	switch es.Refresh {
	case "", "false", "true", "wait_for":
	default:
		p.add("elasticsearch.refresh", "must be true, false or wait_for, not %q", es.Refresh)
	}

	w := &c.Worker
	w.Listen = cmp.Or(w.Listen, defaultListen)
	p.duration("worker.stall_timeout", &w.StallTimeout, defaultStallTimeout)
	p.duration("worker.shutdown_timeout", &w.ShutdownTimeout, defaultShutdownTimeout)
	p.duration("worker.lock_ttl", &w.LockTTL, redstream.DefaultLockTTL)
	if w.LockTTL.set && w.LockTTL.Duration < 10*time.Millisecond {
		p.add("worker.lock_ttl", "must be at least 10ms")
	}
	p.backoff("worker.min_backoff", &w.MinBackoff, redstream.DefaultMinBackoff,
		"worker.max_backoff", &w.MaxBackoff, redstream.DefaultMaxBackoff)
	w.Group = cmp.Or(w.Group, defaultGroup)
	p.duration("worker.heartbeat_ttl", &w.HeartbeatTTL, redstream.DefaultHeartbeatTTL)
	if w.HeartbeatTTL.set && w.HeartbeatTTL.Duration < 100*time.Millisecond {
		p.add("worker.heartbeat_ttl", "must be at least 100ms")
	}

	c.Log.Level = cmp.Or(c.Log.Level, defaultLogLevel)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	c.Log.Format = cmp.Or(c.Log.Format, defaultLogFormat)
	if c.Log.Format != "text" && c.Log.Format != "json" {
		p.add("log.format", "must be text or json, not %q", c.Log.Format)
	}

	if len(c.Streams) == 0 {
		p.add("streams", "at least one stream is required")
	}
	seen := map[string]string{} // Redis stream name -> field that claimed it
	for i := range c.Streams {
		c.validateStream(&p, fmt.Sprintf("streams[%d]", i), &c.Streams[i], seen)
	}
	return p.list
}

func (c *Config) validateStream(p *problems, f string, s *StreamConfig, seen map[string]string) {
	switch {
	case s.Name == "":
		p.add(f+".name", "required")
	case strings.ContainsAny(s.Name, " \t\r\n*?[]"):
		p.add(f+".name", "must not contain white space or glob characters")
	case strings.HasSuffix(s.Name, ".delay"):
		p.add(f+".name", "must not end in .delay (the delay stream's suffix)")
	}
	if s.Shards < 0 {
		p.add(f+".shards", "must not be negative")
	}
	if s.Name != "" && s.Shards >= 0 {
		for _, name := range s.Streams() {
			if other, dup := seen[name]; dup {
				p.add(f+".name", "stream %q is also %s", name, other)
				continue
			}
			seen[name] = f
		}
	}
	if s.Table == "" {
		p.add(f+".table", "required")
	}
	s.PrimaryKey = cmp.Or(s.PrimaryKey, defaultPrimaryKey)
	if msg := indexNameProblem(s.Index); msg != "" {
		p.add(f+".index", "%s", msg)
	}
	if s.Mapping != "" {
		path := c.path(&s.Mapping)
		data, err := os.ReadFile(path)
		switch {
		case err != nil:
			p.add(f+".mapping", "%v", err)
		case !json.Valid(data) || !bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")):
			p.add(f+".mapping", "%s is not a JSON object", path)
		default:
			s.mapping = data
		}
	}
	d := &s.Document
	if len(d.Columns) > 0 && d.Query != "" {
		p.add(f+".document", "columns and query exclude each other")
	}
	for j, col := range d.Columns {
		if col == "" {
			p.add(fmt.Sprintf("%s.document.columns[%d]", f, j), "empty column name")
		}
	}
	if d.Query != "" {
		switch {
		case c.Database.driver == dburl.MySQL && !strings.Contains(d.Query, "?"):
			p.add(f+".document.query", "must use ?, the ids as a JSON array (MySQL has no arrays; see JSON_TABLE)")
		case c.Database.driver != dburl.MySQL && !strings.Contains(d.Query, "$1"):
			p.add(f+".document.query", "must use $1, the array of ids")
		}
		for _, x := range []struct{ field, value, column string }{
			{"soft_delete_column", s.SoftDeleteColumn, "deleted"},
			{"version_column", s.VersionColumn, "version"},
			{"routing_column", s.RoutingColumn, "routing"},
		} {
			if x.value != "" {
				p.add(f+"."+x.field, "not used with document.query: return a %q column from the query instead", x.column)
			}
		}
	}
	s.Consumer = cmp.Or(s.Consumer, defaultConsumer)
	if len(s.TrimConsumers) == 0 {
		s.TrimConsumers = []string{s.Consumer}
	}
	names := map[string]bool{}
	for j, n := range s.TrimConsumers {
		switch {
		case n == "":
			p.add(fmt.Sprintf("%s.trim_consumers[%d]", f, j), "empty consumer name")
		case names[n]:
			p.add(fmt.Sprintf("%s.trim_consumers[%d]", f, j), "%q listed twice", n)
		}
		names[n] = true
	}
	if !names[s.Consumer] {
		p.add(f+".trim_consumers", "must include the stream's consumer %q, or the trimmer would delete messages it has not read", s.Consumer)
	}
	if len(c.Redis.Cluster.Addrs) > 0 && s.Name != "" && s.Shards >= 0 {
		// The workers' scripts need every key of a stream in one slot.
		keys := redstream.NewKeys(c.Redis.Namespace)
		for _, name := range append([]string{s.Name}, s.Streams()...) {
			if err := keys.CheckCluster(name, s.TrimConsumers...); err != nil {
				p.add(f+".name", "%s", strings.TrimPrefix(err.Error(), "redstream: "))
				break
			}
		}
	}
	p.nonNegative(f+".batch_size", s.BatchSize)
	p.nonNegative(f+".max_bulk_bytes", s.MaxBulkBytes)
	p.nonNegative(f+".max_payload_bytes", s.MaxPayloadBytes)
	p.nonNegative(f+".concurrency", s.Concurrency)
	p.duration(f+".delay", &s.Delay, defaultDelay)
	p.duration(f+".trim_interval", &s.TrimInterval, redstream.DefaultTrimInterval)
	if s.TrimInterval.set && s.TrimInterval.Duration == 0 {
		p.add(f+".trim_interval", "must be positive")
	}
}

// indexNameProblem returns why name is not a valid Elasticsearch index or
// alias name, or "".
func indexNameProblem(name string) string {
	switch {
	case name == "":
		return "required"
	case name != strings.ToLower(name):
		return "must be lower case"
	case strings.ContainsAny(name, `\/*?"<>| ,#:`):
		return `must not contain \ / * ? " < > | space , # or :`
	case strings.IndexAny(name[:1], "-_+") == 0:
		return "must not start with -, _ or +"
	case name == "." || name == "..":
		return "must not be . or .."
	case len(name) > 255:
		return "longer than 255 bytes"
	}
	return ""
}

// path resolves *p against the config file's directory, in place, and
// returns it.
func (c *Config) path(p *string) string {
	if *p != "" && !filepath.IsAbs(*p) && c.dir != "" {
		*p = filepath.Join(c.dir, *p)
	}
	return *p
}

// problems collects validation messages.
type problems struct{ list []string }

func (p *problems) add(field, format string, a ...any) {
	p.list = append(p.list, field+": "+fmt.Sprintf(format, a...))
}

// duration refuses a negative duration and gives an unset one def.
func (p *problems) duration(field string, d *duration, def time.Duration) {
	switch {
	case !d.set:
		d.Duration = def
	case d.Duration < 0:
		p.add(field, "must not be negative")
	}
}

// backoff checks a pair of first and largest pauses: each positive when
// set, unset ones given their default, and the largest not below the
// first.
func (p *problems) backoff(loField string, lo *duration, loDef time.Duration, hiField string, hi *duration, hiDef time.Duration) {
	n := len(p.list)
	for _, b := range []struct {
		field string
		d     *duration
		def   time.Duration
	}{{loField, lo, loDef}, {hiField, hi, hiDef}} {
		p.duration(b.field, b.d, b.def)
		if b.d.set && b.d.Duration == 0 {
			p.add(b.field, "must be positive")
		}
	}
	if len(p.list) > n {
		return
	}
	if hi.Duration < lo.Duration {
		if hi.set {
			p.add(hiField, "%v is below %s (%v)", hi.Duration, loField, lo.Duration)
		} else {
			p.add(loField, "%v is above %s's default (%v); set both", lo.Duration, hiField, hi.Duration)
		}
	}
}

func (p *problems) nonNegative(field string, v int) {
	if v < 0 {
		p.add(field, "must not be negative")
	}
}

func (p *problems) addrs(field string, addrs []string) {
	for i, a := range addrs {
		_, port, err := net.SplitHostPort(a)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			p.add(fmt.Sprintf("%s[%d]", field, i), "%q is not host:port", a)
		}
	}
}

func (p *problems) file(field, path string) {
	if path == "" {
		return
	}
	if _, err := os.Stat(path); err != nil {
		p.add(field, "%v", err)
	}
}
