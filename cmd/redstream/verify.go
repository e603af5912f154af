package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// verifyDLQLimit bounds how many dead letters per stream `verify --repair`
// reads to resolve the ones whose record it queues again.
const verifyDLQLimit = 100_000

// verifyReport is the result of `redstream verify`, as --json prints it.
type verifyReport struct {
	Stream    string           `json:"stream"`
	Index     string           `json:"index"`
	KeyField  string           `json:"key_field"`
	Rows      int64            `json:"rows"`      // rows walked in the table
	Documents int64            `json:"documents"` // documents walked in the index
	Missing   elastic.IDSample `json:"missing"`   // rows that should be indexed but are not
	Extra     elastic.IDSample `json:"extra"`     // documents whose row is gone or soft-deleted
	Stale     elastic.IDSample `json:"stale"`     // documents older than their row (version column only)
	Versioned bool             `json:"versioned"` // whether stale documents were looked for
	InSync    bool             `json:"in_sync"`
	Queued    int64            `json:"queued,omitempty"` // messages --repair queued
	Repair    bool             `json:"repair"`
	// With --repair: the index's document count (_count) when verify
	// started, before it queued anything, and when it ended. Documents
	// is counted during the walk, in between: it may include documents
	// the worker synced meanwhile.
	DocumentsBefore *int64 `json:"documents_before,omitempty"`
	DocumentsAfter  *int64 `json:"documents_after,omitempty"`
	// With --repair: the dead letters of the stream's consumer that
	// verify dropped because it queued their record again.
	DeadLettersResolved int64 `json:"dead_letters_resolved,omitempty"`
}

func runVerify(ctx context.Context, e *env, args []string) int {
	fs := e.flagSet("verify", "--config FILE --stream NAME [--repair] [--json] [--show N] [--page N] [--key-field FIELD]")
	path := e.configFlag(fs)
	name := fs.String("stream", "", "configured stream `name` whose table and index to compare; required")
	repair := fs.Bool("repair", false, "queue the differing ids on the stream, for the worker to sync them")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	show := fs.Int("show", elastic.DefaultSample, "how many ids of each kind to print")
	page := fs.Int("page", 0, fmt.Sprintf("rows and documents per page (default: the stream's batch_size, else %d)", elastic.DefaultPageSize))
	indexFlag := fs.String("index", "", "compare with this index `name` instead of the stream's, such as the new index of a reindex\nin progress (status shows it) before its swap; not with --repair")
	keyField := fs.String("key-field", "", "document `field` holding the primary key, to walk the index in key order\n(default: the primary key column; its keyword sub-field when it is text)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, code, ok := e.loadConfig(*path)
	if !ok {
		return code
	}
	s := streamByName(cfg, *name)
	if *name == "" {
		fmt.Fprintln(e.stderr, "redstream verify: --stream: required")
		return exitUsage
	}
	if s == nil {
		fmt.Fprintf(e.stderr, "redstream verify: --stream: no configured stream is named %q\n", *name)
		return exitUsage
	}
	if *indexFlag != "" && *repair {
		fmt.Fprintln(e.stderr, "redstream verify: --index and --repair exclude each other: --repair queues changes for the stream's index")
		return exitUsage
	}
	index := cmp.Or(*indexFlag, s.Index)
	if *page < 0 || *page > elastic.MaxVerifyPageSize {
		fmt.Fprintf(e.stderr, "redstream verify: --page: must be between 1 and %d (the index's max_result_window)\n", elastic.MaxVerifyPageSize)
		return exitUsage
	}
	if *show < 0 {
		fmt.Fprintln(e.stderr, "redstream verify: --show: must not be negative")
		return exitUsage
	}
	svc, err := connect(ctx, cfg, need{redis: *repair, db: true, es: true}, 0)
	if err != nil {
		return e.fail(err)
	}
	defer svc.close()
	loader, err := newLoader(ctx, svc, s)
	if err != nil {
		return e.fail(fmt.Errorf("stream %s (table %s): %w", s.Name, s.Table, err))
	}
	opts := elastic.VerifyOptions{
		Table:      s.Table,
		PrimaryKey: s.PrimaryKey,
		Index:      index,
		KeyField:   *keyField,
		PageSize:   cmp.Or(*page, s.BatchSize), // else elastic.DefaultPageSize
		Sample:     *show,
	}
	if *show == 0 {
		opts.Sample = -1 // elastic: 0 is the default
	}
	var (
		before  int64
		letters *requeuedLetters
	)
	if *repair {
		p, err := redstream.NewProducer(svc.rdb, &redstream.ProducerOptions{Namespace: cfg.Redis.Namespace})
		if err != nil {
			return e.fail(err)
		}
		if before, err = countDocuments(ctx, svc.es, index); err != nil {
			return e.fail(fmt.Errorf("verify %s: count the documents of index %s: %w", s.Name, index, err))
		}
		if letters, err = readDeadLetters(ctx, e, svc, cfg, s); err != nil {
			return e.fail(fmt.Errorf("verify %s: %w", s.Name, err))
		}
		opts.Repair = letters.watch(elastic.Requeue(p, s.Name, s.Shards))
	}
	rep, err := elastic.Verify(ctx, svc.db, svc.es, loader, opts)
	resolved, rerr := letters.resolve(ctx) // also after a failed walk: what it queued supersedes them
	if kf := (*elastic.KeyFieldError)(nil); errors.As(err, &kf) {
		return e.fail(fmt.Errorf("verify %s: %s; name a keyword or numeric field holding the key with --key-field", s.Name, kf.Reason))
	}
	if err = errors.Join(err, rerr); err != nil {
		return e.fail(fmt.Errorf("verify %s: %w", s.Name, err))
	}
	r := &verifyReport{
		Stream: s.Name, Index: index, KeyField: rep.KeyField, Rows: rep.Rows, Documents: rep.Documents,
		Missing: listed(rep.Missing), Extra: listed(rep.Extra), Stale: listed(rep.Stale),
		Versioned: s.VersionColumn != "" || rep.Versioned,
		InSync:    rep.InSync(), Queued: rep.Repaired, Repair: *repair,
		DeadLettersResolved: resolved,
	}
	if *repair {
		after, err := countDocuments(ctx, svc.es, index)
		if err != nil {
			return e.fail(fmt.Errorf("verify %s: count the documents of index %s: %w", s.Name, index, err))
		}
		r.DocumentsBefore, r.DocumentsAfter = &before, &after
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return e.fail(err)
		}
	} else {
		r.print(e.stdout)
	}
	if !r.InSync {
		return exitFailure
	}
	return exitOK
}

// listed returns s with an empty list rather than none, which --json
// prints as [].
func listed(s elastic.IDSample) elastic.IDSample {
	if s.First == nil {
		s.First = []string{}
	}
	return s
}

func (r *verifyReport) print(w io.Writer) {
	if r.DocumentsBefore != nil && r.Queued > 0 {
		// The walk's count may include what the worker synced from the
		// queue meanwhile: the count before the repair goes with the
		// differences found.
		fmt.Fprintf(w, "verify %s: %d rows in the table, %d documents in index %s before the repair\n", r.Stream, r.Rows, *r.DocumentsBefore, r.Index)
	} else {
		fmt.Fprintf(w, "verify %s: %d rows in the table, %d documents in index %s\n", r.Stream, r.Rows, r.Documents, r.Index)
	}
	line := func(label string, s elastic.IDSample, what string) {
		fmt.Fprintf(w, "  %-8s %d", label+":", s.Count)
		if s.Count > 0 {
			fmt.Fprintf(w, " (%s)", what)
			if len(s.First) > 0 {
				more := ""
				if s.Count > int64(len(s.First)) {
					more = " …"
				}
				fmt.Fprintf(w, ": %s%s", strings.Join(s.First, " "), more)
			}
		}
		fmt.Fprintln(w)
	}
	line("missing", r.Missing, "rows without their document")
	line("extra", r.Extra, "documents whose row is gone or soft-deleted")
	if r.Versioned {
		line("stale", r.Stale, "documents older than their row")
	} else {
		fmt.Fprintln(w, "  stale:   not checked (the stream has no version column)")
	}
	switch {
	case r.InSync:
		fmt.Fprintln(w, "in sync")
	case r.Repair:
		fmt.Fprintf(w, "differ: queued %d ids on stream %s; the worker syncs them\n", r.Queued, r.Stream)
		if r.DeadLettersResolved > 0 {
			fmt.Fprintf(w, "dead letters: dropped %d whose record was queued again (a failing one is dead-lettered anew)\n", r.DeadLettersResolved)
		}
		if r.DocumentsAfter != nil {
			fmt.Fprintf(w, "after the repair: %d documents in index %s when verify ended; run verify again once the worker has caught up\n", *r.DocumentsAfter, r.Index)
		}
	default:
		fmt.Fprintln(w, "differ (--repair queues the differing ids for the worker)")
	}
}

// countDocuments returns the number of documents in index (_count); 0
// when there is no such index.
func countDocuments(ctx context.Context, es esapi.Transport, index string) (int64, error) {
	res, err := esapi.CountRequest{Index: []string{index}}.Do(ctx, es)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusNotFound:
		return 0, nil
	case res.IsError():
		return 0, fmt.Errorf("%s %s", res.Status(), readBody(res.Body))
	}
	var c struct {
		Count int64 `json:"count"`
	}
	if err := json.NewDecoder(res.Body).Decode(&c); err != nil {
		return 0, fmt.Errorf("decode _count: %w", err)
	}
	return c.Count, nil
}

// requeuedLetters resolves, for `verify --repair`, the dead letters of
// the stream's indexing consumer whose record verify queues again: the
// queued message names the same record, so the worker re-reads the row
// and writes it, or dead-letters it anew if it still fails. The old dead
// letter is then only noise, and is dropped once its record is queued
// (never before: the record is always in one of the two). A nil
// *requeuedLetters does nothing.
type requeuedLetters struct {
	byRecord map[string][]dlqEntry // record id → its dead letters
	matched  []dlqEntry            // dead letters of queued records
}

type dlqEntry struct {
	q  *redstream.DeadLetterQueue
	id redstream.ID
}

// readDeadLetters reads the dead letters of s's consumer on each of its
// streams, at most verifyDLQLimit each, by the record id of their payload.
func readDeadLetters(ctx context.Context, e *env, svc *services, cfg *Config, s *StreamConfig) (*requeuedLetters, error) {
	keys := redstream.NewKeys(cfg.Redis.Namespace)
	l := &requeuedLetters{byRecord: map[string][]dlqEntry{}}
	for _, stream := range s.Streams() {
		q, err := redstream.NewDeadLetterQueue(svc.rdb, keys, stream, s.Consumer)
		if err != nil {
			return nil, err
		}
		var after redstream.ID
		for n := 0; ; {
			page, err := q.Read(ctx, after, dlqPage)
			if err != nil {
				return nil, err
			}
			for _, d := range page {
				if !d.HasPayload {
					continue // not a message: no record to queue
				}
				if id, err := elastic.MessageID([]byte(d.Payload)); err == nil {
					l.byRecord[id] = append(l.byRecord[id], dlqEntry{q, d.DLQID})
				}
			}
			if n += len(page); len(page) < dlqPage {
				break
			}
			if n >= verifyDLQLimit {
				fmt.Fprintf(e.stderr, "redstream verify: %s holds more than %d dead letters; only the first %d are resolved when their record is queued\n", q.Key(), n, n)
				break
			}
			after = page[len(page)-1].DLQID
		}
	}
	return l, nil
}

// watch returns repair, noting the dead letters of the records it queues.
func (l *requeuedLetters) watch(repair elastic.RepairFunc) elastic.RepairFunc {
	return func(ctx context.Context, ids []any) error {
		if err := repair(ctx, ids); err != nil {
			return err
		}
		for _, id := range ids {
			k := fmt.Sprint(id) // a json.Number or a string: the key as text
			l.matched = append(l.matched, l.byRecord[k]...)
			delete(l.byRecord, k)
		}
		return nil
	}
}

// resolve drops the dead letters of the queued records and returns how
// many it dropped; one replayed or dropped meanwhile by someone else is
// skipped.
func (l *requeuedLetters) resolve(ctx context.Context) (int64, error) {
	if l == nil {
		return 0, nil
	}
	var n int64
	for _, d := range l.matched {
		err := d.q.Drop(ctx, d.id)
		switch {
		case errors.Is(err, redstream.ErrNoDeadLetter):
		case err != nil:
			return n, fmt.Errorf("resolve dead letters: %w", err)
		default:
			n++
		}
	}
	return n, nil
}
