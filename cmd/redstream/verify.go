package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/elastic/go-elasticsearch/v8"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// Verify defaults.
const (
	defaultVerifyPage = 1000
	defaultVerifyShow = 10
)

// verifyReport is the result of `redstream verify`.
type verifyReport struct {
	Stream    string                                        `json:"stream"`
	Index     string                                        `json:"index"`
	KeyField  string                                        `json:"key_field"`
	Rows      int64                                         `json:"rows"`      // rows walked in PostgreSQL
	Documents int64                                         `json:"documents"` // documents walked in the index
	Missing   idSample                                      `json:"missing"`   // rows that should be indexed but are not
	Extra     idSample                                      `json:"extra"`     // documents whose row is gone or soft-deleted
	Stale     idSample                                      `json:"stale"`     // documents older than their row (version column only)
	Versioned bool                                          `json:"versioned"` // whether stale documents were looked for
	InSync    bool                                          `json:"in_sync"`
	Queued    int64                                         `json:"queued,omitempty"` // messages --repair queued
	Repair    bool                                          `json:"repair"`
	show      int                                           // ids kept per sample
	queue     func(ctx context.Context, ids []string) error // with --repair
}

// idSample is a count plus the first ids.
type idSample struct {
	Count int64    `json:"count"`
	First []string `json:"first"`
}

func (s *idSample) add(id string, show int) {
	s.Count++
	if len(s.First) < show {
		s.First = append(s.First, id)
	}
}

func runVerify(ctx context.Context, e *env, args []string) int {
	fs := e.flagSet("verify", "--config FILE --stream NAME [--repair] [--json] [--show N] [--page N] [--key-field FIELD]")
	path := e.configFlag(fs)
	name := fs.String("stream", "", "configured stream `name` whose table and index to compare; required")
	repair := fs.Bool("repair", false, "queue the differing ids on the stream, for the worker to sync them")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	show := fs.Int("show", defaultVerifyShow, "how many ids of each kind to print")
	page := fs.Int("page", 0, "rows and documents per page (default: the stream's batch_size, else 1000)")
	keyField := fs.String("key-field", "", "document `field` holding the primary key, to walk the index in key order\n(default: the primary key column; its keyword sub-field when it is text)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "redstream verify: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
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
	if *page < 0 || *page > 10000 {
		fmt.Fprintln(e.stderr, "redstream verify: --page: must be between 1 and 10000 (the index's max_result_window)")
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
	walker, err := newPKWalker(ctx, svc.db, s, "")
	if err != nil {
		return e.fail(err)
	}
	r := &verifyReport{
		Stream: s.Name, Index: s.Index, Repair: *repair, show: *show,
		Versioned: s.VersionColumn != "",
		Missing:   idSample{First: []string{}}, Extra: idSample{First: []string{}}, Stale: idSample{First: []string{}},
	}
	if *repair {
		p := redstream.NewProducer(svc.rdb, &redstream.ProducerOptions{Namespace: cfg.Redis.Namespace})
		numeric := integerType(walker.pkType)
		r.queue = func(ctx context.Context, ids []string) error {
			refs := make([]redstream.Ref, len(ids))
			for i, id := range ids {
				var key any = id
				if numeric && integerText.MatchString(id) {
					key = json.Number(id) // {"id":7}, as the GORM plugin writes it
				}
				refs[i] = redstream.Ref{Stream: redstream.ShardName(s.Name, key, s.Shards), ID: key}
			}
			if err := p.Queue(ctx, refs); err != nil {
				return fmt.Errorf("queue: %w", err)
			}
			r.Queued += int64(len(ids))
			return nil
		}
	}
	v := &verifier{
		es: svc.es, index: s.Index, loader: loader, walker: walker, r: r,
		page: cmp(*page, cmp(s.BatchSize, defaultVerifyPage)), integerKey: integerType(walker.pkType),
	}
	if err := v.checkRows(ctx); err != nil {
		return e.fail(fmt.Errorf("verify %s: %w", s.Name, err))
	}
	if r.KeyField, err = v.keyField(ctx, *keyField, s.PrimaryKey); err != nil {
		return e.fail(fmt.Errorf("verify %s: %w", s.Name, err))
	}
	if err := v.checkDocuments(ctx); err != nil {
		return e.fail(fmt.Errorf("verify %s: %w", s.Name, err))
	}
	r.InSync = r.Missing.Count == 0 && r.Extra.Count == 0 && r.Stale.Count == 0
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

func integerType(pgType string) bool {
	switch pgType {
	case "bigint", "integer", "smallint":
		return true
	}
	return false
}

func (r *verifyReport) print(w io.Writer) {
	fmt.Fprintf(w, "verify %s: %d rows in PostgreSQL, %d documents in index %s\n", r.Stream, r.Rows, r.Documents, r.Index)
	line := func(label string, s idSample, what string) {
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
	default:
		fmt.Fprintln(w, "differ (--repair queues the differing ids for the worker)")
	}
}

// verifier compares one stream's table and index, a page at a time.
type verifier struct {
	es     *elasticsearch.Client
	index  string
	loader elastic.Loader
	walker *pkWalker
	page   int
	r      *verifyReport
	// integerKey: the primary key is an integer, so a document id that is
	// not one has no row (and must not reach the query's cast).
	integerKey bool
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
				v.r.Missing.add(d.ID, v.r.show)
				differ = append(differ, d.ID)
			case d.HasVersion && version < d.Version:
				v.r.Stale.add(d.ID, v.r.show)
				differ = append(differ, d.ID)
			}
		}
		if err := v.repair(ctx, differ); err != nil {
			return err
		}
	}
}

func (v *verifier) repair(ctx context.Context, ids []string) error {
	if v.r.queue == nil || len(ids) == 0 {
		return nil
	}
	return v.r.queue(ctx, ids)
}

// mget returns the _version of each of docs found in the index.
func (v *verifier) mget(ctx context.Context, docs []elastic.Document) (map[string]int64, error) {
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
	res, err := v.es.Mget(bytes.NewReader(body), v.es.Mget.WithIndex(v.index), v.es.Mget.WithSource("false"), v.es.Mget.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("_mget: %w", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		if res.StatusCode == http.StatusNotFound {
			return map[string]int64{}, nil // no index yet: every document is missing
		}
		return nil, fmt.Errorf("_mget: %s %s", res.Status(), readBody(res.Body))
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
		return nil, fmt.Errorf("_mget response: %w", err)
	}
	found := make(map[string]int64, len(out.Docs))
	for _, d := range out.Docs {
		switch {
		case len(d.Error) > 0:
			if bytes.Contains(d.Error, []byte("index_not_found_exception")) {
				continue
			}
			return nil, fmt.Errorf("_mget of %s: %s", d.ID, d.Error)
		case d.Found:
			found[d.ID] = d.Version
		}
	}
	return found, nil
}

// keyField returns the document field to sort the index on: the flag's
// value, else the primary key column, or its keyword sub-field when the
// mapping makes it text (text cannot be sorted on).
func (v *verifier) keyField(ctx context.Context, flag, pk string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	res, err := v.es.Indices.GetMapping(v.es.Indices.GetMapping.WithIndex(v.index), v.es.Indices.GetMapping.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("read the mapping: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return pk, nil // no index: nothing to walk
	}
	if res.IsError() {
		return "", fmt.Errorf("read the mapping: %s %s", res.Status(), readBody(res.Body))
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
		return "", fmt.Errorf("read the mapping: %w", err)
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
			return "", fmt.Errorf("field %q of index %s is text, which cannot be sorted on; name a keyword or numeric field holding the key with --key-field", pk, v.index)
		}
		return pk, nil
	}
	if !mapped {
		return pk, nil // an empty index
	}
	return "", fmt.Errorf("the documents of index %s have no field %q; name the field holding the key with --key-field", v.index, pk)
}

// checkDocuments walks the index in key order (search_after on the key
// field) and checks each page of document ids against the table: extra
// documents, whose row is gone or soft-deleted.
func (v *verifier) checkDocuments(ctx context.Context) error {
	var after json.RawMessage
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
		if v.integerKey {
			keys = make([]string, 0, len(ids))
			for _, id := range ids {
				if integerText.MatchString(id) {
					keys = append(keys, id)
				}
			}
		}
		var docs []elastic.Document
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
				v.r.Extra.add(id, v.r.show)
				differ = append(differ, id)
			}
		}
		if err := v.repair(ctx, differ); err != nil {
			return err
		}
		if len(ids) < v.page {
			return nil
		}
		after = next
	}
}

var integerText = regexp.MustCompile(`^-?[0-9]{1,19}$`)

// search returns the ids of the next page of documents in key order and
// the sort values to continue after.
func (v *verifier) search(ctx context.Context, after json.RawMessage) ([]string, json.RawMessage, error) {
	req := map[string]any{
		"size":             v.page,
		"_source":          false,
		"track_total_hits": false,
		"query":            map[string]any{"match_all": map[string]any{}},
		"sort":             []any{map[string]any{v.r.KeyField: map[string]any{"order": "asc"}}},
	}
	if after != nil {
		req["search_after"] = after
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	res, err := v.es.Search(v.es.Search.WithIndex(v.index), v.es.Search.WithBody(bytes.NewReader(body)), v.es.Search.WithContext(ctx))
	if err != nil {
		return nil, nil, fmt.Errorf("_search: %w", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		if res.StatusCode == http.StatusNotFound {
			return nil, nil, nil // no index: no documents
		}
		return nil, nil, fmt.Errorf("_search sorted on %q: %s %s", v.r.KeyField, res.Status(), readBody(res.Body))
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
		return nil, nil, fmt.Errorf("_search response: %w", err)
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
			return nil, nil, fmt.Errorf("document %s has no unique key in field %q (sort value %s); name the field holding the key with --key-field",
				h.ID, v.r.KeyField, h.Sort)
		}
		prev = h.Sort
	}
	return ids, prev, nil
}
