package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

func runReindex(ctx context.Context, e *env, args []string) int {
	fs := e.flagSet("reindex", "--config FILE --stream NAME [--mapping FILE] [--keep-old] [--force] [--migrate] [--abort]")
	path := e.configFlag(fs)
	name := fs.String("stream", "", "configured stream `name` whose index to rebuild; required")
	mapping := fs.String("mapping", "", "create index body (settings, mappings) of the new index, a JSON `file` (default: the stream's mapping)")
	keepOld := fs.Bool("keep-old", false, "keep the old index after the swap (default: delete it)")
	force := fs.Bool("force", false, "swap even when the verification finds documents missing, extra or stale")
	migrate := fs.Bool("migrate", false, "the index is a concrete index: replace it by an alias of its name, deleting it in the swap")
	abort := fs.Bool("abort", false, "give up an interrupted reindex that has not swapped: delete its new index and its state")
	page := fs.Int("page", 0, fmt.Sprintf("rows per page of the backfill and the verification (default: the stream's batch_size, else %d)", elastic.DefaultPageSize))
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, code, ok := e.loadConfig(*path)
	if !ok {
		return code
	}
	if *name == "" {
		fmt.Fprintln(e.stderr, "redstream reindex: --stream: required")
		return exitUsage
	}
	s := streamByName(cfg, *name)
	if s == nil {
		fmt.Fprintf(e.stderr, "redstream reindex: --stream: no configured stream is named %q\n", *name)
		return exitUsage
	}
	if *page < 0 {
		fmt.Fprintln(e.stderr, "redstream reindex: --page: must not be negative")
		return exitUsage
	}
	body := s.mapping
	if *mapping != "" {
		data, err := os.ReadFile(*mapping)
		if err != nil {
			fmt.Fprintf(e.stderr, "redstream reindex: --mapping: %v\n", err)
			return exitUsage
		}
		if !json.Valid(data) || !bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
			fmt.Fprintf(e.stderr, "redstream reindex: --mapping: %s is not a JSON object\n", *mapping)
			return exitUsage
		}
		body = data
	}
	if body == nil && !*abort {
		fmt.Fprintf(e.stderr, "redstream reindex: stream %s has no mapping: give the new index's with --mapping FILE\n", s.Name)
		return exitUsage
	}
	svc, err := connect(ctx, cfg, need{redis: true, db: true, es: true}, 0)
	if err != nil {
		return e.fail(err)
	}
	defer svc.close()
	log := newLogger(cfg.Log, e.stderr)
	loader, err := newLoader(ctx, svc, s)
	if err != nil {
		return e.fail(fmt.Errorf("stream %s (table %s): %w", s.Name, s.Table, err))
	}
	prog := newProgressBar(e.stderr, "reindex "+s.Name)
	phase := ""
	ri, err := elastic.NewReindexer(svc.rdb, svc.db, svc.es, loader, elastic.ReindexOptions{
		Name:       s.Name,
		Streams:    s.Streams(),
		Alias:      s.Index,
		Body:       body,
		Table:      s.Table,
		PrimaryKey: s.PrimaryKey,
		Namespace:  cfg.Redis.Namespace,
		Handler: &elastic.Options{
			Pipeline: s.Pipeline, MaxBulkBytes: s.MaxBulkBytes, Concurrency: s.Concurrency,
			Refresh: cfg.Elasticsearch.Refresh, Logger: log,
		},
		PageSize: cmp.Or(*page, s.BatchSize),
		KeepOld:  *keepOld,
		Force:    *force,
		Migrate:  *migrate,
		LockTTL:  cfg.Worker.LockTTL.Duration,
		Logger:   log,
		Progress: func(st elastic.ReindexStatus) {
			if st.Phase != phase {
				if phase == elastic.PhaseBackfill {
					prog.done(st.Rows)
				}
				phase = st.Phase
				fmt.Fprintf(e.stderr, "redstream reindex: %s: %s into %s\n", s.Name, st.Phase, st.Index)
			}
			if st.Phase == elastic.PhaseBackfill {
				prog.update(st.Rows, st.Total)
			}
		},
	})
	if err != nil {
		return e.fail(err)
	}
	if *abort {
		index, err := ri.Abort(ctx)
		if err != nil {
			return e.fail(err)
		}
		if index == "" {
			fmt.Fprintf(e.stdout, "reindex %s: nothing to abort\n", s.Name)
		} else {
			fmt.Fprintf(e.stdout, "reindex %s: aborted; index %s deleted, alias %s unchanged\n", s.Name, index, s.Index)
		}
		return exitOK
	}
	res, err := ri.Run(ctx)
	prog.end()
	switch {
	case err == nil:
	case ctx.Err() != nil:
		fmt.Fprintf(e.stderr, "redstream reindex: stopped (interrupted); run the same command again to resume, or add --abort to give it up\n")
		return exitFailure
	case errors.Is(err, elastic.ErrVerifyFailed):
		fmt.Fprintf(e.stderr, "redstream reindex: %v\nthe alias %s still points at the old index; "+
			"run the same command again to verify again, add --force to swap anyway, or --abort to give it up\n", err, s.Index)
		return exitFailure
	case errors.Is(err, elastic.ErrNotAlias):
		fmt.Fprintf(e.stderr, "redstream reindex: %s is an index, not an alias. --migrate rebuilds it as %s-<time> and, "+
			"in the same request that swaps, deletes %s and creates the alias %s: readers and the worker see the old index, "+
			"then the new one, with no moment in between; the old index cannot be kept\n", s.Index, s.Index, s.Index, s.Index)
		return exitFailure
	default:
		return e.fail(err)
	}
	what := "deleted"
	switch {
	case res.Old == "":
		what = "none"
	case res.Old == s.Index:
		what = "replaced by the alias"
	case !res.OldDeleted:
		what = "kept"
	}
	resumed := ""
	if res.Resumed {
		resumed = " (resumed)"
	}
	verified := "verified by an earlier run"
	if res.Verify.Rows > 0 || res.Verify.Documents > 0 {
		verified = fmt.Sprintf("verify: %d rows, %d documents, %d differing (%d unexplained)", res.Verify.Rows, res.Verify.Documents,
			res.Verify.Missing.Count+res.Verify.Extra.Count+res.Verify.Stale.Count, len(res.Unexplained))
	}
	fmt.Fprintf(e.stdout, "reindex %s%s: alias %s -> %s in %s; this run: %d rows backfilled, %d changes replayed; %s; old index %s: %s\n",
		s.Name, resumed, s.Index, res.Index, res.Finished.Sub(res.Started).Round(time.Millisecond), res.Rows, res.Replayed,
		verified, cmp.Or(res.Old, "-"), what)
	return exitOK
}

// reindexStatus reads the reindexes in progress of the configured streams
// of targets.
func reindexStatus(ctx context.Context, svc *services, keys redstream.Keys, targets []target) ([]*elastic.ReindexStatus, error) {
	var out []*elastic.ReindexStatus
	seen := map[string]bool{}
	for _, t := range targets {
		if seen[t.cfg.Name] {
			continue
		}
		seen[t.cfg.Name] = true
		st, err := elastic.ReadReindexStatus(ctx, svc.rdb, keys, t.cfg.Name, t.cfg.Streams())
		if err != nil {
			return nil, err
		}
		if st != nil {
			out = append(out, st)
		}
	}
	return out, nil
}
