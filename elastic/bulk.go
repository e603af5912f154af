package elastic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// op is one bulk action: an index of a document or a delete of an id.
type op struct {
	id      string
	delete  bool
	source  json.RawMessage
	version int64
	hasVer  bool
	routing string

	line []byte // the encoded action (and source) lines, set by encode
}

// outcome of one op in one bulk request.
type outcome int

const (
	done      outcome = iota // 2xx, or a 404 delete, or a 409 under external versioning
	retryable                // 429, 5xx
	rejected                 // other 4xx: dead-letter
)

// ItemError is the error of a bulk item Elasticsearch rejected for good
// (a mapping or parse error), as dead-lettered.
type ItemError struct {
	ID     string // document id
	Status int    // HTTP status of the item
	Type   string // Elasticsearch error type, e.g. document_parsing_exception
	Reason string
}

func (e *ItemError) Error() string {
	return fmt.Sprintf("elastic: document %s rejected: %d %s: %s", e.ID, e.Status, e.Type, e.Reason)
}

// RequestError is a bulk request Elasticsearch answered with an error
// status as a whole (429 under load, 5xx).
type RequestError struct {
	Status int
	Body   string
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("elastic: bulk request failed: %d %s", e.Status, e.Body)
}

// encode renders the op's NDJSON lines.
func (o *op) encode(index, pipeline string) error {
	// One allocation: the action line's fixed text is under 100 bytes.
	b := make([]byte, 0, 100+len(index)+len(o.id)+len(o.routing)+len(pipeline)+len(o.source))
	if o.delete {
		b = append(b, `{"delete":{"_index":`...)
	} else {
		b = append(b, `{"index":{"_index":`...)
	}
	b = appendJSONString(b, index)
	b = append(b, `,"_id":`...)
	b = appendJSONString(b, o.id)
	if o.hasVer {
		b = append(b, `,"version":`...)
		b = strconv.AppendInt(b, o.version, 10)
		b = append(b, `,"version_type":"external_gte"`...)
	}
	if o.routing != "" {
		b = append(b, `,"routing":`...)
		b = appendJSONString(b, o.routing)
	}
	if pipeline != "" && !o.delete {
		b = append(b, `,"pipeline":`...)
		b = appendJSONString(b, pipeline)
	}
	b = append(b, "}}\n"...)
	if !o.delete {
		src := o.source
		if bytes.IndexByte(src, '\n') >= 0 || bytes.IndexByte(src, '\r') >= 0 {
			var c bytes.Buffer
			if err := json.Compact(&c, src); err != nil {
				return fmt.Errorf("document %s is not valid JSON: %w", o.id, err)
			}
			src = c.Bytes()
		}
		if len(bytes.TrimSpace(src)) == 0 {
			return fmt.Errorf("document %s has an empty source", o.id)
		}
		b = append(b, src...)
		b = append(b, '\n')
	}
	o.line = b
	return nil
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
			i++
		case c < 0x20:
			switch c {
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
		}
	}
	return append(b, '"')
}

// chunks splits ops into groups whose encoded size stays within limit
// bytes (a single larger op is sent alone).
func chunks(ops []*op, limit int) [][]*op {
	var out [][]*op
	start, size := 0, 0
	for i, o := range ops {
		if i > start && size+len(o.line) > limit {
			out = append(out, ops[start:i])
			start, size = i, 0
		}
		size += len(o.line)
	}
	if start < len(ops) {
		out = append(out, ops[start:])
	}
	return out
}

type bulkItem struct {
	ID     string `json:"_id"`
	Status int    `json:"status"`
	Result string `json:"result"`
	Error  *struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	} `json:"error"`
}

type bulkResponse struct {
	Errors bool                  `json:"errors"`
	Items  []map[string]bulkItem `json:"items"`
}

// send runs the ops in bulk requests of at most MaxBulkBytes, at most
// Concurrency at a time, and returns each op's outcome (and the item error
// of the rejected ones). A whole-request failure returns an error.
func (h *Handler) send(ctx context.Context, ops []*op) ([]outcome, []*ItemError, error) {
	outcomes := make([]outcome, len(ops))
	itemErrs := make([]*ItemError, len(ops))
	groups := chunks(ops, h.opts.MaxBulkBytes)
	sem := make(chan struct{}, h.opts.Concurrency)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	offset := 0
	for _, g := range groups {
		base := offset
		offset += len(g)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, nil, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := h.sendOne(ctx, g, outcomes[base:base+len(g)], itemErrs[base:base+len(g)])
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, nil, firstErr
	}
	return outcomes, itemErrs, nil
}

func (h *Handler) sendOne(ctx context.Context, ops []*op, outcomes []outcome, itemErrs []*ItemError) error {
	size := 0
	for _, o := range ops {
		size += len(o.line)
	}
	body := make([]byte, 0, size)
	for _, o := range ops {
		body = append(body, o.line...)
	}
	// The consumer's context also ends when its lease's deadline passes:
	// a holder deposed meanwhile must not write.
	if err := ctx.Err(); err != nil {
		return err
	}
	h.stats.requests.Add(1)
	h.stats.bytes.Add(int64(len(body)))
	req := esapi.BulkRequest{Body: bytes.NewReader(body), Refresh: h.opts.Refresh, Instrument: h.instr}
	res, err := req.Do(ctx, h.es)
	if err != nil {
		return fmt.Errorf("elastic: bulk request: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return &RequestError{Status: res.StatusCode, Body: string(b)}
	}
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("elastic: read bulk response: %w", err)
	}
	if allSucceeded(raw) {
		// Every item succeeded: no need to decode a thousand items.
		for i, o := range ops {
			outcomes[i] = done
			if o.delete {
				h.stats.deleted.Add(1)
			} else {
				h.stats.indexed.Add(1)
			}
		}
		return nil
	}
	var br bulkResponse
	if err := json.Unmarshal(raw, &br); err != nil {
		return fmt.Errorf("elastic: decode bulk response: %w", err)
	}
	if len(br.Items) != len(ops) {
		return fmt.Errorf("elastic: bulk response has %d items for %d actions", len(br.Items), len(ops))
	}
	for i, item := range br.Items {
		var it bulkItem
		for _, v := range item { // one key: index, create, update or delete
			it = v
		}
		outcomes[i], itemErrs[i] = h.classify(ops[i], it)
	}
	return nil
}

// classify maps a bulk item's result to what the handler does with it.
func (h *Handler) classify(o *op, it bulkItem) (outcome, *ItemError) {
	switch s := it.Status; {
	case s >= 200 && s < 300:
		if o.delete {
			h.stats.deleted.Add(1)
		} else {
			h.stats.indexed.Add(1)
		}
		return done, nil
	case s == http.StatusNotFound && o.delete:
		h.stats.deleted.Add(1)
		return done, nil
	case s == http.StatusConflict && o.hasVer:
		// A newer (or equal) version is already indexed.
		h.stats.conflicts.Add(1)
		return done, nil
	case s == http.StatusTooManyRequests || s >= 500:
		return retryable, nil
	default:
		e := &ItemError{ID: o.id, Status: s}
		if it.Error != nil {
			e.Type, e.Reason = it.Error.Type, it.Error.Reason
		}
		return rejected, e
	}
}

// allSucceeded reports whether a bulk response says "errors": false, read
// from its leading keys (Elasticsearch 8 writes "errors" first) without
// decoding the items. Anything unexpected returns false, and the caller
// decodes the whole response.
func allSucceeded(raw []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	for range 3 { // errors, took, items in some order: look at the first few keys
		t, err := dec.Token()
		if err != nil {
			return false
		}
		key, ok := t.(string)
		if !ok {
			return false
		}
		if key == "items" {
			return false
		}
		v, err := dec.Token()
		if err != nil {
			return false
		}
		if key == "errors" {
			b, ok := v.(bool)
			return ok && !b
		}
	}
	return false
}

var errNoID = errors.New(`elastic: payload has no "id" that is a number or a string`)
