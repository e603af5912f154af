package redstream_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/elastic/estest"
	"github.com/redstream-go/redstream/internal/testenv"
)

// badEntry is one stream entry a consumer must dead-letter, with a part of
// the reason it must give.
type badEntry struct {
	name   string
	values []any
	reason string // per loader: "table", "query"
	query  string // the reason with a custom query loader, when it differs
}

// badEntries are entries that are not messages, or whose id can never name
// a row of an integer-keyed table.
func badEntries() []badEntry {
	huge := `{"id":2,"pad":"` + strings.Repeat("x", redstream.DefaultMaxPayloadBytes) + `"}`
	return []badEntry{
		{name: "not JSON", values: []any{"payload", "not json"},
			reason: "redstream: invalid message: payload is not JSON"},
		{name: "no payload field", values: []any{"other", `{"id":1}`},
			reason: "redstream: invalid message: no payload field"},
		{name: "no id", values: []any{"payload", `{"title":"tea"}`},
			reason: `elastic: payload has no "id" that is a number or a string`},
		{name: "id an object", values: []any{"payload", `{"id":{"id":1}}`},
			reason: "the id is an object"},
		{name: "id a float", values: []any{"payload", `{"id":1.5}`},
			reason: "1.5 is not an integer"},
		{name: "id a word for an integer key", values: []any{"payload", `{"id":"abc"}`},
			reason: `elastic: id "abc" cannot be looked up: not a bigint (the primary key's type)`,
			query:  `elastic: id "abc" cannot be looked up: ERROR: invalid input syntax for type bigint: "abc" (SQLSTATE 22P02)`},
		{name: "id past the bigint range", values: []any{"payload", `{"id":9223372036854775808}`},
			reason: `elastic: id "9223372036854775808" cannot be looked up: not a bigint`,
			query:  `(SQLSTATE 22003)`},
		{name: "id with a NUL byte", values: []any{"payload", `{"id":"1\u00002"}`},
			reason: `cannot be looked up: not a bigint`,
			query:  `(SQLSTATE 22`},
		{name: "huge", values: []any{"payload", huge},
			reason: fmt.Sprintf("redstream: invalid message: payload of %d bytes exceeds the limit of %d bytes (MaxPayloadBytes)",
				len(huge), redstream.DefaultMaxPayloadBytes)},
	}
}

// TestBadInputDeadLettered feeds a consumer with the Elasticsearch handler
// every kind of bad stream entry between good messages: each bad one is
// dead-lettered with a clear reason, no batch ever fails (which would retry
// it forever), and the good messages around them are indexed. Once with
// the table loader, which checks ids against the key type, and once with a
// custom query, where the database refuses the bad ids and the handler
// finds them by loading in halves.
func TestBadInputDeadLettered(t *testing.T) {
	t.Parallel()
	for _, loader := range []string{"table", "query"} {
		t.Run(loader, func(t *testing.T) {
			t.Parallel()
			rdb, ns := testenv.Redis(t)
			keys := redstream.NewKeys(ns)
			p := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns})
			db := testenv.GORM(t, nil)
			must(t, db.Use(redstream.NewPlugin(p)))
			must(t, db.AutoMigrate(&Product{}))
			sqlDB, err := db.DB()
			must(t, err)
			ctx := context.Background()

			opts := elastic.TableOptions{Table: "products", SoftDeleteColumn: "deleted_at", VersionColumn: "updated_at"}
			if loader == "query" {
				opts = elastic.TableOptions{Query: `SELECT id::text AS id, row_to_json(p)::text AS doc
					FROM products p WHERE id = ANY($1::text[]::bigint[])`}
			}
			l, err := elastic.NewTableLoader(ctx, sqlDB, opts)
			must(t, err)
			srv := estest.New(t)
			h, err := elastic.NewHandler(srv.Client(t), l, &elastic.Options{Index: "products"})
			must(t, err)

			// Good, bad, good, bad, …, good: every bad entry has good
			// neighbours, in one batch (table) or in batches of 4 (query).
			stream := keys.Stream("products")
			bad := badEntries()
			want := map[string]badEntry{} // stream id -> entry
			var good []*Product
			addGood := func(title string) {
				row := &Product{Title: title, Price: len(good)}
				must(t, db.Create(row).Error)
				good = append(good, row)
			}
			addGood("first")
			for _, b := range bad {
				id := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: b.values}).Val()
				want[id] = b
				addGood("after " + b.name)
			}
			// A string id of an existing row is not bad: it names row 1.
			rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"payload", fmt.Sprintf(`{"id":"%d"}`, good[0].ID)}})
			total := int(rdb.XLen(ctx, stream).Val())

			copts := fastOptions(ns)
			if loader == "query" {
				copts.BatchSize = 4
			}
			c := newConsumer(t, rdb, "products", "indexer", h, copts)
			start(t, c.Run)
			eventually(t, 20*time.Second, "every entry committed", func() bool { return c.Stats().Messages == int64(total) })

			st := c.Stats()
			if st.Errors != 0 || st.DeadLettered != int64(len(bad)) {
				t.Errorf("consumer stats %+v: want no errors (no failed batch) and %d dead letters", st, len(bad))
			}
			for _, row := range good {
				src, _, ok := srv.Doc("products", fmt.Sprint(row.ID))
				if !ok || !strings.Contains(string(src), fmt.Sprintf(`"title":%q`, row.Title)) {
					t.Errorf("good row %d (%s) not indexed: %s", row.ID, row.Title, src)
				}
			}
			if n := srv.Count("products"); n != len(good) {
				t.Errorf("%d documents, want %d (one per good row)", n, len(good))
			}

			dlq, err := rdb.XRange(ctx, keys.DeadLetter("products", "indexer"), "-", "+").Result()
			must(t, err)
			if len(dlq) != len(bad) {
				t.Fatalf("%d dead letters, want %d", len(dlq), len(bad))
			}
			for _, d := range dlq {
				id, _ := d.Values["id"].(string)
				b, ok := want[id]
				if !ok {
					t.Errorf("dead letter of %s, which is not a bad entry: %v", id, d.Values["error"])
					continue
				}
				reason := b.reason
				if loader == "query" && b.query != "" {
					reason = b.query
				}
				if got, _ := d.Values["error"].(string); !strings.Contains(got, reason) {
					t.Errorf("%s: dead-letter reason %q lacks %q", b.name, got, reason)
				}
				if b.name == "no payload field" {
					if f, _ := d.Values["fields"].(string); f != `{"other":"{\"id\":1}"}` {
						t.Errorf("%s: fields %q", b.name, f)
					}
				} else if pl, _ := d.Values["payload"].(string); pl != b.values[1] {
					t.Errorf("%s: dead letter keeps payload of %d bytes, want the %d stored", b.name, len(pl), len(b.values[1].(string)))
				}
			}
			if hs := h.Stats(); hs.Batches == 0 {
				t.Errorf("handler stats %+v", hs)
			}
		})
	}
}

// TestConsumerMaxPayloadBytes: the limit is the option's, an entry of
// exactly the limit passes, and a negative limit is refused.
func TestConsumerMaxPayloadBytes(t *testing.T) {
	t.Parallel()
	rdb, ns := testenv.Redis(t)
	keys := redstream.NewKeys(ns)
	ctx := context.Background()
	stream := keys.Stream("products")
	at := `{"id":1,"pad":"` + strings.Repeat("x", 100-len(`{"id":1,"pad":""}`)) + `"}` // 100 bytes
	over := `{"id":2,"pad":"` + strings.Repeat("x", 101-len(`{"id":2,"pad":""}`)) + `"}`
	for _, p := range []string{at, over, `{"id":3}`} {
		rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"payload", p}})
	}
	rec := &recorder{}
	opts := fastOptions(ns)
	opts.MaxPayloadBytes = 100
	c := newConsumer(t, rdb, "products", "indexer", rec, opts)
	start(t, c.Run)
	eventually(t, 5*time.Second, "3 entries committed", func() bool { return c.Stats().Messages == 3 })
	batches, _ := rec.snapshot()
	var seen []string
	for _, b := range batches {
		seen = append(seen, b...)
	}
	if len(seen) != 2 || seen[0] != at || seen[1] != `{"id":3}` {
		t.Errorf("handler saw %d payloads, want the 100-byte one and {\"id\":3}", len(seen))
	}
	dlq := rdb.XRange(ctx, keys.DeadLetter("products", "indexer"), "-", "+").Val()
	if len(dlq) != 1 || dlq[0].Values["error"] != "redstream: invalid message: payload of 101 bytes exceeds the limit of 100 bytes (MaxPayloadBytes)" {
		t.Errorf("dead letters %v", dlq)
	}

	opts.MaxPayloadBytes = -1
	if _, err := redstream.NewConsumer(rdb, "products", "x", rec, opts); err == nil {
		t.Error("NewConsumer accepted a negative MaxPayloadBytes")
	}
}
