package elastic

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/bsm/redislock"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
)

// Reindex phases, as ReindexStatus.Phase names them, in their order.
const (
	// PhaseBackfill: the new index is created and filled from the table.
	PhaseBackfill = "backfill"
	// PhaseReplay: the changes made since the reindex began are replayed
	// into the new index from the stream.
	PhaseReplay = "replay"
	// PhaseVerify: the new index is compared with the table.
	PhaseVerify = "verify"
	// PhaseSwap: the alias is being moved to the new index.
	PhaseSwap = "swap"
	// PhaseSwapped: the alias points at the new index; the changes the
	// live consumer wrote to the old index just before the swap are
	// replayed, and the old index is deleted.
	PhaseSwapped = "swapped"
)

// ReindexHolder is the field of the holds (redstream.Keys.Hold) that a
// reindex places on each stream whose changes it replays.
const ReindexHolder = "reindex"

// ReindexConsumer is the consumer name of the batches a reindex replays.
const ReindexConsumer = "reindex"

// DefaultReplayBatch is the default of ReindexOptions.ReplayBatch.
const DefaultReplayBatch = 1000

// Reindex errors.
var (
	// ErrReindexRunning is returned, wrapped with the holder of its lock,
	// when another reindex of the stream runs.
	ErrReindexRunning = errors.New("elastic: another reindex of this stream is running")
	// ErrNotAlias is returned when the alias name is a concrete index and
	// ReindexOptions.Migrate is not set.
	ErrNotAlias = errors.New("elastic: the name is a concrete index, not an alias")
	// ErrVerifyFailed is returned, wrapped with what Verify found, when
	// the new index misses documents or holds stale or extra ones that no
	// later change explains; the alias is not swapped.
	ErrVerifyFailed = errors.New("elastic: the new index is not in sync with the table")
	// ErrReplayGap is returned when messages a reindex still had to replay
	// were trimmed from a stream (by a trimmer that does not honour holds).
	ErrReplayGap = errors.New("elastic: messages to replay were trimmed")
)

// ReindexOptions configure a Reindexer.
type ReindexOptions struct {
	// Name is the configured stream name: the reindex's state, lock and
	// log are kept under it (redstream.Keys.Reindex). Required.
	Name string
	// Streams are the Redis streams whose changes are replayed: the
	// stream, or its shards (redstream.ShardNames). Default: []string{Name}.
	Streams []string
	// Alias is the name readers and the live consumer use, an alias of
	// one physical index. Required.
	Alias string
	// Body is the create index request body of the new index (settings,
	// mappings). Default: none (dynamic mapping).
	Body []byte
	// Table and PrimaryKey are the table to backfill the new index from
	// and its key column. Table is required; PrimaryKey defaults to
	// DefaultPrimaryKey.
	Table, PrimaryKey string
	// Namespace selects the Redis key layout (redstream.NewKeys).
	// Default: "" (none).
	Namespace string
	// Handler configures the handler that writes the new index; Index is
	// set to the new index. Default: the handler's defaults.
	Handler *Options
	// PageSize is the backfill's and the verification's page size; the
	// replay moves on to the verification once a pass over the streams
	// finds at most this many changes. Default: DefaultPageSize.
	PageSize int
	// ReplayBatch is the most messages the replay reads and writes in one
	// batch. Default: DefaultReplayBatch, or PageSize when larger.
	//
	// The replay keeps up with the writes only while a batch takes less
	// time than the writes need to add ReplayBatch changes: a batch's
	// rows are read in one query and written in one bulk request (split
	// by Handler's MaxBulkBytes), the changes of a row repeated in it
	// read once, so a large batch replays far more changes a second than
	// a page would, on a loaded or remote cluster above all.
	ReplayBatch int
	// KeepOld keeps the old index after the swap. Default: false (it is
	// deleted once the swap is done and the last changes are replayed).
	KeepOld bool
	// Force swaps even when the verification finds differences.
	// Default: false (the reindex stops before the swap, with
	// ErrVerifyFailed).
	Force bool
	// Migrate lets a reindex replace a concrete index named Alias: the
	// swap deletes that index and creates the alias in one request, so
	// the old index cannot be kept. Default: false (ErrNotAlias).
	Migrate bool
	// VerifyKeyField is VerifyOptions.KeyField for the verification.
	// Default: Verify's.
	VerifyKeyField string
	// LockTTL is the TTL of the reindex's lock, refreshed every third of
	// it; a reindex killed leaves a lock that expires after it.
	// Default: redstream.DefaultLockTTL.
	LockTTL time.Duration
	// Progress, when set, is called with the reindex's progress after
	// each page and each replayed batch, on the goroutine of Run.
	// Default: none.
	Progress func(ReindexStatus)
	// Logger receives the reindex's log lines. Default: slog.Default().
	Logger *slog.Logger
}

// ReindexStatus is the state of a reindex, as Run reports its progress and
// ReadReindexStatus reads it from Redis.
type ReindexStatus struct {
	Name  string `json:"name"`
	Alias string `json:"alias"`
	// Phase is one of PhaseBackfill … PhaseSwapped.
	Phase string `json:"phase"`
	// Index is the new physical index; Old the one the alias pointed at
	// ("" when there was none, or the alias name itself when a concrete
	// index is migrated).
	Index string `json:"index"`
	Old   string `json:"old"`
	// Migrate reports a concrete index replaced by an alias.
	Migrate bool      `json:"migrate"`
	Started time.Time `json:"started"`
	// Rows and Total are the backfill's rows done and estimated total
	// (-1 unknown); Rate its rows per second in the last run.
	Rows  int64   `json:"rows"`
	Total int64   `json:"total"`
	Rate  float64 `json:"rate"`
	// Replayed counts the messages replayed into the new index.
	Replayed int64 `json:"replayed"`
	// ReplayLag is the age of the oldest change not replayed yet; 0 when
	// the replay is caught up.
	ReplayLag time.Duration `json:"replay_lag"`
	// Holder names the process running the reindex ("" when none runs:
	// the reindex was interrupted and waits to be run again).
	Holder string `json:"holder,omitempty"`
}

// ETA returns the estimated time left of the backfill; 0 when unknown.
func (s *ReindexStatus) ETA() time.Duration {
	if s.Phase != PhaseBackfill || s.Rate <= 0 || s.Total <= s.Rows {
		return 0
	}
	return time.Duration(float64(s.Total-s.Rows) / s.Rate * float64(time.Second))
}

// ReindexResult is what a reindex did.
type ReindexResult struct {
	Alias, Index, Old string
	// Resumed reports a reindex that went on from an interrupted one.
	Resumed bool
	// Rows is the rows the backfill walked in this run; Replayed the
	// messages replayed.
	Rows, Replayed int64
	// Verify is the verification of the new index before the swap;
	// Unexplained the ids that differed with no later change to explain
	// them (these stop the swap unless forced).
	Verify      VerifyReport
	Unexplained []string
	// OldDeleted reports the old index deleted (or replaced, with Migrate).
	OldDeleted bool
	Started    time.Time
	Finished   time.Time
}

// Reindexer rebuilds the index behind an alias with zero downtime: it
// creates a new physical index, backfills it from the table, replays the
// changes made since it began from the streams, verifies it, and swaps
// the alias in one POST /_aliases request, while the worker keeps
// writing through the alias.
//
// Correctness. Before the backfill reads a row, the reindex records the
// end of each stream and places a hold there (redstream.Keys.Hold), which
// trimmers respect. A change committed after a backfill page read its row
// is written to a stream after that end, so the replay, which runs after
// the backfill and re-reads each row, writes the row's latest state last:
// an older page never overwrites a newer state, with or without a version
// column. The live consumer writes through the alias: to the old index
// until the swap, to the new one after. The changes it wrote to the old
// index just before the swap are in the streams before the swap's end,
// which the reindex replays after the swap. Then the replay and the live
// consumer write the same documents into the new index, each reading the
// row before writing it, so without a version column (or after a soft
// delete that kept the version) a state the replay read before the
// consumer's could land after it and stay: the replay appends the
// changes it wrote after the swap to the streams again, and the live
// consumer, reading each row once more after the replay's write, writes
// the document last. The swap removes the alias from the old index with
// must_exist, so it applies only if nobody moved the alias meanwhile.
//
// The state (phase, new index, backfill cursor, replay positions) lives
// in Redis, and a lock excludes a second reindex of the stream: Run, run
// again after a crash, resumes where the last run stopped. The alias
// always points at exactly one complete index.
type Reindexer struct {
	rdb    redis.UniversalClient
	db     *sql.DB
	es     esapi.Transport
	loader Loader
	opts   ReindexOptions
	keys   redstream.Keys
	log    *slog.Logger
	// added holds, per stream whose hold this process placed or moved to
	// the stream's end, the stream's entries-added counter at that end.
	added map[string]int64
}

// NewReindexer returns a Reindexer of the index behind opts.Alias, built
// from the table with loader, replaying the streams of rdb.
func NewReindexer(rdb redis.UniversalClient, db *sql.DB, es esapi.Transport, loader Loader, opts ReindexOptions) (*Reindexer, error) {
	if rdb == nil || db == nil || isNil(es) || loader == nil {
		return nil, errors.New("elastic: NewReindexer needs Redis, a database, a client and a loader")
	}
	if opts.Name == "" || opts.Alias == "" || opts.Table == "" {
		return nil, errors.New("elastic: ReindexOptions.Name, Alias and Table are required")
	}
	if opts.PageSize < 0 || opts.ReplayBatch < 0 || opts.LockTTL < 0 {
		return nil, errors.New("elastic: ReindexOptions has a negative value")
	}
	if len(opts.Streams) == 0 {
		opts.Streams = []string{opts.Name}
	}
	opts.PageSize = cmp.Or(opts.PageSize, DefaultPageSize)
	opts.ReplayBatch = cmp.Or(opts.ReplayBatch, max(DefaultReplayBatch, opts.PageSize))
	opts.LockTTL = cmp.Or(opts.LockTTL, redstream.DefaultLockTTL)
	log := cmp.Or(opts.Logger, slog.Default()).With("stream", opts.Name, "alias", opts.Alias)
	return &Reindexer{rdb: rdb, db: db, es: es, loader: loader, opts: opts, keys: redstream.NewKeys(opts.Namespace), log: log, added: map[string]int64{}}, nil
}

// state is the reindex's state hash.
type state struct {
	r      *Reindexer
	fields map[string]string
	run    *ReindexResult
	start  time.Time // of this run's backfill
	rows0  int64     // rows of earlier runs
}

func (s *state) get(f string) string { return s.fields[f] }

func (s *state) int(f string) int64 {
	n, _ := strconv.ParseInt(s.fields[f], 10, 64)
	return n
}

// set stores fields (name, value, …) in the state hash.
func (s *state) set(ctx context.Context, kv ...string) error {
	args := make([]any, len(kv))
	for i, v := range kv {
		args[i] = v
		if i%2 == 0 {
			s.fields[v] = kv[i+1]
		}
	}
	if err := s.r.rdb.HSet(ctx, s.r.keys.Reindex(s.r.opts.Name), args...).Err(); err != nil {
		return fmt.Errorf("elastic: store the reindex state: %w", err)
	}
	return nil
}

// Run runs the reindex, or resumes an interrupted one, to its end: the
// alias points at the new index, the last changes are replayed, the old
// index is deleted (unless KeepOld) and a record is added to the log
// (redstream.Keys.ReindexLog). It returns ErrReindexRunning when another
// reindex of the stream holds the lock, ErrNotAlias for a concrete index
// without Migrate, ErrVerifyFailed when the verification stops the swap;
// an interrupted Run (ctx ended, the process killed) leaves its state for
// the next Run. Run blocks until done.
func (r *Reindexer) Run(ctx context.Context) (ReindexResult, error) {
	res := ReindexResult{Alias: r.opts.Alias, Started: time.Now()}
	lctx, release, err := r.lock(ctx)
	if err != nil {
		return res, err
	}
	defer release()
	err = r.run(lctx, &res)
	if err != nil && context.Cause(lctx) != nil && ctx.Err() == nil {
		err = errors.Join(err, context.Cause(lctx))
	}
	return res, err
}

func (r *Reindexer) run(ctx context.Context, res *ReindexResult) error {
	st, err := r.loadState(ctx, res)
	if err != nil {
		return err
	}
	res.Index, res.Old = st.get("index"), st.get("old")
	h, err := r.handler(res.Index)
	if err != nil {
		return err
	}
	for {
		phase := st.get("phase")
		r.log.InfoContext(ctx, "elastic: reindex phase", "phase", phase, "index", res.Index)
		switch phase {
		case PhaseBackfill:
			err = r.backfill(ctx, st, h)
		case PhaseReplay:
			err = r.catchUp(ctx, st, h)
		case PhaseVerify:
			err = r.verify(ctx, st, h)
		case PhaseSwap:
			err = r.swap(ctx, st)
		case PhaseSwapped:
			return r.finish(ctx, st, h)
		default:
			return fmt.Errorf("elastic: the reindex state of %s has an unknown phase %q (abort the reindex)", r.opts.Name, phase)
		}
		if err != nil {
			return err
		}
	}
}

// loadState reads the state of an interrupted reindex, or starts a new
// one: it resolves the alias, places the holds at the streams' ends,
// stores the state and creates the new index.
func (r *Reindexer) loadState(ctx context.Context, res *ReindexResult) (*state, error) {
	fields, err := r.rdb.HGetAll(ctx, r.keys.Reindex(r.opts.Name)).Result()
	if err != nil {
		return nil, fmt.Errorf("elastic: read the reindex state: %w", err)
	}
	st := &state{r: r, fields: fields, run: res}
	if len(fields) > 0 {
		res.Resumed = true
		r.log.InfoContext(ctx, "elastic: resuming an interrupted reindex", "phase", st.get("phase"), "index", st.get("index"))
		return st, nil
	}
	st.fields = map[string]string{}
	targets, concrete, err := aliasTargets(ctx, r.es, r.opts.Alias)
	if err != nil {
		return nil, err
	}
	old, migrate := "", false
	switch {
	case concrete && !r.opts.Migrate:
		return nil, fmt.Errorf("%w: %s (a reindex with Migrate replaces it by an alias of that name, deleting it in the swap)", ErrNotAlias, r.opts.Alias)
	case concrete:
		old, migrate = r.opts.Alias, true
	case len(targets) > 1:
		slices.Sort(targets)
		return nil, fmt.Errorf("elastic: alias %s points at %d indexes %v; a reindex needs one", r.opts.Alias, len(targets), targets)
	case len(targets) == 1:
		old = targets[0]
	}
	name := PhysicalName(r.opts.Alias, time.Now())
	for i := 2; ; i++ {
		exists, err := indexExists(ctx, r.es, name)
		if err != nil {
			return nil, err
		}
		if !exists && name != old {
			break
		}
		name = PhysicalName(r.opts.Alias, time.Now()) + "-" + strconv.Itoa(i)
	}
	// The holds go first: every change written to a stream after its end
	// is replayed, and kept until it is.
	for _, s := range r.opts.Streams {
		end, added, err := r.streamEnd(ctx, s)
		if err != nil {
			return nil, err
		}
		if err := r.rdb.HSet(ctx, r.keys.Hold(s), ReindexHolder, end.String()).Err(); err != nil {
			return nil, fmt.Errorf("elastic: place the hold on %s: %w", s, err)
		}
		r.added[s] = added
	}
	now := time.Now()
	if err := st.set(ctx, "phase", PhaseBackfill, "alias", r.opts.Alias, "index", name, "old", old,
		"migrate", strconv.FormatBool(migrate), "started", strconv.FormatInt(now.UnixMilli(), 10)); err != nil {
		return nil, err
	}
	r.log.InfoContext(ctx, "elastic: reindex started", "index", name, "old", old, "migrate", migrate)
	return st, nil
}

// streamEnd returns the id of the last entry added to stream s (0-0 for
// none) and how many entries were ever added to it.
func (r *Reindexer) streamEnd(ctx context.Context, s string) (redstream.ID, int64, error) {
	info, err := r.rdb.XInfoStream(ctx, r.keys.Stream(s)).Result()
	if err != nil {
		if noSuchKey(err) {
			return redstream.ID{}, 0, nil
		}
		return redstream.ID{}, 0, fmt.Errorf("elastic: read the end of stream %s: %w", s, err)
	}
	id, err := redstream.ParseID(info.LastGeneratedID)
	return id, info.EntriesAdded, err
}

func (r *Reindexer) handler(index string) (*Handler, error) {
	var o Options
	if r.opts.Handler != nil {
		o = *r.opts.Handler
	}
	o.Index = index
	if o.Logger == nil {
		o.Logger = r.log
	}
	return NewHandler(r.es, r.loader, &o)
}

// backfill creates the new index (unless an earlier run did) and fills it
// from the table, resumable from its cursor.
func (r *Reindexer) backfill(ctx context.Context, st *state, h *Handler) error {
	err := CreateAliasedIndex(ctx, r.es, st.get("index"), r.opts.Body, "")
	if err != nil && !errors.Is(err, ErrIndexExists) {
		return err
	}
	st.start = time.Now()
	st.rows0 = st.int("rows")
	res, err := Backfill(ctx, r.db, h, BackfillOptions{
		Table:      r.opts.Table,
		PrimaryKey: r.opts.PrimaryKey,
		Stream:     r.opts.Name,
		PageSize:   r.opts.PageSize,
		Cursor:     RedisCursor(r.rdb, r.keys.Backfill(r.opts.Name, st.get("index"))),
		Logger:     r.log,
		Progress: func(rows, total int64) {
			done := st.rows0 + rows
			if total >= 0 {
				total += st.rows0
			}
			rate := float64(rows) / max(time.Since(st.start).Seconds(), 1e-3)
			// Progress only: a failed write is retried with the next page.
			_ = st.set(ctx, "rows", strconv.FormatInt(done, 10), "total", strconv.FormatInt(total, 10),
				"rate", strconv.FormatFloat(rate, 'f', 1, 64))
			r.progress(ctx, st)
		},
	})
	st.run.Rows += res.Rows
	if err != nil {
		return err
	}
	return st.set(ctx, "phase", PhaseReplay)
}

// catchUp replays until a pass finds at most a page of changes, then
// moves on to the verification.
func (r *Reindexer) catchUp(ctx context.Context, st *state, h *Handler) error {
	for {
		n, err := r.replay(ctx, st, h, nil)
		if err != nil {
			return err
		}
		if n <= int64(r.opts.PageSize) {
			return st.set(ctx, "phase", PhaseVerify)
		}
	}
}

// replay replays the changes of every stream after its hold up to the
// stream's end at the start of the pass (or up to upTo[stream] when
// given), moving the holds as it goes. It returns the messages replayed.
func (r *Reindexer) replay(ctx context.Context, st *state, h *Handler, upTo map[string]redstream.ID) (int64, error) {
	var total int64
	for _, s := range r.opts.Streams {
		end, ok := upTo[s]
		added := int64(-1)
		if !ok {
			var err error
			if end, added, err = r.streamEnd(ctx, s); err != nil {
				return total, err
			}
		}
		// After the swap (upTo set), the live consumer writes the same
		// documents: the replay republishes what it wrote.
		n, err := r.replayStream(ctx, st, h, s, end, added, upTo != nil)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// republish appends the changes of a batch the replay wrote after the
// swap to the stream key again, one entry per document with the payload
// it had. After the swap the live consumer writes the same documents as
// the replay, into the same index, and each reads its row before it
// writes: without a version column nothing refuses an older state (nor
// with one a soft delete that left the version as it was), so the
// replay's write of a row it read before the consumer did could land
// last. The live consumer handles the copies after the replay's writes
// completed, so the last write of each document reads its row last.
// Every consumer of the stream receives these changes once more, as at
// least once delivery allows.
func (r *Reindexer) republish(ctx context.Context, key string, b *redstream.Batch) error {
	dead := b.DeadLettered()
	seen := make(map[string]bool, len(b.Messages))
	pipe := r.rdb.Pipeline()
	for _, m := range b.Messages {
		if _, ok := dead[m.ID]; ok {
			continue // refused: the live consumer dead-letters the original
		}
		id, err := MessageID(m.Payload)
		if err != nil || seen[id] {
			continue
		}
		seen[id] = true
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"payload", string(m.Payload)}})
	}
	if pipe.Len() == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("elastic: republish the replayed changes to %s: %w", key, err)
	}
	return nil
}

// hold returns the position of the reindex's hold on stream s.
func (r *Reindexer) hold(ctx context.Context, s string) (redstream.ID, error) {
	v, err := r.rdb.HGet(ctx, r.keys.Hold(s), ReindexHolder).Result()
	if errors.Is(err, redis.Nil) {
		return redstream.ID{}, fmt.Errorf("elastic: the reindex's hold on stream %s is gone, so changes may have been trimmed; abort the reindex and run it again", s)
	}
	if err != nil {
		return redstream.ID{}, fmt.Errorf("elastic: read the hold on %s: %w", s, err)
	}
	return redstream.ParseID(v)
}

// replayStream replays stream s after the hold up to end. When added is
// the stream's entries-added counter at end (not -1) and this process
// knows the counter at the hold, it checks that no entry in between was
// removed: every entry after the hold is the reindex's to replay, and the
// trimmers keep them, but one that does not honour holds (the Ruby gem's,
// an older version's) would not. With republish, each page's changes are
// appended to the stream again once written (see republish).
func (r *Reindexer) replayStream(ctx context.Context, st *state, h *Handler, s string, end redstream.ID, added int64, republish bool) (int64, error) {
	pos, err := r.hold(ctx, s)
	if err != nil {
		return 0, err
	}
	before, known := r.added[s]
	delete(r.added, s)
	key := r.keys.Stream(s)
	var n int64
	for pos.Less(end) {
		entries, err := r.rdb.XRangeN(ctx, key, "("+pos.String(), end.String(), int64(r.opts.ReplayBatch)).Result()
		if err != nil {
			return n, fmt.Errorf("elastic: read stream %s: %w", s, err)
		}
		if len(entries) == 0 {
			break
		}
		b := &redstream.Batch{Stream: s, Consumer: ReindexConsumer, Attempt: 1, Messages: make([]redstream.Message, 0, len(entries))}
		for _, e := range entries {
			id, err := redstream.ParseID(e.ID)
			if err != nil {
				return n, err
			}
			p, _ := e.Values["payload"].(string)
			if !json.Valid([]byte(p)) {
				continue // the live consumer dead-letters it
			}
			b.Messages = append(b.Messages, redstream.Message{ID: id, Stream: s, Payload: json.RawMessage(p)})
		}
		if len(b.Messages) > 0 {
			if err := h.HandleBatch(ctx, b); err != nil {
				return n, fmt.Errorf("elastic: replay %s after %s: %w", s, pos, err)
			}
			// Before the hold moves on: a run killed in between replays
			// the page, and republishes it, again.
			if republish {
				if err := r.republish(ctx, key, b); err != nil {
					return n, err
				}
			}
		}
		last := entries[len(entries)-1].ID
		if err := r.rdb.HSet(ctx, r.keys.Hold(s), ReindexHolder, last).Err(); err != nil {
			return n, fmt.Errorf("elastic: move the hold on %s: %w", s, err)
		}
		if pos, err = redstream.ParseID(last); err != nil {
			return n, err
		}
		n += int64(len(entries))
		st.run.Replayed += int64(len(entries))
		_ = st.set(ctx, "replayed", strconv.FormatInt(st.int("replayed")+int64(len(entries)), 10))
		r.progress(ctx, st)
	}
	if added >= 0 && known && (pos != end || n != added-before) {
		return n, fmt.Errorf("%w: stream %s had %d entries added after the replay's position, %d are left; abort the reindex and run it again",
			ErrReplayGap, s, added-before, n)
	}
	if added >= 0 && pos == end {
		r.added[s] = added
	}
	return n, nil
}

// verify compares the new index with the table. A difference is
// explained when a change after the replay's position names its id (in
// the stream, or in the delay stream, a change in flight): the replay, or
// after the swap the live consumer, writes it. Any other difference
// stops the swap, unless Force.
func (r *Reindexer) verify(ctx context.Context, st *state, h *Handler) error {
	index := st.get("index")
	if err := refreshIndex(ctx, r.es, index); err != nil {
		return err
	}
	from := map[string]redstream.ID{}
	for _, s := range r.opts.Streams {
		pos, err := r.hold(ctx, s)
		if err != nil {
			return err
		}
		from[s] = pos
	}
	var differ []string
	rep, err := Verify(ctx, r.db, r.es, r.loader, VerifyOptions{
		Table: r.opts.Table, PrimaryKey: r.opts.PrimaryKey, Index: index, KeyField: r.opts.VerifyKeyField,
		PageSize: min(r.opts.PageSize, MaxVerifyPageSize),
		Repair: func(_ context.Context, ids []any) error {
			for _, id := range ids {
				differ = append(differ, fmt.Sprint(id))
			}
			return nil
		},
	})
	st.run.Verify = rep
	if err != nil {
		return fmt.Errorf("elastic: verify the new index %s: %w", index, err)
	}
	if len(differ) > 0 {
		explained := map[string]bool{}
		for _, s := range r.opts.Streams {
			if err := r.changedIDs(ctx, r.keys.Stream(s), "("+from[s].String(), explained); err != nil {
				return err
			}
			if err := r.changedIDs(ctx, r.keys.Delay(s), "-", explained); err != nil {
				return err
			}
		}
		var unexplained []string
		for _, id := range differ {
			if !explained[id] {
				unexplained = append(unexplained, id)
			}
		}
		st.run.Unexplained = unexplained
		if len(unexplained) > 0 {
			err := fmt.Errorf("%w: %d of its documents differ from their rows with no change to explain it (missing %d, extra %d, stale %d; first ids %v)",
				ErrVerifyFailed, len(unexplained), rep.Missing.Count, rep.Extra.Count, rep.Stale.Count, unexplained[:min(len(unexplained), 10)])
			if !r.opts.Force {
				return err
			}
			r.log.WarnContext(ctx, "elastic: swapping although the new index differs (forced)", "error", err)
		}
	}
	// The changes since the last pass, then the swap at once.
	if _, err := r.replay(ctx, st, h, nil); err != nil {
		return err
	}
	return st.set(ctx, "phase", PhaseSwap)
}

// changedIDs adds to ids the record ids of the entries of the stream key
// from start on.
func (r *Reindexer) changedIDs(ctx context.Context, key, start string, ids map[string]bool) error {
	for {
		entries, err := r.rdb.XRangeN(ctx, key, start, "+", 1000).Result()
		if err != nil {
			return fmt.Errorf("elastic: read %s: %w", key, err)
		}
		for _, e := range entries {
			p, _ := e.Values["payload"].(string)
			if id, err := MessageID([]byte(p)); err == nil {
				ids[id] = true
			}
		}
		if len(entries) < 1000 {
			return nil
		}
		start = "(" + entries[len(entries)-1].ID
	}
}

// swap moves the alias to the new index in one request. Resumed after a
// crash, it finds the alias moved already.
func (r *Reindexer) swap(ctx context.Context, st *state) error {
	index, old, alias := st.get("index"), st.get("old"), r.opts.Alias
	targets, concrete, err := aliasTargets(ctx, r.es, alias)
	if err != nil {
		return err
	}
	if !(len(targets) == 1 && targets[0] == index) {
		// Searches on the alias see the new index as of its last refresh:
		// everything written to it so far is made searchable first (a
		// resumed swap has not refreshed it in this run).
		if err := refreshIndex(ctx, r.es, index); err != nil {
			return err
		}
		add := map[string]any{"add": map[string]any{"index": index, "alias": alias}}
		var actions []map[string]any
		switch {
		case st.get("migrate") == "true":
			if !concrete {
				return fmt.Errorf("elastic: %s is no longer a concrete index; abort the reindex", alias)
			}
			actions = []map[string]any{{"remove_index": map[string]any{"index": alias}}, add}
		case old != "":
			actions = []map[string]any{{"remove": map[string]any{"index": old, "alias": alias, "must_exist": true}}, add}
		default:
			actions = []map[string]any{add}
		}
		if err := updateAliases(ctx, r.es, actions); err != nil {
			return fmt.Errorf("elastic: swap alias %s from %q to %s: %w", alias, old, index, err)
		}
		r.log.InfoContext(ctx, "elastic: alias swapped", "index", index, "old", old)
	}
	// Whatever the live consumer wrote to the old index was read from the
	// streams before their ends now: replayed to the new index next.
	kv := []string{"phase", PhaseSwapped, "swapped", strconv.FormatInt(time.Now().UnixMilli(), 10)}
	for _, s := range r.opts.Streams {
		end, _, err := r.streamEnd(ctx, s)
		if err != nil {
			return err
		}
		kv = append(kv, "end:"+s, end.String())
	}
	return st.set(ctx, kv...)
}

// finish replays up to the streams' ends at the swap, deletes the old
// index, logs the reindex and removes its state and holds.
func (r *Reindexer) finish(ctx context.Context, st *state, h *Handler) error {
	upTo := map[string]redstream.ID{}
	for _, s := range r.opts.Streams {
		end, err := redstream.ParseID(st.get("end:" + s))
		if err != nil {
			return fmt.Errorf("elastic: the reindex state has no end for stream %s: %w", s, err)
		}
		upTo[s] = end
	}
	if _, err := r.replay(ctx, st, h, upTo); err != nil {
		return err
	}
	res := st.run
	old := st.get("old")
	switch {
	case st.get("migrate") == "true":
		res.OldDeleted = true // removed by the swap
	case old != "" && !r.opts.KeepOld:
		if err := deleteIndex(ctx, r.es, old); err != nil {
			return err
		}
		res.OldDeleted = true
	}
	res.Finished = time.Now()
	if ms := st.int("started"); ms > 0 {
		res.Started = time.UnixMilli(ms)
	}
	rec, _ := json.Marshal(map[string]any{
		"alias": r.opts.Alias, "index": res.Index, "old": old, "old_deleted": res.OldDeleted,
		"started": res.Started.UTC().Format(time.RFC3339), "finished": res.Finished.UTC().Format(time.RFC3339),
		"rows": st.int("rows"), "replayed": st.int("replayed"), "forced": len(res.Unexplained) > 0,
	})
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, r.keys.ReindexLog(r.opts.Name), rec)
		p.LTrim(ctx, r.keys.ReindexLog(r.opts.Name), 0, 99)
		p.Del(ctx, r.keys.Backfill(r.opts.Name, res.Index))
		return nil
	})
	if err != nil {
		return fmt.Errorf("elastic: log the reindex: %w", err)
	}
	if err := r.clear(ctx); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "elastic: reindex done", "index", res.Index, "old", old, "old_deleted", res.OldDeleted)
	return nil
}

// clear removes the holds and the state.
func (r *Reindexer) clear(ctx context.Context) error {
	for _, s := range r.opts.Streams {
		if err := r.rdb.HDel(ctx, r.keys.Hold(s), ReindexHolder).Err(); err != nil {
			return fmt.Errorf("elastic: remove the hold on %s: %w", s, err)
		}
	}
	if err := r.rdb.Del(ctx, r.keys.Reindex(r.opts.Name)).Err(); err != nil {
		return fmt.Errorf("elastic: remove the reindex state: %w", err)
	}
	return nil
}

// Abort gives up an interrupted reindex that has not swapped the alias:
// it deletes the new index and removes the state, the cursor and the
// holds. It takes the reindex's lock, so it fails with ErrReindexRunning
// while a reindex runs. A reindex past the swap cannot be aborted: Run
// finishes it.
func (r *Reindexer) Abort(ctx context.Context) (index string, err error) {
	lctx, release, err := r.lock(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	fields, err := r.rdb.HGetAll(lctx, r.keys.Reindex(r.opts.Name)).Result()
	if err != nil {
		return "", fmt.Errorf("elastic: read the reindex state: %w", err)
	}
	index = fields["index"]
	if index != "" {
		targets, _, err := aliasTargets(lctx, r.es, r.opts.Alias)
		if err != nil {
			return "", err
		}
		if fields["phase"] == PhaseSwapped || slices.Contains(targets, index) {
			return "", fmt.Errorf("elastic: the reindex of %s has swapped the alias to %s already; run it again to finish it", r.opts.Name, index)
		}
		if err := deleteIndex(lctx, r.es, index); err != nil {
			return "", err
		}
		if err := r.rdb.Del(lctx, r.keys.Backfill(r.opts.Name, index)).Err(); err != nil {
			return "", fmt.Errorf("elastic: remove the backfill cursor: %w", err)
		}
	}
	return index, r.clear(lctx)
}

// lock takes the reindex's lock and keeps it; the context it returns ends
// when the lock is lost.
func (r *Reindexer) lock(ctx context.Context) (context.Context, func(), error) {
	key := r.keys.Lock(redstream.ReindexLockName(r.opts.Name))
	ttl := r.opts.LockTTL
	l, err := redislock.New(r.rdb).Obtain(ctx, key, ttl, &redislock.Options{Metadata: "@" + redstream.DefaultHolder()})
	if errors.Is(err, redislock.ErrNotObtained) {
		holder := ""
		if v, err := r.rdb.Get(ctx, key).Result(); err == nil {
			holder = redstream.LockHolder(v)
		}
		return nil, nil, fmt.Errorf("%w (lock held by %q; a reindex killed leaves it to expire within %v)", ErrReindexRunning, holder, ttl)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("elastic: take the reindex lock: %w", err)
	}
	lctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-lctx.Done():
				return
			case <-t.C:
				if err := l.Refresh(lctx, ttl, nil); err != nil {
					cancel(fmt.Errorf("elastic: reindex lock lost: %w", err))
					return
				}
			}
		}
	}()
	release := func() {
		close(done)
		<-stopped
		rctx, c := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer c()
		_ = l.Release(rctx)
		cancel(nil)
	}
	return lctx, release, nil
}

// progress reports the state to ReindexOptions.Progress.
func (r *Reindexer) progress(ctx context.Context, st *state) {
	if r.opts.Progress == nil {
		return
	}
	s := statusOf(st.fields)
	s.Name = r.opts.Name
	s.ReplayLag = r.replayLag(ctx)
	r.opts.Progress(s)
}

// replayLag returns the age of the oldest change after the holds.
func (r *Reindexer) replayLag(ctx context.Context) time.Duration {
	return replayLag(ctx, r.rdb, r.keys, r.opts.Streams)
}

func replayLag(ctx context.Context, rdb redis.Cmdable, keys redstream.Keys, streams []string) time.Duration {
	var lag time.Duration
	for _, s := range streams {
		pos, err := rdb.HGet(ctx, keys.Hold(s), ReindexHolder).Result()
		if err != nil {
			continue
		}
		next, err := rdb.XRangeN(ctx, keys.Stream(s), "("+pos, "+", 1).Result()
		if err != nil || len(next) == 0 {
			continue
		}
		if id, err := redstream.ParseID(next[0].ID); err == nil {
			lag = max(lag, time.Since(time.UnixMilli(int64(id.MS))))
		}
	}
	return lag
}

func statusOf(f map[string]string) ReindexStatus {
	n := func(k string) int64 { v, _ := strconv.ParseInt(f[k], 10, 64); return v }
	rate, _ := strconv.ParseFloat(f["rate"], 64)
	s := ReindexStatus{
		Alias: f["alias"], Phase: f["phase"], Index: f["index"], Old: f["old"], Migrate: f["migrate"] == "true",
		Rows: n("rows"), Total: n("total"), Rate: rate, Replayed: n("replayed"),
	}
	if _, ok := f["total"]; !ok {
		s.Total = -1
	}
	if ms := n("started"); ms > 0 {
		s.Started = time.UnixMilli(ms)
	}
	return s
}

// ReadReindexStatus returns the state of the reindex of the configured
// stream name, whose Redis streams (name or its shards) are streams, in
// the namespace of keys; nil when none is in progress.
func ReadReindexStatus(ctx context.Context, rdb redis.Cmdable, keys redstream.Keys, name string, streams []string) (*ReindexStatus, error) {
	f, err := rdb.HGetAll(ctx, keys.Reindex(name)).Result()
	if err != nil {
		return nil, fmt.Errorf("elastic: read the reindex state: %w", err)
	}
	if len(f) == 0 {
		return nil, nil
	}
	s := statusOf(f)
	s.Name = name
	if v, err := rdb.Get(ctx, keys.Lock(redstream.ReindexLockName(name))).Result(); err == nil {
		s.Holder = redstream.LockHolder(v)
		if s.Holder == "" {
			s.Holder = "(unnamed)"
		}
	}
	s.ReplayLag = replayLag(ctx, rdb, keys, streams)
	return &s, nil
}

// noSuchKey reports the error of XINFO STREAM on a stream that does not
// exist.
func noSuchKey(err error) bool { return redis.HasErrorPrefix(err, "no such key") }
