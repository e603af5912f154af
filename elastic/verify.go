package elastic

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/redstream-go/redstream"
)

// Verify defaults and limits.
const (
	// DefaultSample is how many ids of each kind a VerifyReport keeps.
	DefaultSample = 10
	// MaxVerifyPageSize bounds VerifyOptions.PageSize: a search page may
	// not go past an index's max_result_window, 10,000 by default.
	MaxVerifyPageSize = 10000
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Table is the table whose rows the index should hold, optionally
	// schema-qualified. Required.
	Table string
	// PrimaryKey is the table's key column, the documents' _id.
	// Default: DefaultPrimaryKey ("id").
	PrimaryKey string
	// Index is the index (or alias) to compare with the table. Required.
	Index string
	// KeyField is the document field holding the primary key, which the
	// index is walked in the order of (search_after): a keyword or numeric
	// field, one value per document. Default: the PrimaryKey column, or its
	// keyword sub-field when the index maps it as text.
	KeyField string
	// PageSize is how many rows, and how many documents, are compared at
	// once. At most MaxVerifyPageSize. Default: DefaultPageSize.
	PageSize int
	// Sample is how many ids of each kind (missing, extra, stale) the
	// report lists; a negative Sample lists none. Default: DefaultSample.
	Sample int
	// Repair, when set, is called with the ids of each page that differ
	// (missing, stale or extra), for instance Requeue to have a worker
	// sync them, or Reindex to write them at once. An error stops Verify.
	// Default: none (Verify only reports).
	Repair RepairFunc
}

// RepairFunc re-syncs records Verify found to differ between the table
// and the index. Each id is the record's key as redstream.Ref.ID takes
// it: a json.Number when the primary key is an integer (a payload then
// reads {"id":7}, as the GORM plugin writes it), a string otherwise.
type RepairFunc func(ctx context.Context, ids []any) error

// Requeue returns a RepairFunc that queues each id with p on stream, or
// on its shard when shards is 2 or more (redstream.ShardName), for the
// stream's worker to sync it. The RepairFunc is safe for concurrent use
// if p is.
func Requeue(p *redstream.Producer, stream string, shards int) RepairFunc {
	return func(ctx context.Context, ids []any) error {
		refs := make([]redstream.Ref, len(ids))
		for i, id := range ids {
			refs[i] = redstream.Ref{Stream: redstream.ShardName(stream, id, shards), ID: id}
		}
		if err := p.Queue(ctx, refs); err != nil {
			return fmt.Errorf("elastic: queue: %w", err)
		}
		return nil
	}
}

// Reindex returns a RepairFunc that hands the ids to h at once, as one
// synthetic batch on stream (Consumer "verify"), the way Backfill does:
// with a Handler of this package, their documents are written before
// Verify goes on. Messages h dead-letters are left as they are. Into an
// index a worker syncs at the same time, pass h wrapped by RequeueChanged
// (or use Requeue), as for Backfill.
func Reindex(h redstream.Handler, stream string) RepairFunc {
	return func(ctx context.Context, ids []any) error {
		keys := make([]string, len(ids))
		for i, id := range ids {
			keys[i] = fmt.Sprint(id)
		}
		b, err := idBatch(stream, "verify", keys)
		if err != nil {
			return err
		}
		if err := h.HandleBatch(ctx, b); err != nil {
			return fmt.Errorf("elastic: reindex: %w", err)
		}
		return nil
	}
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	KeyField  string   // the document field the index was walked in the order of
	Rows      int64    // rows walked in the table
	Documents int64    // documents walked in the index
	Missing   IDSample // rows that should be indexed but are not
	Extra     IDSample // documents whose row is gone or soft-deleted
	Stale     IDSample // documents of an older version than their row
	// Versioned reports whether the loader's documents carry versions
	// (Document.HasVersion), and stale documents were looked for.
	Versioned bool
	// Repaired counts the ids handed to VerifyOptions.Repair.
	Repaired int64
}

// InSync reports whether Verify found no missing, extra or stale
// document.
func (r *VerifyReport) InSync() bool {
	return r.Missing.Count == 0 && r.Extra.Count == 0 && r.Stale.Count == 0
}

// IDSample is a count of ids and the first of them, in walk order (key
// order).
type IDSample struct {
	Count int64    `json:"count"`
	First []string `json:"first"`
}

func (s *IDSample) add(id string, n int) {
	s.Count++
	if len(s.First) < n {
		s.First = append(s.First, id)
	}
}

// KeyFieldError is the error of Verify when the index cannot be walked in
// key order on Field: its documents lack the field, two documents share a
// value, or the index maps it as text, which cannot be sorted on.
// VerifyOptions.KeyField names the right field.
type KeyFieldError struct {
	Index  string
	Field  string
	Reason string // what is wrong, a sentence without the remedy
}

func (e *KeyFieldError) Error() string {
	return "elastic: " + e.Reason + "; set VerifyOptions.KeyField to a keyword or numeric field holding the key"
}

// Verify compares a table with its index, a page at a time, and reports
// the differences: rows whose document is missing, documents whose row is
// gone or soft-deleted (extra), and documents of an older version than
// their row (stale; only when loader's documents carry versions, as
// TableLoader's do with TableOptions.VersionColumn). loader is the
// Handler's: it says what each row's document should be.
//
// It walks the table in key order (keyset pages, as Backfill) and checks
// each page of documents to be indexed with _mget, then walks the index in
// the order of the key field (search_after) and loads each page of
// document ids. Both walks see a moving target when the table is written
// meanwhile: a difference may be a change the worker has yet to sync. With
// VerifyOptions.Repair, each page's differing ids are handed to it.
//
// Verify returns the report so far with its error. A missing index holds
// no documents: every row is missing. An error about the key field is a
// *KeyFieldError. Verify runs on the calling goroutine.
func Verify(ctx context.Context, db *sql.DB, es esapi.Transport, loader Loader, opts VerifyOptions) (VerifyReport, error) {
	if db == nil || isNil(es) || loader == nil {
		return VerifyReport{}, errors.New("elastic: Verify needs a database, a client and a loader")
	}
	if opts.Table == "" || opts.Index == "" {
		return VerifyReport{}, errors.New("elastic: VerifyOptions.Table and Index are required")
	}
	if opts.PageSize < 0 || opts.PageSize > MaxVerifyPageSize {
		return VerifyReport{}, fmt.Errorf("elastic: VerifyOptions.PageSize must be between 1 and %d (an index's max_result_window)", MaxVerifyPageSize)
	}
	w, err := newKeyWalker(ctx, db, opts.Table, opts.PrimaryKey, "")
	if err != nil {
		return VerifyReport{}, err
	}
	v := &verifier{
		es: es, instr: instrumentation(es), index: opts.Index, loader: loader, walker: w, repair: opts.Repair,
		page: cmp.Or(opts.PageSize, DefaultPageSize), sample: cmp.Or(opts.Sample, DefaultSample),
	}
	if err := v.checkRows(ctx); err != nil {
		return v.r, err
	}
	if v.r.KeyField, err = v.keyField(ctx, opts.KeyField, cmp.Or(opts.PrimaryKey, DefaultPrimaryKey)); err != nil {
		return v.r, err
	}
	if err := v.checkDocuments(ctx); err != nil {
		return v.r, err
	}
	return v.r, nil
}

// verifier compares one table and index, a page at a time.
type verifier struct {
	es     esapi.Transport
	instr  esapi.Instrumentation
	index  string
	loader Loader
	walker *keyWalker
	repair RepairFunc
	page   int
	sample int
	r      VerifyReport
}

// checkRows walks the table in key order and checks each page of rows that
// should be indexed against the index with _mget: missing and stale
// documents.
func (v *verifier) checkRows(ctx context.Context) error {
	after := ""
	for {
		ids, err := v.walker.next(ctx, after, v.page)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		after = ids[len(ids)-1]
		v.r.Rows += int64(len(ids))
		docs, err := v.loader.Load(ctx, ids)
		if err != nil {
			return err
		}
		live := docs[:0]
		for _, d := range docs {
			if !d.Deleted {
				live = append(live, d)
			}
			v.r.Versioned = v.r.Versioned || d.HasVersion
		}
		if len(live) == 0 {
			continue
		}
		found, err := v.mget(ctx, live)
		if err != nil {
			return err
		}
		var differ []string
		for _, d := range live {
			version, ok := found[d.ID]
			switch {
			case !ok:
				v.r.Missing.add(d.ID, v.sample)
				differ = append(differ, d.ID)
			case d.HasVersion && version < d.Version:
				v.r.Stale.add(d.ID, v.sample)
				differ = append(differ, d.ID)
			}
		}
		if err := v.fix(ctx, differ); err != nil {
			return err
		}
	}
}

// fix hands ids to the RepairFunc, if any, typed as a payload carries
// them.
func (v *verifier) fix(ctx context.Context, ids []string) error {
	if v.repair == nil || len(ids) == 0 {
		return nil
	}
	keys := make([]any, len(ids))
	integer := v.walker.integerKey()
	for i, id := range ids {
		if integer && integerText.MatchString(id) {
			keys[i] = json.Number(id) // {"id":7}, as the GORM plugin writes it
		} else {
			keys[i] = id
		}
	}
	if err := v.repair(ctx, keys); err != nil {
		return err
	}
	v.r.Repaired += int64(len(ids))
	return nil
}

// mget returns the _version of each of docs found in the index.
func (v *verifier) mget(ctx context.Context, docs []Document) (map[string]int64, error) {
	type ref struct {
		ID      string `json:"_id"`
		Routing string `json:"routing,omitempty"`
	}
	refs := make([]ref, len(docs))
	for i, d := range docs {
		refs[i] = ref{ID: d.ID, Routing: d.Routing}
	}
	body, err := json.Marshal(map[string]any{"docs": refs})
	if err != nil {
		return nil, err
	}
	req := esapi.MgetRequest{Index: v.index, Body: bytes.NewReader(body), Source: []string{"false"}, Instrument: v.instr}
	res, err := req.Do(ctx, v.es)
	if err != nil {
		return nil, fmt.Errorf("elastic: _mget: %w", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		if res.StatusCode == http.StatusNotFound {
			return map[string]int64{}, nil // no index yet: every document is missing
		}
		return nil, fmt.Errorf("elastic: _mget: %s %s", res.Status(), readBody(res.Body))
	}
	var out struct {
		Docs []struct {
			ID      string          `json:"_id"`
			Version int64           `json:"_version"`
			Found   bool            `json:"found"`
			Error   json.RawMessage `json:"error"`
		} `json:"docs"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("elastic: _mget response: %w", err)
	}
	found := make(map[string]int64, len(out.Docs))
	for _, d := range out.Docs {
		switch {
		case len(d.Error) > 0:
			if bytes.Contains(d.Error, []byte("index_not_found_exception")) {
				continue
			}
			return nil, fmt.Errorf("elastic: _mget of %s: %s", d.ID, d.Error)
		case d.Found:
			found[d.ID] = d.Version
		}
	}
	return found, nil
}

// keyField returns the document field to sort the index on: field when
// set, else the primary key column, or its keyword sub-field when the
// mapping makes it text (text cannot be sorted on).
func (v *verifier) keyField(ctx context.Context, field, pk string) (string, error) {
	if field != "" {
		return field, nil
	}
	req := esapi.IndicesGetMappingRequest{Index: []string{v.index}, Instrument: v.instr}
	res, err := req.Do(ctx, v.es)
	if err != nil {
		return "", fmt.Errorf("elastic: read the mapping: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return pk, nil // no index: nothing to walk
	}
	if res.IsError() {
		return "", fmt.Errorf("elastic: read the mapping: %s %s", res.Status(), readBody(res.Body))
	}
	var out map[string]struct {
		Mappings struct {
			Properties map[string]struct {
				Type   string                     `json:"type"`
				Fields map[string]json.RawMessage `json:"fields"`
			} `json:"properties"`
		} `json:"mappings"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("elastic: read the mapping: %w", err)
	}
	mapped := false
	for _, ix := range out {
		mapped = mapped || len(ix.Mappings.Properties) > 0
		f, ok := ix.Mappings.Properties[pk]
		if !ok {
			continue
		}
		if f.Type == "text" {
			if _, ok := f.Fields["keyword"]; ok {
				return pk + ".keyword", nil
			}
			return "", &KeyFieldError{Index: v.index, Field: pk,
				Reason: fmt.Sprintf("field %q of index %s is text, which cannot be sorted on", pk, v.index)}
		}
		return pk, nil
	}
	if !mapped {
		return pk, nil // an empty index
	}
	return "", &KeyFieldError{Index: v.index, Field: pk,
		Reason: fmt.Sprintf("the documents of index %s have no field %q", v.index, pk)}
}

// checkDocuments walks the index in key order (search_after on the key
// field) and checks each page of document ids against the table: extra
// documents, whose row is gone or soft-deleted.
func (v *verifier) checkDocuments(ctx context.Context) error {
	var after json.RawMessage
	integer := v.walker.integerKey()
	for {
		ids, next, err := v.search(ctx, after)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		v.r.Documents += int64(len(ids))
		keys := ids
		if integer {
			// A document id that is not an integer has no row, and must
			// not reach the query's cast.
			keys = make([]string, 0, len(ids))
			for _, id := range ids {
				if integerText.MatchString(id) {
					keys = append(keys, id)
				}
			}
		}
		var docs []Document
		if len(keys) > 0 {
			if docs, err = v.loader.Load(ctx, keys); err != nil {
				return err
			}
		}
		live := make(map[string]bool, len(docs))
		for _, d := range docs {
			if !d.Deleted {
				live[d.ID] = true
			}
		}
		var differ []string
		for _, id := range ids {
			if !live[id] {
				v.r.Extra.add(id, v.sample)
				differ = append(differ, id)
			}
		}
		if err := v.fix(ctx, differ); err != nil {
			return err
		}
		if len(ids) < v.page {
			return nil
		}
		after = next
	}
}

// integerText matches the integers a PostgreSQL integer key can be.
var integerText = regexp.MustCompile(`^-?[0-9]{1,19}$`)

// search returns the ids of the next page of documents in key order and
// the sort values to continue after.
func (v *verifier) search(ctx context.Context, after json.RawMessage) ([]string, json.RawMessage, error) {
	q := map[string]any{
		"size":             v.page,
		"_source":          false,
		"track_total_hits": false,
		"query":            map[string]any{"match_all": map[string]any{}},
		"sort":             []any{map[string]any{v.r.KeyField: map[string]any{"order": "asc"}}},
	}
	if after != nil {
		q["search_after"] = after
	}
	body, err := json.Marshal(q)
	if err != nil {
		return nil, nil, err
	}
	req := esapi.SearchRequest{Index: []string{v.index}, Body: bytes.NewReader(body), Instrument: v.instr}
	res, err := req.Do(ctx, v.es)
	if err != nil {
		return nil, nil, fmt.Errorf("elastic: _search: %w", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		if res.StatusCode == http.StatusNotFound {
			return nil, nil, nil // no index: no documents
		}
		return nil, nil, fmt.Errorf("elastic: _search sorted on %q: %s %s", v.r.KeyField, res.Status(), readBody(res.Body))
	}
	var out struct {
		Hits struct {
			Hits []struct {
				ID   string          `json:"_id"`
				Sort json.RawMessage `json:"sort"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, nil, fmt.Errorf("elastic: _search response: %w", err)
	}
	hits := out.Hits.Hits
	if len(hits) == 0 {
		return nil, nil, nil
	}
	ids := make([]string, len(hits))
	prev := after
	for i, h := range hits {
		ids[i] = h.ID
		// Keys are unique: equal sort values mean documents without the
		// field (they sort together, as missing), and search_after would
		// skip documents.
		if len(h.Sort) == 0 || bytes.Equal(h.Sort, prev) {
			return nil, nil, &KeyFieldError{Index: v.index, Field: v.r.KeyField,
				Reason: fmt.Sprintf("document %s has no unique key in field %q (sort value %s)", h.ID, v.r.KeyField, h.Sort)}
		}
		prev = h.Sort
	}
	return ids, prev, nil
}

// readBody returns up to 4 KiB of r as text, for error messages.
func readBody(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 4<<10))
	return string(b)
}
