package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// streamStatus is the state of one Redis stream (a configured stream, or one
// shard of it), as `redstream status` reports it.
type streamStatus struct {
	Name        string            `json:"name"`   // configured stream name
	Stream      string            `json:"stream"` // Redis stream name (a shard's name when sharded)
	Index       string            `json:"index"`
	Length      int64             `json:"length"`
	Unconfirmed unconfirmedStatus `json:"unconfirmed"`
	Consumers   []consumerStatus  `json:"consumers"`
	Delayer     leaseStatus       `json:"delayer_lease"`
	Trimmer     leaseStatus       `json:"trimmer_lease"`
}

// unconfirmedStatus is the delay stream: changes whose main-stream message
// is not confirmed (transactions in flight, failed main-stream writes).
type unconfirmedStatus struct {
	Length           int64   `json:"length"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"` // 0 when empty
}

type consumerStatus struct {
	Name string `json:"name"`
	// Offset is the committed offset; empty when the consumer has none.
	Offset string `json:"offset"`
	// LagSeconds is the age of the oldest message after the offset; 0 when
	// the consumer is caught up.
	LagSeconds  float64     `json:"lag_seconds"`
	Lease       leaseStatus `json:"lease"`
	DeadLetters int64       `json:"dead_letters"`
}

// leaseStatus says whether a lock is held, and by whom when the holder
// named itself in the lock value (redstream.LockHolder: "<host>:<pid>" by
// default; locks of the Ruby gem name nobody).
type leaseStatus struct {
	Held       bool    `json:"held"`
	Holder     string  `json:"holder,omitempty"`
	TTLSeconds float64 `json:"ttl_seconds,omitempty"`
}

func (l leaseStatus) String() string {
	if !l.Held {
		return "free"
	}
	by := ""
	if l.Holder != "" {
		by = " by " + l.Holder
	}
	return fmt.Sprintf("held%s (ttl %.1fs)", by, l.TTLSeconds)
}

func runStatus(ctx context.Context, e *env, args []string) int {
	fs := e.flagSet("status", "--config FILE [--stream NAME] [--json]")
	path := e.configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	only := fs.String("stream", "", "report only this configured stream (or shard stream) `name`")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, code, ok := e.loadConfig(*path)
	if !ok {
		return code
	}
	targets, err := selectStreams(cfg, *only)
	if err != nil {
		fmt.Fprintf(e.stderr, "redstream: --stream: %v\n", err)
		return exitUsage
	}
	svc, err := connect(ctx, cfg, need{redis: true}, 0)
	if err != nil {
		return e.fail(err)
	}
	defer svc.close()
	keys := redstream.NewKeys(cfg.Redis.Namespace)
	st, err := collectStatus(ctx, svc.rdb, keys, targets)
	if err != nil {
		return e.fail(err)
	}
	grp := groupStatus{Name: cfg.Worker.Group, Balance: cfg.Worker.balance(), Members: []string{}}
	if grp.Balance {
		if grp.Members, err = redstream.ReadMembers(ctx, svc.rdb, keys, grp.Name); err != nil {
			return e.fail(err)
		}
	}
	reindexes, err := reindexStatus(ctx, svc, keys, targets)
	if err != nil {
		return e.fail(err)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		rs := make([]reindexJSON, len(reindexes))
		for i, r := range reindexes {
			rs[i] = reindexJSON{ReindexStatus: r, ETASeconds: r.ETA().Seconds(), ReplayLagSeconds: r.ReplayLag.Seconds()}
		}
		if err := enc.Encode(map[string]any{"streams": st, "group": grp, "reindexes": rs}); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	if err := printStatus(e.stdout, st); err != nil {
		return e.fail(err)
	}
	for _, r := range reindexes {
		printReindex(e.stdout, r)
	}
	if grp.Balance {
		fmt.Fprintf(e.stdout, "\ngroup %s: %d members %s\n", grp.Name, len(grp.Members), strings.Join(grp.Members, ", "))
	}
	return exitOK
}

// groupStatus is the worker group of the configuration: its live members,
// when the workers balance (worker.balance). Each lease's holder in the
// streams' status names the member serving that unit.
type groupStatus struct {
	Name    string   `json:"name"`
	Balance bool     `json:"balance"`
	Members []string `json:"members"`
}

// target is one Redis stream of a configured stream.
type target struct {
	cfg    *StreamConfig
	stream string
}

// selectStreams returns the Redis streams of the configured stream (or
// shard stream) named name, or of all streams when name is empty.
func selectStreams(cfg *Config, name string) ([]target, error) {
	var ts []target
	for i := range cfg.Streams {
		s := &cfg.Streams[i]
		for _, st := range s.Streams() {
			if name == "" || name == s.Name || name == st {
				ts = append(ts, target{cfg: s, stream: st})
			}
		}
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("no configured stream is named %q", name)
	}
	return ts, nil
}

// collectStatus reads the state of every target (redstream.ReadStatus).
func collectStatus(ctx context.Context, rdb redis.UniversalClient, keys redstream.Keys, targets []target) ([]streamStatus, error) {
	out := make([]streamStatus, 0, len(targets))
	for _, t := range targets {
		rs, err := redstream.ReadStatus(ctx, rdb, keys, t.stream, t.cfg.TrimConsumers...)
		if err != nil {
			return nil, err
		}
		s := streamStatus{
			Name: t.cfg.Name, Stream: rs.Stream, Index: t.cfg.Index, Length: rs.Length,
			Unconfirmed: unconfirmedStatus{Length: rs.Unconfirmed, OldestAgeSeconds: rs.OldestUnconfirmed.Seconds()},
			Delayer:     newLeaseStatus(rs.Delayer),
			Trimmer:     newLeaseStatus(rs.Trimmer),
		}
		for _, c := range rs.Consumers {
			cs := consumerStatus{Name: c.Name, LagSeconds: c.Lag.Seconds(), Lease: newLeaseStatus(c.Lease), DeadLetters: c.DeadLetters}
			if c.HasOffset {
				cs.Offset = c.Offset.String()
			}
			s.Consumers = append(s.Consumers, cs)
		}
		out = append(out, s)
	}
	return out, nil
}

func newLeaseStatus(l redstream.LockStatus) leaseStatus {
	return leaseStatus{Held: l.Held, Holder: l.Holder, TTLSeconds: l.TTL.Seconds()}
}

func printStatus(w io.Writer, st []streamStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tINDEX\tLENGTH\tUNCONFIRMED\tOLDEST UNCONFIRMED\tCONSUMER\tOFFSET\tLAG\tLEASE\tDEAD LETTERS")
	for _, s := range st {
		first := true
		for _, c := range s.Consumers {
			stream, index, length, delayed, oldest := "", "", "", "", ""
			if first {
				stream, index = s.Stream, s.Index
				length, delayed = strconv.FormatInt(s.Length, 10), strconv.FormatInt(s.Unconfirmed.Length, 10)
				oldest = seconds(s.Unconfirmed.OldestAgeSeconds)
				first = false
			}
			off := c.Offset
			if off == "" {
				off = "(none)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n",
				stream, index, length, delayed, oldest, c.Name, off, seconds(c.LagSeconds), c.Lease, c.DeadLetters)
		}
		fmt.Fprintf(tw, "\t\t\t\t\t%s\t\t\t%s\t\n", "(delayer)", s.Delayer)
		fmt.Fprintf(tw, "\t\t\t\t\t%s\t\t\t%s\t\n", "(trimmer)", s.Trimmer)
	}
	return tw.Flush()
}

// seconds renders an age: "-" for 0, else rounded to what matters.
func seconds(s float64) string {
	if s <= 0 {
		return "-"
	}
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// reindexJSON is a reindex in progress as status --json prints it.
type reindexJSON struct {
	*elastic.ReindexStatus
	ETASeconds       float64 `json:"eta_seconds"`
	ReplayLagSeconds float64 `json:"replay_lag_seconds"`
}

// printReindex prints a reindex in progress: phase, rows, rate, ETA and
// replay lag.
func printReindex(w io.Writer, r *elastic.ReindexStatus) {
	by := "nobody (interrupted: run reindex again to resume, or reindex --abort)"
	if r.Holder != "" {
		by = r.Holder
	}
	total := "?"
	if r.Total >= 0 {
		total = strconv.FormatInt(r.Total, 10)
	}
	eta := "-"
	if d := r.ETA(); d > 0 {
		eta = max(d.Round(time.Second), time.Second).String()
	}
	fmt.Fprintf(w, "\nreindex %s: phase %s, %s -> %s, rows %d/%s at %.0f rows/s, ETA %s, %d changes replayed, replay lag %s; run by %s\n",
		r.Name, r.Phase, r.Alias, r.Index, r.Rows, total, r.Rate, eta, r.Replayed, seconds(r.ReplayLag.Seconds()), by)
}
