package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
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
