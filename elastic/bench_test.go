package elastic_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/elastic/estest"
	"github.com/redstream-go/redstream/internal/testenv"
)

const benchRows = 100_000

// fill creates a products table with benchRows rows and a stream with one
// message per row.
func fill(b *testing.B) (rdb *redis.Client, ns, dsn string) {
	b.Helper()
	rdb, ns = testenv.Redis(b)
	dsn = testenv.Schema(b)
	db := testenv.SQL(b, dsn)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE products (id bigint PRIMARY KEY, title text, price int, updated_at timestamptz)`); err != nil {
		b.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO products SELECT g, 'product ' || g, g % 100, now() FROM generate_series(1, $1) g`, benchRows); err != nil {
		b.Fatal(err)
	}
	key := redstream.NewKeys(ns).Stream("products")
	for start := 1; start <= benchRows; start += 1000 {
		pipe := rdb.Pipeline()
		for id := start; id < start+1000 && id <= benchRows; id++ {
			pipe.Do(ctx, "xadd", key, "*", "payload", `{"id":`+strconv.Itoa(id)+`}`)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return rdb, ns, dsn
}

// BenchmarkSync drains benchRows messages through a Consumer with the
// Elasticsearch handler: Postgres re-read of each batch, bulk request to the
// test server (in process, on loopback HTTP), offset commit. Each run uses
// a fresh consumer name, so it drains from the start.
func BenchmarkSync(b *testing.B) {
	rdb, ns, dsn := fill(b)
	db := testenv.SQL(b, dsn)
	srv := estest.New(b)
	es := srv.Client(b)
	ctx := context.Background()
	loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "products"})
	if err != nil {
		b.Fatal(err)
	}
	last, err := rdb.XRevRangeN(ctx, redstream.NewKeys(ns).Stream("products"), "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		b.Fatal(err)
	}
	lastID := redstream.MustParseID(last[0].ID)
	run := 0
	for _, cfg := range []struct {
		name        string
		bytes, conc int
	}{
		{"bulk=default", 0, 0},
	} {
		b.Run(cfg.name, func(b *testing.B) {
			cpu0 := cpuTime()
			for b.Loop() {
				run++
				syncOnce(b, rdb, ns, es, loader, lastID, run, cfg.bytes, cfg.conc)
			}
			b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "msg/s")
			// CPU time of this process (consumer, handler and the test
			// server; not PostgreSQL or Redis) per message: steadier than
			// msg/s on a busy machine.
			if cpu := cpuTime() - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(benchRows*b.N), "cpu-ns/msg")
			}
		})
	}
}

func syncOnce(b *testing.B, rdb *redis.Client, ns string, es *elasticsearch.Client, loader elastic.Loader,
	lastID redstream.ID, run, maxBytes, concurrency int) {
	ctx := context.Background()
	{
		h, err := elastic.NewHandler(es, loader, &elastic.Options{
			Index: fmt.Sprint("bench-", run), MaxBulkBytes: maxBytes, Concurrency: concurrency,
		})
		if err != nil {
			b.Fatal(err)
		}
		c, err := redstream.NewConsumer(rdb, "products", fmt.Sprint("bench-", run), h, &redstream.ConsumerOptions{
			Namespace: ns, Block: 100 * time.Millisecond,
		})
		if err != nil {
			b.Fatal(err)
		}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(cctx) }()
		for c.Stats().Committed.Less(lastID) {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if st := h.Stats(); st.Indexed != benchRows {
			b.Fatalf("indexed %d, want %d", st.Indexed, benchRows)
		}
	}
}

// BenchmarkSyncRawLimit is the same work with no framework: XRANGE pages of
// 1,000, one SELECT … WHERE id = ANY($1) per page, the bulk body encoded
// and sent to the test server, its response read. No lease, offsets,
// retries or item classification.
func BenchmarkSyncRawLimit(b *testing.B) {
	rdb, ns, dsn := fill(b)
	db := testenv.SQL(b, dsn)
	srv := estest.New(b)
	es := srv.Client(b)
	ctx := context.Background()
	key := redstream.NewKeys(ns).Stream("products")
	run := 0
	for b.Loop() {
		run++
		index := fmt.Sprint("raw-", run)
		start := "-"
		for {
			msgs, err := rdb.XRangeN(ctx, key, start, "+", 1000).Result()
			if err != nil {
				b.Fatal(err)
			}
			if len(msgs) == 0 {
				break
			}
			start = "(" + msgs[len(msgs)-1].ID
			ids := make([]string, len(msgs))
			for i, m := range msgs {
				id, err := elastic.MessageID([]byte(m.Values["payload"].(string)))
				if err != nil {
					b.Fatal(err)
				}
				ids[i] = id
			}
			rows, err := db.QueryContext(ctx, `SELECT t.id::text, row_to_json(t)::text FROM products t WHERE t.id = ANY($1::text[]::bigint[])`, ids)
			if err != nil {
				b.Fatal(err)
			}
			var body bytes.Buffer
			for rows.Next() {
				var id string
				var doc []byte
				if err := rows.Scan(&id, &doc); err != nil {
					b.Fatal(err)
				}
				body.WriteString(`{"index":{"_index":"` + index + `","_id":"` + id + `"}}` + "\n")
				body.Write(doc)
				body.WriteByte('\n')
			}
			rows.Close()
			res, err := es.Bulk(&body)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}
	b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "msg/s")
}

// okTransport answers every request with a canned successful bulk
// response, so that a benchmark measures the client side alone.
type okTransport struct{}

func (okTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-Elastic-Product", "Elasticsearch")
	return &http.Response{
		StatusCode: http.StatusOK, Header: h, Request: r,
		Body: io.NopCloser(strings.NewReader(`{"errors":false,"took":1,"items":[]}`)),
	}, nil
}

// BenchmarkHandleBatch is the Handler's own work on a batch of 1,000
// messages: parsing ids, building the bulk body from loaded rows and
// reading the response. The rows come from memory and the bulk response
// is canned, so PostgreSQL, the network and the server cost nothing.
func BenchmarkHandleBatch(b *testing.B) {
	const n = 1000
	docs := make([]elastic.Document, n)
	msgs := make([]redstream.Message, n)
	for i := range n {
		id := strconv.Itoa(i + 1)
		docs[i] = elastic.Document{ID: id, Source: json.RawMessage(`{"id":` + id +
			`,"title":"product ` + id + `","price":` + strconv.Itoa(i%100) + `,"updated_at":"2026-11-23T12:00:00.123456+00:00"}`)}
		msgs[i] = redstream.Message{ID: redstream.ID{MS: 1, Seq: uint64(i)}, Stream: "products", Payload: json.RawMessage(`{"id":` + id + `}`)}
	}
	loader := elastic.LoaderFunc(func(_ context.Context, ids []string) ([]elastic.Document, error) {
		return docs[:len(ids)], nil
	})
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{"http://127.0.0.1:9"}, Transport: okTransport{}})
	if err != nil {
		b.Fatal(err)
	}
	h, err := elastic.NewHandler(es, loader, &elastic.Options{Index: "products"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		if err := h.HandleBatch(ctx, &redstream.Batch{Stream: "products", Consumer: "bench", Messages: msgs, Attempt: 1}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
	// CPU time (user and system, GC included) per message: steadier than
	// elapsed time on a busy machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*n), "cpu-ns/msg")
}
