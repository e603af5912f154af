package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redstream-go/redstream"
)

// dlqPage is how many dead-letter entries are read at once.
const dlqPage = 200

// idList is a repeatable flag of dead-letter entry ids.
type idList []redstream.ID

func (l *idList) String() string {
	s := make([]string, len(*l))
	for i, id := range *l {
		s[i] = id.String()
	}
	return strings.Join(s, ",")
}

func (l *idList) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		id, err := redstream.ParseID(s)
		if err != nil {
			return err
		}
		*l = append(*l, id)
	}
	return nil
}

// deadLetter is one line of `dlq list --json` (see redstream.DeadLetter).
// A payload (or fields) that is valid JSON is shown as is; any other is
// shown as a JSON string, with payload_not_json set.
type deadLetter struct {
	DLQID          string          `json:"dlq_id"`   // the entry's id in the dead-letter stream
	Stream         string          `json:"stream"`   // the stream it came from
	Consumer       string          `json:"consumer"` // the consumer that gave up on it
	ID             string          `json:"id"`       // the message's id in the stream
	Error          string          `json:"error"`
	Attempts       string          `json:"attempts"`
	Time           string          `json:"time"`
	Payload        json.RawMessage `json:"payload,omitempty"`
	PayloadNotJSON bool            `json:"payload_not_json,omitempty"`
	Fields         json.RawMessage `json:"fields,omitempty"` // for entries that had no payload
}

func newDeadLetter(d redstream.DeadLetter) deadLetter {
	out := deadLetter{
		DLQID: d.DLQID.String(), Stream: d.Stream, Consumer: d.Consumer,
		Error: d.Error, Attempts: strconv.Itoa(d.Attempts),
	}
	if !d.ID.IsZero() {
		out.ID = d.ID.String()
	}
	if !d.Time.IsZero() {
		out.Time = d.Time.UTC().Format(time.RFC3339Nano)
	}
	if d.HasPayload {
		out.Payload, out.PayloadNotJSON = rawJSON(d.Payload)
	} else if d.Fields != "" {
		out.Fields, _ = rawJSON(d.Fields)
	}
	return out
}

// rawJSON returns s as raw JSON when it is valid JSON, and otherwise as a
// JSON string, reporting true.
func rawJSON(s string) (json.RawMessage, bool) {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s), false
	}
	b, _ := json.Marshal(s) // a string always marshals
	return b, true
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
	queues := make([]dlqTarget, len(targets))
	for i, t := range targets {
		q := dlqTarget{stream: t.stream, consumer: cmp.Or(*consumer, t.cfg.Consumer)}
		if q.DeadLetterQueue, err = redstream.NewDeadLetterQueue(svc.rdb, keys, q.stream, q.consumer); err != nil {
			return e.fail(err)
		}
		queues[i] = q
	}

	if action == "list" {
		return dlqList(ctx, e, queues, count, asJSON)
	}
	total := 0
	for _, q := range queues {
		n, err := dlqApply(ctx, e, q.DeadLetterQueue, action, ids, all)
		total += n
		if err != nil {
			return e.fail(fmt.Errorf("stream %s: %w", q.stream, err))
		}
	}
	verb := map[string]string{"replay": "replayed", "drop": "dropped"}[action]
	fmt.Fprintf(e.stdout, "%s %d dead-lettered messages\n", verb, total)
	return exitOK
}

// dlqTarget is the dead-letter stream of one consumer of one Redis stream.
type dlqTarget struct {
	*redstream.DeadLetterQueue
	stream, consumer string
}

func dlqList(ctx context.Context, e *env, queues []dlqTarget, count int, asJSON bool) int {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	if !asJSON {
		fmt.Fprintln(tw, "STREAM\tCONSUMER\tDLQ ID\tMESSAGE ID\tATTEMPTS\tTIME\tERROR\tPAYLOAD")
	}
	enc := json.NewEncoder(e.stdout)
	for _, q := range queues {
		total, err := q.Len(ctx)
		if err != nil {
			return e.fail(err)
		}
		letters, err := q.Read(ctx, redstream.ID{}, max(count, 1))
		if err != nil {
			return e.fail(err)
		}
		for _, l := range letters {
			d := newDeadLetter(l)
			if asJSON {
				if err := enc.Encode(d); err != nil {
					return e.fail(err)
				}
				continue
			}
			payload := l.Payload
			if !l.HasPayload {
				payload = "fields " + l.Fields
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", q.stream, q.consumer, d.DLQID, d.ID, d.Attempts, d.Time, oneLine(d.Error, 100), oneLine(payload, 80))
		}
		if !asJSON && int64(len(letters)) < total {
			fmt.Fprintf(tw, "%s\t%s\t… %d more\t\t\t\t\t\n", q.stream, q.consumer, total-int64(len(letters)))
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

// dlqApply replays or drops the dead letters ids of q, or with all every
// one present when it starts, and returns how many it handled. Ids that
// are not there, and dead letters without a payload (which cannot be
// replayed), are reported and skipped.
func dlqApply(ctx context.Context, e *env, q *redstream.DeadLetterQueue, action string, ids idList, all bool) (int, error) {
	if all {
		// Collect first, then apply: replayed messages the worker
		// dead-letters again are not replayed twice.
		ids = nil
		var after redstream.ID
		for {
			page, err := q.Read(ctx, after, dlqPage)
			if err != nil {
				return 0, err
			}
			for _, d := range page {
				ids = append(ids, d.DLQID)
			}
			if len(page) < dlqPage {
				break
			}
			after = page[len(page)-1].DLQID
		}
	}
	n := 0
	for _, id := range ids {
		var err error
		if action == "drop" {
			err = q.Drop(ctx, id)
		} else {
			_, err = q.Replay(ctx, id)
		}
		switch {
		case errors.Is(err, redstream.ErrNoDeadLetter):
			fmt.Fprintf(e.stderr, "redstream dlq: %s has no entry %s\n", q.Key(), id)
		case errors.Is(err, redstream.ErrNoPayload):
			fmt.Fprintf(e.stderr, "redstream dlq: skipped %s: the message had no payload, so it cannot be replayed; drop it\n", id)
		case err != nil:
			return n, err
		default:
			n++
		}
	}
	return n, nil
}

var _ flag.Value = (*idList)(nil)
