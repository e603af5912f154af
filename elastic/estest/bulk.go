package estest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

var bulkParams = []string{"wait_for_active_shards", "refresh", "routing", "timeout", "pipeline", "_source",
	"_source_includes", "_source_excludes", "require_alias", "require_data_stream", "list_executed_pipelines", "include_source_on_error"}

func handleBulk(rc *reqCtx) (int, any, *esError) {
	rc.allow(bulkParams...)
	defIndex := rc.path["index"]
	defRouting, _ := rc.q.get("routing")
	defPipeline, hasDefPipeline := rc.q.get("pipeline")
	requireAlias, err := rc.boolParam("require_alias", false)
	if err != nil {
		return 0, nil, err
	}
	refresh, err := rc.refreshPolicy()
	if err != nil {
		return 0, nil, err
	}
	if err := rc.timeParam("timeout"); err != nil {
		return 0, nil, err
	}
	if len(rc.body) == 0 {
		return 0, nil, errBodyRequired()
	}
	ops, perr := parseBulk(rc.body, defIndex, defRouting, defPipeline, hasDefPipeline, requireAlias)
	if perr != nil {
		return 0, nil, perr
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	if err := validateBulk(ops); err != nil {
		return 0, nil, err
	}

	h := rc.h
	if h.takeDropBulk() {
		// The node fails halfway: half the actions are applied, and the
		// connection goes down without an answer.
		h.mu.Lock()
		now := h.now()
		for _, op := range ops[:len(ops)/2] {
			h.execWrite(op, now)
		}
		h.mu.Unlock()
		panic(http.ErrAbortHandler)
	}
	h.mu.Lock()
	now := h.now()
	errors, ingested := false, false
	touched := map[*index]bool{}
	results := make([]writeResult, len(ops))
	for i, op := range ops {
		results[i] = h.execWrite(op, now)
		if results[i].ix != nil && results[i].err == nil {
			touched[results[i].ix] = true
		}
		ingested = ingested || results[i].ingested
	}
	// ingest_took: the pipelines' time, there when a document named one.
	ingestTook := int64(-1)
	if ingested {
		ingestTook = 0
	}
	var waits []waitTarget
	for ix := range touched {
		switch refresh {
		case "true":
			ix.refresh()
		case "wait_for":
			until, ch := ix.waitTarget(now)
			waits = append(waits, waitTarget{until, ch})
		}
	}
	for i := range results {
		if results[i].err != nil {
			errors = true
		}
	}
	if fp, ok := rc.q.get("filter_path"); ok && fp != "" {
		items := bulkItemTree(ops, results, refresh == "true")
		h.mu.Unlock()
		h.waitForRefresh(rc, waits)
		out := obj("errors", errors, "took", rc.tookMillis())
		if ingestTook >= 0 {
			out.set("ingest_took", ingestTook)
		}
		out.set("items", items)
		return 200, out, nil
	}
	buf := renderBulkItems(ops, results, refresh == "true")
	h.mu.Unlock()
	h.waitForRefresh(rc, waits)
	return 200, bulkResponse(buf, errors, rc.tookMillis(), ingestTook), nil
}

// rawResponse is a response body already rendered.
type rawResponse []byte

// bulkHeadroom is the room renderBulkItems leaves in front of the items
// for the head of the response,
// {"errors":false,"took":N,"ingest_took":N,"items":.
const bulkHeadroom = 96

// bulkResponse completes the rendered items into the body writeJSON gives
// for obj("errors", errors, "took", took, "items", items), with
// "ingest_took" before the items when ingestTook is not negative (as
// BulkResponse writes it when the request went through ingest).
func bulkResponse(buf []byte, errors bool, took, ingestTook int64) rawResponse {
	head := make([]byte, 0, bulkHeadroom)
	head = append(head, `{"errors":`...)
	head = strconv.AppendBool(head, errors)
	head = append(head, `,"took":`...)
	head = strconv.AppendInt(head, took, 10)
	if ingestTook >= 0 {
		head = append(head, `,"ingest_took":`...)
		head = strconv.AppendInt(head, ingestTook, 10)
	}
	head = append(head, `,"items":`...)
	start := bulkHeadroom - len(head)
	copy(buf[start:], head)
	return append(buf[start:], '}')
}

// bulkItemTree is the items array as a JSON tree, for responses that
// filter_path reshapes.
func bulkItemTree(ops []*writeOp, results []writeResult, refreshed bool) []any {
	items := make([]any, len(ops))
	for i, op := range ops {
		items[i] = obj(op.kind, bulkItem(&results[i], refreshed))
	}
	return items
}

func bulkItem(res *writeResult, refreshed bool) *object {
	if res.err != nil {
		var id any = res.id
		if res.id == "" {
			id = nil
		}
		return obj("_index", res.index, "_id", id, "status", res.err.status, "error", res.err.inner())
	}
	item := writeResponse(res, refreshed && res.result != "noop")
	item.set("status", res.status)
	return item
}

// renderBulkItems writes the items array the way writeJSON writes
// bulkItemTree, without building the tree.
// The items start at bulkHeadroom, for bulkResponse.
func renderBulkItems(ops []*writeOp, results []writeResult, refreshed bool) []byte {
	b := bytes.NewBuffer(make([]byte, bulkHeadroom, bulkHeadroom+3+len(ops)*(200+len(ops[0].index))))
	b.WriteByte('[')
	for i, op := range ops {
		if i > 0 {
			b.WriteByte(',')
		}
		res := &results[i]
		if res.err != nil {
			writeJSON(b, obj(op.kind, bulkItem(res, refreshed)))
			continue
		}
		b.WriteString(`{"`)
		b.WriteString(op.kind) // create, index, update or delete: nothing to escape
		b.WriteString(`":{"_index":`)
		writeString(b, res.index)
		b.WriteString(`,"_id":`)
		writeString(b, res.id)
		b.WriteString(`,"_version":`)
		b.Write(strconv.AppendInt(b.AvailableBuffer(), res.version, 10))
		b.WriteString(`,"result":`)
		writeString(b, res.result)
		if res.result == "noop" {
			b.WriteString(`,"_shards":{"total":0,"successful":0,"failed":0}`)
		} else {
			if refreshed {
				b.WriteString(`,"forced_refresh":true`)
			}
			b.WriteString(`,"_shards":{"total":`)
			b.Write(strconv.AppendInt(b.AvailableBuffer(), int64(1+res.ix.replicas), 10))
			b.WriteString(`,"successful":1,"failed":0}`)
		}
		b.WriteString(`,"_seq_no":`)
		b.Write(strconv.AppendInt(b.AvailableBuffer(), res.seqNo, 10))
		b.WriteString(`,"_primary_term":`)
		b.Write(strconv.AppendInt(b.AvailableBuffer(), primaryTerm, 10))
		b.WriteString(`,"status":`)
		b.Write(strconv.AppendInt(b.AvailableBuffer(), int64(res.status), 10))
		b.WriteString(`}}`)
	}
	b.WriteByte(']')
	return b.Bytes()
}

func validateBulk(ops []*writeOp) *esError {
	if len(ops) == 0 {
		return errValidation("no requests added")
	}
	var msgs []string
	for _, op := range ops {
		if op.index == "" {
			msgs = append(msgs, "index is missing")
		}
		msgs = append(msgs, op.validate()...)
	}
	if len(msgs) > 0 {
		return errValidation(msgs...)
	}
	return nil
}

// parseBulk is BulkRequestParser (8.x, REST API version 8).
func parseBulk(data []byte, defIndex, defRouting, defPipeline string, hasDefPipeline, defRequireAlias bool) ([]*writeOp, *esError) {
	var ops []*writeOp
	var cur *writeOp
	var lastIndex any // the last "_index" of an action line, reused while it repeats
	line := 0
	from := 0
	for {
		next := bytes.IndexByte(data[from:], '\n')
		if next < 0 {
			if from != len(data) {
				return nil, errIllegalArgument("The bulk request must be terminated by a newline [\\n]")
			}
			break
		}
		next += from
		line++
		slice := data[from:next]
		from = next + 1
		if cur == nil {
			op, err := parseActionLine(slice, line, defIndex, defRouting, defPipeline, hasDefPipeline, defRequireAlias, &lastIndex)
			if err != nil {
				return nil, err
			}
			if op == nil {
				continue
			}
			if op.kind == "delete" {
				ops = append(ops, op)
				continue
			}
			cur = op
			continue
		}
		if len(slice) > 0 && slice[len(slice)-1] == '\r' {
			slice = slice[:len(slice)-1]
		}
		switch cur.kind {
		case "index", "create":
			// execIndex copies the source it keeps; rc.body is not reused.
			cur.source = slice
		case "update":
			u, err := parseUpdateBody(slice)
			if err != nil {
				return nil, err
			}
			cur.update = u
		}
		ops = append(ops, cur)
		cur = nil
	}
	return ops, nil
}

func malformed(line int, format string, a ...any) *esError {
	return errIllegalArgument("Malformed action/metadata line [%d], %s", line, fmt.Sprintf(format, a...))
}

func parseActionLine(slice []byte, line int, defIndex, defRouting, defPipeline string, hasDefPipeline, defRequireAlias bool, lastIndex *any) (*writeOp, *esError) {
	// V8 parsing: trailing data after the action object is tolerated
	// (a deprecation warning in Elasticsearch), a syntax error is not.
	var buf [8]member
	action, params, id, hasID, fast := scanActionLine(slice, buf[:0], lastIndex)
	if !fast {
		v, ok, err := parseJSON(slice, true)
		if err != nil {
			return nil, errFromParse(err)
		}
		if !ok {
			return nil, nil // blank line
		}
		o, isObj := v.(*object)
		if !isObj {
			return nil, malformed(line, "expected START_OBJECT but found [%s]", tokenName(v))
		}
		if len(o.M) == 0 {
			return nil, malformed(line, "expected FIELD_NAME but found [END_OBJECT]")
		}
		action = o.M[0].Key
		switch action {
		case "create", "index", "update", "delete":
		default:
			return nil, malformed(line, "expected field [create], [delete], [index] or [update] but found [%s]", action)
		}
		pv, isObj := o.M[0].Val.(*object)
		if !isObj {
			return nil, malformed(line, "expected START_OBJECT or END_OBJECT but found [%s]", tokenName(o.M[0].Val))
		}
		params = pv.M
	}
	op := &writeOp{kind: action, index: defIndex, routing: defRouting, versionType: "internal", requireAlias: defRequireAlias}
	if hasDefPipeline {
		op.pipeline, op.hasPipeline = defPipeline, true
	}
	if hasID {
		// a string "_id" the fast path kept out of params; setting it
		// first is the same, as no other parameter depends on it
		op.id, op.hasID = id, true
	}
	var opType string
	hasVersionType := false
	{
		for _, m := range params {
			switch val := m.Val.(type) {
			case nil:
				continue
			case *array:
				return nil, malformed(line, "expected a simple value for field [%s] but found [START_ARRAY]", m.Key)
			case *object:
				if m.Key == "dynamic_templates" || m.Key == "_source" {
					continue
				}
				return nil, malformed(line, "expected a simple value for field [%s] but found [START_OBJECT]", m.Key)
			default:
				text := scalarText(val)
				switch m.Key {
				case "_index":
					op.index = text
				case "_id":
					op.id, op.hasID = text, true
				case "routing":
					op.routing = text
				case "op_type":
					opType = text
				case "version":
					n, err := longValue(val)
					if err != nil {
						return nil, err
					}
					op.version, op.hasVersion = n, true
				case "version_type":
					switch text {
					case "internal", "external", "external_gte":
						op.versionType = text
					case "external_gt":
						op.versionType = "external"
					case "force":
						return nil, errIllegalArgument("version type [force] may no longer be used")
					default:
						return nil, errIllegalArgument("No version type match [%s]", text)
					}
					hasVersionType = true
				case "if_seq_no":
					n, err := longValue(val)
					if err != nil {
						return nil, err
					}
					if n < 0 && n != -2 {
						return nil, errIllegalArgument("sequence numbers must be non negative. got [%d].", n)
					}
					op.ifSeqNo, op.hasIfSeqNo = n, n != -2
				case "if_primary_term":
					n, err := longValue(val)
					if err != nil {
						return nil, err
					}
					if n < 0 {
						return nil, errIllegalArgument("primary term must be non negative. got [%d]", n)
					}
					op.ifTerm, op.hasIfTerm = n, n != 0
				case "retry_on_conflict":
					if _, err := longValue(val); err != nil {
						return nil, err
					}
				case "pipeline":
					op.pipeline, op.hasPipeline = text, true
				case "_source":
				case "require_alias":
					b, err := booleanValue(val)
					if err != nil {
						return nil, err
					}
					op.requireAlias = b
				case "require_data_stream", "list_executed_pipelines":
					if _, err := booleanValue(val); err != nil {
						return nil, err
					}
				default:
					return nil, errIllegalArgument("Action/metadata line [%d] contains an unknown parameter [%s]", line, m.Key)
				}
			}
		}
	}
	if action == "index" && opType == "create" {
		op.kind = "create"
	}
	if action == "update" && (op.hasVersion || hasVersionType) {
		return nil, errIllegalArgument("Update requests do not support versioning. Please use `if_seq_no` and `if_primary_term` instead")
	}
	return op, nil
}

// scanActionLine reads the common shape of an action line,
// {"index":{"_index":"i","_id":"1",...}} with string and integer values
// and nothing to unescape, without building a JSON tree. It reports false
// for anything else (whitespace, escapes, other value types, duplicate
// keys, unknown actions), which parseJSON then reads. A string "_id" is
// returned apart from the other parameters; a string "_index" equal to
// *lastIndex reuses it.
func scanActionLine(b []byte, params []member, lastIndex *any) (action string, _ []member, id string, hasID, ok bool) {
	fail := func() (string, []member, string, bool, bool) { return "", nil, "", false, false }
	if len(b) < 2 || b[0] != '{' || b[1] != '"' {
		return fail()
	}
	i := 2
	j := bytes.IndexByte(b[i:], '"')
	if j < 0 {
		return fail()
	}
	switch string(b[i : i+j]) {
	case "index":
		action = "index"
	case "create":
		action = "create"
	case "update":
		action = "update"
	case "delete":
		action = "delete"
	default:
		return fail()
	}
	i += j + 1
	if i+2 > len(b) || b[i] != ':' || b[i+1] != '{' {
		return fail()
	}
	i += 2
	first := true
	for i < len(b) && b[i] != '}' {
		if !first {
			if b[i] != ',' {
				return fail()
			}
			i++
		}
		first = false
		if i >= len(b) || b[i] != '"' {
			return fail()
		}
		ks, ke, good := scanPlainString(b, i)
		if !good || ke >= len(b) || b[ke] != ':' {
			return fail()
		}
		var key string
		switch kb := b[ks : ke-1]; string(kb) {
		case "_index":
			key = "_index"
		case "_id":
			key = "_id"
		case "routing":
			key = "routing"
		case "version":
			key = "version"
		case "version_type":
			key = "version_type"
		default:
			key = string(kb)
		}
		if key == "_id" && hasID {
			return fail()
		}
		for _, m := range params {
			if m.Key == key {
				return fail()
			}
		}
		i = ke + 1
		if i >= len(b) {
			return fail()
		}
		var val any
		switch c := b[i]; {
		case c == '"':
			vs, ve, good := scanPlainString(b, i)
			if !good {
				return fail()
			}
			vb := b[vs : ve-1]
			i = ve
			switch key {
			case "_id":
				id, hasID = string(vb), true
				continue
			case "_index":
				if last, isString := (*lastIndex).(string); isString && last == string(vb) {
					val = *lastIndex
				} else {
					val = string(vb)
					*lastIndex = val
				}
			default:
				val = string(vb)
			}
		case c == '-' || c >= '0' && c <= '9':
			k := i
			if b[k] == '-' {
				k++
			}
			d := k
			for k < len(b) && b[k] >= '0' && b[k] <= '9' {
				k++
			}
			if k == d || k-d > 1 && b[d] == '0' || k >= len(b) || b[k] != ',' && b[k] != '}' {
				return fail()
			}
			if key == "_id" && hasID {
				return fail()
			}
			val, i = json.Number(string(b[i:k])), k
		default:
			return fail()
		}
		params = append(params, member{Key: key, Val: val})
	}
	if i+1 >= len(b) || b[i] != '}' || b[i+1] != '}' {
		return fail()
	}
	return action, params, id, hasID, true
}

// scanPlainString reads the JSON string opening at b[i] when it has no
// escapes or control characters: its content is b[start:end-1], end is just
// past the closing quote.
func scanPlainString(b []byte, i int) (start, end int, ok bool) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return i + 1, j + 1, true
		case c == '\\' || c < 0x20:
			return 0, 0, false
		}
	}
	return 0, 0, false
}

func scalarText(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return string(t)
	case bool:
		return strconv.FormatBool(t)
	}
	return ""
}

// longValue is XContentParser.longValue(): numbers, numeric strings.
func longValue(v any) (int64, *esError) {
	switch t := v.(type) {
	case json.Number:
		if n, err := strconv.ParseInt(string(t), 10, 64); err == nil {
			return n, nil
		}
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil {
			return 0, errIllegalArgument("For input string: \"%s\"", t)
		}
		return int64(f), nil
	case string:
		if n, err := strconv.ParseInt(t, 10, 64); err == nil {
			return n, nil
		}
		return 0, errIllegalArgument("For input string: \"%s\"", t)
	}
	return 0, newErr(400, "x_content_parse_exception", "Current token (%s) not numeric, can not use numeric value accessors", jacksonToken(v))
}

func booleanValue(v any) (bool, *esError) {
	switch t := v.(type) {
	case bool:
		return t, nil
	case string:
		switch t {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return false, errIllegalArgument("Failed to parse value [%s] as only [true] or [false] are allowed.", t)
	}
	return false, newErr(400, "x_content_parse_exception", "Current token (%s) not of boolean type", jacksonToken(v))
}

// parseUpdateBody is UpdateRequest.fromXContent.
func parseUpdateBody(data []byte) (*updateBody, *esError) {
	v, ok, err := parseJSON(data, false)
	if err != nil {
		return nil, errFromParse(err)
	}
	if !ok {
		return nil, newErr(400, "x_content_parse_exception", "[1:1] [UpdateRequest] Expected START_OBJECT but was: null")
	}
	o, isObj := v.(*object)
	if !isObj {
		return nil, newErr(400, "x_content_parse_exception", "[1:1] [UpdateRequest] Expected START_OBJECT but was: %s", tokenName(v))
	}
	return updateFromObject(o)
}

func updateFromObject(o *object) (*updateBody, *esError) {
	u := &updateBody{detectNoop: true}
	for _, m := range o.M {
		switch m.Key {
		case "doc":
			d, ok := m.Val.(*object)
			if !ok {
				return nil, errParse(m.Pos, "[UpdateRequest] failed to parse field [doc]")
			}
			u.doc = d
		case "upsert":
			d, ok := m.Val.(*object)
			if !ok {
				return nil, errParse(m.Pos, "[UpdateRequest] failed to parse field [upsert]")
			}
			u.upsert = d
		case "doc_as_upsert", "detect_noop", "scripted_upsert":
			b, ok := m.Val.(bool)
			if !ok {
				if s, isStr := m.Val.(string); isStr && (s == "true" || s == "false") {
					b, ok = s == "true", true
				}
			}
			if !ok {
				return nil, errParse(m.Pos, "[UpdateRequest] failed to parse field [%s]", m.Key)
			}
			switch m.Key {
			case "doc_as_upsert":
				u.docAsUpsert = b
			case "detect_noop":
				u.detectNoop = b
			}
		case "script":
			u.script = true
		case "_source":
			u.source = m.Val
		default:
			return nil, errParse(pos{m.Pos.line, 2}, "[UpdateRequest] unknown field [%s]", m.Key)
		}
	}
	return u, nil
}
