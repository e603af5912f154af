package main

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
)

// TestDLQNotJSON is the bug of the old parser, which dropped a payload
// that is not valid JSON: `dlq list` showed no payload and `dlq replay`
// said the message had none. A dead letter with payload 'not json' is
// listed with it (a JSON string in --json) and replayed byte for byte; one
// with no payload is listed with its fields and cannot be replayed.
func TestDLQNotJSON(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	keys := redstream.NewKeys(f.ns)
	dlq := keys.DeadLetter("products", "indexer")
	add := func(values ...any) string {
		t.Helper()
		id, err := f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: append([]any{
			"id", "1-1", "stream", "products", "consumer", "indexer",
			"error", "redstream: invalid message", "attempts", 0, "time", "2025-01-02T03:04:05.5Z",
		}, values...)}).Result()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	notJSON := add("payload", "not json")
	noPayload := add("fields", `{"other":"x"}`)

	// --json: the payload as a JSON string, flagged.
	r := runBin(t, f.vars, "dlq", "list", "--json", "--config", f.config, "--stream", "products")
	if r.code != 0 {
		t.Fatalf("dlq list --json: exit %d\n%s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("dlq list --json: %d lines, want 2:\n%s", len(lines), r.stdout)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("dlq list --json: %v\n%s", err, r.stdout)
	}
	want := map[string]any{
		"dlq_id": notJSON, "stream": "products", "consumer": "indexer", "id": "1-1",
		"error": "redstream: invalid message", "attempts": "0", "time": "2025-01-02T03:04:05.5Z",
		"payload": "not json", "payload_not_json": true,
	}
	if !reflect.DeepEqual(first, want) {
		t.Errorf("dlq list --json, first line:\n%s\nwant %v", lines[0], want)
	}
	dl := f.dlqEntries(t)
	if len(dl) != 2 || string(dl[0].Payload) != `"not json"` || !dl[0].PayloadNotJSON ||
		dl[1].DLQID != noPayload || dl[1].Payload != nil || string(dl[1].Fields) != `{"other":"x"}` {
		t.Errorf("dlq list --json: %+v", dl)
	}

	// The table shows the payload, and the fields of the other.
	r = runBin(t, f.vars, "dlq", "list", "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "not json") || !strings.Contains(r.stdout, `fields {"other":"x"}`) {
		t.Errorf("dlq list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// --all replays the one with a payload and skips the other.
	r = runBin(t, f.vars, "dlq", "replay", "--all", "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "replayed 1 dead-lettered messages") ||
		!strings.Contains(r.stderr, "skipped "+noPayload+": the message had no payload") {
		t.Fatalf("dlq replay --all: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	msgs := f.rdb.XRange(ctx, keys.Stream("products"), "-", "+").Val()
	if len(msgs) != 1 || !reflect.DeepEqual(msgs[0].Values, map[string]any{"payload": "not json"}) {
		t.Errorf("stream after the replay: %+v, want one entry with payload 'not json'", msgs)
	}
	if dl := f.dlqEntries(t); len(dl) != 1 || dl[0].DLQID != noPayload {
		t.Errorf("dlq list after the replay: %+v", dl)
	}
	// Replayed already: reported, nothing done.
	r = runBin(t, f.vars, "dlq", "replay", "--id", notJSON, "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "replayed 0 dead-lettered messages") || !strings.Contains(r.stderr, "has no entry "+notJSON) {
		t.Errorf("dlq replay of a replayed id: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if st := f.status(t); st[0].Consumers[0].DeadLetters != 1 {
		t.Errorf("status: %d dead letters, want 1", st[0].Consumers[0].DeadLetters)
	}
}

// TestDLQListCount lists at most --count entries and says how many more
// there are.
func TestDLQListCount(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "")
	ctx := context.Background()
	dlq := redstream.NewKeys(f.ns).DeadLetter("products", "indexer")
	var ids []string
	for range 5 {
		ids = append(ids, f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: dlq, Values: []any{"payload", `{"id":1}`}}).Val())
	}
	r := runBin(t, f.vars, "dlq", "list", "--count", "2", "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, ids[1]) || strings.Contains(r.stdout, ids[2]) || !strings.Contains(r.stdout, "… 3 more") {
		t.Errorf("dlq list --count 2: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, f.vars, "dlq", "drop", "--id", ids[0]+","+ids[4], "--config", f.config, "--stream", "products")
	if r.code != 0 || !strings.Contains(r.stdout, "dropped 2 dead-lettered messages") {
		t.Fatalf("dlq drop --id: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var left []string
	for _, d := range f.dlqEntries(t) {
		left = append(left, d.DLQID)
	}
	if !slices.Equal(left, ids[1:4]) {
		t.Errorf("left after the drop: %v, want %v", left, ids[1:4])
	}
}

// TestDLQAttempts pins what ATTEMPTS means: the deliveries of the message
// to the handler before it was dead-lettered. A document Elasticsearch
// rejects at its first delivery: 1. An entry that is not a message never
// reaches the handler: 0. A replay is a new message: rejected again, its
// new dead letter shows 1 again. The worker logs each dead letter once,
// when it is written, with the same count and the dead letter's id.
func TestDLQAttempts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "    delay: 1h\n")
	ctx := context.Background()
	w := startBin(t, f.vars, "worker", "--config", f.config)
	waitReady(t, f.listen)

	good, bad := product{ID: 1, Title: "good"}, product{ID: 2, Title: "bad"}
	f.es.FailItem("products", "2", 400, "document_parsing_exception", "failed to parse field [price]", 2)
	f.create(t, &good, &bad)
	if err := f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: redstream.NewKeys(f.ns).Stream("products"), Values: []any{"other", "x"}}).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two dead letters", func() bool { return len(f.dlqEntries(t)) == 2 })
	dl := f.dlqEntries(t)
	rejected, invalid := dl[0], dl[1]
	if !strings.Contains(string(rejected.Payload), `"id":2`) || rejected.Attempts != "1" ||
		invalid.Fields == nil || invalid.Attempts != "0" {
		t.Fatalf("dead letters: %+v; want product 2's with attempts 1, then the invalid entry with 0", dl)
	}
	logged := func() []string {
		var lines []string
		for line := range strings.SplitSeq(w.stderr.String(), "\n") {
			if strings.Contains(line, `msg="redstream: message dead-lettered"`) {
				lines = append(lines, line)
			}
		}
		return lines
	}
	eventually(t, "the dead letters in the log", func() bool { return len(logged()) >= 2 })
	lines := logged()
	if len(lines) != 2 ||
		!strings.Contains(lines[0], "dlq_id="+rejected.DLQID+" attempts=1 ") ||
		!strings.Contains(lines[1], "dlq_id="+invalid.DLQID+" attempts=0 ") {
		t.Errorf("log lines of the dead letters:\n%s\nwant one each, with dlq_id and attempts", strings.Join(lines, "\n"))
	}

	// Replayed and rejected again: a new dead letter, attempts 1.
	r := runBin(t, f.vars, "dlq", "replay", "--id", rejected.DLQID, "--config", f.config, "--stream", "products")
	if r.code != 0 {
		t.Fatalf("dlq replay: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	eventually(t, "the replay's dead letter", func() bool {
		dl = f.dlqEntries(t)
		return len(dl) == 2 && dl[1].DLQID != invalid.DLQID
	})
	if again := dl[1]; again.DLQID == rejected.DLQID || again.Attempts != "1" || !strings.Contains(string(again.Payload), `"id":2`) {
		t.Errorf("dead letter of the replayed message: %+v; want a new one with attempts 1", again)
	}
	eventually(t, "its line in the log", func() bool { return len(logged()) == 3 })
}
