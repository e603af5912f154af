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
		{"elasticsearch.timeout", cfg.Elasticsearch.timeout, defaultESTimeout},
		{"max_payload_bytes", s.MaxPayloadBytes, 0}, // the consumer's default, DefaultMaxPayloadBytes
		{"primary_key", s.PrimaryKey, "id"},
		{"consumer", s.Consumer, "indexer"},
		{"trim_consumers", s.TrimConsumers, []string{"indexer"}},
		{"delay", s.delay, defaultDelay},
		{"trim_interval", s.trimInterval, 30 * time.Second},
		{"streams", s.Streams(), []string{"products-0", "products-1", "products-2"}},
		{"mapping loaded", len(s.mapping) > 0, true},
		{"worker.listen", cfg.Worker.Listen, defaultListen},
		{"worker.stall_timeout", cfg.Worker.stallTimeout, defaultStallTimeout},
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
