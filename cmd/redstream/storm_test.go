package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic/estest"
)

// stormDuration is how long each storm of TestFaultStorms lasts: long
// enough for the consumer's backoff to reach its cap (about 3 s from
// 100 ms) and for the outage to be logged more than once (every 10 s).
const stormDuration = 15 * time.Second

// textLogAttr matches one key=value of a slog text line.
var textLogAttr = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

// parseTextLog returns the lines of a slog text log whose msg is msg, as
// maps of their attributes (quoted values unquoted).
func parseTextLog(out, msg string) []map[string]string {
	var lines []map[string]string
	for _, line := range strings.Split(out, "\n") {
		attrs := map[string]string{}
		for _, m := range textLogAttr.FindAllStringSubmatch(line, -1) {
			v := m[2]
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			attrs[m[1]] = v
		}
		if attrs["msg"] == msg {
			lines = append(lines, attrs)
		}
	}
	return lines
}

// TestFaultStorms runs the worker binary under load while Elasticsearch
// fails every request for stormDuration, in the ways a real cluster does
// (whole-request 429, 500 and 503 storms; answers slower than
// elasticsearch.timeout), then answers normally again. It checks that the
// worker resumes and every row is indexed (faultRun.recovered); that
// during the outage the consumer logged a bounded number of lines, the
// first at once and then at most one every 10 s, each with the attempt
// count and a next retry no further than worker.max_backoff; and that the
// outage ended with one recovery line giving its length and attempts.
//
// The recovery line each subtest logs ("recovery: fault=es-500-storm
// seconds=…") gives the figures of docs/RELIABILITY.md; the test does not
// judge them, the machine's load moves them.
func TestFaultStorms(t *testing.T) {
	t.Parallel()
	needFaultServer(t)
	for _, tc := range []struct {
		name   string
		esYAML string
		worker string
		cap    time.Duration // the consumer's backoff cap the config gives
		// minLines is the fewest outage lines expected: 2 where the
		// consumer fails at once and often (a 500 is not retried inside
		// the request), so that its outage outlasts the 10 s between lines.
		minLines int
		on       func(s *estest.Server)
		off      func(s *estest.Server)
		hit      string
	}{
		{
			// Indexing pressure: 429 es_rejected_execution_exception. The
			// client retries each bulk (max_retries, 5 by default) before
			// the consumer backs off.
			name: "es-429-storm", cap: redstream.DefaultMaxBackoff,
			on:  func(s *estest.Server) { s.RejectNext(1 << 30) },
			off: func(s *estest.Server) { s.RejectNext(0) },
			hit: "bulk request failed: 429",
		},
		{
			// 500: not retried by the client; every failure goes to the
			// consumer's backoff.
			name: "es-500-storm", cap: redstream.DefaultMaxBackoff, minLines: 2,
			on:  func(s *estest.Server) { s.FailNext(1<<30, 500) },
			off: func(s *estest.Server) { s.FailNext(0, 500) },
			hit: "bulk request failed: 500",
		},
		{
			// The same storm with the backoff configured: the waits stay
			// under worker.max_backoff.
			name: "es-500-storm-max-backoff-700ms", cap: 700 * time.Millisecond, minLines: 2,
			worker: "  min_backoff: 50ms\n  max_backoff: 700ms\n",
			on:     func(s *estest.Server) { s.FailNext(1<<30, 500) },
			off:    func(s *estest.Server) { s.FailNext(0, 500) },
			hit:    "bulk request failed: 500",
		},
		{
			// 503 cluster_block_exception (no master, state not recovered):
			// retried by the client, then by the consumer.
			name: "es-503-storm", cap: redstream.DefaultMaxBackoff,
			on:  func(s *estest.Server) { s.FailNext(1<<30, 503) },
			off: func(s *estest.Server) { s.FailNext(0, 503) },
			hit: "bulk request failed: 503",
		},
		{
			// Every answer comes after elasticsearch.timeout: each try
			// times out (the client retries it), then the consumer backs
			// off.
			name: "es-timeout-storm", cap: redstream.DefaultMaxBackoff,
			esYAML: "  timeout: 500ms\n",
			on:     func(s *estest.Server) { s.SetLatency(time.Second) },
			off:    func(s *estest.Server) { s.SetLatency(0) },
			hit:    "no answer within elasticsearch.timeout (500ms)",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFaultFixture(t, faultSetup{esYAML: tc.esYAML, worker: tc.worker})
			r := startFaultRun(t, tc.name, f)
			tc.on(f.es)
			time.Sleep(stormDuration)
			tc.off(f.es)
			end := time.Now()
			r.recovered(t, end)
			out := r.w.stderr.String()
			if !strings.Contains(out, tc.hit) {
				t.Errorf("the worker's log does not show the storm (%q):\n%s", tc.hit, out)
			}
			checkOutageLog(t, out, tc.cap, max(tc.minLines, 1))
		})
	}
}

// checkOutageLog checks the consumer's outage lines in a worker's log:
// a first line at attempt 1, then at most one line per 10 s of each
// outage (and at least minLines in all), attempts rising, waits within
// (0, maxWait], and one recovery line per outage with its length and
// attempts. An outage counts from the consumer's first failed attempt,
// after the client's retries inside the request.
func checkOutageLog(t *testing.T, out string, maxWait time.Duration, minLines int) {
	t.Helper()
	fails := parseTextLog(out, "redstream: handler failed; retrying the batch")
	recs := parseTextLog(out, "redstream: consumer recovered")
	if len(recs) == 0 {
		t.Fatalf("no recovery line:\n%s", out)
	}
	var outages time.Duration
	for _, rec := range recs {
		d, err := time.ParseDuration(rec["outage"])
		n, _ := strconv.Atoi(rec["failed_attempts"])
		if err != nil || n < 1 || rec["level"] != "INFO" {
			t.Errorf("recovery line %v: want INFO with the outage and failed_attempts", rec)
		}
		outages += d
	}
	if outages < stormDuration/3 {
		t.Errorf("the outages lasted %v in all, for a storm of %v", outages, stormDuration)
	}
	// Per outage: its first line, then at most one per 10 s (outages here
	// are shorter than a minute).
	bound := len(recs) + int(outages/(10*time.Second))
	if len(fails) < minLines || len(fails) > bound {
		t.Errorf("%d outage lines over %d outages of %v, want %d to %d:\n%s", len(fails), len(recs), outages, minLines, bound, out)
	}
	prev := 0
	for i, l := range fails {
		attempt, err := strconv.Atoi(l["attempt"])
		if err != nil || l["level"] != "ERROR" {
			t.Fatalf("outage line %d: %v, want ERROR with an attempt", i, l)
		}
		wait, err := time.ParseDuration(l["retry_in"])
		if err != nil || wait <= 0 || wait > maxWait {
			t.Errorf("outage line %d: retry_in=%q, want within (0, %v]", i, l["retry_in"], maxWait)
		}
		next, err := time.Parse(time.RFC3339Nano, l["next_retry"])
		at, err2 := time.Parse(time.RFC3339Nano, l["time"])
		if err != nil || err2 != nil || next.Before(at.Add(-time.Second)) {
			t.Errorf("outage line %d: next_retry=%q at time=%q", i, l["next_retry"], l["time"])
		}
		if attempt != 1 && attempt <= prev {
			t.Errorf("outage line %d: attempt %d after %d", i, attempt, prev)
		}
		if attempt > 1 && l["not_logged"] == "" {
			t.Errorf("outage line %d: %v, want not_logged", i, l)
		}
		prev = attempt
	}
	if fails[0]["attempt"] != "1" {
		t.Errorf("first outage line %v, want attempt=1", fails[0])
	}
}

// TestESClientRetries checks what the binary's Elasticsearch client
// retries inside a request, as configured: the statuses of
// elasticsearch.retry_on_status (429, 502, 503 and 504 by default, not
// 500), at most elasticsearch.max_retries times; any other status is the
// answer at once.
func TestESClientRetries(t *testing.T) {
	t.Parallel()
	needFaultServer(t)
	for _, tc := range []struct {
		name     string
		esYAML   string
		fail     int // FailNext's count
		status   int
		want     int // the answer's status
		requests int // the requests the server saw
	}{
		{"500 not retried by default", "", 2, 500, 500, 1},
		{"503 retried by default", "", 2, 503, 200, 3},
		{"429 retried by default", "", 2, 429, 200, 3},
		{"500 retried when listed", "  retry_on_status: [500]\n", 2, 500, 200, 3},
		{"503 not retried when not listed", "  retry_on_status: [500]\n", 2, 503, 503, 1},
		{"max_retries bounds the retries", "  max_retries: 2\n", 5, 503, 503, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := estest.New(t)
			yaml := strings.Replace(validConfig, "  urls: [http://127.0.0.1:9200]\n",
				"  urls: ["+srv.URL+"]\n  retry_backoff: 1ms\n  max_retry_backoff: 2ms\n"+tc.esYAML, 1) + validStream
			cfg, err := loadConfig(writeFile(t, t.TempDir(), "c.yaml", yaml), noEnv)
			if err != nil {
				t.Fatal(err)
			}
			es, tr, err := newES(context.Background(), cfg.Elasticsearch)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.CloseIdleConnections()
			if tc.status == 429 {
				srv.RejectNext(tc.fail)
			} else {
				srv.FailNext(tc.fail, tc.status)
			}
			before := srv.Requests()
			res, err := esapi.InfoRequest{}.Do(context.Background(), es)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.want || srv.Requests()-before != tc.requests {
				t.Errorf("answer %d after %d requests, want %d after %d", res.StatusCode, srv.Requests()-before, tc.want, tc.requests)
			}
		})
	}
}

// TestItemRetriesFollowMaxRetries checks that the handler resends items
// answered 429 at most elasticsearch.max_retries times inside a batch, on
// the configured pauses, and that the consumer then retries the batch
// until the document is written.
func TestItemRetriesFollowMaxRetries(t *testing.T) {
	t.Parallel()
	needFaultServer(t)
	f := newFixture(t, "")
	f.editConfig(t, "  urls: [http://unused:9200]\n",
		"  urls: [http://unused:9200]\n  max_retries: 2\n  retry_backoff: 10ms\n  max_retry_backoff: 20ms\n")
	// Three refusals: the first try and two resends fail the batch; the
	// consumer's next delivery writes it.
	f.es.FailItem("products", "1", 429, "es_rejected_execution_exception", "rejected execution of primary operation", 3)
	w := startBin(t, f.vars, "worker", "--config", f.config)
	waitReady(t, f.listen)
	p := product{ID: 1, Title: "tea"}
	f.create(t, &p)
	within(t, 30*time.Second, "the document", func() bool { return f.indexed(&p) })
	out := w.stderr.String()
	if !strings.Contains(out, "1 documents still refused (429/5xx) after 2 resends") ||
		strings.Count(out, "redstream: handler failed; retrying the batch") != 1 {
		t.Errorf("want one failed batch after 2 resends:\n%s", out)
	}
	if code := w.stop(t); code != 0 {
		t.Errorf("exit code after SIGTERM: %d", code)
	}
}
