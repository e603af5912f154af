package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// verifyReport is the result of `redstream verify`, as --json prints it.
type verifyReport struct {
	Stream    string           `json:"stream"`
	Index     string           `json:"index"`
	KeyField  string           `json:"key_field"`
	Rows      int64            `json:"rows"`      // rows walked in PostgreSQL
	Documents int64            `json:"documents"` // documents walked in the index
	Missing   elastic.IDSample `json:"missing"`   // rows that should be indexed but are not
	Extra     elastic.IDSample `json:"extra"`     // documents whose row is gone or soft-deleted
	Stale     elastic.IDSample `json:"stale"`     // documents older than their row (version column only)
	Versioned bool             `json:"versioned"` // whether stale documents were looked for
	InSync    bool             `json:"in_sync"`
	Queued    int64            `json:"queued,omitempty"` // messages --repair queued
	Repair    bool             `json:"repair"`
}

func runVerify(ctx context.Context, e *env, args []string) int {
	fs := e.flagSet("verify", "--config FILE --stream NAME [--repair] [--json] [--show N] [--page N] [--key-field FIELD]")
	path := e.configFlag(fs)
	name := fs.String("stream", "", "configured stream `name` whose table and index to compare; required")
	repair := fs.Bool("repair", false, "queue the differing ids on the stream, for the worker to sync them")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	show := fs.Int("show", elastic.DefaultSample, "how many ids of each kind to print")
	page := fs.Int("page", 0, fmt.Sprintf("rows and documents per page (default: the stream's batch_size, else %d)", elastic.DefaultPageSize))
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
		Index:      s.Index,
		KeyField:   *keyField,
		PageSize:   cmp.Or(*page, s.BatchSize), // else elastic.DefaultPageSize
		Sample:     *show,
	}
	if *show == 0 {
		opts.Sample = -1 // elastic: 0 is the default
	}
	if *repair {
		p, err := redstream.NewProducer(svc.rdb, &redstream.ProducerOptions{Namespace: cfg.Redis.Namespace})
		if err != nil {
			return e.fail(err)
		}
		opts.Repair = elastic.Requeue(p, s.Name, s.Shards)
	}
	rep, err := elastic.Verify(ctx, svc.db, svc.es, loader, opts)
	if kf := (*elastic.KeyFieldError)(nil); errors.As(err, &kf) {
		return e.fail(fmt.Errorf("verify %s: %s; name a keyword or numeric field holding the key with --key-field", s.Name, kf.Reason))
	}
	if err != nil {
		return e.fail(fmt.Errorf("verify %s: %w", s.Name, err))
	}
	r := &verifyReport{
		Stream: s.Name, Index: s.Index, KeyField: rep.KeyField, Rows: rep.Rows, Documents: rep.Documents,
		Missing: listed(rep.Missing), Extra: listed(rep.Extra), Stale: listed(rep.Stale),
		Versioned: s.VersionColumn != "" || rep.Versioned,
		InSync:    rep.InSync(), Queued: rep.Repaired, Repair: *repair,
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
	fmt.Fprintf(w, "verify %s: %d rows in PostgreSQL, %d documents in index %s\n", r.Stream, r.Rows, r.Documents, r.Index)
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
	default:
		fmt.Fprintln(w, "differ (--repair queues the differing ids for the worker)")
	}
}
