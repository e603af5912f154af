package elastic_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/elastic/estest"
	"github.com/redstream-go/redstream/internal/testenv"
)

// fillMySQL is fill on MariaDB: a products table of benchRows rows and a
// stream with one message per row.
func fillMySQL(b *testing.B) (rdb *redis.Client, ns, dsn string) {
	b.Helper()
	rdb, ns = testenv.Redis(b)
	dsn = testenv.MySQLDatabase(b)
	db := testenv.MySQLSQL(b, dsn)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE products (id BIGINT PRIMARY KEY, title VARCHAR(100), price INT, updated_at DATETIME(6))`); err != nil {
		b.Fatal(err)
	}
	key := redstream.NewKeys(ns).Stream("products")
	for start := 1; start <= benchRows; start += 1000 {
		var values []string
		pipe := rdb.Pipeline()
		for id := start; id < start+1000 && id <= benchRows; id++ {
			values = append(values, fmt.Sprintf("(%d, 'product %d', %d, UTC_TIMESTAMP(6))", id, id, id%100))
			pipe.Do(ctx, "xadd", key, "*", "payload", `{"id":`+strconv.Itoa(id)+`}`)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO products VALUES "+strings.Join(values, ",")); err != nil {
			b.Fatal(err)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
	return rdb, ns, dsn
}

// BenchmarkSyncMySQL is BenchmarkSync re-reading from MariaDB: a
// Consumer with the Elasticsearch handler drains benchRows messages,
// loading each batch with one SELECT … WHERE id IN (…) and JSON_OBJECT.
// interpolate=true is what the binary uses (the driver's
// interpolateParams: one round trip per query); false, the driver's
// default (prepare, execute, close).
func BenchmarkSyncMySQL(b *testing.B) {
	rdb, ns, dsn := fillMySQL(b)
	srv := estest.New(b)
	es := srv.Client(b)
	ctx := context.Background()
	last, err := rdb.XRevRangeN(ctx, redstream.NewKeys(ns).Stream("products"), "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		b.Fatal(err)
	}
	lastID := redstream.MustParseID(last[0].ID)
	run := 0
	for _, interpolate := range []bool{true, false} {
		b.Run(fmt.Sprint("interpolate=", interpolate), func(b *testing.B) {
			db := testenv.MySQLSQL(b, dsn+fmt.Sprint("&interpolateParams=", interpolate))
			loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "products"})
			if err != nil {
				b.Fatal(err)
			}
			cpu0 := cpuTime()
			for b.Loop() {
				run++
				syncOnce(b, rdb, ns, es, loader, lastID, run, 0, 0)
			}
			b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "msg/s")
			if cpu := cpuTime() - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(benchRows*b.N), "cpu-ns/msg")
			}
		})
	}
}
