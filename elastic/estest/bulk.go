package estest

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	h.mu.Lock()
	now := h.now()
	items := make([]any, len(ops))
	errors := false
	touched := map[*index]bool{}
	results := make([]writeResult, len(ops))
	for i, op := range ops {
		results[i] = h.execWrite(op, now)
		if results[i].ix != nil && results[i].err == nil {
			touched[results[i].ix] = true
		}
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
	for i, op := range ops {
		res := &results[i]
		var item *object
		if res.err != nil {
			errors = true
			var id any = res.id
			if res.id == "" {
				id = nil
			}
			item = obj("_index", res.index, "_id", id, "status", res.err.status, "error", res.err.inner())
		} else {
			item = writeResponse(res, refresh == "true" && res.result != "noop")
			item.set("status", res.status)
		}
		items[i] = obj(op.kind, item)
	}
	h.mu.Unlock()
	h.waitForRefresh(rc, waits)
	return 200, obj("errors", errors, "took", rc.tookMillis(), "items", items), nil
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
			op, err := parseActionLine(slice, line, defIndex, defRouting, defPipeline, hasDefPipeline, defRequireAlias)
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
			cur.source = append([]byte{}, slice...)
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

func parseActionLine(slice []byte, line int, defIndex, defRouting, defPipeline string, hasDefPipeline, defRequireAlias bool) (*writeOp, *esError) {
	// V8 parsing: trailing data after the action object is tolerated
	// (a deprecation warning in Elasticsearch), a syntax error is not.
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
	action := o.M[0].Key
	switch action {
	case "create", "index", "update", "delete":
	default:
		return nil, malformed(line, "expected field [create], [delete], [index] or [update] but found [%s]", action)
	}
	op := &writeOp{kind: action, index: defIndex, routing: defRouting, versionType: "internal", requireAlias: defRequireAlias}
	if hasDefPipeline {
		op.pipeline, op.hasPipeline = defPipeline, true
	}
	var opType string
	hasVersionType := false
	switch pv := o.M[0].Val.(type) {
	case *object:
		for _, m := range pv.M {
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
	default:
		return nil, malformed(line, "expected START_OBJECT or END_OBJECT but found [%s]", tokenName(pv))
	}
	if action == "index" && opType == "create" {
		op.kind = "create"
	}
	if action == "update" && (op.hasVersion || hasVersionType) {
		return nil, errIllegalArgument("Update requests do not support versioning. Please use `if_seq_no` and `if_primary_term` instead")
	}
	return op, nil
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
