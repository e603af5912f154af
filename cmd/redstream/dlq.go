package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/redis/go-redis/v9"

	"github.com/redstream-go/redstream"
)

// dlqPage is how many dead-letter entries are read at once.
const dlqPage = 200

// idList is a repeatable flag of dead-letter entry ids.
type idList []string

func (l *idList) String() string { return strings.Join(*l, ",") }

func (l *idList) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if _, err := redstream.ParseID(s); err != nil {
			return err
		}
		*l = append(*l, s)
	}
	return nil
}

// deadLetter is one dead-letter entry (see redstream.Consumer).
type deadLetter struct {
	DLQID    string          `json:"dlq_id"`   // the entry's id in the dead-letter stream
	Stream   string          `json:"stream"`   // the stream it came from
	Consumer string          `json:"consumer"` // the consumer that gave up on it
	ID       string          `json:"id"`       // the message's id in the stream
	Error    string          `json:"error"`
	Attempts string          `json:"attempts"`
	Time     string          `json:"time"`
	Payload  json.RawMessage `json:"payload,omitempty"`
	Fields   json.RawMessage `json:"fields,omitempty"` // for entries that had no payload
}

func parseDeadLetter(m redis.XMessage) deadLetter {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	raw := func(k string) json.RawMessage {
		if s := str(k); s != "" && json.Valid([]byte(s)) {
			return json.RawMessage(s)
		}
		return nil
	}
	return deadLetter{
		DLQID: m.ID, Stream: str("stream"), Consumer: str("consumer"), ID: str("id"),
		Error: str("error"), Attempts: str("attempts"), Time: str("time"),
		Payload: raw("payload"), Fields: raw("fields"),
	}
}

func runDLQ(ctx context.Context, e *env, args []string) int {
	const usageArgs = "list|replay|drop --config FILE --stream NAME [--consumer NAME] [flags]"
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(e.stderr, "Usage: redstream dlq %s\n", usageArgs)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			return exitOK
		}
		return exitUsage
	}
	action := args[0]
	if action != "list" && action != "replay" && action != "drop" {
		fmt.Fprintf(e.stderr, "redstream dlq: unknown action %q (want list, replay or drop)\n", action)
		return exitUsage
	}
	fs := e.flagSet("dlq "+action, "--config FILE --stream NAME [--consumer NAME] [flags]")
	path := e.configFlag(fs)
	streamName := fs.String("stream", "", "configured stream (all its shards) or shard stream `name`; required")
	consumer := fs.String("consumer", "", "consumer `name` whose dead letters to use (default: the stream's consumer)")
	var ids idList
	var all, asJSON bool
	count := 50
	switch action {
	case "list":
		fs.IntVar(&count, "count", count, "list at most `n` entries per stream")
		fs.BoolVar(&asJSON, "json", false, "print one JSON object per line")
	default:
		fs.Var(&ids, "id", "dead-letter entry `id` (as listed); repeat or separate with commas")
		fs.BoolVar(&all, "all", false, "every entry present when the command starts")
	}
	if code, ok := parse(fs, args[1:]); !ok {
		return code
	}
	cfg, code, ok := e.loadConfig(*path)
	if !ok {
		return code
	}
	if *streamName == "" {
		fmt.Fprintln(e.stderr, "redstream dlq: --stream: required")
		return exitUsage
	}
	if action != "list" && (len(ids) == 0) == !all {
		fmt.Fprintf(e.stderr, "redstream dlq %s: give --id or --all\n", action)
		return exitUsage
	}
	targets, err := selectStreams(cfg, *streamName)
	if err != nil {
		fmt.Fprintf(e.stderr, "redstream dlq: --stream: %v\n", err)
		return exitUsage
	}
	svc, err := connect(ctx, cfg, need{redis: true}, 0)
	if err != nil {
		return e.fail(err)
	}
	defer svc.close()
	keys := redstream.NewKeys(cfg.Redis.Namespace)

	if action == "list" {
		return dlqList(ctx, e, svc.rdb, keys, targets, *consumer, count, asJSON)
	}
	total := 0
	for _, t := range targets {
		c := cmpOr(*consumer, t.cfg.Consumer)
		n, err := dlqApply(ctx, e, svc.rdb, keys, t.stream, c, action, ids, all)
		total += n
		if err != nil {
			return e.fail(fmt.Errorf("stream %s: %w", t.stream, err))
		}
	}
	verb := map[string]string{"replay": "replayed", "drop": "dropped"}[action]
	fmt.Fprintf(e.stdout, "%s %d dead-lettered messages\n", verb, total)
	return exitOK
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func dlqList(ctx context.Context, e *env, rdb redis.UniversalClient, keys redstream.Keys, targets []target, consumer string, count int, asJSON bool) int {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	if !asJSON {
		fmt.Fprintln(tw, "STREAM\tCONSUMER\tDLQ ID\tMESSAGE ID\tATTEMPTS\tTIME\tERROR\tPAYLOAD")
	}
	enc := json.NewEncoder(e.stdout)
	for _, t := range targets {
		c := cmpOr(consumer, t.cfg.Consumer)
		key := keys.DeadLetter(t.stream, c)
		total, err := rdb.XLen(ctx, key).Result()
		if err != nil {
			return e.fail(err)
		}
		msgs, err := rdb.XRangeN(ctx, key, "-", "+", int64(max(count, 1))).Result()
		if err != nil {
			return e.fail(err)
		}
		for _, m := range msgs {
			d := parseDeadLetter(m)
			if asJSON {
				if err := enc.Encode(d); err != nil {
					return e.fail(err)
				}
				continue
			}
			payload := string(d.Payload)
			if payload == "" {
				payload = "fields " + string(d.Fields)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.stream, c, d.DLQID, d.ID, d.Attempts, d.Time, oneLine(d.Error, 100), oneLine(payload, 80))
		}
		if !asJSON && int64(len(msgs)) < total {
			fmt.Fprintf(tw, "%s\t%s\t… %d more\t\t\t\t\t\n", t.stream, c, total-int64(len(msgs)))
		}
	}
	if !asJSON {
		if err := tw.Flush(); err != nil {
			return e.fail(err)
		}
	}
	return exitOK
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n-1] + "…"
	}
	return s
}

// dlqApply replays or drops the dead letters ids (or all present now) of
// consumer on stream and returns how many it handled. A replay adds the
// payload to the stream again and deletes the dead letter, in one
// MULTI/EXEC; entries without a payload cannot be replayed and are
// reported.
func dlqApply(ctx context.Context, e *env, rdb redis.UniversalClient, keys redstream.Keys, stream, consumer, action string, ids idList, all bool) (int, error) {
	dlq := keys.DeadLetter(stream, consumer)
	var msgs []redis.XMessage
	if all {
		last, err := rdb.XRevRangeN(ctx, dlq, "+", "-", 1).Result()
		if err != nil || len(last) == 0 {
			return 0, err
		}
		end := last[0].ID
		start := "-"
		n := 0
		for {
			page, err := rdb.XRangeN(ctx, dlq, start, end, dlqPage).Result()
			if err != nil {
				return n, err
			}
			k, err := dlqApplyPage(ctx, e, rdb, keys, stream, dlq, action, page)
			n += k
			if err != nil || len(page) < dlqPage {
				return n, err
			}
			start = "(" + page[len(page)-1].ID
		}
	}
	for _, id := range ids {
		m, err := rdb.XRangeN(ctx, dlq, id, id, 1).Result()
		if err != nil {
			return 0, err
		}
		if len(m) == 0 {
			fmt.Fprintf(e.stderr, "redstream dlq: %s has no entry %s\n", dlq, id)
			continue
		}
		msgs = append(msgs, m[0])
	}
	return dlqApplyPage(ctx, e, rdb, keys, stream, dlq, action, msgs)
}

func dlqApplyPage(ctx context.Context, e *env, rdb redis.UniversalClient, keys redstream.Keys, stream, dlq, action string, msgs []redis.XMessage) (int, error) {
	n := 0
	for _, m := range msgs {
		if action == "drop" {
			if err := rdb.XDel(ctx, dlq, m.ID).Err(); err != nil {
				return n, err
			}
			n++
			continue
		}
		d := parseDeadLetter(m)
		if d.Payload == nil {
			fmt.Fprintf(e.stderr, "redstream dlq: skipped %s: the message had no payload, so it cannot be replayed; drop it\n", m.ID)
			continue
		}
		_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			// XADD <key> * payload <json>: a producer's entry.
			p.XAdd(ctx, &redis.XAddArgs{Stream: keys.Stream(stream), Values: []any{"payload", string(d.Payload)}})
			p.XDel(ctx, dlq, m.ID)
			return nil
		})
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

var _ flag.Value = (*idList)(nil)
