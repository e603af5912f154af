package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redstream-go/redstream"
)

// TestBackfillLastPartialPage pins that a whole-table backfill indexes the
// last page even when it is short: with pages of 3, 10 rows are pages of
// 3, 3, 3 and 1, and 11 rows end with a page of 2. A loop that took a
// short page for the end of the table, and stopped before handling it,
// would lose the table's last rows — the newest ones, with serial keys.
func TestBackfillLastPartialPage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	// Raw inserts: no plugin, so nothing is queued; the index is empty.
	plain := f.insertRows(t, 10)

	check := func(rows int) {
		t.Helper()
		// No range and no cursor: the whole table, in pages of 3.
		r := runBin(t, f.vars, "backfill", "--config", f.config, "--stream", "products", "--page", "3")
		if got, want := r.code, 0; got != want {
			t.Fatalf("backfill of %d rows: exit %d, want %d\nstdout: %s\nstderr: %s", rows, got, want, r.stdout, r.stderr)
		}
		for _, want := range []string{fmt.Sprintf("backfill products: %d rows", rows), fmt.Sprintf(": %d indexed,", rows)} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("backfill of %d rows: stdout %q lacks %q", rows, r.stdout, want)
			}
		}
		for id := uint64(1); id <= uint64(rows); id++ {
			title, found := docTitle(f.es, id)
			if want := fmt.Sprint("p", id); !found || title != want {
				t.Errorf("after backfilling %d rows, document %d: found %v, title %q; want title %q", rows, id, found, title, want)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	check(10) // the last page holds 1 row

	if err := plain.Exec("INSERT INTO products (id, title, price, updated_at) VALUES (11, 'p11', 11, now())").Error; err != nil {
		t.Fatal(err)
	}
	check(11) // the last page holds 2 rows
}

// TestBackfillInterrupted stops a backfill with SIGINT, as Ctrl-C does: it
// says where it stopped and how to resume, not "context canceled", and
// exits 1; run again, it resumes after the last finished page and indexes
// the rest.
func TestBackfillInterrupted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	const rows = 200
	f.insertRows(t, rows)
	// Slow answers and pages of 5: the run takes seconds.
	f.es.SetLatency(20 * time.Millisecond)
	cursor := redstream.NewKeys(f.ns).Backfill("products", "products")
	p := startBin(t, f.vars, "backfill", "--config", f.config, "--stream", "products", "--page", "5")
	eventually(t, "the first page's cursor", func() bool {
		return f.rdb.Exists(context.Background(), cursor).Val() == 1
	})
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatal("backfill did not stop within a minute of SIGINT")
	}
	out := p.stderr.String()
	if got, want := p.cmd.ProcessState.ExitCode(), exitFailure; got != want {
		t.Errorf("exit code %d, want %d\n%s", got, want, out)
	}
	last, err := f.rdb.Get(context.Background(), cursor).Result()
	if err != nil {
		t.Fatalf("cursor after the interruption: %v\n%s", err, out)
	}
	n, err := strconv.Atoi(last)
	if err != nil || n <= 0 || n >= rows {
		t.Fatalf("cursor %q after the interruption; want a key of the table\n%s", last, out)
	}
	for _, want := range []string{
		"redstream backfill: stopped after " + last + " rows (interrupted), up to key " + last + ";",
		"run the same command again to resume after key " + last + ", or add --restart to start over",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "context canceled") {
		t.Errorf("output speaks of a cancelled context:\n%s", out)
	}

	f.es.SetLatency(0)
	r := runBin(t, f.vars, "backfill", "--config", f.config, "--stream", "products", "--page", "5")
	if r.code != 0 || !strings.Contains(r.stderr, "resuming an interrupted run after key "+last) ||
		!strings.Contains(r.stdout, fmt.Sprintf("backfill products: %d rows", rows-n)) {
		t.Fatalf("resumed backfill: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for id := uint64(1); id <= rows; id++ {
		if _, ok := docTitle(f.es, id); !ok {
			t.Fatalf("document %d missing after the resumed run", id)
		}
	}

	// Stopped while it connects: nothing was done, nothing to resume.
	f.es.SetLatency(time.Minute)
	seen := f.es.Requests()
	p = startBin(t, f.vars, "backfill", "--config", f.config, "--stream", "products")
	eventually(t, "the first request to Elasticsearch", func() bool { return f.es.Requests() > seen })
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatal("backfill did not stop within a minute of SIGINT")
	}
	out = p.stderr.String()
	if code := p.cmd.ProcessState.ExitCode(); code != exitFailure ||
		!strings.Contains(out, "redstream backfill: stopped (interrupted) before any row was indexed; run the same command again to start") {
		t.Errorf("stopped while connecting: exit %d\n%s", code, out)
	}
}

// TestBackfillBesideWorker: a backfill while the worker runs, without a
// version column. Row 3 changes after the backfill read its page and the
// worker writes the change before the page's write arrives: the backfill
// queues the change again after the page, and the worker writes the row's
// state last.
func TestBackfillBesideWorker(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "    batch_size: 5\n")
	for i := 1; i <= 10; i++ {
		if err := f.db.Create(&product{Title: fmt.Sprint("p", i), Price: int64(i)}).Error; err != nil {
			t.Fatal(err)
		}
	}
	startBin(t, f.vars, "worker", "--config", f.config)
	eventually(t, "the worker to sync the rows", func() bool { title, _ := docTitle(f.es, 10); return title == "p10" })
	var once sync.Once
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if strings.HasSuffix(r.URL.Path, "/_bulk") && bytes.Contains(body, []byte(`"_id":"3"`)) {
			once.Do(func() {
				if err := f.db.Model(&product{ID: 3}).Update("title", "changed during the backfill").Error; err != nil {
					t.Error(err)
				}
				eventually(t, "the worker to write the change", func() bool {
					title, _ := docTitle(f.es, 3)
					return title == "changed during the backfill"
				})
			})
		}
		f.es.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	vars := maps.Clone(f.vars)
	vars["ELASTICSEARCH_URL"] = proxy.URL
	if r := runBin(t, vars, "backfill", "--config", f.config, "--stream", "products"); r.code != exitOK {
		t.Fatalf("backfill: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	eventually(t, "document 3 to hold the row's title", func() bool {
		title, _ := docTitle(f.es, 3)
		return title == "changed during the backfill"
	})
}
