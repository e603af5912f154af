package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic/estest"
	"github.com/redstream-go/redstream/internal/testenv"
)

// TestSentinelWorker runs the binary with a redis.sentinel config (the
// deployment of scripts/redis-sentinel.sh) through a forced failover under
// a steady write load. The worker keeps running and follows the new
// master, every committed row is indexed, verify finds the index in sync,
// status reads through the sentinel, and SIGTERM stops the worker with
// exit code 0.
//
// The application's producer waits for the replica (WaitReplicas: 1): a
// row committed through the old master while the worker already reads the
// new one would otherwise be lost with the old master's writes (see
// TestSentinelFailover in the root package). Writes refused during the
// failover roll back and are not counted.
func TestSentinelWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sen := testenv.UseSentinel(t)
	rdb, ns := sen.Client(t, nil)
	f := &fixture{dsn: testenv.Schema(t), es: estest.New(t), listen: freeAddr(t), rdb: rdb, ns: ns}
	db, err := gorm.Open(postgres.Open(f.dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { _ = sqlDB.Close() })
	if err := db.AutoMigrate(&product{}); err != nil {
		t.Fatal(err)
	}
	producer := mustProducer(rdb, &redstream.ProducerOptions{Namespace: ns, WaitReplicas: 1, WaitTimeout: 250 * time.Millisecond})
	if err := db.Use(redstream.NewPlugin(producer)); err != nil {
		t.Fatal(err)
	}
	f.db = db

	dir := t.TempDir()
	writeMapping(t, dir)
	addrs, _ := json.Marshal(sen.Addrs)
	f.config = writeFile(t, dir, "redstream.yaml", fmt.Sprintf(`
redis:
  sentinel:
    master: %s
    addrs: %s
  namespace: %s
database:
  url: postgres://unused/db
elasticsearch:
  urls: [http://unused:9200]
worker:
  listen: %s
  stall_timeout: 1m
  shutdown_timeout: 30s
  lock_ttl: 2s
log:
  level: debug
streams:
  - name: products
    table: products
    index: products
    mapping: products.json
    delay: 1s
`, sen.Master, addrs, ns, f.listen))
	// No REDIS_URL: it would replace redis.sentinel.
	f.vars = map[string]string{"DATABASE_URL": f.dsn, "ELASTICSEARCH_URL": f.es.URL}
	w := startBin(t, f.vars, "worker", "--config", f.config)
	waitReady(t, f.listen)

	// A row every 10ms; a Create that fails was rolled back.
	var (
		mu        sync.Mutex
		committed []*product
		refused   int
		switched  time.Time // zero until the sentinel names the new master
		after     int       // commits begun after switched
	)
	wctx, stop := context.WithCancel(ctx)
	var writer sync.WaitGroup
	writer.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			p := &product{Title: fmt.Sprint("p", i)}
			began := time.Now()
			err := db.Create(p).Error
			mu.Lock()
			if err != nil {
				refused++
			} else {
				committed = append(committed, p)
				if !switched.IsZero() && began.After(switched) {
					after++
				}
			}
			mu.Unlock()
		}
	})
	defer func() { stop(); writer.Wait() }()
	rows := func() []*product {
		mu.Lock()
		defer mu.Unlock()
		return append([]*product(nil), committed...)
	}
	within(t, 30*time.Second, "the first rows indexed", func() bool {
		ps := rows()
		return len(ps) >= 20 && f.indexed(ps...)
	})

	fo, err := sen.Failover(ctx)
	if err != nil {
		t.Fatalf("failover: %v", err)
	}
	mu.Lock()
	switched = time.Now()
	mu.Unlock()
	within(t, 30*time.Second, "100 commits after the switch", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return after >= 100
	})
	stop()
	writer.Wait()
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := sen.WaitHealthy(hctx); err != nil {
		t.Fatalf("the deployment did not recover: %v", err)
	}

	ps := rows()
	within(t, 30*time.Second, fmt.Sprintf("all %d committed rows indexed", len(ps)), func() bool { return f.indexed(ps...) })
	f.esDo(t, "POST", "/_refresh", "")
	if rep, r := f.verify(t); !rep.InSync || r.code != exitOK {
		t.Errorf("verify after the failover: exit %d, %+v", r.code, rep)
	}
	if st := f.status(t); len(st) != 1 || len(st[0].Consumers) != 1 || !st[0].Consumers[0].Lease.Held || !st[0].Delayer.Held {
		t.Errorf("status through the sentinel after the failover: %+v", st)
	}
	select {
	case <-w.done:
		t.Fatalf("the worker exited during the failover: %v\n%s", w.err, w.stderr.String())
	default:
	}
	if code := w.stop(t); code != 0 {
		t.Errorf("worker exit code %d after SIGTERM, want 0\n%s", code, w.stderr.String())
	}
	t.Logf("failover %s -> %s in %v; %d rows committed and indexed, %d writes refused and rolled back",
		fo.From, fo.To, fo.Switched.Round(time.Millisecond), len(ps), refused)
}
