package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
)

// scaleShards is the number of shards of the scale scenario's stream.
const scaleShards = 6

// scaleBase is the millisecond part of the ids of the scale backlog: entry
// k of a shard has the id scaleBase-k, so an offset tells how many of the
// shard's entries were committed.
const scaleBase = 1_700_000_000_000

// runScale measures a stream of 6 shards served by a balancing worker
// group (worker.balance, the default). Per run:
//
//  0. cfg.scaleRows changes written through Producer.Bulk, 1,000 a call,
//     in id order and then sorted by shard: the Redis server's CPU time
//     per change produced;
//  1. a backlog of cfg.scaleRows messages over the 6 shards, drained by
//     1, 2 and 3 `redstream worker` processes in turn (1, 2, 3 in even
//     runs, 3, 2, 1 in odd ones), each time under a new consumer and group
//     name into a fresh test server process: messages/s from 10% of the
//     backlog committed, and the units spread evenly, to 90% (past the
//     processes' start and the group's first assignment), and the CPU time of the workers, Redis,
//     the PostgreSQL backends and the test server per message;
//  2. with the default lease and heartbeat TTLs (5 s and 5 s), idle
//     streams: the time until the units are spread again after a third
//     process joins two, after one of three stops with SIGTERM, and after
//     one of three is killed with SIGKILL.
//
// Redis is a redis-server of the scenario's own, on a free port, so that
// its CPU time is the scenario's alone.
func runScale(ctx context.Context, cfg *config, rep *report) error {
	bin, err := buildBinaries(ctx)
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	rs, err := startRedis(ctx, bin)
	if err != nil {
		return err
	}
	defer rs.proc.stop()
	s, err := newSpace(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	_ = s.rdb.Close()
	s.rdb = rs.client
	db, err := s.openDB(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := createItems(ctx, db, cfg.scaleRows); err != nil {
		return err
	}

	for n := 1; n <= 3; n++ {
		rep.declare(figure{name: fmt.Sprintf("drain/%dproc", n), unit: "msg/s", higherBetter: true,
			desc: fmt.Sprintf("%d worker process(es) draining %d messages on %d shards, from 10%% committed and the units spread to 90%%", n, cfg.scaleRows, scaleShards)})
	}
	for n := 2; n <= 3; n++ {
		rep.declare(figure{name: fmt.Sprintf("speedup/%dproc", n), unit: "×", higherBetter: true,
			desc: fmt.Sprintf("drain/%dproc ÷ drain/1proc of the same run", n)})
	}
	for n := 1; n <= 3; n++ {
		for _, c := range []string{"worker", "redis", "pg", "server"} {
			rep.declare(figure{name: fmt.Sprintf("cpu/%s/%dproc", c, n), unit: "µs/msg",
				desc: fmt.Sprintf("CPU time per message drained by %d process(es): %s", n, map[string]string{
					"worker": "the worker processes together", "redis": "the Redis server",
					"pg": "the PostgreSQL backends of the workers", "server": "the test server (not Elasticsearch)"}[c])})
		}
		rep.declare(figure{name: fmt.Sprintf("load/%dproc", n), unit: "load", desc: fmt.Sprintf("1-minute load average as the %d-process drain starts", n)})
	}
	rep.declare(figure{name: "cpu/redis/produce", unit: "µs/change",
		desc: "Redis CPU time per change written through Producer.Bulk of 1,000 (delay message, main-stream message, delay message deleted), shards in id order: one script per change"})
	rep.declare(figure{name: "cpu/redis/produce-grouped", unit: "µs/change",
		desc: "the same with each Bulk's records sorted by shard: one script per shard"})
	rep.declare(figure{name: "rebalance/join", unit: "s", desc: "a third process started → 2/2/2 units (its start-up included)"})
	rep.declare(figure{name: "rebalance/sigterm", unit: "s", desc: "SIGTERM to one of three → 3/3 units"})
	rep.declare(figure{name: "rebalance/kill", unit: "s", desc: "SIGKILL of one of three → 3/3 units (lease and heartbeat TTL 5 s)"})

	sb := &scaleBench{cfg: cfg, s: s, db: db, bin: bin, redisURL: rs.url}
	for run := range cfg.runs {
		if err := rep.run(run, func() error { return sb.run(ctx, rep, run) }); err != nil {
			return err
		}
	}
	rep.note("Drain rates are taken from 10%% of the backlog committed (and the units spread evenly over the processes) to 90%%, offsets polled every 20 ms; CPU times from /proc (the workers', the test server's, the PostgreSQL backends') and INFO cpu (Redis) over the whole drain, start-up included.")
	rep.note("Every process shares the machine's %d cores with the others and with whatever else runs on it.", runtime.NumCPU())
	return nil
}

type scaleBench struct {
	cfg      *config
	s        *space
	db       *sql.DB
	bin      string
	redisURL string
}

func (b *scaleBench) run(ctx context.Context, rep *report, run int) error {
	if err := b.produce(ctx, rep); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	last, err := b.fill(ctx)
	if err != nil {
		return err
	}
	rates := map[int]float64{}
	for _, n := range scaleOrder(run) {
		rep.add(fmt.Sprintf("load/%dproc", n), loadAvg())
		r, err := b.drain(ctx, rep, run, n, last)
		if err != nil {
			return fmt.Errorf("%d processes: %w", n, err)
		}
		rates[n] = r
		rep.add(fmt.Sprintf("drain/%dproc", n), r)
	}
	rep.add("speedup/2proc", rates[2]/rates[1])
	rep.add("speedup/3proc", rates[3]/rates[1])
	return b.rebalance(ctx, rep, run)
}

// produce writes cfg.scaleRows changes over the 6 shards of a stream
// "produced" through Producer.Bulk, 1,000 a call (each change: its delay
// message, its main-stream message and the delay message's deletion), and
// records the Redis server's CPU time per change; then it deletes them.
func (b *scaleBench) produce(ctx context.Context, rep *report) error {
	p, err := redstream.NewProducer(b.s.rdb, &redstream.ProducerOptions{Namespace: b.s.ns})
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	cpu0, err := redisCPU(ctx, b.s.rdb)
	if err != nil {
		return err
	}
	for _, grouped := range []bool{false, true} {
		refs := make([]redstream.Ref, 0, 1000)
		for id := 1; id <= b.cfg.scaleRows; id++ {
			refs = append(refs, redstream.Ref{Stream: redstream.ShardName("produced", id, scaleShards), ID: id})
			if len(refs) < cap(refs) && id < b.cfg.scaleRows {
				continue
			}
			if grouped {
				slices.SortStableFunc(refs, func(a, b redstream.Ref) int { return strings.Compare(a.Stream, b.Stream) })
			}
			if err := p.Bulk(ctx, refs, func(context.Context) error { return nil }); err != nil {
				return err
			}
			refs = refs[:0]
		}
		cpu1, err := redisCPU(ctx, b.s.rdb)
		if err != nil {
			return err
		}
		name := "cpu/redis/produce"
		if grouped {
			name += "-grouped"
		}
		rep.add(name, (cpu1-cpu0)/float64(b.cfg.scaleRows)*1e6)
		cpu0 = cpu1
	}
	var keys []string
	for _, sh := range redstream.ShardNames("produced", scaleShards) {
		keys = append(keys, b.s.keys.Stream(sh), b.s.keys.Delay(sh))
	}
	return b.s.rdb.Del(ctx, keys...).Err()
}

// scaleOrder returns the order in which run drains with 1, 2 and 3
// processes: 1, 2, 3 in even runs, 3, 2, 1 in odd ones, so that neither end
// always runs first, on a machine fresher or more tired.
func scaleOrder(run int) []int {
	if run%2 == 1 {
		return []int{3, 2, 1}
	}
	return []int{1, 2, 3}
}

// fill writes the backlog: message {"id":i} for i in [1, scaleRows] to its
// shard, entry k of a shard with the id scaleBase-k. It returns the
// number of entries of each shard.
func (b *scaleBench) fill(ctx context.Context) (map[string]int, error) {
	s := b.s
	names := redstream.ShardNames("items", scaleShards)
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = s.keys.Stream(n)
	}
	if err := s.rdb.Del(ctx, keys...).Err(); err != nil {
		return nil, err
	}
	count := map[string]int{}
	pipe := s.rdb.Pipeline()
	for id := 1; id <= b.cfg.scaleRows; id++ {
		shard := redstream.ShardName("items", id, scaleShards)
		count[shard]++
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: s.keys.Stream(shard), ID: fmt.Sprintf("%d-%d", scaleBase, count[shard]),
			Values: []string{"payload", `{"id":` + strconv.Itoa(id) + `}`}})
		if pipe.Len() == 1000 || id == b.cfg.scaleRows {
			if _, err := pipe.Exec(ctx); err != nil {
				return nil, fmt.Errorf("fill: %w", err)
			}
		}
	}
	return count, nil
}

// committed returns how many messages the consumer committed over the
// shards.
func (b *scaleBench) committed(ctx context.Context, consumer string) (int, error) {
	total := 0
	for _, sh := range redstream.ShardNames("items", scaleShards) {
		v, err := b.s.rdb.Get(ctx, b.s.keys.Offset(sh, consumer)).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return 0, err
		}
		id, err := redstream.ParseID(v)
		if err != nil {
			return 0, err
		}
		total += int(id.Seq)
	}
	return total, nil
}

// spread reports whether each of the processes holds as many consumer
// leases of the shards as the others.
func (b *scaleBench) spread(ctx context.Context, consumer string, ps []*proc) (bool, error) {
	host, _ := os.Hostname()
	got := map[string]int{}
	for _, sh := range redstream.ShardNames("items", scaleShards) {
		v, err := b.s.rdb.Get(ctx, b.s.keys.Lock(redstream.ConsumerLockName(sh, consumer))).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, err
		}
		got[redstream.LockHolder(v)]++
	}
	for _, p := range ps {
		if got[host+":"+strconv.Itoa(p.cmd.Process.Pid)] != scaleShards/len(ps) {
			return false, nil
		}
	}
	return true, nil
}

// drain runs n worker processes on the backlog under a new consumer and
// group and returns their rate from 10% committed, and the units spread,
// to 90%.
func (b *scaleBench) drain(ctx context.Context, rep *report, run, n int, last map[string]int) (float64, error) {
	total := b.cfg.scaleRows
	srv, err := startServer(ctx, b.bin)
	if err != nil {
		return 0, err
	}
	defer srv.stop()
	name := fmt.Sprintf("r%dn%d", run, n)
	config, err := b.writeConfig(srv.url, "items-"+name, "indexer-"+name, "g-"+name)
	if err != nil {
		return 0, err
	}
	pg0, _ := pgBackendTicks(ctx, b.db, b.s.schema) // this process's own backends
	redis0, err := redisCPU(ctx, b.s.rdb)
	if err != nil {
		return 0, err
	}
	srv0, _ := statTicks(fmt.Sprintf("/proc/%d/stat", srv.proc.cmd.Process.Pid))
	ps := make([]*proc, n)
	for i := range ps {
		if ps[i], err = startProc(ctx, filepath.Join(b.bin, "redstream"), "worker", "--config", config); err != nil {
			return 0, err
		}
	}
	defer func() {
		for _, p := range ps {
			_ = p.stop()
		}
	}()
	var t10, t90 time.Time
	var c10, c90 int
	spread := false
	deadline := time.Now().Add(30 * time.Minute)
	for {
		c, err := b.committed(ctx, "indexer-"+name)
		if err != nil {
			return 0, err
		}
		now := time.Now()
		if !spread {
			if spread, err = b.spread(ctx, "indexer-"+name, ps); err != nil {
				return 0, err
			}
		}
		if t10.IsZero() && c >= total/10 && spread {
			t10, c10 = now, c
		}
		if t90.IsZero() && c >= total*9/10 {
			if t10.IsZero() {
				return 0, errors.New("90% committed before the group spread the units; raise -scale-rows")
			}
			t90, c90 = now, c
		}
		if c >= total {
			break
		}
		for _, p := range ps {
			if p.exited() {
				return 0, fmt.Errorf("a worker exited\n%s", p.output())
			}
		}
		if now.After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("the workers did not drain the backlog (%d of %d)", c, total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var workerTicks uint64
	for _, p := range ps {
		t, ok := statTicks(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
		if !ok {
			return 0, errors.New("no /proc stat of a worker")
		}
		workerTicks += t.ticks
	}
	pg1, err := pgBackendTicks(ctx, b.db, b.s.schema)
	if err != nil {
		return 0, err
	}
	redis1, err := redisCPU(ctx, b.s.rdb)
	if err != nil {
		return 0, err
	}
	srv1, _ := statTicks(fmt.Sprintf("/proc/%d/stat", srv.proc.cmd.Process.Pid))
	for _, p := range ps {
		if err := p.stop(); err != nil {
			return 0, fmt.Errorf("worker: %w\n%s", err, p.output())
		}
	}
	if got, err := srv.count(ctx, "items-"+name); err != nil || got != total {
		var dead []string
		for _, sh := range redstream.ShardNames("items", scaleShards) {
			es, _ := b.s.rdb.XRangeN(ctx, b.s.keys.DeadLetter(sh, "indexer-"+name), "-", "+", 3).Result()
			n, _ := b.s.rdb.XLen(ctx, b.s.keys.DeadLetter(sh, "indexer-"+name)).Result()
			if n > 0 {
				dead = append(dead, fmt.Sprintf("%s: %d, e.g. %v", sh, n, es))
			}
		}
		var out strings.Builder
		for _, p := range ps {
			out.WriteString(p.output())
		}
		return 0, fmt.Errorf("the workers indexed %d documents, want %d (%v); dead letters: %v\n%s", got, total, err, dead, out.String())
	}
	perMsg := func(seconds float64) float64 { return seconds / float64(total) * 1e6 }
	rep.add(fmt.Sprintf("cpu/worker/%dproc", n), perMsg(float64(workerTicks)/clockTicks))
	rep.add(fmt.Sprintf("cpu/redis/%dproc", n), perMsg(redis1-redis0))
	rep.add(fmt.Sprintf("cpu/pg/%dproc", n), perMsg(float64(pg1-pg0)/clockTicks))
	rep.add(fmt.Sprintf("cpu/server/%dproc", n), perMsg(float64(srv1.ticks-srv0.ticks)/clockTicks))
	if !t90.After(t10) {
		return 0, errors.New("10% and 90% committed in the same poll; raise -scale-rows")
	}
	return float64(c90-c10) / t90.Sub(t10).Seconds(), nil
}

// rebalance measures the group's moves after a join, a SIGTERM and a
// SIGKILL, on idle streams, with the default TTLs.
func (b *scaleBench) rebalance(ctx context.Context, rep *report, run int) error {
	srv, err := startServer(ctx, b.bin)
	if err != nil {
		return err
	}
	defer srv.stop()
	name := fmt.Sprintf("r%dmoves", run)
	consumer := "indexer-" + name
	config, err := b.writeConfig(srv.url, "items-"+name, consumer, "g-"+name)
	if err != nil {
		return err
	}
	var ps []*proc
	defer func() {
		for _, p := range ps {
			_ = p.stop()
		}
	}()
	start := func() (*proc, error) {
		p, err := startProc(ctx, filepath.Join(b.bin, "redstream"), "worker", "--config", config)
		if err == nil {
			ps = append(ps, p)
		}
		return p, err
	}
	// spread waits until the processes hold want consumer and delayer
	// leases each, and nobody else any; it returns the time waited.
	host, _ := os.Hostname()
	spread := func(want int, live ...*proc) (time.Duration, error) {
		began := time.Now()
		exp := map[string]int{}
		for _, p := range live {
			exp[host+":"+strconv.Itoa(p.cmd.Process.Pid)] = 2 * want
		}
		for {
			got := map[string]int{}
			for _, sh := range redstream.ShardNames("items", scaleShards) {
				for _, l := range []string{redstream.ConsumerLockName(sh, consumer),
					redstream.ConsumerLockName(redstream.DelayStream(sh), redstream.DelayerName)} {
					v, err := b.s.rdb.Get(ctx, b.s.keys.Lock(l)).Result()
					if err != nil && !errors.Is(err, redis.Nil) {
						return 0, err
					}
					if h := redstream.LockHolder(v); h != "" {
						got[h]++
					}
				}
			}
			if maps.Equal(got, exp) {
				return time.Since(began), nil
			}
			if time.Since(began) > 2*time.Minute || ctx.Err() != nil {
				return 0, fmt.Errorf("units not spread %d each: %v", want, got)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	a, err := start()
	if err != nil {
		return err
	}
	c, err := start()
	if err != nil {
		return err
	}
	if _, err := spread(3, a, c); err != nil {
		return err
	}
	// Join.
	d, err := start()
	if err != nil {
		return err
	}
	if _, err := spread(2, a, c, d); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	rep.add("rebalance/join", time.Since(d.started).Seconds())
	// SIGTERM.
	stopped := time.Now()
	if err := d.stop(); err != nil {
		return fmt.Errorf("SIGTERM: %w\n%s", err, d.output())
	}
	if _, err := spread(3, a, c); err != nil {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	rep.add("rebalance/sigterm", time.Since(stopped).Seconds())
	// SIGKILL.
	if d, err = start(); err != nil {
		return err
	}
	if _, err := spread(2, a, c, d); err != nil {
		return err
	}
	killed := time.Now()
	_ = d.cmd.Process.Kill()
	<-d.done
	if _, err = spread(3, a, c); err != nil {
		return fmt.Errorf("SIGKILL: %w", err)
	}
	rep.add("rebalance/kill", time.Since(killed).Seconds())
	return nil
}

// writeConfig writes a worker configuration of the sharded stream items
// into index and returns its path.
func (b *scaleBench) writeConfig(esURL, index, consumer, group string) (string, error) {
	q := strconv.Quote
	cfg := itemsConfig(b.redisURL, b.s.ns, b.s.dsn, esURL, index, "  group: "+q(group)+"\n", fmt.Sprintf(`    consumer: %s
    shards: %d
    # A consumer that never commits: no trimming, so that the backlog
    # stays whole for the other drains of the run.
    trim_consumers: [%s, never]
`, q(consumer), scaleShards, q(consumer)))
	path := filepath.Join(b.bin, "redstream-"+index+".yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// redisServer is a redis-server process of the scenario's own.
type redisServer struct {
	url    string
	proc   *proc
	client *redis.Client
}

// startRedis starts redis-server, without persistence, on a free
// loopback port.
func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("the scale scenario runs a redis-server of its own: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	p, err := startProc(ctx, path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--maxclients", "1000")
	if err != nil {
		return nil, err
	}
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	opts, _ := redis.ParseURL(url)
	rdb := redis.NewClient(opts)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := rdb.Ping(ctx).Err(); err == nil {
			break
		} else if p.exited() || time.Now().After(deadline) {
			rdb.Close()
			_ = p.stop()
			return nil, fmt.Errorf("redis-server did not start: %v\n%s", err, p.output())
		}
	}
	return &redisServer{url: url, proc: p, client: rdb}, nil
}
