package estest

import (
	"strconv"
	"strings"
)

var indexDocParams = []string{"routing", "pipeline", "timeout", "refresh", "version", "version_type", "if_seq_no",
	"if_primary_term", "op_type", "wait_for_active_shards", "require_alias", "require_data_stream",
	"include_source_on_error", "list_executed_pipelines"}

// longParam is RestRequest.paramAsLong.
func (rc *reqCtx) longParam(name string) (int64, bool, *esError) {
	v, ok := rc.q.get(name)
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false, errIllegalArgument("Failed to parse long parameter [%s] with value [%s]", name, v)
	}
	return n, true, nil
}

// writeOpFromParams reads the concurrency and routing parameters shared by
// the single-document write APIs.
func (rc *reqCtx) writeOpFromParams(kind string) (*writeOp, *esError) {
	op := &writeOp{kind: kind, index: rc.path["index"], versionType: "internal"}
	if id, ok := rc.path["id"]; ok {
		op.id, op.hasID = id, true
	}
	op.routing, _ = rc.q.get("routing")
	if p, ok := rc.q.get("pipeline"); ok {
		op.pipeline, op.hasPipeline = p, true
	}
	var err *esError
	if op.requireAlias, err = rc.boolParam("require_alias", false); err != nil {
		return nil, err
	}
	if op.version, op.hasVersion, err = rc.longParam("version"); err != nil {
		return nil, err
	}
	if vt, ok := rc.q.get("version_type"); ok {
		switch vt {
		case "internal", "external", "external_gte":
			op.versionType = vt
		case "external_gt":
			op.versionType = "external"
		case "force":
			return nil, errIllegalArgument("version type [force] may no longer be used")
		default:
			return nil, errIllegalArgument("No version type match [%s]", vt)
		}
	}
	if op.ifSeqNo, op.hasIfSeqNo, err = rc.longParam("if_seq_no"); err != nil {
		return nil, err
	}
	if op.hasIfSeqNo && op.ifSeqNo < 0 {
		return nil, errIllegalArgument("sequence numbers must be non negative. got [%d].", op.ifSeqNo)
	}
	if op.ifTerm, op.hasIfTerm, err = rc.longParam("if_primary_term"); err != nil {
		return nil, err
	}
	if op.hasIfTerm && op.ifTerm < 0 {
		return nil, errIllegalArgument("primary term must be non negative. got [%d]", op.ifTerm)
	}
	if err := rc.timeParam("timeout"); err != nil {
		return nil, err
	}
	return op, nil
}

// runWrite validates and executes a single-document write and renders it.
func (rc *reqCtx) runWrite(op *writeOp, refresh string) (int, any, *esError) {
	if msgs := op.validate(); len(msgs) > 0 {
		return 0, nil, errValidation(msgs...)
	}
	h := rc.h
	h.mu.Lock()
	now := h.now()
	res := h.execWrite(op, now)
	if res.err != nil {
		h.mu.Unlock()
		return 0, nil, res.err
	}
	var waits []waitTarget
	switch refresh {
	case "true":
		res.ix.refresh()
	case "wait_for":
		until, ch := res.ix.waitTarget(now)
		waits = append(waits, waitTarget{until, ch})
	}
	body := writeResponse(&res, refresh == "true" && res.result != "noop")
	h.mu.Unlock()
	h.waitForRefresh(rc, waits)
	return res.status, body, nil
}

func handleIndexDoc(rc *reqCtx) (int, any, *esError) {
	rc.allow(indexDocParams...)
	kind := "index"
	if _, ok := rc.path["id"]; !ok {
		kind = "create" // RestIndexAction.AutoIdHandler
	}
	if t, ok := rc.q.get("op_type"); ok {
		switch strings.ToLower(t) {
		case "create":
			kind = "create"
		case "index":
			kind = "index"
		default:
			return 0, nil, errIllegalArgument("opType must be 'create' or 'index', found: [%s]", t)
		}
	}
	return rc.indexDoc(kind)
}

func handleCreateDoc(rc *reqCtx) (int, any, *esError) {
	rc.allow(indexDocParams...)
	if t, ok := rc.q.get("op_type"); ok && strings.ToLower(t) != "create" {
		return 0, nil, errIllegalArgument("opType must be 'create', found: [%s]", t)
	}
	return rc.indexDoc("create")
}

func (rc *reqCtx) indexDoc(kind string) (int, any, *esError) {
	op, err := rc.writeOpFromParams(kind)
	if err != nil {
		return 0, nil, err
	}
	refresh, err := rc.refreshPolicy()
	if err != nil {
		return 0, nil, err
	}
	if len(rc.body) == 0 {
		return 0, nil, errBodyRequired()
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	op.source = rc.body
	return rc.runWrite(op, refresh)
}

func handleDeleteDoc(rc *reqCtx) (int, any, *esError) {
	rc.allow("routing", "timeout", "refresh", "version", "version_type", "if_seq_no", "if_primary_term", "wait_for_active_shards")
	op, err := rc.writeOpFromParams("delete")
	if err != nil {
		return 0, nil, err
	}
	refresh, err := rc.refreshPolicy()
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	return rc.runWrite(op, refresh)
}

func handleUpdateDoc(rc *reqCtx) (int, any, *esError) {
	rc.allow("wait_for_active_shards", "timeout", "refresh", "routing", "_source", "_source_includes", "_source_excludes",
		"retry_on_conflict", "if_seq_no", "if_primary_term", "require_alias", "include_source_on_error", "lang")
	if _, ok := rc.q.get("version"); ok {
		return 0, nil, errValidation("internal versioning can not be used for optimistic concurrency control. Please use `if_seq_no` and `if_primary_term` instead")
	}
	if _, ok := rc.q.get("version_type"); ok {
		return 0, nil, errValidation("internal versioning can not be used for optimistic concurrency control. Please use `if_seq_no` and `if_primary_term` instead")
	}
	op, err := rc.writeOpFromParams("update")
	if err != nil {
		return 0, nil, err
	}
	if _, err := rc.intParam("retry_on_conflict", 0); err != nil {
		return 0, nil, err
	}
	refresh, err := rc.refreshPolicy()
	if err != nil {
		return 0, nil, err
	}
	body, err := rc.requireBody()
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	u, err := updateFromObject(body)
	if err != nil {
		return 0, nil, err
	}
	op.update = u
	return rc.runWrite(op, refresh)
}

var getParams = []string{"refresh", "routing", "preference", "realtime", "stored_fields", "_source",
	"_source_includes", "_source_excludes", "version", "version_type"}

// needRouting fails a read by id without a routing when the index's mapping
// requires one.
func needRouting(rc *reqCtx, ix *index, id string) *esError {
	if r, _ := rc.q.get("routing"); r == "" && ix.mapping.routingRequired() {
		return errRoutingMissing(ix.name, id)
	}
	return nil
}

// docLookup reads one document for GET/HEAD/_source/_mget.
func (h *Handler) docLookup(ix *index, id string, realtime bool, refresh bool) *docVersion {
	now := h.now()
	if refresh {
		ix.refresh()
	}
	if realtime {
		return ix.live(id, now)
	}
	return ix.searcher(now)[id]
}

func handleGetDoc(rc *reqCtx) (int, any, *esError) {
	rc.allow(getParams...)
	realtime, err := rc.boolParam("realtime", true)
	if err != nil {
		return 0, nil, err
	}
	refresh, err := rc.boolParam("refresh", false)
	if err != nil {
		return 0, nil, err
	}
	sf, err := sourceFilterFromParams(rc)
	if err != nil {
		return 0, nil, err
	}
	if _, _, err := rc.longParam("version"); err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ix, err := h.resolveSingle(rc.path["index"])
	if err != nil {
		return 0, nil, err
	}
	id := rc.path["id"]
	if err := needRouting(rc, ix, id); err != nil {
		return 0, nil, err
	}
	d := h.docLookup(ix, id, realtime, refresh)
	if d == nil {
		return 404, obj("_index", ix.name, "_id", id, "found", false), nil
	}
	return 200, getResponse(ix, d, sf), nil
}

func getResponse(ix *index, d *docVersion, sf *sourceFilter) *object {
	o := obj("_index", ix.name, "_id", d.id, "_version", d.version, "_seq_no", d.seqNo, "_primary_term", d.primaryTerm)
	if d.routing != "" {
		o.set("_routing", d.routing)
	}
	o.set("found", true)
	if src := sf.apply(d); src != nil {
		o.set("_source", src)
	}
	return o
}

func handleGetSource(rc *reqCtx) (int, any, *esError) {
	rc.allow(getParams...)
	realtime, err := rc.boolParam("realtime", true)
	if err != nil {
		return 0, nil, err
	}
	refresh, err := rc.boolParam("refresh", false)
	if err != nil {
		return 0, nil, err
	}
	sf, err := sourceFilterFromParams(rc)
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ix, err := h.resolveSingle(rc.path["index"])
	if err != nil {
		return 0, nil, err
	}
	if err := needRouting(rc, ix, rc.path["id"]); err != nil {
		return 0, nil, err
	}
	d := h.docLookup(ix, rc.path["id"], realtime, refresh)
	if d == nil {
		return 0, nil, newErr(404, "resource_not_found_exception", "Document not found [%s]/[%s]", ix.name, rc.path["id"])
	}
	src := sf.apply(d)
	if src == nil {
		src = &object{}
	}
	return 200, src, nil
}

func handleMget(rc *reqCtx) (int, any, *esError) {
	rc.allow(getParams...)
	realtime, err := rc.boolParam("realtime", true)
	if err != nil {
		return 0, nil, err
	}
	refresh, err := rc.boolParam("refresh", false)
	if err != nil {
		return 0, nil, err
	}
	defSF, err := sourceFilterFromParams(rc)
	if err != nil {
		return 0, nil, err
	}
	body, err := rc.requireBody()
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	defIndex := rc.path["index"]
	defRouting, _ := rc.q.get("routing")
	type item struct {
		index, id, routing string
		sf                 *sourceFilter
	}
	var items []item
	for _, m := range body.M {
		switch m.Key {
		case "docs":
			arr, ok := m.Val.(*array)
			if !ok {
				return 0, nil, newErr(400, "parsing_exception", "docs array element should include an object")
			}
			for _, e := range arr.V {
				d, ok := e.(*object)
				if !ok {
					return 0, nil, newErr(400, "parsing_exception", "docs array element should include an object")
				}
				it := item{index: defIndex, routing: defRouting, sf: defSF}
				for _, f := range d.M {
					switch f.Key {
					case "_index":
						it.index = scalarText(f.Val)
					case "_id":
						it.id = scalarText(f.Val)
					case "_source":
						sf, err := sourceFilterFromValue(f.Val)
						if err != nil {
							return 0, nil, err
						}
						it.sf = sf
					case "routing", "_routing":
						it.routing = scalarText(f.Val)
					case "stored_fields", "version", "version_type":
					default:
						return 0, nil, newErr(400, "parsing_exception", "unknown key [%s] for a %s in [docs].", f.Key, tokenName(f.Val))
					}
				}
				items = append(items, it)
			}
		case "ids":
			arr, ok := m.Val.(*array)
			if !ok {
				return 0, nil, newErr(400, "parsing_exception", "ids array element should only contain ids")
			}
			for _, e := range arr.V {
				s, ok := e.(string)
				if !ok {
					if n, isNum := e.(interface{ String() string }); isNum {
						s = n.String()
					} else {
						return 0, nil, newErr(400, "parsing_exception", "ids array element should only contain ids")
					}
				}
				items = append(items, item{index: defIndex, id: s, routing: defRouting, sf: defSF})
			}
		default:
			return 0, nil, newErr(400, "parsing_exception", "unknown key [%s] for a %s, expected [docs] or [ids]", m.Key, tokenName(m.Val))
		}
	}
	if len(items) == 0 {
		return 0, nil, errValidation("no documents to get")
	}
	var msgs []string
	for i, it := range items {
		if it.index == "" {
			msgs = append(msgs, "index is missing for doc "+strconv.Itoa(i))
		}
		if it.id == "" {
			msgs = append(msgs, "id is missing for doc "+strconv.Itoa(i))
		}
	}
	if len(msgs) > 0 {
		return 0, nil, errValidation(msgs...)
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	docs := make([]any, len(items))
	for i, it := range items {
		ix, err := h.resolveSingle(it.index)
		if err != nil {
			e := obj("_index", it.index, "_id", it.id)
			e.set("error", err.body().M[0].Val)
			docs[i] = e
			continue
		}
		if it.routing == "" && ix.mapping.routingRequired() {
			e := obj("_index", ix.name, "_id", it.id)
			e.set("error", errRoutingMissing(ix.name, it.id).body().M[0].Val)
			docs[i] = e
			continue
		}
		d := h.docLookup(ix, it.id, realtime, refresh)
		if d == nil {
			docs[i] = obj("_index", ix.name, "_id", it.id, "found", false)
			continue
		}
		docs[i] = getResponse(ix, d, it.sf)
	}
	return 200, obj("docs", docs), nil
}

// ---- _source filtering ----

type sourceFilter struct {
	disabled bool
	includes []string
	excludes []string
}

func (sf *sourceFilter) apply(d *docVersion) any {
	if sf != nil && sf.disabled {
		return nil
	}
	if sf == nil || (len(sf.includes) == 0 && len(sf.excludes) == 0) {
		return rawSource(d.source)
	}
	return filterObject(d.tree(), "", sf.includes, sf.excludes)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func sourceFilterFromParams(rc *reqCtx) (*sourceFilter, *esError) {
	var sf *sourceFilter
	if v, ok := rc.q.get("_source"); ok {
		switch v {
		case "false":
			return &sourceFilter{disabled: true}, nil
		case "true", "":
			sf = &sourceFilter{}
		default:
			sf = &sourceFilter{includes: splitList(v)}
		}
	}
	if v, ok := rc.q.get("_source_includes"); ok {
		if sf == nil {
			sf = &sourceFilter{}
		}
		sf.includes = append(sf.includes, splitList(v)...)
	}
	if v, ok := rc.q.get("_source_excludes"); ok {
		if sf == nil {
			sf = &sourceFilter{}
		}
		sf.excludes = append(sf.excludes, splitList(v)...)
	}
	return sf, nil
}

func stringList(v any) ([]string, bool) {
	switch t := v.(type) {
	case string:
		return []string{t}, true
	case *array:
		var out []string
		for _, e := range t.V {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

func sourceFilterFromValue(v any) (*sourceFilter, *esError) {
	switch t := v.(type) {
	case bool:
		if !t {
			return &sourceFilter{disabled: true}, nil
		}
		return &sourceFilter{}, nil
	case string, *array:
		l, ok := stringList(t)
		if !ok {
			return nil, newErr(400, "parsing_exception", "Unknown key for a VALUE_NUMBER in [_source].")
		}
		return &sourceFilter{includes: l}, nil
	case *object:
		sf := &sourceFilter{}
		for _, m := range t.M {
			l, ok := stringList(m.Val)
			if !ok {
				return nil, newErr(400, "parsing_exception", "Unknown key for a %s in [%s].", tokenName(m.Val), m.Key)
			}
			switch m.Key {
			case "includes", "include":
				sf.includes = l
			case "excludes", "exclude":
				sf.excludes = l
			default:
				return nil, newErr(400, "parsing_exception", "Unknown key for a %s in [%s].", tokenName(m.Val), m.Key)
			}
		}
		return sf, nil
	}
	return nil, newErr(400, "parsing_exception", "Expected one of [VALUE_BOOLEAN, START_OBJECT] but found [%s]", tokenName(v))
}

// filterObject keeps the paths matching includes (all when empty) and drops
// those matching excludes, like XContentMapValues.filter.
func filterObject(o *object, prefix string, includes, excludes []string) *object {
	out := &object{}
	for _, m := range o.M {
		p := prefix + m.Key
		if matchesAny(excludes, p) {
			continue
		}
		if sub, ok := m.Val.(*object); ok {
			if len(includes) == 0 || matchesAny(includes, p) {
				out.M = append(out.M, member{Key: m.Key, Val: filterObject(sub, p+".", nil, excludes)})
				continue
			}
			if couldMatchBelow(includes, p) {
				f := filterObject(sub, p+".", includes, excludes)
				if len(f.M) > 0 {
					out.M = append(out.M, member{Key: m.Key, Val: f})
				}
			}
			continue
		}
		if len(includes) == 0 || matchesAny(includes, p) {
			out.M = append(out.M, member{Key: m.Key, Val: m.Val})
		}
	}
	return out
}

func matchesAny(patterns []string, p string) bool {
	for _, pat := range patterns {
		if pat == p || globMatch(pat, p) || strings.HasPrefix(p, pat+".") {
			return true
		}
	}
	return false
}

func couldMatchBelow(patterns []string, p string) bool {
	for _, pat := range patterns {
		if strings.HasPrefix(pat, p+".") || strings.HasPrefix(pat, "*") || (strings.Contains(pat, "*") && globMatch(pat[:strings.Index(pat, "*")]+"*", p+".")) {
			return true
		}
	}
	return false
}
