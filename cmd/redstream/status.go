package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
)

// streamStatus is the state of one Redis stream (a configured stream, or one
// shard of it), as `redstream status` reports it.
type streamStatus struct {
	Name      string           `json:"name"`   // configured stream name
	Stream    string           `json:"stream"` // Redis stream name (a shard's name when sharded)
	Index     string           `json:"index"`
	Length    int64            `json:"length"`
	Delay     delayStatus      `json:"delay"`
	Consumers []consumerStatus `json:"consumers"`
	Delayer   leaseStatus      `json:"delayer_lease"`
	Trimmer   leaseStatus      `json:"trimmer_lease"`
}

type delayStatus struct {
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
	st, err := collectStatus(ctx, svc.rdb, redstream.NewKeys(cfg.Redis.Namespace), targets)
	if err != nil {
		return e.fail(err)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"streams": st}); err != nil {
			return e.fail(err)
		}
		return exitOK
	}
	if err := printStatus(e.stdout, st); err != nil {
		return e.fail(err)
	}
	return exitOK
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

// collectStatus reads the state of every target, with the Redis server's
// clock as "now".
func collectStatus(ctx context.Context, rdb redis.UniversalClient, keys redstream.Keys, targets []target) ([]streamStatus, error) {
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("redis TIME: %w", err)
	}
	out := make([]streamStatus, 0, len(targets))
	for _, t := range targets {
		s, err := streamState(ctx, rdb, keys, t, now)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", t.stream, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func streamState(ctx context.Context, rdb redis.UniversalClient, keys redstream.Keys, t target, now time.Time) (streamStatus, error) {
	s := streamStatus{Name: t.cfg.Name, Stream: t.stream, Index: t.cfg.Index}
	var err error
	if s.Length, err = rdb.XLen(ctx, keys.Stream(t.stream)).Result(); err != nil {
		return s, err
	}
	if s.Delay.Length, err = rdb.XLen(ctx, keys.Delay(t.stream)).Result(); err != nil {
		return s, err
	}
	if s.Delay.Length > 0 {
		if age, ok, err := firstAge(ctx, rdb, keys.Delay(t.stream), "-", now); err != nil {
			return s, err
		} else if ok {
			s.Delay.OldestAgeSeconds = age
		}
	}
	for _, c := range t.cfg.TrimConsumers {
		cs := consumerStatus{Name: c}
		off, err := rdb.Get(ctx, keys.Offset(t.stream, c)).Result()
		switch {
		case errors.Is(err, redis.Nil):
			off = "0-0"
		case err != nil:
			return s, err
		default:
			cs.Offset = off
		}
		if age, ok, err := firstAge(ctx, rdb, keys.Stream(t.stream), "("+off, now); err != nil {
			return s, err
		} else if ok {
			cs.LagSeconds = age
		}
		if cs.Lease, err = lease(ctx, rdb, keys.Lock(redstream.ConsumerLockName(t.stream, c))); err != nil {
			return s, err
		}
		if cs.DeadLetters, err = rdb.XLen(ctx, keys.DeadLetter(t.stream, c)).Result(); err != nil {
			return s, err
		}
		s.Consumers = append(s.Consumers, cs)
	}
	if s.Delayer, err = lease(ctx, rdb, keys.Lock(redstream.ConsumerLockName(redstream.DelayStream(t.stream), redstream.DelayerName))); err != nil {
		return s, err
	}
	if s.Trimmer, err = lease(ctx, rdb, keys.Lock(redstream.TrimmerLockName(t.stream))); err != nil {
		return s, err
	}
	return s, nil
}

// firstAge returns the age in seconds of the first entry of the stream at
// key from start on, and whether there is one.
func firstAge(ctx context.Context, rdb redis.UniversalClient, key, start string, now time.Time) (float64, bool, error) {
	msgs, err := rdb.XRangeN(ctx, key, start, "+", 1).Result()
	if err != nil || len(msgs) == 0 {
		return 0, false, err
	}
	id, err := redstream.ParseID(msgs[0].ID)
	if err != nil {
		return 0, false, err
	}
	return max(now.Sub(id.Time()).Seconds(), 0), true, nil
}

func lease(ctx context.Context, rdb redis.UniversalClient, key string) (leaseStatus, error) {
	var (
		value *redis.StringCmd
		pttl  *redis.DurationCmd
	)
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		value = p.Get(ctx, key)
		pttl = p.PTTL(ctx, key)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return leaseStatus{}, err
	}
	if errors.Is(value.Err(), redis.Nil) {
		return leaseStatus{}, nil // no key
	}
	held := leaseStatus{Held: true, Holder: redstream.LockHolder(value.Val())}
	if ttl := pttl.Val(); ttl > 0 { // else no expiry: held for good
		held.TTLSeconds = ttl.Seconds()
	}
	return held, nil
}

func printStatus(w io.Writer, st []streamStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tINDEX\tLENGTH\tDELAYED\tOLDEST DELAYED\tCONSUMER\tOFFSET\tLAG\tLEASE\tDEAD LETTERS")
	for _, s := range st {
		first := true
		for _, c := range s.Consumers {
			stream, index, length, delayed, oldest := "", "", "", "", ""
			if first {
				stream, index = s.Stream, s.Index
				length, delayed = strconv.FormatInt(s.Length, 10), strconv.FormatInt(s.Delay.Length, 10)
				oldest = seconds(s.Delay.OldestAgeSeconds)
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
