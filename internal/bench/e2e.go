package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
)

// runE2E measures changes synced per second, end to end, and what each
// change costs, in both delay modes (keep: ProducerOptions.
// KeepDelayMessages; ack: the default), alternating which runs first.
//
// Each mode runs in a fresh space (schema, namespace, test server): the
// latency scenario's setup, with creates only, so that every change is a
// row of its own. Writers create rows through GORM with the plugin at
// -e2e-rate (open loop, after -warmup). A Consumer with the Elasticsearch
// handler, a Delayer of -e2e-delay and a Trimmer run in the same process.
// The delay is shorter than the run, so in keep mode the Delayer re-sends
// every change within it. After the last write, the run waits until every
// change was acknowledged, the delay stream is empty (the Delayer has moved
// everything it holds) and the consumer has committed the main stream's
// last message. Only then are the handler's counters read: Elasticsearch
// document writes (Indexed + Deleted) and bulk requests, per change.
//
// Changes synced per second is the measured writes over the time from the
// first one's due time to the last one's first acknowledgement: the offered
// rate while the pipeline keeps up, less when it falls behind. CPU per
// change is counted over the whole mode, re-sends included: the machine's
// busy CPU time (every process, whatever else runs), and the sum of this
// process's (writers, worker, test server), the run's PostgreSQL backends'
// (told apart by their application_name) and the Redis server's (INFO cpu;
// shared with anything else using that server).
func runE2E(ctx context.Context, cfg *config, rep *report) error {
	for _, m := range delayModes {
		declareE2E(rep, cfg, m.name, ", "+m.name+" mode")
	}
	rep.declare(figure{name: "writes-per-change keep/ack", unit: "×", desc: "ES document writes per change, keep over ack, run by run"})
	rep.declare(figure{name: "machine-cpu keep/ack", unit: "×", desc: "machine CPU per change, keep over ack, run by run"})
	rep.declare(figure{name: "cpu keep/ack", unit: "×", desc: "CPU per change of this process, PostgreSQL backends and Redis, keep over ack, run by run"})
	rep.declare(figure{name: "rate ack/keep", unit: "×", desc: "changes synced per second, ack over keep, run by run"})
	var loads []string
	for run := range cfg.runs {
		err := rep.run(run, func() error {
			for _, i := range modeOrder(run) {
				m := delayModes[i]
				before := loadAvg()
				if err := e2eRun(ctx, cfg, rep, m.name, m.keep, engineES); err != nil {
					return fmt.Errorf("%s mode: %w", m.name, err)
				}
				loads = append(loads, fmt.Sprintf("run %d %s %.2f→%.2f", run+1, m.name, before, loadAvg()))
			}
			last := func(name string) float64 { v := rep.byName[name].values; return v[len(v)-1] }
			rep.add("writes-per-change keep/ack", last("writes-per-change/keep")/last("writes-per-change/ack"))
			rep.add("machine-cpu keep/ack", last("machine-cpu/keep")/last("machine-cpu/ack"))
			rep.add("cpu keep/ack", last("cpu/keep")/last("cpu/ack"))
			rep.add("rate ack/keep", last("rate/ack")/last("rate/keep"))
			return nil
		})
		if err != nil {
			return err
		}
	}
	where := "the project's ES test server, in process"
	if os.Getenv("ELASTICSEARCH_URL") != "" {
		where = "Elasticsearch at ELASTICSEARCH_URL"
	}
	rep.note("Single-row creates at %d/s for %s per mode after %s warm-up, %d writers, a Delayer of %s, into %s.",
		cfg.e2eRate, cfg.e2eDuration, cfg.warmup, cfg.writers, cfg.e2eDelay, where)
	rep.note("load average (1 min) before→after each mode: %s", strings.Join(loads, ", "))
	return nil
}

// declareE2E declares the figures e2eRun records under the name mode;
// in ends their descriptions.
func declareE2E(rep *report, cfg *config, mode, in string) {
	rep.declare(figure{name: "rate/" + mode, unit: "changes/s", higherBetter: true,
		desc: fmt.Sprintf("changes synced per second end to end (creates offered at %d/s)", cfg.e2eRate) + in})
	rep.declare(figure{name: "writes-per-change/" + mode, unit: "writes", desc: "ES document writes (Indexed + Deleted) per change" + in, target: "1.0"})
	rep.declare(figure{name: "deliveries-per-change/" + mode, unit: "messages", desc: "messages handled by the consumer per change" + in})
	rep.declare(figure{name: "bulk-per-1k/" + mode, unit: "requests", desc: "ES bulk requests per 1,000 changes" + in})
	rep.declare(figure{name: "moved/" + mode, unit: "messages", desc: "messages the Delayer moved, per change" + in})
	rep.declare(figure{name: "p50/" + mode, unit: "ms", desc: "COMMIT returned → first ES bulk acknowledged, median" + in})
	rep.declare(figure{name: "p99/" + mode, unit: "ms", desc: "COMMIT returned → first ES bulk acknowledged, 99th percentile" + in})
	rep.declare(figure{name: "machine-cpu/" + mode, unit: "µs/change", desc: "busy CPU time of the whole machine per change" + in})
	rep.declare(figure{name: "process-cpu/" + mode, unit: "µs/change", desc: "CPU time of this process (writers, worker, ES test server) per change" + in})
	rep.declare(figure{name: "pg-cpu/" + mode, unit: "µs/change", desc: "CPU time of the run's PostgreSQL backends per change" + in})
	rep.declare(figure{name: "redis-cpu/" + mode, unit: "µs/change", desc: "CPU time of the Redis server (shared with anything else using it) per change" + in})
	rep.declare(figure{name: "cpu/" + mode, unit: "µs/change", desc: "CPU time per change of this process, the run's PostgreSQL backends and Redis" + in})
	rep.declare(figure{name: "per-core-s/" + mode, unit: "changes", higherBetter: true, desc: "changes synced per second of that CPU time (changes/s at one busy core)" + in})
	rep.declare(figure{name: "cpu-busy/" + mode, unit: "%", desc: "share of the machine's CPU busy during the mode" + in})
	rep.declare(figure{name: "changes/" + mode, unit: "changes", desc: "changes committed (warm-up included)" + in})
	rep.declare(figure{name: "unsynced/" + mode, unit: "changes", desc: "changes not acknowledged within 30 s of the last write (want 0)" + in})
	rep.declare(figure{name: "errors/" + mode, unit: "creates", desc: "creates that failed" + in})
}

// e2eRun runs one mode in a fresh space, syncing to engine, and records
// its figures under the name mode.
func e2eRun(ctx context.Context, cfg *config, rep *report, mode string, keep bool, engine string) error {
	s, err := newSpace(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	tr := newTracker()
	a, err := openApp(s, cfg.writers, redstream.ProducerOptions{KeepDelayMessages: keep}, tr)
	if err != nil {
		return err
	}
	defer a.close()
	wk, err := startWorker(ctx, s, tr, cfg.e2eDelay, engine)
	if err != nil {
		return err
	}
	defer wk.close()

	period := time.Second / time.Duration(cfg.e2eRate)
	warm := int(cfg.warmup / period)
	total := warm + int(cfg.e2eDuration/period)
	cpu0, self0 := cpuTimes(), selfTicks()
	redis0, err := redisCPU(ctx, s.rdb)
	if err != nil {
		return err
	}
	res, err := paced(ctx, cfg.e2eRate, total, warm, cfg.writers, func(ctx context.Context, w *write) error {
		err := a.create(ctx, w, rand.IntN(1000))
		if err != nil {
			tr.forget(w)
		}
		return err
	})
	if err != nil {
		return err
	}
	if n := res.failed; n > 0 && n*100 > int64(total) {
		return fmt.Errorf("%d of %d creates failed, e.g. %v", n, total, res.firstErr)
	}
	unsynced := tr.wait(ctx, 30*time.Second)
	if err := wk.alive(); err != nil {
		return err
	}
	if err := e2eSettle(ctx, s, wk, cfg.e2eDelay+time.Minute); err != nil {
		return err
	}
	cpu1, self1 := cpuTimes(), selfTicks()
	redis1, err := redisCPU(ctx, s.rdb)
	if err != nil {
		return err
	}
	// Every backend of the run's pools started in this mode.
	pgTicks, pgErr := pgBackendTicks(ctx, wk.sql, s.schema)

	tr.mu.Lock()
	var changes int
	var first, lastAck time.Time
	for _, w := range res.writes {
		if w.commit.IsZero() {
			continue
		}
		changes++
		if !w.measured || w.ack.IsZero() {
			continue
		}
		if first.IsZero() {
			first = w.due
		}
		if w.ack.After(lastAck) {
			lastAck = w.ack
		}
	}
	lat := acked(res.writes)
	tr.mu.Unlock()
	if len(lat) == 0 || changes == 0 {
		return errors.New("no change was synced")
	}
	st := wk.h.Stats()
	if st.Conflicts > 0 || st.DeadLettered > 0 {
		return fmt.Errorf("%d version conflicts and %d dead letters, want none", st.Conflicts, st.DeadLettered)
	}
	per := func(v float64) float64 { return v / float64(changes) }
	tick := 1e6 / float64(clockTicks) // µs per clock tick
	rep.add("rate/"+mode, float64(len(lat))/lastAck.Sub(first).Seconds())
	rep.add("writes-per-change/"+mode, per(float64(st.Indexed+st.Deleted)))
	rep.add("deliveries-per-change/"+mode, per(float64(st.Messages)))
	rep.add("bulk-per-1k/"+mode, 1000*per(float64(st.Requests)))
	rep.add("moved/"+mode, per(float64(wk.d.Stats().Moved)))
	rep.add("p50/"+mode, ms(percentile(lat, 0.50)))
	rep.add("p99/"+mode, ms(percentile(lat, 0.99)))
	machine := per(float64((cpu1[1]-cpu1[0])-(cpu0[1]-cpu0[0])) * tick)
	process := per(float64(self1-self0) * tick)
	pg := math.NaN()
	if pgErr == nil {
		pg = per(float64(pgTicks) * tick)
	}
	rc := per((redis1 - redis0) * 1e6)
	rep.add("machine-cpu/"+mode, machine)
	rep.add("process-cpu/"+mode, process)
	rep.add("pg-cpu/"+mode, pg)
	rep.add("redis-cpu/"+mode, rc)
	rep.add("cpu/"+mode, process+pg+rc)
	rep.add("per-core-s/"+mode, 1e6/(process+pg+rc))
	rep.add("cpu-busy/"+mode, 100*busyShare(cpu0, cpu1))
	rep.add("changes/"+mode, float64(changes))
	rep.add("unsynced/"+mode, float64(unsynced))
	rep.add("errors/"+mode, float64(res.failed))
	return nil
}

// e2eSettle waits until the delay stream is empty (every delay message
// acknowledged or moved by the Delayer) and the consumer has committed the
// main stream's last message, so that every delivery has been handled.
func e2eSettle(ctx context.Context, s *space, wk *syncWorker, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	delayKey, mainKey := s.keys.Delay("products"), s.keys.Stream("products")
	for {
		n, err := s.rdb.XLen(ctx, delayKey).Result()
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the delay stream still holds %d messages", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	last, err := s.rdb.XRevRangeN(ctx, mainKey, "+", "-", 1).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	if len(last) == 0 {
		return nil // trimmed: everything was committed
	}
	id, err := redstream.ParseID(last[0].ID)
	if err != nil {
		return err
	}
	for wk.c.Stats().Committed.Less(id) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the consumer committed %v, not yet the main stream's last message %v", wk.c.Stats().Committed, id)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// clockTicks is the kernel's USER_HZ, the unit of /proc CPU times.
const clockTicks = 100

// selfTicks returns this process's CPU time (user + system) so far, in
// clock ticks; 0 where there is no /proc.
func selfTicks() uint64 {
	t, _ := statTicks("/proc/self/stat")
	return t.ticks
}

type statTime struct {
	comm  string
	ticks uint64
}

// statTicks reads a process's name and utime + stime from its stat file.
func statTicks(path string) (statTime, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return statTime{}, false
	}
	s := string(b)
	lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if lp < 0 || rp < lp {
		return statTime{}, false
	}
	f := strings.Fields(s[rp+1:])
	// After the name: state ppid pgrp session tty_nr tpgid flags minflt
	// cminflt majflt cmajflt utime stime.
	if len(f) < 13 {
		return statTime{}, false
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return statTime{comm: s[lp+1 : rp], ticks: u + st}, true
}

// redisCPU returns the Redis server's CPU time so far, in seconds (INFO
// cpu: used_cpu_sys + used_cpu_user).
func redisCPU(ctx context.Context, rdb *redis.Client) (float64, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, err
	}
	var total float64
	for _, l := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("INFO cpu %s: %w", k, err)
			}
			total += f
		}
	}
	return total, nil
}

// pgBackendTicks returns the CPU time, in clock ticks, of the PostgreSQL
// backends whose application_name is name, from /proc: the server must run
// on this machine.
func pgBackendTicks(ctx context.Context, db *sql.DB, name string) (uint64, error) {
	rows, err := db.QueryContext(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, name)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var total uint64
	found := 0
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return 0, err
		}
		if t, ok := statTicks(fmt.Sprintf("/proc/%d/stat", pid)); ok {
			total += t.ticks
			found++
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if found == 0 {
		return 0, errors.New("no PostgreSQL backend of the run in /proc")
	}
	return total, nil
}
