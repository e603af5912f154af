package redstream

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// Producer defaults.
const (
	// DefaultPipelineSize is how many messages one pipelined round trip of
	// Producer.Delay, Queue and Bulk carries at most.
	DefaultPipelineSize = 1000
	// DefaultBatchSize is how many rows Producer.BulkQuery loads per page.
	DefaultBatchSize = 1000
	// DefaultWaitTimeout bounds a WAIT for replicas.
	DefaultWaitTimeout = time.Second
	// DefaultPublishTimeout bounds the write of the main-stream messages
	// after a commit.
	DefaultPublishTimeout = 5 * time.Second
)

// ProducerOptions configure a Producer. The zero value, and a nil pointer,
// mean the defaults.
type ProducerOptions struct {
	// Namespace prefixes every key: "<Namespace>:redstream:…".
	// Default: "" (keys start with "redstream:").
	Namespace string

	// PipelineSize is how many messages one pipelined round trip carries at
	// most in Delay, Queue and Bulk. The GORM plugin always writes a
	// transaction's messages in one pipeline. Default: DefaultPipelineSize.
	PipelineSize int

	// BatchSize is how many rows BulkQuery loads per page.
	// Default: DefaultBatchSize.
	BatchSize int

	// WaitReplicas, when positive, makes every write of delay messages wait
	// until that many replicas have acknowledged it (Redis WAIT, sent in the
	// same pipeline so it covers those writes), for at most WaitTimeout. Too
	// few acknowledgements return a *ReplicaError, which makes the GORM
	// plugin roll the transaction back. Keep WaitTimeout below the client's
	// ReadTimeout. Default: 0 (no WAIT).
	WaitReplicas int

	// WaitTimeout bounds the WAIT. It is never 0, which would make Redis wait
	// forever. Default: DefaultWaitTimeout.
	WaitTimeout time.Duration

	// PublishTimeout bounds the main-stream write after a commit, which runs
	// on a context detached from the caller's. Default: DefaultPublishTimeout.
	PublishTimeout time.Duration

	// AsyncPublish makes the GORM plugin hand each committed transaction's
	// main-stream messages to a background writer instead of writing them
	// before Commit returns: a commit then waits for one Redis round trip
	// (the delay messages) instead of two. The writer coalesces the
	// messages of concurrent commits into pipelines. Call Close before the
	// process exits to flush it; messages lost to a crash before they are
	// written still arrive through the Delayer. Default: false (Commit
	// returns once the main-stream messages are written).
	AsyncPublish bool

	// KeepDelayMessages keeps every delay message until the Delayer moves
	// it, as the Ruby gem does, so that each change reaches consumers a
	// second time, delay late. By default a committed change's delay message
	// is deleted in the same script that writes its main-stream message,
	// once that message is in Redis, and the Delayer only repairs the
	// changes whose main-stream write was lost. Keep them only for
	// consumers that read a replica that may lag behind the primary, where
	// the second delivery re-reads a state the first may have missed.
	// Default: false.
	KeepDelayMessages bool

	// NamingStrategy names tables of models passed to the Producer's methods
	// (the GORM plugin uses the statement's own schema). Set it to the
	// *gorm.DB's NamingStrategy when that is customised.
	// Default: schema.NamingStrategy{}.
	NamingStrategy schema.Namer

	// Logger receives the producer's and the plugin's log lines.
	// Default: slog.Default().
	Logger *slog.Logger
}

// ProducerStats is a snapshot of a Producer's counters since it was made.
type ProducerStats struct {
	DelayMessages  int64 // messages written to delay streams
	QueueMessages  int64 // messages written to main streams
	DelayFailures  int64 // failed writes of delay messages (the write was refused or rolled back)
	QueueFailures  int64 // failed main-stream writes after a commit; the Delayer delivers those messages later
	Uncaptured     int64 // plugin writes whose primary keys could not be known (see Producer.Bulk)
	ForeignTxDelay int64 // plugin writes in transactions opened outside GORM: delay message only
}

// ReplicaError reports that a write reached fewer replicas than
// ProducerOptions.WaitReplicas within WaitTimeout.
type ReplicaError struct {
	Want, Got int
}

func (e *ReplicaError) Error() string {
	return fmt.Sprintf("redstream: delay messages reached %d of %d replicas", e.Got, e.Want)
}

// Producer writes Redstream messages: delay messages, which the Delayer
// moves to the main stream after a delay, and main-stream messages, which
// consumers read. A record's message is its stream name (Namer, or the GORM
// table name) and its payload (Payloader, or {"id":<primary key>}).
//
// A Producer is safe for concurrent use. The Redis client is the caller's
// to close. Without AsyncPublish a Producer holds no resources of its own;
// with it, the Producer owns a background writer goroutine, started by the
// first commit, which Close flushes and stops: call Close before the
// process exits.
type Producer struct {
	rdb      redis.UniversalClient
	keys     Keys
	opts     ProducerOptions
	log      *slog.Logger
	resolver resolver
	stats    struct {
		delay, queue, delayFail, queueFail, uncaptured, foreign atomic.Int64
	}
	async asyncWriter
}

// asyncWriter is the background writer of AsyncPublish.
type asyncWriter struct {
	mu      sync.Mutex
	pending []entry
	closed  bool
	running bool
	wake    chan struct{} // capacity 1: pending has entries
	done    chan struct{} // closed when the writer goroutine returns
	ctx     context.Context
	abort   context.CancelFunc // ends the writes in flight; Close's last resort
}

// NewProducer returns a Producer writing to rdb. Zero options take their
// defaults; it returns an error for a nil client or a negative option.
func NewProducer(rdb redis.UniversalClient, opts *ProducerOptions) (*Producer, error) {
	o := optionsOf(opts)
	switch {
	case rdb == nil:
		return nil, errors.New("redstream: nil redis client")
	case o.PipelineSize < 0 || o.BatchSize < 0 || o.WaitReplicas < 0 || o.WaitTimeout < 0 || o.PublishTimeout < 0:
		return nil, errors.New("redstream: negative producer option")
	}
	o.PipelineSize = cmp.Or(o.PipelineSize, DefaultPipelineSize)
	o.BatchSize = cmp.Or(o.BatchSize, DefaultBatchSize)
	o.WaitTimeout = cmp.Or(o.WaitTimeout, DefaultWaitTimeout)
	o.PublishTimeout = cmp.Or(o.PublishTimeout, DefaultPublishTimeout)
	if o.NamingStrategy == nil {
		o.NamingStrategy = schema.NamingStrategy{}
	}
	o.Logger = cmp.Or(o.Logger, slog.Default())
	p := &Producer{rdb: rdb, keys: NewKeys(o.Namespace), opts: o, log: o.Logger}
	p.resolver.namer = o.NamingStrategy
	return p, nil
}

// Close flushes the messages AsyncPublish has queued and stops its
// writer, waiting until they are written or ctx ends. When ctx ends first,
// Close cancels the write in flight, leaves what is still queued to the
// Delayer (those messages arrive delay late), waits for the writer to
// return and returns ctx's error: no goroutine outlives Close. Later
// publishes are written synchronously. Close is safe to call more than
// once, and a no-op without AsyncPublish.
func (p *Producer) Close(ctx context.Context) error {
	a := &p.async
	a.mu.Lock()
	a.closed = true
	running, done := a.running, a.done
	a.mu.Unlock()
	if !running {
		return nil
	}
	a.signal()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	a.abort()
	<-done
	return fmt.Errorf("redstream: close producer: queued messages left to the Delayer: %w", context.Cause(ctx))
}

// publishAsync queues entries for the background writer, starting it on
// first use. After Close, it writes synchronously.
func (p *Producer) publishAsync(ctx context.Context, entries []entry) {
	a := &p.async
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		p.publishNow(ctx, entries)
		return
	}
	a.pending = append(a.pending, entries...)
	if !a.running {
		a.running = true
		a.wake = make(chan struct{}, 1)
		a.done = make(chan struct{})
		a.ctx, a.abort = context.WithCancel(context.Background())
		go p.asyncLoop()
	}
	a.mu.Unlock()
	a.signal()
}

func (a *asyncWriter) signal() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// asyncLoop writes what is pending until the producer is closed and
// nothing is left.
func (p *Producer) asyncLoop() {
	a := &p.async
	defer close(a.done)
	for range a.wake {
		for {
			a.mu.Lock()
			batch := a.pending
			a.pending = nil
			closed := a.closed
			a.mu.Unlock()
			if a.ctx.Err() != nil {
				if n := len(batch); n > 0 {
					p.log.Warn("redstream: producer closed before its queued messages were written; the Delayer will deliver them",
						"messages", n)
				}
				return
			}
			if len(batch) == 0 {
				if closed {
					return
				}
				break
			}
			ctx, cancel := context.WithTimeout(a.ctx, p.opts.PublishTimeout)
			p.publishNow(ctx, batch)
			cancel()
		}
	}
}

// publishNow writes the main-stream messages of committed entries; a
// failure is logged and counted, never returned, as the data is committed.
func (p *Producer) publishNow(ctx context.Context, entries []entry) {
	if err := p.write(ctx, false, entries, max(p.opts.PipelineSize, len(entries))); err != nil {
		p.log.ErrorContext(ctx, "redstream: main-stream write after commit failed; the Delayer will deliver these messages",
			"messages", len(entries), "error", err)
	}
}

// Keys returns the key layout the producer writes to.
func (p *Producer) Keys() Keys { return p.keys }

// Stats returns a snapshot of the producer's counters.
func (p *Producer) Stats() ProducerStats {
	return ProducerStats{
		DelayMessages:  p.stats.delay.Load(),
		QueueMessages:  p.stats.queue.Load(),
		DelayFailures:  p.stats.delayFail.Load(),
		QueueFailures:  p.stats.queueFail.Load(),
		Uncaptured:     p.stats.uncaptured.Load(),
		ForeignTxDelay: p.stats.foreign.Load(),
	}
}

// Delay writes a delay message for each record: a model struct, a pointer
// to one, a Ref, or a slice of them. Records with a zero primary key are
// skipped.
func (p *Producer) Delay(ctx context.Context, records ...any) error {
	entries, err := p.entries(ctx, records...)
	if err != nil {
		return err
	}
	return p.write(ctx, true, entries, p.opts.PipelineSize)
}

// Queue writes a main-stream message for each record, as Delay does for the
// delay stream.
func (p *Producer) Queue(ctx context.Context, records ...any) error {
	entries, err := p.entries(ctx, records...)
	if err != nil {
		return err
	}
	return p.write(ctx, false, entries, p.opts.PipelineSize)
}

// Bulk wraps a write that bypasses the GORM plugin — a batch Updates with
// no primary keys, raw SQL, another client — for the given records: it
// writes their delay messages, runs fn, then writes their main-stream
// messages. If the delay write fails, fn does not run. If fn fails, its
// error is returned and no main-stream message is written; the delay
// messages still reach the main stream through the Delayer, so a partial
// write is not lost. records is what Delay accepts.
//
// Run fn's database work in a transaction when it must be all or nothing;
// Bulk itself does not open one.
func (p *Producer) Bulk(ctx context.Context, records any, fn func(ctx context.Context) error) error {
	entries, err := p.entries(ctx, records)
	if err != nil {
		return err
	}
	if err := p.write(ctx, true, entries, p.opts.PipelineSize); err != nil {
		return err
	}
	if err := fn(ctx); err != nil {
		return err
	}
	return p.write(ctx, false, entries, p.opts.PipelineSize)
}

// BulkQuery is Bulk for every row a GORM query matches, walked in pages of
// BatchSize rows in primary-key order so that memory stays bounded however
// many rows match. query names the model (Model or Find destination type)
// and its conditions, for example
//
//	db.Model(&Product{}).Where("price < ?", 10)
//
// For each page, BulkQuery loads the rows, writes their delay messages,
// calls fn with a query restricted to the page's primary keys, and writes
// their main-stream messages:
//
//	p.BulkQuery(ctx, db.Model(&Product{}).Where("price < ?", 10),
//		func(ctx context.Context, page *gorm.DB) error {
//			return page.Update("price", 10).Error
//		})
//
// The page query is marked with SkipCapture so the GORM plugin does not
// capture its write a second time. Pages advance by primary key, so fn may
// change the columns the conditions test. A failed page stops the walk and
// returns its error; earlier pages stay written.
func (p *Producer) BulkQuery(ctx context.Context, query *gorm.DB, fn func(ctx context.Context, page *gorm.DB) error) error {
	stmt := query.Statement
	model := stmt.Model
	if model == nil {
		model = stmt.Dest
	}
	if model == nil {
		return errors.New("redstream: BulkQuery needs a query with a Model")
	}
	base := query.Session(&gorm.Session{NewDB: false, Context: ctx})
	if err := base.Statement.Parse(model); err != nil {
		return fmt.Errorf("redstream: BulkQuery model: %w", err)
	}
	sch := base.Statement.Schema
	if len(sch.PrimaryFields) == 0 {
		return fmt.Errorf("%w: %s", errNoPrimaryKey, sch.Name)
	}
	pkCols := make([]clause.Column, len(sch.PrimaryFields))
	order := make([]clause.OrderByColumn, len(sch.PrimaryFields))
	for i, f := range sch.PrimaryFields {
		pkCols[i] = clause.Column{Table: clause.CurrentTable, Name: f.DBName}
		order[i] = clause.OrderByColumn{Column: pkCols[i]}
	}
	rowsType := reflect.SliceOf(sch.ModelType)

	var last []any // primary key of the previous page's last row
	for {
		rows := reflect.New(rowsType)
		page := base.Session(&gorm.Session{}).Clauses(clause.OrderBy{Columns: order}).Limit(p.opts.BatchSize)
		if last != nil {
			page = page.Where(keysetAfter(pkCols, last))
		}
		if err := page.Find(rows.Interface()).Error; err != nil {
			return fmt.Errorf("redstream: BulkQuery page: %w", err)
		}
		n := rows.Elem().Len()
		if n == 0 {
			return nil
		}
		ids := make([]any, 0, n)
		tuples := make([][]any, 0, n)
		for i := range n {
			row := rows.Elem().Index(i)
			key := make([]any, len(sch.PrimaryFields))
			for j, f := range sch.PrimaryFields {
				key[j], _ = f.ValueOf(ctx, row)
			}
			ids = append(ids, key[0])
			tuples = append(tuples, key)
			if i == n-1 {
				last = key
			}
		}
		var cond clause.Expression = clause.IN{Column: pkCols[0], Values: ids}
		if len(pkCols) > 1 {
			values := make([]any, len(tuples))
			for i, t := range tuples {
				values[i] = t
			}
			cond = clause.IN{Column: pkCols, Values: values}
		}
		err := p.Bulk(ctx, rows.Interface(), func(ctx context.Context) error {
			target := query.Session(&gorm.Session{NewDB: true, Context: ctx}).
				Model(reflect.New(sch.ModelType).Interface()).
				Set(skipKey, true).
				Where(cond)
			return fn(ctx, target)
		})
		if err != nil {
			return err
		}
		if n < p.opts.BatchSize {
			return nil
		}
	}
}

// keysetAfter builds "(pk1, pk2) > (v1, v2)" (or "pk > v").
func keysetAfter(cols []clause.Column, vals []any) clause.Expression {
	if len(cols) == 1 {
		return clause.Gt{Column: cols[0], Value: vals[0]}
	}
	colExprs := make([]any, len(cols))
	for i, c := range cols {
		colExprs[i] = c
	}
	return clause.Expr{SQL: "(?) > (?)", Vars: []any{colExprs, vals}}
}

func (p *Producer) entries(ctx context.Context, records ...any) ([]entry, error) {
	var out []entry
	for _, r := range records {
		var err error
		if out, err = p.resolver.entriesOf(ctx, out, r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// write writes entries to their delay streams (delay) or main streams, in
// pipelines of at most size messages. With WaitReplicas set, delay writes
// end with a WAIT in the same pipeline.
func (p *Producer) write(ctx context.Context, delay bool, entries []entry, size int) error {
	for len(entries) > 0 {
		n := min(size, len(entries))
		if err := p.pipeline(ctx, delay, entries[:n]); err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

func (p *Producer) pipeline(ctx context.Context, delay bool, entries []entry) error {
	counter, failures := &p.stats.queue, &p.stats.queueFail
	if delay {
		counter, failures = &p.stats.delay, &p.stats.delayFail
	}
	wait := delay && p.opts.WaitReplicas > 0
	var err error
	if cc, ok := p.rdb.(*redis.ClusterClient); ok && wait {
		err = p.clusterPipeline(ctx, cc, delay, entries)
	} else {
		err = p.pipelineOn(ctx, p.rdb, delay, wait, entries)
	}
	if err != nil {
		failures.Add(1)
		return err
	}
	counter.Add(int64(len(entries)))
	return nil
}

// pipelineOn sends entries' XADDs, and a WAIT when wait is set, in one
// pipeline on c. Delay writes record each message's id in its entry; main
// writes of entries with a delay id delete those delay messages in the
// same script (see ack), unless KeepDelayMessages is set.
func (p *Producer) pipelineOn(ctx context.Context, c redis.Cmdable, delay, wait bool, entries []entry) error {
	kind := "main-stream"
	if delay {
		kind = "delay"
	}
	if !delay && p.ack(entries) {
		if err := p.publishAcked(ctx, c, entries); err != nil {
			return fmt.Errorf("redstream: write %d %s messages: %w", len(entries), kind, err)
		}
		return nil
	}
	if d, ok := c.(doer); ok && len(entries) == 1 && !wait {
		// One message (a single-row write): a plain command costs the same
		// round trip and a few microseconds less than a pipeline of one.
		e := &entries[0]
		id, err := d.Do(ctx, "xadd", p.key(delay, e.stream), "*", "payload", e.payload).Text()
		if err != nil {
			return fmt.Errorf("redstream: write 1 %s messages: %w", kind, err)
		}
		if delay {
			e.delayID = id
		}
		return nil
	}
	var waitCmd *redis.Cmd
	xadds := make([]*redis.Cmd, 0, len(entries))
	cmds, err := c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		// The arguments of every XADD share one backing array, and each
		// stream's key is boxed once, not per message.
		args := make([]any, 0, 5*len(entries))
		var (
			stream string // the previous entry's stream
			key    any    // its key
		)
		for _, e := range entries {
			if e.stream != stream || key == nil {
				stream = e.stream
				key = p.key(delay, e.stream)
			}
			// XADD <key> * payload <json>: the Ruby gem's entry, byte for byte.
			n := len(args)
			args = append(args, "xadd", key, "*", "payload", e.payload)
			xadds = append(xadds, pipe.Do(ctx, args[n:len(args):len(args)]...))
		}
		if wait {
			waitCmd = pipe.Do(ctx, "wait", p.opts.WaitReplicas, p.opts.WaitTimeout.Milliseconds())
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redstream: write %d %s messages: %w", len(entries), kind, firstErr(cmds, err))
	}
	if delay {
		for i, c := range xadds {
			entries[i].delayID, _ = c.Text()
		}
	}
	if waitCmd != nil {
		got, err := waitCmd.Int()
		if err != nil {
			return fmt.Errorf("redstream: wait for replicas: %w", err)
		}
		if got < p.opts.WaitReplicas {
			return &ReplicaError{Want: p.opts.WaitReplicas, Got: got}
		}
	}
	return nil
}

// key returns the delay or main stream key of stream.
func (p *Producer) key(delay bool, stream string) string {
	if delay {
		return p.keys.Delay(stream)
	}
	return p.keys.Stream(stream)
}

// ack reports whether the main write of entries deletes their delay
// messages: unless KeepDelayMessages is set, when every entry knows its
// delay message's id and, on Redis Cluster, each stream's main and delay
// keys share a hash slot (a braced name), as one script needs.
func (p *Producer) ack(entries []entry) bool {
	if p.opts.KeepDelayMessages {
		return false
	}
	_, cluster := p.rdb.(*redis.ClusterClient)
	for i, e := range entries {
		if e.delayID == "" {
			return false
		}
		if cluster && (i == 0 || e.stream != entries[i-1].stream) &&
			keySlot(p.keys.Stream(e.stream)) != keySlot(p.keys.Delay(e.stream)) {
			return false
		}
	}
	return true
}

//go:embed publish_ack.lua
var luaPublishAckSrc string

var luaPublishAck = redis.NewScript(luaPublishAckSrc)

// publishAcked writes entries to their main streams and deletes their
// delay messages: one script per run of entries of one stream, all in one
// pipeline. Each script is atomic, so a delay message is deleted only
// once its main-stream message is written. A server that does not know
// the script yet gets it once more in full (EVAL), in a second round trip.
func (p *Producer) publishAcked(ctx context.Context, c redis.Cmdable, entries []entry) error {
	type group struct {
		keys []string
		args []any
	}
	var groups []group
	for i := 0; i < len(entries); {
		j := i + 1
		for j < len(entries) && entries[j].stream == entries[i].stream {
			j++
		}
		args := make([]any, 0, 1+2*(j-i))
		args = append(args, j-i)
		for _, e := range entries[i:j] {
			args = append(args, e.payload)
		}
		for _, e := range entries[i:j] {
			args = append(args, e.delayID)
		}
		groups = append(groups, group{keys: []string{p.keys.Stream(entries[i].stream), p.keys.Delay(entries[i].stream)}, args: args})
		i = j
	}
	if len(groups) == 1 {
		// One stream (most transactions): EVALSHA, and EVAL when the server
		// does not know the script yet.
		return luaPublishAck.Run(ctx, c, groups[0].keys, groups[0].args...).Err()
	}
	run := func(eval bool) ([]redis.Cmder, error) {
		return c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, g := range groups {
				if eval {
					luaPublishAck.Eval(ctx, pipe, g.keys, g.args...)
				} else {
					luaPublishAck.EvalSha(ctx, pipe, g.keys, g.args...)
				}
			}
			return nil
		})
	}
	cmds, err := run(false)
	if err != nil && redis.HasErrorPrefix(firstErr(cmds, err), "NOSCRIPT") {
		// Every script of the pipeline failed alike or ran: a failed one
		// wrote nothing, so running them all again would write the others
		// twice. Run again only those that did not run.
		var again []group
		for i, c := range cmds {
			if redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
				again = append(again, groups[i])
			} else if c.Err() != nil {
				return c.Err()
			}
		}
		groups = again
		cmds, err = run(true)
	}
	if err != nil {
		return firstErr(cmds, err)
	}
	return nil
}

// doer is the part of a Redis client that sends one command.
type doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// clusterPipeline groups entries by the master that owns their stream key,
// so that each WAIT runs on the connection that wrote the messages it covers.
func (p *Producer) clusterPipeline(ctx context.Context, cc *redis.ClusterClient, delay bool, entries []entry) error {
	groups := make(map[*redis.Client][]entry)
	var order []*redis.Client
	for _, e := range entries {
		key := p.keys.Stream(e.stream)
		if delay {
			key = p.keys.Delay(e.stream)
		}
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return fmt.Errorf("redstream: find master for %s: %w", key, err)
		}
		if _, ok := groups[node]; !ok {
			order = append(order, node)
		}
		groups[node] = append(groups[node], e)
	}
	for _, node := range order {
		if err := p.pipelineOn(ctx, node, delay, true, groups[node]); err != nil {
			return err
		}
	}
	return nil
}

func firstErr(cmds []redis.Cmder, err error) error {
	for _, c := range cmds {
		if c.Err() != nil {
			return c.Err()
		}
	}
	return err
}
