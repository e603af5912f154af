package main

import (
	"fmt"
	"strings"
	"testing"
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
