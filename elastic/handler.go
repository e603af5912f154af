package elastic

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/internal/backoff"
)

// Handler defaults.
const (
	// DefaultMaxBulkBytes bounds one bulk request body, well below
	// Elasticsearch's http.max_content_length (100 MB).
	DefaultMaxBulkBytes = 5 << 20
	// DefaultConcurrency is how many bulk requests of one batch are in
	// flight at once.
	DefaultConcurrency = 2
	// DefaultMaxItemRetries is how often items answered 429 or 5xx are
	// resent within one batch before the batch fails (and the consumer
	// retries it, re-reading the rows).
	DefaultMaxItemRetries = 8
	// DefaultRetryBackoff is the first pause before resending items; it
	// doubles up to DefaultMaxRetryBackoff, with jitter.
	DefaultRetryBackoff = 100 * time.Millisecond
	// DefaultMaxRetryBackoff caps the pause before resending items, as
	// redstream.DefaultMaxBackoff caps the consumer's: items are resent
	// within about this long of Elasticsearch accepting them again.
	DefaultMaxRetryBackoff = 2 * time.Second
)

// Options configure a Handler. A nil *Options is invalid: Index is
// required.
type Options struct {
	// Index is the index (or alias) documents are written to. Required.
	Index string
	// Pipeline, when set, is the ingest pipeline for indexed documents.
	// Default: none.
	Pipeline string
	// MaxBulkBytes bounds a bulk request body; larger batches are split.
	// Default: DefaultMaxBulkBytes.
	MaxBulkBytes int
	// Concurrency is how many bulk requests are in flight at once.
	// Default: DefaultConcurrency.
	Concurrency int
	// MaxItemRetries bounds the resends of items answered 429 or 5xx within
	// one batch. Default: DefaultMaxItemRetries.
	MaxItemRetries int
	// RetryBackoff and MaxRetryBackoff shape the pause between resends:
	// the first is RetryBackoff, each further one doubles up to
	// MaxRetryBackoff, and each is picked at random in its upper half.
	// Default: DefaultRetryBackoff, DefaultMaxRetryBackoff.
	RetryBackoff, MaxRetryBackoff time.Duration
	// Refresh is passed as the bulk request's refresh parameter ("true",
	// "wait_for"); meant for tests and demos. Default: "" (none).
	Refresh string
	// Logger receives the handler's log lines. Default: slog.Default().
	Logger *slog.Logger
}

// Stats is a snapshot of a Handler's counters.
type Stats struct {
	Batches      int64 // batches handled successfully
	Messages     int64 // messages in those batches
	DuplicateIDs int64 // messages whose id repeated an earlier one of the same batch
	Indexed      int64 // documents indexed
	Deleted      int64 // documents deleted (or already absent)
	Conflicts    int64 // writes skipped because a newer version was indexed
	Retried      int64 // item resends after 429 or 5xx
	DeadLettered int64 // messages dead-lettered (rejected documents, payloads without an id)
	Requests     int64 // bulk requests sent
	Bytes        int64 // bulk request bytes sent
}

// Handler is a redstream.Handler that keeps an Elasticsearch index in sync
// with a primary database: for each batch it loads the current state of
// the batch's records (one Loader call), indexes those found, deletes the
// others and the soft-deleted ones, and returns only when every document
// is written or dead-lettered.
//
// Items Elasticsearch answers with 429 or 5xx are resent, alone, with
// capped exponential backoff; items it rejects (mapping or parse errors)
// are dead-lettered with their status and reason, so one bad document never
// blocks the stream. An item answered 500 is resent too: at item level
// Elasticsearch answers 500 for an exception it did not classify, which a
// shard failing over can cause as well as a document that trips a bug, and
// dead-lettering a document that a resend would have written loses it from
// the index until someone replays it. An item refused every time fails
// the batch after MaxItemRetries resends (and the consumer retries it,
// logging each outage line with the error).
//
// A bulk request that fails as a whole (an error status, a dropped
// connection) returns an error, so the consumer backs off and retries the
// batch, re-reading the rows; the offset advances only when every item
// succeeded or was dead-lettered. Retrying a whole request inside the
// request is the client's job (esapi.Transport): the official client
// retries connection errors, and the statuses of its RetryOnStatus (by
// default 502, 503 and 504; `redstream worker` adds 429), with its
// RetryBackoff between tries (by default none: set one).
//
// A Handler is safe for concurrent use.
type Handler struct {
	es     esapi.Transport
	instr  esapi.Instrumentation // the transport's, as esapi's functions set it
	loader Loader
	opts   Options
	log    *slog.Logger
	stats  struct {
		batches, messages, dups, indexed, deleted, conflicts, retried, dead, requests, bytes atomic.Int64
	}
}

var _ redstream.Handler = (*Handler)(nil)

// NewHandler returns a Handler writing to es the documents loader reads.
// es is usually an *elasticsearch.Client; any esapi.Transport will do (a
// *elasticsearch.BaseClient, a wrapper that counts or fails requests).
func NewHandler(es esapi.Transport, loader Loader, opts *Options) (*Handler, error) {
	if isNil(es) || loader == nil {
		return nil, errors.New("elastic: NewHandler needs a client and a loader")
	}
	if opts == nil || opts.Index == "" {
		return nil, errors.New("elastic: Options.Index is required")
	}
	o := *opts
	if o.MaxBulkBytes < 0 || o.Concurrency < 0 || o.MaxItemRetries < 0 || o.RetryBackoff < 0 || o.MaxRetryBackoff < 0 {
		return nil, errors.New("elastic: Options has a negative value")
	}
	o.MaxBulkBytes = cmp.Or(o.MaxBulkBytes, DefaultMaxBulkBytes)
	o.Concurrency = cmp.Or(o.Concurrency, DefaultConcurrency)
	o.MaxItemRetries = cmp.Or(o.MaxItemRetries, DefaultMaxItemRetries)
	o.RetryBackoff = cmp.Or(o.RetryBackoff, DefaultRetryBackoff)
	o.MaxRetryBackoff = cmp.Or(o.MaxRetryBackoff, DefaultMaxRetryBackoff)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Handler{es: es, instr: instrumentation(es), loader: loader, opts: o, log: o.Logger.With("index", o.Index)}, nil
}

// isNil reports whether v is nil or a nil pointer in an interface (a nil
// *elasticsearch.Client passed as an esapi.Transport).
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// instrumentation returns the instrumentation of tr, when it has one, for
// the requests built here: what esapi's functional API sets on each.
func instrumentation(tr esapi.Transport) esapi.Instrumentation {
	if i, ok := tr.(esapi.Instrumented); ok {
		return i.InstrumentationEnabled()
	}
	return nil
}

// Stats returns a snapshot of the handler's counters.
func (h *Handler) Stats() Stats {
	s := &h.stats
	return Stats{
		Batches: s.batches.Load(), Messages: s.messages.Load(), DuplicateIDs: s.dups.Load(),
		Indexed: s.indexed.Load(), Deleted: s.deleted.Load(), Conflicts: s.conflicts.Load(),
		Retried: s.retried.Load(), DeadLettered: s.dead.Load(), Requests: s.requests.Load(), Bytes: s.bytes.Load(),
	}
}

// MessageID returns the record id of a message payload {"id":…} as text:
// a JSON number as written, a string as is. Composite keys ({"id":[…]})
// and other shapes return an error that says what the id is instead.
func MessageID(payload []byte) (string, error) {
	if id, ok := simpleID(payload); ok {
		return id, nil
	}
	var p struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return "", fmt.Errorf("%w: %v", errNoID, err)
	}
	raw := bytes.TrimSpace(p.ID)
	switch {
	case len(raw) == 0 || bytes.Equal(raw, []byte("null")):
		return "", errNoID
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || s == "" {
			return "", fmt.Errorf("%w: the id is an empty string", errNoID)
		}
		return s, nil
	case raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'):
		if _, err := strconv.ParseInt(string(raw), 10, 64); err != nil {
			if _, err := strconv.ParseUint(string(raw), 10, 64); err != nil {
				return "", fmt.Errorf("%w: %s is not an integer", errNoID, truncate(raw, 40))
			}
		}
		return string(raw), nil
	case raw[0] == '{':
		return "", fmt.Errorf("%w: the id is an object", errNoID)
	case raw[0] == '[':
		return "", fmt.Errorf("%w: the id is an array (composite keys need a Loader of their own)", errNoID)
	}
	return "", fmt.Errorf("%w: the id is %s", errNoID, truncate(raw, 40))
}

// idPrefix opens the payloads producers write and Backfill makes.
const idPrefix = `{"id":`

// simpleID is MessageID for the payloads producers write, {"id":42} and
// {"id":"sku-1"} with no whitespace, escapes or non-ASCII text, without a
// JSON decoder. ok is false for anything else (and for integers of 19
// digits or more, which may not fit 64 bits), which MessageID decodes.
func simpleID(p []byte) (id string, ok bool) {
	if len(p) < len(idPrefix)+2 || string(p[:len(idPrefix)]) != idPrefix || p[len(p)-1] != '}' {
		return "", false
	}
	v := p[len(idPrefix) : len(p)-1]
	switch c := v[0]; {
	case c == '"':
		if len(v) < 3 || v[len(v)-1] != '"' {
			return "", false
		}
		s := v[1 : len(v)-1]
		for _, b := range s {
			if b < 0x20 || b == '"' || b == '\\' || b >= 0x80 {
				return "", false
			}
		}
		return string(s), true
	case c == '-' || (c >= '0' && c <= '9'):
		digits := v
		if c == '-' {
			digits = v[1:]
		}
		if len(digits) == 0 || len(digits) > 18 || (digits[0] == '0' && len(digits) > 1) {
			return "", false
		}
		for _, b := range digits {
			if b < '0' || b > '9' {
				return "", false
			}
		}
		return string(v), true
	}
	return "", false
}

// truncate returns b as text, cut to n bytes with an ellipsis.
func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}

// HandleBatch implements redstream.Handler.
func (h *Handler) HandleBatch(ctx context.Context, b *redstream.Batch) error {
	byID := make(map[string][]redstream.Message, len(b.Messages))
	ids := make([]string, 0, len(b.Messages))
	var dups int64
	checker, _ := h.loader.(IDChecker)
	for _, m := range b.Messages {
		id, err := MessageID(m.Payload)
		if err == nil && checker != nil {
			if cerr := checker.CheckID(id); cerr != nil {
				err = &IDError{ID: id, Err: cerr}
			}
		}
		if err != nil {
			h.log.DebugContext(ctx, "elastic: dead-lettering a message without a usable id", "message", m.ID.String(), "error", err)
			b.DeadLetter(m, err)
			h.stats.dead.Add(1)
			continue
		}
		if _, seen := byID[id]; seen {
			dups++
		} else {
			ids = append(ids, id)
		}
		byID[id] = append(byID[id], m)
	}
	if len(ids) > 0 {
		if err := h.sync(ctx, b, ids, byID); err != nil {
			return err
		}
	}
	h.stats.batches.Add(1)
	h.stats.messages.Add(int64(len(b.Messages)))
	h.stats.dups.Add(dups)
	return nil
}

func (h *Handler) sync(ctx context.Context, b *redstream.Batch, ids []string, byID map[string][]redstream.Message) error {
	docs, bad, err := h.load(ctx, ids)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		kept := ids[:0:0]
		for _, id := range ids {
			if err, ok := bad[id]; ok {
				h.log.DebugContext(ctx, "elastic: dead-lettering a message whose id the database refuses", "id", id, "error", err)
				for _, m := range byID[id] {
					b.DeadLetter(m, err)
					h.stats.dead.Add(1)
				}
				continue
			}
			kept = append(kept, id)
		}
		ids = kept
		if len(ids) == 0 {
			return nil
		}
	}
	found := make(map[string]Document, len(docs))
	for _, d := range docs {
		found[d.ID] = d
	}
	var delVer int64
	var delHasVer bool
	if dv, ok := h.loader.(DeleteVersioner); ok && len(found) < len(ids) {
		if delVer, delHasVer, err = dv.DeleteVersion(ctx); err != nil {
			return err
		}
	}
	ops := make([]*op, 0, len(ids))
	all := make([]op, len(ids)) // one allocation for every op
	for i, id := range ids {
		o := &all[i]
		o.id = id
		if d, ok := found[id]; ok {
			o.delete, o.source, o.routing = d.Deleted, d.Source, d.Routing
			o.version, o.hasVer = d.Version, d.HasVersion
		} else {
			o.delete = true
			o.version, o.hasVer = delVer, delHasVer
		}
		if err := o.encode(h.opts.Index, h.opts.Pipeline); err != nil {
			h.deadLetter(b, byID[id], &ItemError{ID: id, Type: "invalid_document", Reason: err.Error()})
			continue
		}
		ops = append(ops, o)
	}

	for attempt := 0; len(ops) > 0; attempt++ {
		outcomes, itemErrs, err := h.send(ctx, ops)
		if err != nil {
			return err
		}
		var again []*op
		for i, o := range ops {
			switch outcomes[i] {
			case retryable:
				again = append(again, o)
			case rejected:
				h.deadLetter(b, byID[o.id], itemErrs[i])
			}
		}
		if len(again) == 0 {
			return nil
		}
		if attempt >= h.opts.MaxItemRetries {
			return fmt.Errorf("elastic: %d documents still refused (429/5xx) after %d resends", len(again), attempt)
		}
		h.stats.retried.Add(int64(len(again)))
		if !backoff.Sleep(ctx, backoff.Nth(h.opts.RetryBackoff, h.opts.MaxRetryBackoff, attempt)) {
			return context.Cause(ctx)
		}
		ops = again
	}
	return nil
}

// load calls the Loader. When the database refuses the batch with a data
// exception (SQLSTATE class 22: an id that does not convert to the key's
// type, a NUL byte in a text key), the ids are loaded again in halves
// until the ones that fail alone are found: those are returned in bad, as
// *IDError, and the rest load as usual. Any other error is returned, and
// the consumer retries the batch.
func (h *Handler) load(ctx context.Context, ids []string) (docs []Document, bad map[string]error, err error) {
	docs, err = h.loader.Load(ctx, ids)
	if err == nil {
		return docs, nil, nil
	}
	dx := dataException(err)
	if dx == nil {
		return nil, nil, err
	}
	if len(ids) == 1 {
		return nil, map[string]error{ids[0]: &IDError{ID: ids[0], Err: dx}}, nil
	}
	mid := len(ids) / 2
	docs, bad, err = h.load(ctx, ids[:mid])
	if err != nil {
		return nil, nil, err
	}
	more, moreBad, err := h.load(ctx, ids[mid:])
	if err != nil {
		return nil, nil, err
	}
	for id, e := range moreBad {
		if bad == nil {
			bad = make(map[string]error, len(moreBad))
		}
		bad[id] = e
	}
	return append(docs, more...), bad, nil
}

// dataException returns the database's error in err's chain when it is a
// data exception (SQLSTATE class 22), as drivers that expose SQLState
// report it (pgx; go-sql-driver/mysql in a field); nil otherwise.
func dataException(err error) error {
	var e interface {
		error
		SQLState() string
	}
	if errors.As(err, &e) && strings.HasPrefix(e.SQLState(), "22") {
		return e
	}
	return mysqlDataException(err)
}

// IDError is the dead-letter reason of a message whose record id cannot be
// looked up: the Loader's IDChecker refused it (it does not fit the
// primary key's type), or the database refused it alone with a data
// exception (SQLSTATE class 22).
type IDError struct {
	ID  string // the id, as the message carries it
	Err error  // why it was refused
}

func (e *IDError) Error() string {
	return fmt.Sprintf("elastic: id %q cannot be looked up: %v", e.ID, e.Err)
}

// Unwrap returns e.Err.
func (e *IDError) Unwrap() error { return e.Err }

// IDChecker is implemented by a Loader that can tell, without a query,
// that an id can never match a record (TableLoader does for integer
// keys). The Handler checks each message's id with it before loading, and
// dead-letters a refused one with an *IDError instead of failing the
// batch.
type IDChecker interface {
	CheckID(id string) error
}

func (h *Handler) deadLetter(b *redstream.Batch, msgs []redstream.Message, err *ItemError) {
	h.log.Debug("elastic: dead-lettering a document Elasticsearch rejected",
		"id", err.ID, "status", err.Status, "type", err.Type, "reason", err.Reason)
	for _, m := range msgs {
		b.DeadLetter(m, err)
		h.stats.dead.Add(1)
	}
}
