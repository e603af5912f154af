package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// verifyJSON runs verify --json and decodes its report.
func (f *fixture) verify(t *testing.T, args ...string) (verifyReport, result) {
	t.Helper()
	r := runBin(t, f.vars, append([]string{"verify", "--json", "--config", f.config, "--stream", "products"}, args...)...)
	var rep verifyReport
	if r.code != exitOK && r.code != exitFailure {
		t.Fatalf("verify %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("verify --json: %v\n%s%s", err, r.stdout, r.stderr)
	}
	return rep, r
}

// insertRows inserts products 1..n without the plugin (nothing is queued).
func (f *fixture) insertRows(t *testing.T, n int) *gorm.DB {
	t.Helper()
	plain := f.db.Session(&gorm.Session{NewDB: true})
	for i := 1; i <= n; i++ {
		if err := plain.Exec("INSERT INTO products (id, title, price, updated_at) VALUES (?, ?, ?, now())", i, fmt.Sprint("p", i), i).Error; err != nil {
			t.Fatal(err)
		}
	}
	return plain
}

func (f *fixture) backfill(t *testing.T) {
	t.Helper()
	if r := runBin(t, f.vars, "backfill", "--config", f.config, "--stream", "products"); r.code != 0 {
		t.Fatalf("backfill: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// esDo sends a request to the test server with http.DefaultClient, whose
// idle connections the server closes when it stops.
func (f *fixture) esDo(t *testing.T, method, path, body string) {
	t.Helper()
	req, err := http.NewRequest(method, f.es.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		t.Fatalf("%s %s: %s %s", method, path, res.Status, readBody(res.Body))
	}
}

func sample(ids ...string) string { return strings.Join(ids, ",") }

// TestVerify compares a table with its index: in sync; then a missing, two
// extra (a row gone, a row soft-deleted) and a stale document are reported;
// --repair queues them, and once the worker has synced them the two agree.
func TestVerify(t *testing.T) {
	t.Parallel()
	// Pages of 3 make every walk take several pages.
	f := newFixture(t, `    soft_delete_column: deleted_at
    version_column: updated_at
    batch_size: 3
    delay: 1h
`)
	ctx := context.Background()
	plain := f.insertRows(t, 10)
	if err := plain.Exec("UPDATE products SET deleted_at = now() WHERE id = 10").Error; err != nil {
		t.Fatal(err)
	}
	f.backfill(t)
	f.esDo(t, "POST", "/_refresh", "")
	rep, r := f.verify(t)
	if r.code != exitOK || !rep.InSync || rep.Rows != 10 || rep.Documents != 9 || !rep.Versioned {
		t.Fatalf("in sync: exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	text := runBin(t, f.vars, "verify", "--config", f.config, "--stream", "products")
	if text.code != exitOK || !strings.Contains(text.stdout, "in sync") {
		t.Fatalf("verify (text): exit %d\n%s%s", text.code, text.stdout, text.stderr)
	}

	// Row 11 is never indexed (missing); row 5 is soft-deleted and document
	// 999 has no row (extra); row 3 changed (stale).
	for _, q := range []string{
		"INSERT INTO products (id, title, price, updated_at) VALUES (11, 'p11', 11, now())",
		"UPDATE products SET deleted_at = now(), updated_at = now() WHERE id = 5",
		"UPDATE products SET title = 'changed', updated_at = updated_at + interval '1 second' WHERE id = 3",
	} {
		if err := plain.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	f.esDo(t, "PUT", "/products/_doc/999?refresh=true", `{"id":999,"title":"orphan","price":1}`)

	rep, r = f.verify(t, "--show", "1")
	if r.code != exitFailure || rep.InSync {
		t.Fatalf("differences: exit %d, report %+v", r.code, rep)
	}
	for _, c := range []struct {
		name string
		got  elastic.IDSample
		n    int64
		ids  string
	}{
		{"missing", rep.Missing, 1, "11"},
		{"extra", rep.Extra, 2, "5"}, // --show 1: the first in key order
		{"stale", rep.Stale, 1, "3"},
	} {
		if c.got.Count != c.n || sample(c.got.First...) != c.ids {
			t.Errorf("%s: %+v, want %d starting with %s", c.name, c.got, c.n, c.ids)
		}
	}
	text = runBin(t, f.vars, "verify", "--config", f.config, "--stream", "products")
	for _, want := range []string{"missing: 1 (rows without their document): 11", "extra:   2", ": 5 999", "stale:   1", "differ"} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("verify (text) lacks %q:\n%s", want, text.stdout)
		}
	}

	// Dead letters: of records 11 and 3, which --repair queues again; of
	// record 1, in sync; one without a payload.
	dlq := redstream.NewKeys(f.ns).DeadLetter("products", "indexer")
	dead := map[string]string{}
	for _, v := range []string{`{"id":11}`, `{"id":3}`, `{"id":1}`, ""} {
		values := []any{"id", "1-1", "stream", "products", "consumer", "indexer", "error", "rejected", "attempts", 1}
		if v != "" {
			values = append(values, "payload", v)
		} else {
			values = append(values, "fields", `{"other":"x"}`)
		}
		id, err := f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: values}).Result()
		if err != nil {
			t.Fatal(err)
		}
		dead[v] = id
	}

	// --repair queues the four ids and still exits 1. It reports the
	// index's count before it queued anything and when it ended, and
	// drops the dead letters of the records it queued.
	rep, r = f.verify(t, "--repair")
	if r.code != exitFailure || rep.Queued != 4 {
		t.Fatalf("repair: exit %d, report %+v", r.code, rep)
	}
	if rep.DocumentsBefore == nil || *rep.DocumentsBefore != 10 || rep.DocumentsAfter == nil || *rep.DocumentsAfter != 10 ||
		rep.DeadLettersResolved != 2 {
		t.Errorf("repair: documents before %v, after %v, dead letters resolved %d; want 10, 10 (no worker runs), 2",
			rep.DocumentsBefore, rep.DocumentsAfter, rep.DeadLettersResolved)
	}
	var left []string
	for _, d := range f.dlqEntries(t) {
		left = append(left, d.DLQID)
	}
	if got, want := sample(left...), sample(dead[`{"id":1}`], dead[""]); got != want {
		t.Errorf("dead letters left after the repair: %s, want %s (record 1's and the one without a payload)", got, want)
	}
	msgs, err := f.rdb.XRange(ctx, redstream.NewKeys(f.ns).Stream("products"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var payloads []string
	for _, m := range msgs {
		payloads = append(payloads, fmt.Sprint(m.Values["payload"]))
	}
	if got, want := sample(payloads...), sample(`{"id":3}`, `{"id":11}`, `{"id":5}`, `{"id":999}`); got != want { // walk order
		t.Errorf("queued payloads %s, want %s", got, want)
	}
	text = runBin(t, f.vars, "verify", "--repair", "--config", f.config, "--stream", "products")
	for _, want := range []string{
		"verify products: 11 rows in the table, 10 documents in index products before the repair\n",
		"differ: queued 4 ids on stream products; the worker syncs them\n",
		"after the repair: 10 documents in index products when verify ended; run verify again once the worker has caught up\n",
	} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("verify --repair (text) lacks %q:\n%s", want, text.stdout)
		}
	}

	// The worker syncs them.
	w := startBin(t, f.vars, "worker", "--config", f.config)
	eventually(t, "verify to find the two in sync", func() bool {
		rep, r := f.verify(t)
		return r.code == exitOK && rep.InSync && rep.Rows == 11 && rep.Documents == 9
	})
	if code := w.stop(t); code != 0 {
		t.Fatalf("worker exit code %d", code)
	}
}

// TestVerifyWithoutVersion compares presence only when the stream has no
// version column.
func TestVerifyWithoutVersion(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	plain := f.insertRows(t, 4)
	f.backfill(t)
	if err := plain.Exec("UPDATE products SET title = 'changed', updated_at = now() + interval '1 hour' WHERE id = 2").Error; err != nil {
		t.Fatal(err)
	}
	f.esDo(t, "POST", "/_refresh", "")
	rep, r := f.verify(t)
	if r.code != exitOK || !rep.InSync || rep.Versioned || rep.Rows != 4 || rep.Documents != 4 {
		t.Fatalf("exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	if text := runBin(t, f.vars, "verify", "--config", f.config, "--stream", "products"); !strings.Contains(text.stdout, "not checked") {
		t.Errorf("verify (text) does not say stale documents are not checked:\n%s", text.stdout)
	}
	if err := plain.Exec("DELETE FROM products WHERE id = 4").Error; err != nil {
		t.Fatal(err)
	}
	if rep, r := f.verify(t); r.code != exitFailure || rep.Extra.Count != 1 || sample(rep.Extra.First...) != "4" {
		t.Errorf("a deleted row: exit %d, report %+v", r.code, rep)
	}
}

// TestVerifyKeyField walks an index whose documents hold the key under
// another name (a document query), with --key-field.
func TestVerifyKeyField(t *testing.T) {
	t.Parallel()
	f := newFixture(t, `    document:
      query: >-
        SELECT id::text AS id, deleted_at IS NOT NULL AS deleted,
          json_build_object('product_id', id, 'title', title) AS doc
        FROM products WHERE id = ANY($1::text[]::bigint[])
`)
	plain := f.insertRows(t, 5)
	f.backfill(t)
	if err := plain.Exec("UPDATE products SET deleted_at = now() WHERE id = 2").Error; err != nil {
		t.Fatal(err)
	}
	f.esDo(t, "POST", "/_refresh", "")
	// The mapping has an id field the documents lack.
	r := runBin(t, f.vars, "verify", "--config", f.config, "--stream", "products")
	if r.code != exitFailure || !strings.Contains(r.stderr, "--key-field") {
		t.Errorf("without --key-field: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	rep, r := f.verify(t, "--key-field", "product_id", "--page", "2")
	if r.code != exitFailure || rep.Documents != 5 || rep.Extra.Count != 1 || sample(rep.Extra.First...) != "2" || rep.Missing.Count != 0 {
		t.Errorf("--key-field product_id: exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
}

// TestVerifyRepairShards queues each id on its shard's stream.
func TestVerifyRepairShards(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "    shards: 2\n")
	f.insertRows(t, 6) // never indexed: all missing
	rep, r := f.verify(t, "--repair")
	if r.code != exitFailure || rep.Missing.Count != 6 || rep.Queued != 6 {
		t.Fatalf("exit %d, report %+v\n%s", r.code, rep, r.stderr)
	}
	keys := redstream.NewKeys(f.ns)
	total := 0
	for _, shard := range []string{"products-0", "products-1"} {
		msgs, err := f.rdb.XRange(context.Background(), keys.Stream(shard), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			var p struct{ ID int }
			if err := json.Unmarshal([]byte(fmt.Sprint(m.Values["payload"])), &p); err != nil {
				t.Fatal(err)
			}
			if want := redstream.ShardName("products", p.ID, 2); want != shard {
				t.Errorf("id %d queued on %s, want %s", p.ID, shard, want)
			}
			total++
		}
	}
	if total != 6 {
		t.Errorf("%d messages on the shards, want 6", total)
	}
}

func TestVerifyUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeFile(t, dir, "ok.yaml", validConfig+validStream)
	for _, args := range [][]string{
		{"--stream", "nope"},
		{},
		{"--stream", "products", "--show", "-1"},
		{"--stream", "products", "--page", "20000"},
		{"--stream", "products", "extra"},
	} {
		if r := runBin(t, nil, append([]string{"verify", "--config", path}, args...)...); r.code != exitUsage {
			t.Errorf("verify %v: exit %d, want %d; stderr %q", args, r.code, exitUsage, r.stderr)
		}
	}
}
