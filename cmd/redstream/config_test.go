package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redstream-go/redstream"
)

// validConfig is a minimal valid configuration; streams follow it.
const validConfig = `
redis:
  url: redis://127.0.0.1:6379/0
database:
  url: postgres://u:p@127.0.0.1:5432/db
elasticsearch:
  urls: [http://127.0.0.1:9200]
streams:
`

const validStream = `
  - name: products
    table: products
    index: products
`

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func noEnv(string) string { return "" }

func TestConfigProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		want       []string // each must be one of the problems, as a prefix
	}{
		{"missing table", validConfig + validStream + "  - name: orders\n    index: orders\n",
			[]string{"streams[1].table: required"}},
		{"missing name and index", validConfig + "  - table: t\n",
			[]string{"streams[0].name: required", "streams[0].index: required"}},
		{"no streams", validConfig, []string{"streams: at least one stream is required"}},
		{"unknown field", validConfig + validStream + "    tabel: x\n",
			[]string{`line 13: unknown field "tabel" in a stream`}},
		{"unknown top-level field", "redis_url: x\n" + validConfig + validStream,
			[]string{`line 1: unknown field "redis_url" in the top level`}},
		{"bad duration", validConfig + validStream + "    delay: 5 minutes\n",
			[]string{`streams[0].delay: "5 minutes" is not a duration`}},
		{"negative shards", validConfig + validStream + "    shards: -1\n",
			[]string{"streams[0].shards: must not be negative"}},
		{"duplicate stream", validConfig + validStream + validStream,
			[]string{`streams[1].name: stream "products" is also streams[0]`}},
		{"shard collides", validConfig + validStream + "    shards: 2\n  - name: products-1\n    table: t\n    index: t\n",
			[]string{`streams[1].name: stream "products-1" is also streams[0]`}},
		{"upper-case index", validConfig + "  - name: p\n    table: p\n    index: Products\n",
			[]string{"streams[0].index: must be lower case"}},
		{"columns and query", validConfig + validStream + "    document:\n      columns: [id]\n      query: SELECT 1 WHERE $1\n",
			[]string{"streams[0].document: columns and query exclude each other"}},
		{"query without ids", validConfig + validStream + "    document:\n      query: SELECT 1\n",
			[]string{"streams[0].document.query: must use $1"}},
		{"MySQL query with $1", strings.Replace(validConfig, "postgres://u:p@127.0.0.1:5432/db", "mysql://u:p@127.0.0.1:3306/db", 1) +
			validStream + "    document:\n      query: SELECT id, doc FROM t WHERE id = ANY($1)\n",
			[]string{"streams[0].document.query: must use ?, the ids as a JSON array"}},
		{"bad MySQL URL", strings.Replace(validConfig, "postgres://u:p@127.0.0.1:5432/db", "mysql://u@h/a/b", 1) + validStream,
			[]string{"database.url: MySQL URL: database name"}},
		{"query and soft delete", validConfig + validStream + "    soft_delete_column: deleted_at\n    document:\n      query: SELECT $1\n",
			[]string{`streams[0].soft_delete_column: not used with document.query: return a "deleted" column`}},
		{"trim consumers without the consumer", validConfig + validStream + "    trim_consumers: [cache]\n",
			[]string{`streams[0].trim_consumers: must include the stream's consumer "indexer"`}},
		{"missing mapping file", validConfig + validStream + "    mapping: nope.json\n",
			[]string{"streams[0].mapping: open"}},
		{"two redis modes", strings.Replace(validConfig, "redis:\n", "redis:\n  cluster:\n    addrs: [a:1]\n", 1) + validStream,
			[]string{"redis: url, cluster and sentinel exclude each other"}},
		{"sentinel without addrs", strings.Replace(validConfig, "  url: redis://127.0.0.1:6379/0\n", "  sentinel:\n    master: m\n", 1) + validStream,
			[]string{"redis.sentinel.addrs: required with redis.sentinel.master"}},
		{"bad cluster addr", strings.Replace(validConfig, "  url: redis://127.0.0.1:6379/0\n", "  cluster:\n    addrs: [nohost]\n", 1) + validStream,
			[]string{`redis.cluster.addrs[0]: "nohost" is not host:port`}},
		{"bad es url", strings.Replace(validConfig, "http://127.0.0.1:9200", "127.0.0.1:9200", 1) + validStream,
			[]string{`elasticsearch.urls[0]: "127.0.0.1:9200" is not an http(s) URL`}},
		{"api key and username", strings.Replace(validConfig, "  urls:", "  api_key: k\n  username: u\n  urls:", 1) + validStream,
			[]string{"elasticsearch.api_key: excludes username/password"}},
		{"unknown engine", strings.Replace(validConfig, "  urls:", "  engine: solr\n  urls:", 1) + validStream,
			[]string{`elasticsearch.engine: must be elasticsearch or opensearch, not "solr"`}},
		{"api key with opensearch", strings.Replace(validConfig, "  urls:", "  engine: opensearch\n  api_key: k\n  urls:", 1) + validStream,
			[]string{"elasticsearch.api_key: OpenSearch has no API keys; use username/password"}},
		{"aws without opensearch", strings.Replace(validConfig, "  urls:", "  aws:\n    region: eu-west-1\n  urls:", 1) + validStream,
			[]string{"elasticsearch.aws: needs engine: opensearch"}},
		{"aws bad service", strings.Replace(validConfig, "  urls:", "  engine: opensearch\n  aws:\n    region: eu-west-1\n    service: s3\n  urls:", 1) + validStream,
			[]string{`elasticsearch.aws.service: must be es (managed domains) or aoss (Serverless), not "s3"`}},
		{"aws without region", strings.Replace(validConfig, "  urls:", "  engine: opensearch\n  aws:\n    service: aoss\n  urls:", 1) + validStream,
			[]string{"elasticsearch.aws.region: required with elasticsearch.aws"}},
		{"aws and username", strings.Replace(validConfig, "  urls:", "  engine: opensearch\n  username: u\n  aws:\n    region: eu-west-1\n  urls:", 1) + validStream,
			[]string{"elasticsearch.aws: excludes username/password and api_key"}},
		{"bad log level", validConfig + validStream + "log:\n  level: loud\n",
			[]string{`log.level: must be debug, info, warn or error, not "loud"`}},
		{"tls cert without key", strings.Replace(validConfig, "redis:\n", "redis:\n  tls:\n    cert_file: c.pem\n", 1) + validStream,
			[]string{"redis.tls: cert_file and key_file go together"}},
		{"negative max_payload_bytes", validConfig + validStream + "    max_payload_bytes: -1\n",
			[]string{"streams[0].max_payload_bytes: must not be negative"}},
		{"bad es timeout", strings.Replace(validConfig, "  urls:", "  timeout: soon\n  urls:", 1) + validStream,
			[]string{`elasticsearch.timeout: "soon" is not a duration`}},
		{"zero es timeout", strings.Replace(validConfig, "  urls:", "  timeout: 0s\n  urls:", 1) + validStream,
			[]string{"elasticsearch.timeout: must be positive"}},
		{"max_backoff below min_backoff", validConfig + validStream + "worker:\n  min_backoff: 1s\n  max_backoff: 500ms\n",
			[]string{"worker.max_backoff: 500ms is below worker.min_backoff (1s)"}},
		{"min_backoff above the default max", validConfig + validStream + "worker:\n  min_backoff: 5s\n",
			[]string{"worker.min_backoff: 5s is above worker.max_backoff's default (2s); set both"}},
		{"zero max_backoff", validConfig + validStream + "worker:\n  max_backoff: 0s\n",
			[]string{"worker.max_backoff: must be positive"}},
		{"negative min_backoff", validConfig + validStream + "worker:\n  min_backoff: -1s\n",
			[]string{"worker.min_backoff: must not be negative"}},
		{"bad max_backoff", validConfig + validStream + "worker:\n  max_backoff: 2\n",
			[]string{`worker.max_backoff: "2" is not a duration`}},
		{"es max_retry_backoff below retry_backoff", strings.Replace(validConfig, "  urls:", "  retry_backoff: 2s\n  max_retry_backoff: 1s\n  urls:", 1) + validStream,
			[]string{"elasticsearch.max_retry_backoff: 1s is below elasticsearch.retry_backoff (2s)"}},
		{"zero es retry_backoff", strings.Replace(validConfig, "  urls:", "  retry_backoff: 0s\n  urls:", 1) + validStream,
			[]string{"elasticsearch.retry_backoff: must be positive"}},
		{"retry_on_status not retryable", strings.Replace(validConfig, "  urls:", "  retry_on_status: [429, 400, 503, 503, 600]\n  urls:", 1) + validStream,
			[]string{"elasticsearch.retry_on_status[1]: 400 is not 429 or a 5xx status",
				"elasticsearch.retry_on_status[3]: 503 listed twice",
				"elasticsearch.retry_on_status[4]: 600 is not 429 or a 5xx status"}},
		{"retry_on_status empty", strings.Replace(validConfig, "  urls:", "  retry_on_status: []\n  urls:", 1) + validStream,
			[]string{"elasticsearch.retry_on_status: must list at least one status"}},
		{"retry_on_status not integers", strings.Replace(validConfig, "  urls:", "  retry_on_status: [429, five hundred]\n  urls:", 1) + validStream,
			[]string{`elasticsearch.retry_on_status[1]: "five hundred" is not an integer`}},
		{"negative duration", validConfig + validStream + "    delay: -5s\n",
			[]string{"streams[0].delay: must not be negative"}},
		{"zero trim interval", validConfig + validStream + "    trim_interval: 0\n",
			[]string{"streams[0].trim_interval: must be positive"}},
		{"short lock ttl", validConfig + validStream + "worker:\n  lock_ttl: 1ms\n",
			[]string{"worker.lock_ttl: must be at least 10ms"}},
		{"duration not a scalar", validConfig + validStream + "    delay: [5s]\n",
			[]string{"streams[0].delay: must be a duration (like 30s or 5m), not a list"}},
		{"bad duration in a section", validConfig + validStream + "worker:\n  shutdown_timeout: 30\n",
			[]string{`worker.shutdown_timeout: "30" is not a duration`}},
		{"not an integer", validConfig + validStream + "    batch_size: lots\n",
			[]string{`streams[0].batch_size: "lots" is not an integer`}},
		{"not a bool", strings.Replace(validConfig, "redis:\n", "redis:\n  tls:\n    enabled: maybe\n", 1) + validStream,
			[]string{`redis.tls.enabled: "maybe" is not true or false`}},
		{"not a string", validConfig + validStream + "log:\n  level: [info]\n",
			[]string{"log.level: must be a string, not a list"}},
		{"not a list", strings.Replace(validConfig, "streams:\n", "streams: products\n", 1),
			[]string{`streams: "products" is not a list`}},
		{"not a mapping", "5\n", []string{`the file: "5" is not a mapping`}},
		{"flow mapping", validConfig + "  - {name: p, table: p, index: p, tabel: x, batch_size: lots, delay: soon}\n",
			[]string{`line 9: unknown field "tabel" in a stream`, `streams[0].batch_size: "lots" is not an integer`,
				`streams[0].delay: "soon" is not a duration`}},
		{"alias", validConfig + "  - &s {name: a, table: a, index: a, batch_size: lots}\n  - *s\n",
			[]string{`streams[0].batch_size: "lots" is not an integer`, `streams[1].batch_size: "lots" is not an integer`}},
		{"merge key", validConfig + validStream + "    <<: {batch_size: lots}\n",
			[]string{`streams[0].batch_size: "lots" is not an integer`}},
		{"duplicate key", validConfig + validStream + "    delay: 5s\n    delay: 6s\n",
			[]string{`line 14: mapping key "delay" already defined at line 13`}},
		{"empty file", "", []string{"the file is empty"}},
		{"two documents", validConfig + validStream + "---\nfoo: 1\n", []string{"more than one YAML document"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := writeFile(t, t.TempDir(), "redstream.yaml", tt.yaml)
			_, err := loadConfig(path, noEnv)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("loadConfig: %v, want a *ConfigError", err)
			}
			if ce.File != path {
				t.Errorf("ConfigError.File = %q, want %q", ce.File, path)
			}
			for _, w := range tt.want {
				found := false
				for _, p := range ce.Problems {
					found = found || strings.HasPrefix(p, w)
				}
				if !found {
					t.Errorf("problems %q lack %q", ce.Problems, w)
				}
			}
		})
	}
}

func TestConfigAddrs(t *testing.T) {
	t.Parallel()
	for addr, ok := range map[string]bool{
		"h:6379": true, "10.0.0.1:26379": true, "[::1]:7000": true, ":7000": true,
		"nohost": false, "h:": false, "h:redis": false, "h:70000": false, "::1:7000": false,
	} {
		var p problems
		p.addrs("redis.cluster.addrs", []string{addr})
		if got := len(p.list) == 0; got != ok {
			t.Errorf("%q: accepted %v, want %v (%q)", addr, got, ok, p.list)
		}
	}
}

// TestConfigDurations checks the forms a duration takes: a Go duration,
// 0, or nothing (left out, null or ""), which is the default; an explicit
// 0 is kept.
func TestConfigDurations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value string // the delay line's value; "-" leaves the line out
		want  time.Duration
	}{
		{"-", defaultDelay},
		{"", defaultDelay},
		{"~", defaultDelay},
		{`""`, defaultDelay},
		{"0", 0},
		{"0s", 0},
		{"500ms", 500 * time.Millisecond},
		{`"1h30m"`, 90 * time.Minute},
		{"1.5s", 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			yaml := validConfig + validStream
			if tt.value != "-" {
				yaml += "    delay: " + tt.value + "\n"
			}
			cfg, err := loadConfig(writeFile(t, t.TempDir(), "c.yaml", yaml), noEnv)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Streams[0].Delay.Duration; got != tt.want {
				t.Errorf("delay: %s gives %v, want %v", tt.value, got, tt.want)
			}
		})
	}
}

// TestESBackoff checks the schedule of the client's retries inside a
// request that the example documents: from elasticsearch.retry_backoff,
// doubling, capped at elasticsearch.max_retry_backoff, with jitter over
// the upper half; by default from 100ms up to 1s.
func TestESBackoff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		yaml     string
		schedule map[int]time.Duration // attempt -> the upper bound of its pause
	}{
		{"", map[int]time.Duration{
			1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond,
			5: time.Second, 6: time.Second, 30: time.Second,
		}},
		{"  retry_backoff: 50ms\n  max_retry_backoff: 300ms\n", map[int]time.Duration{
			1: 50 * time.Millisecond, 2: 100 * time.Millisecond, 3: 200 * time.Millisecond,
			4: 300 * time.Millisecond, 10: 300 * time.Millisecond, 1000: 300 * time.Millisecond,
		}},
	} {
		yaml := strings.Replace(validConfig, "  urls:", tc.yaml+"  urls:", 1) + validStream
		cfg, err := loadConfig(writeFile(t, t.TempDir(), "c.yaml", yaml), noEnv)
		if err != nil {
			t.Fatal(err)
		}
		es := &cfg.Elasticsearch
		for attempt, upper := range tc.schedule {
			for range 50 {
				if d := es.retryBackoff(attempt); d < upper/2 || d > upper {
					t.Fatalf("%q: retryBackoff(%d) = %v, want in [%v, %v]", tc.yaml, attempt, d, upper/2, upper)
				}
			}
		}
	}
}

func TestConfigDefaultsAndEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "m.json", `{"mappings":{"properties":{"id":{"type":"long"}}}}`)
	path := writeFile(t, dir, "c.yaml", validConfig+validStream+"    mapping: m.json\n    shards: 3\n")
	env := map[string]string{
		"DATABASE_URL":           "postgres://env@db/x",
		"REDIS_URL":              "redis://env:6380/1",
		"ELASTICSEARCH_URL":      "http://a:9200, http://b:9200",
		"ELASTICSEARCH_USERNAME": "elastic",
		"ELASTICSEARCH_PASSWORD": "pw",
	}
	cfg, err := loadConfig(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Streams[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"database.url", cfg.Database.URL, "postgres://env@db/x"},
		{"redis.url", cfg.Redis.URL, "redis://env:6380/1"},
		{"elasticsearch.urls", cfg.Elasticsearch.URLs, []string{"http://a:9200", "http://b:9200"}},
		{"elasticsearch.username", cfg.Elasticsearch.Username, "elastic"},
		{"elasticsearch.max_retries", cfg.Elasticsearch.MaxRetries, defaultESMaxRetries},
		{"elasticsearch.timeout", cfg.Elasticsearch.Timeout.Duration, defaultESTimeout},
		{"elasticsearch.retry_on_status", cfg.Elasticsearch.RetryOnStatus, []int{429, 502, 503, 504}},
		{"elasticsearch.retry_backoff", cfg.Elasticsearch.RetryBackoff.Duration, 100 * time.Millisecond},
		{"elasticsearch.max_retry_backoff", cfg.Elasticsearch.MaxRetryBackoff.Duration, time.Second},
		{"worker.min_backoff", cfg.Worker.MinBackoff.Duration, 100 * time.Millisecond},
		{"worker.max_backoff", cfg.Worker.MaxBackoff.Duration, 2 * time.Second},
		{"max_payload_bytes", s.MaxPayloadBytes, 0}, // the consumer's default, DefaultMaxPayloadBytes
		{"primary_key", s.PrimaryKey, "id"},
		{"consumer", s.Consumer, "indexer"},
		{"trim_consumers", s.TrimConsumers, []string{"indexer"}},
		{"delay", s.Delay.Duration, defaultDelay},
		{"trim_interval", s.TrimInterval.Duration, 30 * time.Second},
		{"streams", s.Streams(), []string{"products-0", "products-1", "products-2"}},
		{"mapping loaded", len(s.mapping) > 0, true},
		{"worker.listen", cfg.Worker.Listen, defaultListen},
		{"worker.stall_timeout", cfg.Worker.StallTimeout.Duration, defaultStallTimeout},
		{"worker.shutdown_timeout", cfg.Worker.ShutdownTimeout.Duration, defaultShutdownTimeout},
		{"worker.lock_ttl", cfg.Worker.LockTTL.Duration, redstream.DefaultLockTTL},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestExampleConfig checks that the annotated example is valid and names
// every field of the configuration.
func TestExampleConfig(t *testing.T) {
	t.Parallel()
	const example = "../../testdata/redstream.example.yaml"
	if _, err := loadConfig(example, noEnv); err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for f := range typ.Fields() {
			tag := f.Tag.Get("yaml")
			if tag == "" {
				continue
			}
			p := path + tag
			if !regexp.MustCompile(`(?m)^[ \t]*(- )?#?[ \t]*` + regexp.QuoteMeta(tag) + `:`).Match(data) {
				t.Errorf("the example does not document %s", p)
			}
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				walk(ft, p+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
}
