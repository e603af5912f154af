package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
)

// scrapeTimeout bounds the Redis calls of one /metrics scrape.
const scrapeTimeout = 2 * time.Second

// metrics exposes the workers' Stats snapshots in the Prometheus format.
// Counters and gauges are read at scrape time; batch durations are
// observed by the timedHandler around each consumer's handler.
type metrics struct {
	reg      *prometheus.Registry
	batchDur *prometheus.HistogramVec
	rdb      redis.UniversalClient
	keys     redstream.Keys
	group    string // worker.group, the label of the group metrics

	mu sync.Mutex
	ws *workerSet
}

var (
	descLag          = desc("consumer_lag_seconds", "Age of the oldest message the consumer holds but has not committed; 0 when caught up.", "stream", "consumer")
	descMessages     = desc("consumer_messages_total", "Messages committed by the consumer (including dead-lettered ones).", "stream", "consumer")
	descBatches      = desc("consumer_batches_total", "Batches committed by the consumer.", "stream", "consumer")
	descErrors       = desc("consumer_errors_total", "Failed handler calls and Redis errors of the consumer.", "stream", "consumer")
	descDeadLettered = desc("consumer_dead_lettered_total", "Messages the consumer wrote to its dead-letter stream.", "stream", "consumer")
	descDLQSize      = desc("dead_letter_messages", "Entries in the consumer's dead-letter stream.", "stream", "consumer")
	descStreamLen    = desc("stream_messages", "Entries in the stream (XLEN).", "stream")
	descDelayLen     = desc("unconfirmed_messages", "Changes whose main-stream message is not confirmed: entries of the stream's delay stream (XLEN), that is transactions in flight and failed main-stream writes. 0 on a healthy idle system.", "stream")
	descLease        = desc("lease_held", "1 while this process holds the worker's lease.", "stream", "worker")
	descMoved        = desc("delayer_moved_total", "Messages the delayer moved from the delay stream to the stream.", "stream")
	descDelayErrors  = desc("delayer_errors_total", "Failed Redis calls of the delayer.", "stream")
	descTrimmed      = desc("trimmer_trimmed_total", "Entries the trimmer removed.", "stream")
	descTrimErrors   = desc("trimmer_errors_total", "Failed trims.", "stream")
	descTrimBlocked  = desc("trimmer_blocked", "1 while a consumer without an offset blocks trimming.", "stream")
	descItems        = desc("bulk_items_total", "Bulk items by outcome.", "index", "outcome")
	descRequests     = desc("bulk_requests_total", "Bulk requests sent.", "index")
	descBytes        = desc("bulk_request_bytes_total", "Bulk request bytes sent.", "index")
	descMembers      = desc("group_members", "Live members of the worker group, as this process last read them.", "group")
	descUnitsOwned   = desc("group_units_owned", "Units the group's assignment gives this process.", "group")
	descUnitsRunning = desc("group_units_running", "Units this process runs: its own and those it adopted.", "group")
	descMovesIn      = desc("lease_moves_total", "Units this process began to hold after another process held them; summed over the processes, the lease moves.", "group")
	descHandovers    = desc("group_handovers_total", "Units this process handed over to their owner.", "group")
	descAdoptions    = desc("group_adoptions_total", "Units this process served though their owner did not.", "group")
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("redstream_"+name, help, labels, nil)
}

func newMetrics(rdb redis.UniversalClient, keys redstream.Keys, group string) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		batchDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "redstream_batch_duration_seconds",
			Help:    "Time the handler took for one batch, by result (ok or error).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"stream", "consumer", "result"}),
		rdb:   rdb,
		keys:  keys,
		group: group,
	}
	m.reg.MustRegister(m.batchDur, m,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watch sets the workers whose Stats the metrics report.
func (m *metrics) watch(ws *workerSet) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ws = ws
}

// timed wraps h so that batch durations are observed.
func (m *metrics) timed(h redstream.Handler, stream, consumer string) redstream.Handler {
	ok := m.batchDur.WithLabelValues(stream, consumer, "ok")
	failed := m.batchDur.WithLabelValues(stream, consumer, "error")
	return redstream.HandlerFunc(func(ctx context.Context, b *redstream.Batch) error {
		start := time.Now()
		err := h.HandleBatch(ctx, b)
		if err != nil {
			failed.Observe(time.Since(start).Seconds())
		} else {
			ok.Observe(time.Since(start).Seconds())
		}
		return err
	})
}

// Describe implements prometheus.Collector. It sends nothing: the metrics
// are unchecked, since their label values depend on the configuration.
func (m *metrics) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	ws := m.ws
	m.mu.Unlock()
	if ws == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	type lens struct{ stream, delay, dlq *redis.IntCmd }
	sizes := map[string]lens{}
	// One pipeline on a plain client; a cluster client splits it by slot.
	_, _ = m.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, sw := range ws.streams {
			for _, name := range sw.shards {
				sizes[name] = lens{
					stream: p.XLen(ctx, m.keys.Stream(name)),
					delay:  p.XLen(ctx, m.keys.Delay(name)),
					dlq:    p.XLen(ctx, m.keys.DeadLetter(name, sw.cfg.Consumer)),
				}
			}
		}
		return nil
	})
	if grp := ws.group; grp != nil {
		st, name := grp.Stats(), m.group
		gauge(descMembers, float64(len(st.Members)), name)
		gauge(descUnitsOwned, float64(len(st.Owned)), name)
		gauge(descUnitsRunning, float64(len(st.Running)), name)
		counter(descMovesIn, float64(st.MovesIn), name)
		counter(descHandovers, float64(st.Handovers), name)
		counter(descAdoptions, float64(st.Adoptions), name)
	}
	for _, sw := range ws.streams {
		consumer := sw.cfg.Consumer
		for i, name := range sw.shards {
			cs := sw.consumers[i].Stats()
			gauge(descLag, cs.Lag.Seconds(), name, consumer)
			counter(descMessages, float64(cs.Messages), name, consumer)
			counter(descBatches, float64(cs.Batches), name, consumer)
			counter(descErrors, float64(cs.Errors), name, consumer)
			counter(descDeadLettered, float64(cs.DeadLettered), name, consumer)
			gauge(descLease, b2f(cs.Active), name, "consumer:"+consumer)
			ds := sw.delayers[i].Stats()
			gauge(descLease, b2f(ds.Active), name, "delayer")
			counter(descMoved, float64(ds.Moved), name)
			counter(descDelayErrors, float64(ds.Errors), name)
			ts := sw.trimmers[i].Stats()
			counter(descTrimmed, float64(ts.Trimmed), name)
			counter(descTrimErrors, float64(ts.Errors), name)
			gauge(descTrimBlocked, b2f(ts.BlockedBy != ""), name)
			if l, ok := sizes[name]; ok {
				if n, err := l.stream.Result(); err == nil {
					gauge(descStreamLen, float64(n), name)
				}
				if n, err := l.delay.Result(); err == nil {
					gauge(descDelayLen, float64(n), name)
				}
				if n, err := l.dlq.Result(); err == nil {
					gauge(descDLQSize, float64(n), name, consumer)
				}
			}
		}
		hs := sw.handler.Stats()
		ix := sw.cfg.Index
		for _, o := range []struct {
			outcome string
			n       int64
		}{
			{"indexed", hs.Indexed}, {"deleted", hs.Deleted}, {"conflict", hs.Conflicts},
			{"retried", hs.Retried}, {"dead_lettered", hs.DeadLettered},
		} {
			counter(descItems, float64(o.n), ix, o.outcome)
		}
		counter(descRequests, float64(hs.Requests), ix)
		counter(descBytes, float64(hs.Bytes), ix)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// health decides /healthz: a consumer is stalled when its lag has stayed
// above the stall timeout while it committed nothing for that long.
type health struct {
	ws    *workerSet
	stall time.Duration
	now   func() time.Time

	mu       sync.Mutex
	progress map[*redstream.Consumer]progress
}

type progress struct {
	messages int64
	at       time.Time
}

func newHealth(ws *workerSet, stall time.Duration) *health {
	return &health{ws: ws, stall: stall, now: time.Now, progress: map[*redstream.Consumer]progress{}}
}

// run samples the consumers until ctx ends, so that progress between two
// requests is seen.
func (h *health) run(ctx context.Context) {
	t := time.NewTicker(min(time.Second, h.stall/4+time.Millisecond))
	defer t.Stop()
	for {
		h.check()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stalledConsumer is one line of an unhealthy /healthz answer.
type stalledConsumer struct {
	Stream       string  `json:"stream"`
	Consumer     string  `json:"consumer"`
	LagSeconds   float64 `json:"lag_seconds"`
	IdleSeconds  float64 `json:"idle_seconds"`
	StallTimeout string  `json:"stall_timeout"`
}

// check records progress and returns the stalled consumers.
func (h *health) check() []stalledConsumer {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	var stalled []stalledConsumer
	for _, sw := range h.ws.streams {
		for i, c := range sw.consumers {
			s := c.Stats()
			p, seen := h.progress[c]
			if !seen || s.Messages != p.messages || s.Lag == 0 {
				p = progress{messages: s.Messages, at: now}
				h.progress[c] = p
			}
			if idle := now.Sub(p.at); s.Lag > h.stall && idle >= h.stall {
				stalled = append(stalled, stalledConsumer{
					Stream: sw.shards[i], Consumer: sw.cfg.Consumer,
					LagSeconds: s.Lag.Seconds(), IdleSeconds: idle.Seconds(), StallTimeout: h.stall.String(),
				})
			}
		}
	}
	return stalled
}

func httpHandler(m *metrics, h *health, ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		stalled := h.check()
		w.Header().Set("Content-Type", "application/json")
		if len(stalled) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"status": "stalled", "stalled": stalled})
			return
		}
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"status":"not ready"}`+"\n")
			return
		}
		_, _ = io.WriteString(w, `{"status":"ready"}`+"\n")
	})
	return mux
}

// readBody returns up to 4 KiB of r as text, for error messages.
func readBody(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 4<<10))
	return string(b)
}
