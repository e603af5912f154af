package elastic

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
)

// DefaultPageSize is how many primary keys Backfill hands to the handler
// at once, and how many rows and documents Verify compares at once.
const DefaultPageSize = 1000

// BackfillOptions configure Backfill.
type BackfillOptions struct {
	// Table is the table to walk, optionally schema-qualified
	// ("app.products"). Required.
	Table string
	// PrimaryKey is the key column; pages follow its order, so it needs an
	// index (a primary key has one). Default: DefaultPrimaryKey ("id").
	PrimaryKey string
	// Stream is the stream name the synthetic batches and their messages
	// carry (Batch.Stream, Message.Stream). Default: Table.
	Stream string
	// PageSize is how many keys one page, one batch, holds.
	// Default: DefaultPageSize.
	PageSize int
	// From, when set, starts the walk after this key (exclusive), written
	// as PostgreSQL writes the key as text. A key stored in Cursor takes
	// precedence. Default: "" (from the first row).
	From string
	// To, when set, ends the walk at this key (inclusive).
	// Default: "" (to the last row).
	To string
	// Cursor, when set, makes the walk resumable: Backfill starts after
	// the key it holds, if any, saves the last key of each page once the
	// handler has finished that page, and clears it when the walk is
	// complete. Default: none (a failed walk starts again from From).
	Cursor Cursor
	// Progress, when set, is called after each page with the rows handed
	// to the handler so far and the estimated number of rows to walk (the
	// exact count for tables of up to a million rows, else the planner's
	// estimate for the whole table; -1 when unknown). It runs on the
	// calling goroutine. Default: none (and nothing is counted).
	Progress func(rows, total int64)
	// Logger receives a warning for each row the handler rejected (its
	// key and the reason). Default: slog.Default().
	Logger *slog.Logger
}

// BackfillResult is what a Backfill did, also when it failed.
type BackfillResult struct {
	// Rows is how many keys were handed to the handler in pages it
	// finished (and, with a Cursor, whose last key was saved).
	Rows int64
	// Last is the last key of the last page counted in Rows; before the
	// first, the key the walk started after ("" for the first row). A
	// failed walk resumes after it, from the Cursor.
	Last string
	// DeadLettered counts the messages the handler dead-lettered
	// (Batch.DeadLetter): rows it could not index.
	DeadLettered int64
}

// Cursor stores how far a Backfill got: the last primary key (as text) of
// the last page it finished. RedisCursor keeps one in Redis.
type Cursor interface {
	// Load returns the stored key; ok is false when none is stored.
	Load(ctx context.Context) (key string, ok bool, err error)
	// Save stores key, replacing the one stored.
	Save(ctx context.Context, key string) error
	// Clear removes the stored key.
	Clear(ctx context.Context) error
}

// RedisCursor returns a Cursor held in the Redis string key, such as
// redstream.NewKeys(namespace).Backfill(stream, index), where the
// redstream binary keeps its own. It is safe for concurrent use.
func RedisCursor(rdb redis.Cmdable, key string) Cursor {
	return redisCursor{rdb: rdb, key: key}
}

type redisCursor struct {
	rdb redis.Cmdable
	key string
}

func (c redisCursor) Load(ctx context.Context) (string, bool, error) {
	key, err := c.rdb.Get(ctx, c.key).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("elastic: read the backfill cursor: %w", err)
	}
	return key, true, nil
}

func (c redisCursor) Save(ctx context.Context, key string) error {
	if err := c.rdb.Set(ctx, c.key, key, 0).Err(); err != nil {
		return fmt.Errorf("elastic: store the backfill cursor: %w", err)
	}
	return nil
}

func (c redisCursor) Clear(ctx context.Context) error {
	if err := c.rdb.Del(ctx, c.key).Err(); err != nil {
		return fmt.Errorf("elastic: clear the backfill cursor: %w", err)
	}
	return nil
}

// Backfill hands every row of a table to h, a page of primary keys at a
// time in key order, as if each key had been queued: each page is a
// synthetic redstream.Batch (Consumer "backfill", Attempt 1) whose
// messages carry the payload {"id":"<key>"}, the key as PostgreSQL writes
// it as text. With a Handler of this package, that indexes (or deletes)
// the documents of rows written without the plugin, or of a new index.
//
// Pages are keyset pages, WHERE pk > $after [AND pk <= $to] ORDER BY pk
// LIMIT n, so each is an index range scan however deep the walk is; rows
// written meanwhile are indexed by the stream as usual. Backfill returns
// nil once a page comes back empty, an error as soon as a query, h or
// the Cursor fails (and ctx's error when it ends), with the result so far
// in every case. A Batch the handler dead-letters messages of does not
// stop the walk; see BackfillResult.DeadLettered.
//
// Backfill runs on the calling goroutine and calls h, Cursor and Progress
// one at a time.
func Backfill(ctx context.Context, db *sql.DB, h redstream.Handler, opts BackfillOptions) (BackfillResult, error) {
	if db == nil || h == nil {
		return BackfillResult{}, errors.New("elastic: Backfill needs a database and a handler")
	}
	if opts.Table == "" {
		return BackfillResult{}, errors.New("elastic: BackfillOptions.Table is required")
	}
	if opts.PageSize < 0 {
		return BackfillResult{}, errors.New("elastic: BackfillOptions.PageSize is negative")
	}
	size := cmp.Or(opts.PageSize, DefaultPageSize)
	stream := cmp.Or(opts.Stream, opts.Table)
	w, err := newKeyWalker(ctx, db, opts.Table, opts.PrimaryKey, opts.To)
	if err != nil {
		return BackfillResult{}, err
	}
	res := BackfillResult{Last: opts.From}
	if opts.Cursor != nil {
		key, ok, err := opts.Cursor.Load(ctx)
		if err != nil {
			return res, err
		}
		if ok {
			res.Last = key
		}
	}
	total := int64(-1)
	if opts.Progress != nil {
		total = w.estimate(ctx, res.Last)
	}
	log := cmp.Or(opts.Logger, slog.Default())
	for {
		ids, err := w.next(ctx, res.Last, size)
		if err != nil {
			return res, err
		}
		if len(ids) == 0 {
			break
		}
		b, err := idBatch(stream, "backfill", ids)
		if err != nil {
			return res, err
		}
		if err := h.HandleBatch(ctx, b); err != nil {
			return res, fmt.Errorf("elastic: backfill page after key %q: %w", res.Last, err)
		}
		dead := b.DeadLettered()
		res.DeadLettered += int64(len(dead))
		for id, reason := range dead {
			// Synthetic ids: message i of the page has sequence i+1.
			if i := int(id.Seq) - 1; i >= 0 && i < len(ids) {
				log.WarnContext(ctx, "elastic: backfill could not index a row", "key", ids[i], "error", reason)
			}
		}
		last := ids[len(ids)-1]
		if opts.Cursor != nil {
			if err := opts.Cursor.Save(ctx, last); err != nil {
				return res, err
			}
		}
		res.Last = last
		res.Rows += int64(len(ids))
		if opts.Progress != nil {
			opts.Progress(res.Rows, total)
		}
	}
	if opts.Cursor != nil {
		if err := opts.Cursor.Clear(ctx); err != nil {
			return res, err
		}
	}
	return res, nil
}

// idBatch returns a batch of one message per id, as the handler receives
// queued ones: payload {"id":"<id>"}, and ids 0-1, 0-2, … (the handler
// tells messages apart by them).
func idBatch(stream, consumer string, ids []string) (*redstream.Batch, error) {
	b := &redstream.Batch{Stream: stream, Consumer: consumer, Attempt: 1, Messages: make([]redstream.Message, len(ids))}
	for i, id := range ids {
		p, err := idPayload(id)
		if err != nil {
			return nil, err
		}
		b.Messages[i] = redstream.Message{ID: redstream.ID{Seq: uint64(i) + 1}, Stream: stream, Payload: p}
	}
	return b, nil
}

// idPayload returns the payload {"id":"<id>"}: the bytes json.Marshal
// gives the map, without the map.
func idPayload(id string) (json.RawMessage, error) {
	quoted, err := json.Marshal(id)
	if err != nil {
		return nil, fmt.Errorf("elastic: payload of id %q: %w", id, err)
	}
	p := make([]byte, 0, len(idPrefix)+len(quoted)+1)
	return append(append(append(p, idPrefix...), quoted...), '}'), nil
}

// keyWalker pages through a table's primary keys in key order, as text.
type keyWalker struct {
	db        *sql.DB
	kind      dbKind
	rawTable  string // as given
	table, pk string // quoted
	key       keyType
	to        string
}

func newKeyWalker(ctx context.Context, db *sql.DB, table, pk, to string) (*keyWalker, error) {
	pk = cmp.Or(pk, DefaultPrimaryKey)
	kind, err := kindOf(ctx, db)
	if err != nil {
		return nil, err
	}
	if kind == mysqlDB {
		return newMySQLKeyWalker(ctx, db, table, pk, to)
	}
	pkType, err := columnType(ctx, db, table, pk)
	if err != nil {
		return nil, err
	}
	return &keyWalker{db: db, rawTable: table, table: tableIdent(table), pk: pgx.Identifier{pk}.Sanitize(),
		key: keyType{name: pkType, bits: intBits(pkType)}, to: to}, nil
}

// integerKey reports whether the primary key is an integer.
func (w *keyWalker) integerKey() bool { return w.key.bits > 0 }

// where returns the condition "key after after and up to w.to", with
// only the bounds that are set, and its arguments ($1, $2, …). A bound
// left out rather than passed as NULL keeps each page an index range scan
// even under a generic plan (plan_cache_mode, poolers that prepare).
func (w *keyWalker) where(after string) (string, []any) {
	var conds []string
	var args []any
	for _, b := range []struct{ op, v string }{{">", after}, {"<=", w.to}} {
		if b.v == "" {
			continue
		}
		args = append(args, b.v)
		if w.kind == mysqlDB {
			conds = append(conds, "t."+w.pk+" "+b.op+" "+w.mysqlBound())
			continue
		}
		conds = append(conds, fmt.Sprintf("t.%s %s $%d::text::%s", w.pk, b.op, len(args), w.key.name))
	}
	if len(conds) == 0 {
		return "TRUE", nil
	}
	return strings.Join(conds, " AND "), args
}

// next returns up to n keys after after, in order.
func (w *keyWalker) next(ctx context.Context, after string, n int) ([]string, error) {
	// Order by the column, not by its text (an output column named like it).
	cond, args := w.where(after)
	args = append(args, n)
	q := fmt.Sprintf("SELECT t.%[1]s::text AS k FROM %[2]s t WHERE %[3]s ORDER BY t.%[1]s LIMIT $%[4]d", w.pk, w.table, cond, len(args))
	if w.kind == mysqlDB {
		q = w.mysqlNext(cond)
	}
	rows, err := w.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("elastic: read keys: %w", err)
	}
	defer rows.Close()
	ids := make([]string, 0, n)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("elastic: read keys: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("elastic: read keys: %w", err)
	}
	return ids, nil
}

// estimate returns the rows left after after: counted when the table is
// small, else the planner's estimate for the whole table; -1 when unknown.
func (w *keyWalker) estimate(ctx context.Context, after string) int64 {
	var est float64
	var err error
	if w.kind == mysqlDB {
		est, err = w.mysqlTableRows(ctx)
	} else {
		err = w.db.QueryRowContext(ctx, "SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)", w.table).Scan(&est)
	}
	if err != nil {
		return -1
	}
	if est > 1e6 {
		return int64(est)
	}
	var n int64
	cond, args := w.where(after)
	q := fmt.Sprintf("SELECT count(*) FROM %s t WHERE %s", w.table, cond)
	if err := w.db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return -1
	}
	return n
}
