package estest

import (
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

var searchParams = []string{"batched_reduce_size", "pre_filter_shard_size", "max_concurrent_shard_requests",
	"allow_partial_search_results", "search_type", "request_cache", "scroll", "routing", "preference",
	"ccs_minimize_roundtrips", "q", "df", "analyzer", "analyze_wildcard", "lenient", "default_operator", "explain",
	"version", "seq_no_primary_term", "timeout", "terminate_after", "stored_fields", "docvalue_fields", "from", "size",
	"sort", "track_scores", "track_total_hits", "_source", "_source_includes", "_source_excludes", "stats",
	"suggest_field", "suggest_text", "suggest_size", "suggest_mode", "typed_keys", "rest_total_hits_as_int",
	"ignore_unavailable", "allow_no_indices", "expand_wildcards", "ignore_throttled", "include_named_queries_score",
	"force_synthetic_source"}

// searchReq is a parsed search request.
type searchReq struct {
	query          query
	postFilter     query
	from, size     int
	sorts          []sortSpec
	searchAfter    *array
	sf             *sourceFilter
	trackTotal     int // -1: exact; 0: off
	trackScores    bool
	version        bool
	seqNoTerm      bool
	minScore       *float64
	totalAsInt     bool
	terminateAfter int
}

type sortSpec struct {
	field        string
	desc         bool
	missingFirst bool
	missing      any
	unmappedType string
	mode         string
}

func handleSearch(rc *reqCtx) (int, any, *esError) {
	rc.allow(searchParams...)
	sr := &searchReq{size: 10, trackTotal: 10000}
	body, _, err := rc.optionalBody()
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		if err := sr.parseBody(body); err != nil {
			return 0, nil, err
		}
	}
	if err := sr.applyParams(rc); err != nil {
		return 0, nil, err
	}
	allowNo, ignore, err := rc.readOptions(true, false)
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	if sr.query == nil {
		sr.query = &matchAll{boost: 1}
	}
	if sr.size < 0 {
		return 0, nil, errIllegalArgument("[size] parameter cannot be negative, found [%d]", sr.size)
	}
	if sr.from < 0 {
		return 0, nil, errIllegalArgument("[from] parameter cannot be negative, found [%d]", sr.from)
	}
	if sr.searchAfter != nil {
		if sr.from > 0 {
			return 0, nil, errValidation("[from] parameter must be set to 0 when [search_after] is used")
		}
		if len(sr.sorts) == 0 {
			return 0, nil, errValidation("[search_after] cannot be used without [sort]")
		}
	}

	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ixs, err := h.resolveRead(rc.path["index"], allowNo, ignore)
	if err != nil {
		return 0, nil, err
	}
	now := h.now()
	var failures []*object
	var failErr *esError
	shards := 0
	var live []*index // the indices whose shard checks passed
	for _, ix := range ixs {
		shards += ix.shards
		if e := sr.checkIndex(ix); e != nil {
			failures = append(failures, obj("shard", 0, "index", ix.name, "node", nodeID, "reason", e.inner()))
			failErr = searchPhaseError(ix.name, e)
			continue
		}
		live = append(live, ix)
	}
	if len(failures) > 0 && len(failures) == len(ixs) {
		if len(failures) > 1 {
			failErr.meta[2].Val = toAnySlice(failures)
		}
		return 0, nil, failErr
	}
	scoreSorted := len(sr.sorts) == 0
	for _, s := range sr.sorts {
		if s.field == "_score" {
			scoreSorted = true
		}
	}
	trackScores := scoreSorted || sr.trackScores
	var res *searchResult
	if len(ixs) == 1 && len(live) == 1 && !trackScores && sr.terminateAfter == 0 && !h.fullSort {
		res, err = sr.searchSorted(&h.mu, live[0], now)
	} else {
		res, err = sr.searchAll(live, ixs, now, trackScores, h.fullSort)
	}
	if err != nil {
		return 0, nil, err
	}
	hits, total, maxScore, terminatedEarly := res.hits, res.total, res.maxScore, res.terminatedEarly
	out := make([]any, len(hits))
	for i, hh := range hits {
		o := obj("_index", hh.ix.name, "_id", hh.d.id)
		if sr.version {
			o.set("_version", hh.d.version)
		}
		if sr.seqNoTerm {
			o.set("_seq_no", hh.d.seqNo)
			o.set("_primary_term", hh.d.primaryTerm)
		}
		if trackScores {
			o.set("_score", hh.score)
		} else {
			o.set("_score", nil)
		}
		if hh.d.routing != "" {
			o.set("_routing", hh.d.routing)
		}
		if src := sr.sf.apply(hh.d); src != nil {
			o.set("_source", src)
		}
		if len(sr.sorts) > 0 {
			vals := make([]any, len(hh.keys))
			for k, key := range hh.keys {
				vals[k] = key.out
			}
			o.set("sort", vals)
		}
		out[i] = o
	}
	hitsObj := &object{}
	switch {
	case sr.totalAsInt:
		hitsObj.set("total", total)
	case sr.trackTotal == 0:
	case sr.trackTotal > 0 && total > sr.trackTotal:
		hitsObj.set("total", obj("value", sr.trackTotal, "relation", "gte"))
	default:
		hitsObj.set("total", obj("value", total, "relation", "eq"))
	}
	hitsObj.set("max_score", maxScore)
	hitsObj.set("hits", out)
	shardsObj := obj("total", shards, "successful", shards-len(failures), "skipped", 0, "failed", len(failures))
	if len(failures) > 0 {
		shardsObj.set("failures", toAnySlice(failures))
	}
	result := obj("took", rc.tookMillis(), "timed_out", false)
	if sr.terminateAfter > 0 {
		result.set("terminated_early", terminatedEarly)
	}
	result.set("_shards", shardsObj)
	result.set("hits", hitsObj)
	return 200, result, nil
}

// docOrder lists a reader's documents in Lucene doc id order (a new
// version of a document is appended, like in Lucene).
func docOrder(m map[string]*docVersion) []*docVersion {
	out := make([]*docVersion, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seqNo < out[j].seqNo })
	return out
}

func toAnySlice(os []*object) []any {
	out := make([]any, len(os))
	for i, o := range os {
		out[i] = o
	}
	return out
}

func (sr *searchReq) parseBody(body *object) *esError {
	for _, m := range body.M {
		switch m.Key {
		case "query":
			q, err := parseQuery(m.Val, m.Pos)
			if err != nil {
				return err
			}
			sr.query = q
		case "post_filter":
			q, err := parseQuery(m.Val, m.Pos)
			if err != nil {
				return err
			}
			sr.postFilter = q
		case "from", "size", "terminate_after":
			n, ok := m.Val.(json.Number)
			i, err := strconv.Atoi(string(n))
			if !ok || err != nil {
				return parsingErr(m.Pos, "[%s] failed to parse field [%s]", m.Key, m.Key)
			}
			switch m.Key {
			case "from":
				sr.from = i
			case "size":
				sr.size = i
			default:
				sr.terminateAfter = i
			}
		case "sort":
			s, err := parseSort(m.Val, m.Pos)
			if err != nil {
				return err
			}
			sr.sorts = s
		case "search_after":
			a, ok := m.Val.(*array)
			if !ok {
				return parsingErr(m.Pos, "Unknown key for a %s in [search_after].", tokenName(m.Val))
			}
			sr.searchAfter = a
		case "_source":
			sf, err := sourceFilterFromValue(m.Val)
			if err != nil {
				return err
			}
			sr.sf = sf
		case "track_total_hits":
			switch t := m.Val.(type) {
			case bool:
				if t {
					sr.trackTotal = -1
				} else {
					sr.trackTotal = 0
				}
			case json.Number:
				n, _ := strconv.Atoi(string(t))
				if n == math.MaxInt32 {
					n = -1
				}
				sr.trackTotal = n
			default:
				return parsingErr(m.Pos, "[track_total_hits] failed to parse")
			}
		case "track_scores", "version", "seq_no_primary_term", "explain", "profile":
			b, ok := m.Val.(bool)
			if !ok {
				return parsingErr(m.Pos, "[%s] failed to parse field [%s]", m.Key, m.Key)
			}
			switch m.Key {
			case "track_scores":
				sr.trackScores = b
			case "version":
				sr.version = b
			case "seq_no_primary_term":
				sr.seqNoTerm = b
			default:
				if b {
					return errNotImplemented("[" + m.Key + "]")
				}
			}
		case "min_score":
			n, ok := m.Val.(json.Number)
			if !ok {
				return parsingErr(m.Pos, "[min_score] failed to parse")
			}
			f, _ := n.Float64()
			sr.minScore = &f
		case "timeout", "stats", "stored_fields":
		case "aggs", "aggregations", "highlight", "suggest", "rescore", "collapse", "script_fields", "docvalue_fields",
			"fields", "pit", "knn", "indices_boost", "runtime_mappings", "slice", "ext", "retriever", "rank", "sub_searches":
			return errNotImplemented("search option [" + m.Key + "]")
		default:
			return parsingErr(m.Pos, "Unknown key for a %s in [%s].", tokenName(m.Val), m.Key)
		}
	}
	return nil
}

func (sr *searchReq) applyParams(rc *reqCtx) *esError {
	if _, ok := rc.q.get("q"); ok {
		return errNotImplemented("the [q] (query string) parameter")
	}
	var err *esError
	if _, ok := rc.q.get("from"); ok {
		if sr.from, err = rc.intParam("from", 0); err != nil {
			return err
		}
	}
	if _, ok := rc.q.get("size"); ok {
		if sr.size, err = rc.intParam("size", 10); err != nil {
			return err
		}
	}
	if v, ok := rc.q.get("sort"); ok {
		var specs []sortSpec
		for _, part := range splitList(v) {
			f, o, _ := strings.Cut(part, ":")
			s := sortSpec{field: f, desc: f == "_score"}
			switch o {
			case "asc":
				s.desc = false
			case "desc":
				s.desc = true
			}
			specs = append(specs, s)
		}
		sr.sorts = specs
	}
	if v, ok := rc.q.get("track_total_hits"); ok {
		switch v {
		case "true", "":
			sr.trackTotal = -1
		case "false":
			sr.trackTotal = 0
		default:
			n, e := strconv.Atoi(v)
			if e != nil {
				return errIllegalArgument("Failed to parse int parameter [track_total_hits] with value [%s]", v)
			}
			sr.trackTotal = n
		}
	}
	if sr.totalAsInt, err = rc.boolParam("rest_total_hits_as_int", false); err != nil {
		return err
	}
	if sr.totalAsInt {
		sr.trackTotal = -1
	}
	if b, err := rc.boolParam("version", sr.version); err != nil {
		return err
	} else {
		sr.version = b
	}
	if b, err := rc.boolParam("seq_no_primary_term", sr.seqNoTerm); err != nil {
		return err
	} else {
		sr.seqNoTerm = b
	}
	if b, err := rc.boolParam("track_scores", sr.trackScores); err != nil {
		return err
	} else {
		sr.trackScores = b
	}
	if _, ok := rc.q.get("_source"); ok {
		sf, err := sourceFilterFromParams(rc)
		if err != nil {
			return err
		}
		sr.sf = sf
	} else if _, ok := rc.q.get("_source_includes"); ok {
		sr.sf, _ = sourceFilterFromParams(rc)
	} else if _, ok := rc.q.get("_source_excludes"); ok {
		sr.sf, _ = sourceFilterFromParams(rc)
	}
	if v, ok := rc.q.get("scroll"); ok {
		_ = v
		return errNotImplemented("the scroll API")
	}
	return nil
}

func parseSort(v any, p pos) ([]sortSpec, *esError) {
	var elems []any
	var poss []pos
	if a, ok := v.(*array); ok {
		elems, poss = a.V, a.P
	} else {
		elems, poss = []any{v}, []pos{p}
	}
	var out []sortSpec
	for i, e := range elems {
		switch t := e.(type) {
		case string:
			out = append(out, sortSpec{field: t, desc: t == "_score"})
		case *object:
			for _, m := range t.M {
				s := sortSpec{field: m.Key, desc: m.Key == "_score"}
				switch mv := m.Val.(type) {
				case string:
					switch mv {
					case "asc":
						s.desc = false
					case "desc":
						s.desc = true
					default:
						return nil, errIllegalArgument("No enum constant org.elasticsearch.search.sort.SortOrder.%s", strings.ToUpper(mv))
					}
				case *object:
					for _, o := range mv.M {
						switch o.Key {
						case "order":
							switch scalarText(o.Val) {
							case "asc":
								s.desc = false
							case "desc":
								s.desc = true
							default:
								return nil, errIllegalArgument("No enum constant org.elasticsearch.search.sort.SortOrder.%s", strings.ToUpper(scalarText(o.Val)))
							}
						case "missing":
							switch scalarText(o.Val) {
							case "_last":
							case "_first":
								s.missingFirst = true
							default:
								s.missing = o.Val
							}
						case "unmapped_type":
							s.unmappedType = scalarText(o.Val)
						case "mode":
							s.mode = scalarText(o.Val)
						case "format", "numeric_type":
						case "nested", "_script":
							return nil, errNotImplemented("sort option [" + o.Key + "]")
						default:
							return nil, parsingErr(o.Pos, "[field_sort] unknown field [%s]", o.Key)
						}
					}
				default:
					return nil, parsingErr(m.Pos, "[field_sort] failed to parse field [%s]", m.Key)
				}
				if m.Key == "_script" || m.Key == "_geo_distance" {
					return nil, errNotImplemented("sort [" + m.Key + "]")
				}
				out = append(out, s)
			}
		default:
			return nil, parsingErr(poss[i], "[sort] failed to parse field [sort]")
		}
	}
	return out, nil
}

// checkSorts raises the shard-level errors Elasticsearch raises when it
// builds the sort: no fielddata on _id (indices.id_field_data.enabled is
// false in 8.x) or on text fields, no mapping for the field.
func checkSorts(ix *index, sorts []sortSpec) *esError {
	for _, s := range sorts {
		switch s.field {
		case "_score", "_doc", "_seq_no", "_index", "_shard_doc":
			continue
		case "_id":
			return errIllegalArgument("Fielddata access on the _id field is disallowed, you can re-enable it by updating the dynamic cluster setting: indices.id_field_data.enabled")
		}
		f := ix.mapping.lookup(s.field)
		if f == nil {
			if s.unmappedType != "" {
				continue
			}
			return ix.shardMeta(newErr(400, "query_shard_exception", "No mapping found for [%s] in order to sort on", s.field)).withoutShard()
		}
		switch f.typ {
		case "text", "match_only_text", "annotated_text", "search_as_you_type":
			return errIllegalArgument("Fielddata is disabled on [%s] in [%s]. Text fields are not optimised for operations that require per-document field data like aggregations and sorting, so these operations are disabled by default. Please use a keyword field instead. Alternatively, set fielddata=true on [%s] in order to load field data by uninverting the inverted index. Note that this can use significant memory.", s.field, ix.name, s.field)
		case "object", "nested":
			return errIllegalArgument("Field [%s] of type [%s] is not supported for sorting", s.field, f.typ)
		}
	}
	return nil
}

// withoutShard drops the "shard" metadata (query_shard_exception carries
// only index and index_uuid).
func (e *esError) withoutShard() *esError {
	var m []member
	for _, x := range e.meta {
		if x.Key != "shard" {
			m = append(m, x)
		}
	}
	e.meta = m
	return e
}

// sortKey is one sort value: cmp is used for ordering, out is what the hit's
// "sort" array shows.
type sortKey struct {
	cmp any // float64, int64, string or nil
	out any
}

// sortTypes returns the type each sorted field has in ix's mapping (its
// unmapped_type when it has none).
func sortTypes(ix *index, sorts []sortSpec) []string {
	types := make([]string, len(sorts))
	for i, s := range sorts {
		types[i] = s.unmappedType
		if f := ix.mapping.lookup(s.field); f != nil {
			types[i] = f.typ
		}
	}
	return types
}

// sortKeysTyped returns d's sort keys in the index named index whose
// sorted fields have types. It reads only d, which never changes once
// written, so it may run without the Handler's lock.
func sortKeysTyped(index string, types []string, d *docVersion, score float64, sorts []sortSpec) []sortKey {
	keys := make([]sortKey, len(sorts))
	for i, s := range sorts {
		keys[i] = sortKeyOf(index, types[i], d, score, s)
	}
	return keys
}

func sortKeyOf(index, typ string, d *docVersion, score float64, s sortSpec) sortKey {
	switch s.field {
	case "_score":
		return sortKey{cmp: score, out: score}
	case "_doc", "_shard_doc", "_seq_no":
		return sortKey{cmp: d.seqNo, out: d.seqNo}
	case "_index":
		return sortKey{cmp: index, out: index}
	}
	vals := d.indexed()[s.field]
	useMax := s.mode == "max" || (s.mode != "min" && s.desc)
	var pick any
	for _, v := range vals {
		if pick == nil {
			pick = v
			continue
		}
		c := compareRaw(v, pick)
		if (useMax && c > 0) || (!useMax && c < 0) {
			pick = v
		}
	}
	if pick == nil {
		return missingKey(typ, s)
	}
	switch t := pick.(type) {
	case int64:
		return sortKey{cmp: t, out: t}
	case float64:
		return sortKey{cmp: t, out: t}
	case bool:
		n := int64(0)
		if t {
			n = 1
		}
		return sortKey{cmp: n, out: n}
	case string:
		return sortKey{cmp: t, out: t}
	}
	return missingKey(typ, s)
}

func missingKey(typ string, s sortSpec) sortKey {
	// explicit missing value
	if s.missing != nil {
		switch typ {
		case "keyword", "constant_keyword", "wildcard", "version":
			v := scalarText(s.missing)
			return sortKey{cmp: v, out: v}
		case "double", "float", "half_float", "scaled_float":
			f, _ := numberOf(s.missing)
			return sortKey{cmp: f, out: f}
		default:
			f, _ := numberOf(s.missing)
			return sortKey{cmp: int64(f), out: int64(f)}
		}
	}
	// _last: the value that sorts after everything in this direction
	high := s.desc == s.missingFirst
	switch typ {
	case "keyword", "constant_keyword", "wildcard", "version", "":
		if high {
			return sortKey{cmp: highString{}, out: nil}
		}
		return sortKey{cmp: nil, out: nil}
	case "double", "float", "half_float", "scaled_float":
		if high {
			return sortKey{cmp: math.Inf(1), out: math.Inf(1)}
		}
		return sortKey{cmp: math.Inf(-1), out: math.Inf(-1)}
	default:
		if high {
			return sortKey{cmp: int64(math.MaxInt64), out: int64(math.MaxInt64)}
		}
		return sortKey{cmp: int64(math.MinInt64), out: int64(math.MinInt64)}
	}
}

// highString sorts after every string.
type highString struct{}

func compareRaw(a, b any) int {
	switch x := a.(type) {
	case nil:
		if b == nil {
			return 0
		}
		return -1
	case highString:
		if _, ok := b.(highString); ok {
			return 0
		}
		return 1
	case int64:
		switch y := b.(type) {
		case int64:
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		case float64:
			return compareFloat(float64(x), y)
		}
	case float64:
		switch y := b.(type) {
		case float64:
			return compareFloat(x, y)
		case int64:
			return compareFloat(x, float64(y))
		}
	case string:
		switch y := b.(type) {
		case string:
			return strings.Compare(x, y)
		case nil:
			return 1
		case highString:
			return -1
		}
	case bool:
		y, _ := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	}
	if b == nil {
		return 1
	}
	if _, ok := b.(highString); ok {
		return -1
	}
	return 0
}

func compareFloat(x, y float64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func compareKeys(a, b []sortKey, sorts []sortSpec) int {
	for i := range sorts {
		if i >= len(a) || i >= len(b) {
			break
		}
		c := compareRaw(a[i].cmp, b[i].cmp)
		if sorts[i].desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// parseSearchAfter converts search_after values to the sort keys' types.
func parseSearchAfter(a *array, sorts []sortSpec, ixs []*index) ([]sortKey, *esError) {
	if len(a.V) != len(sorts) {
		return nil, errIllegalArgument("search_after has %d value(s) but sort has %d.", len(a.V), len(sorts))
	}
	keys := make([]sortKey, len(sorts))
	for i, s := range sorts {
		typ := s.unmappedType
		for _, ix := range ixs {
			if f := ix.mapping.lookup(s.field); f != nil {
				typ = f.typ
				break
			}
		}
		v := a.V[i]
		switch {
		case s.field == "_score":
			f, _ := numberOf(v)
			keys[i] = sortKey{cmp: f}
		case s.field == "_doc" || s.field == "_seq_no" || s.field == "_shard_doc":
			f, _ := numberOf(v)
			keys[i] = sortKey{cmp: int64(f)}
		case v == nil:
			keys[i] = sortKey{cmp: nil}
		case typ == "keyword" || typ == "constant_keyword" || typ == "wildcard" || typ == "version" || s.field == "_index":
			keys[i] = sortKey{cmp: scalarText(v)}
		case typ == "double" || typ == "float" || typ == "half_float" || typ == "scaled_float":
			f, ok := numberOf(v)
			if !ok {
				return nil, errIllegalArgument("Failed to parse search_after value for field [%s].", s.field)
			}
			keys[i] = sortKey{cmp: f}
		case typ == "date" || typ == "date_nanos":
			if n, ok := v.(json.Number); ok {
				i64, err := strconv.ParseInt(string(n), 10, 64)
				if err != nil {
					f, _ := n.Float64()
					i64 = int64(f)
				}
				keys[i] = sortKey{cmp: i64}
				break
			}
			ms, ok := parseDateFormats(scalarText(v), "strict_date_optional_time||epoch_millis", false)
			if !ok {
				return nil, errIllegalArgument("Failed to parse search_after value for field [%s].", s.field)
			}
			keys[i] = sortKey{cmp: ms}
		case typ == "boolean":
			b := scalarText(v)
			n := int64(0)
			if b == "true" || b == "1" {
				n = 1
			}
			keys[i] = sortKey{cmp: n}
		default:
			n, ok := v.(json.Number)
			if !ok {
				if s, isStr := v.(string); isStr {
					n = json.Number(s)
				}
			}
			i64, err := strconv.ParseInt(string(n), 10, 64)
			if err != nil {
				f, ferr := strconv.ParseFloat(string(n), 64)
				if ferr != nil {
					return nil, errIllegalArgument("Failed to parse search_after value for field [%s].", s.field).
						causedBy(newErr(400, "number_format_exception", "For input string: \"%s\"", scalarText(v)))
				}
				i64 = int64(f)
			}
			keys[i] = sortKey{cmp: i64}
		}
	}
	return keys, nil
}

func handleCount(rc *reqCtx) (int, any, *esError) {
	rc.allow("ignore_unavailable", "allow_no_indices", "expand_wildcards", "ignore_throttled", "min_score",
		"preference", "routing", "q", "df", "analyzer", "analyze_wildcard", "lenient", "default_operator", "terminate_after")
	body, _, err := rc.optionalBody()
	if err != nil {
		return 0, nil, err
	}
	var q query = &matchAll{boost: 1}
	if body != nil {
		for _, m := range body.M {
			if m.Key != "query" {
				return 0, nil, newErr(400, "parsing_exception", "request does not support [%s]", m.Key).with("line", m.Pos.line, "col", m.Pos.col)
			}
			pq, err := parseQuery(m.Val, m.Pos)
			if err != nil {
				return 0, nil, err
			}
			q = pq
		}
	}
	if _, ok := rc.q.get("q"); ok {
		return 0, nil, errNotImplemented("the [q] (query string) parameter")
	}
	allowNo, ignore, err := rc.readOptions(true, false)
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ixs, err := h.resolveRead(rc.path["index"], allowNo, ignore)
	if err != nil {
		return 0, nil, err
	}
	now := h.now()
	n, shards := 0, 0
	for _, ix := range ixs {
		if e := checkQuery(ix, q); e != nil {
			return 0, nil, searchPhaseError(ix.name, e)
		}
	}
	for _, ix := range ixs {
		shards += ix.shards
		docs := ix.searcher(now)
		if _, all := q.(*matchAll); all {
			n += len(docs)
			continue
		}
		c := &evalCtx{ix: ix}
		for _, d := range docs {
			if ok, _ := q.eval(c, d); ok {
				n++
			}
		}
	}
	return 200, obj("count", n, "_shards", obj("total", shards, "successful", shards, "skipped", 0, "failed", 0)), nil
}

// ---- filter_path ----

// filterPath applies the filter_path response parameter: comma separated
// dotted paths with * and ** wildcards; a leading - excludes.
func filterPath(body any, spec string) any {
	var inc, exc [][]string
	for _, p := range splitList(spec) {
		if strings.HasPrefix(p, "-") {
			exc = append(exc, strings.Split(p[1:], "."))
		} else {
			inc = append(inc, strings.Split(p, "."))
		}
	}
	out := body
	if len(inc) > 0 {
		out = includePaths(out, inc)
		if out == nil {
			out = &object{}
		}
	}
	if len(exc) > 0 {
		out = excludePaths(out, exc)
	}
	return out
}

func segMatch(pat, key string) bool {
	return pat == key || pat == "*" || (strings.Contains(pat, "*") && globMatch(pat, key))
}

// includePaths keeps the values whose path matches one of the patterns.
func includePaths(v any, pats [][]string) any {
	switch t := v.(type) {
	case *object:
		out := &object{}
		for _, m := range t.M {
			var sub [][]string
			keep := false
			for _, p := range pats {
				if len(p) == 0 {
					continue
				}
				if p[0] == "**" {
					if len(p) == 1 {
						keep = true
					}
					sub = append(sub, p) // ** may match deeper
					if len(p) > 1 && segMatch(p[1], m.Key) {
						if len(p) == 2 {
							keep = true
						} else {
							sub = append(sub, p[2:])
						}
					}
					continue
				}
				if segMatch(p[0], m.Key) {
					if len(p) == 1 {
						keep = true
					} else {
						sub = append(sub, p[1:])
					}
				}
			}
			if keep {
				out.M = append(out.M, m)
				continue
			}
			if len(sub) > 0 {
				if f := includePaths(m.Val, sub); f != nil {
					out.M = append(out.M, member{Key: m.Key, Val: f})
				}
			}
		}
		if len(out.M) == 0 {
			return nil
		}
		return out
	case []any:
		var out []any
		for _, e := range t {
			if f := includePaths(e, pats); f != nil {
				out = append(out, f)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case *array:
		return includePaths(t.V, pats)
	}
	return nil
}

func excludePaths(v any, pats [][]string) any {
	switch t := v.(type) {
	case *object:
		out := &object{}
		for _, m := range t.M {
			var sub [][]string
			drop := false
			for _, p := range pats {
				if len(p) > 0 && segMatch(p[0], m.Key) {
					if len(p) == 1 {
						drop = true
					} else {
						sub = append(sub, p[1:])
					}
				}
			}
			if drop {
				continue
			}
			if len(sub) > 0 {
				out.M = append(out.M, member{Key: m.Key, Val: excludePaths(m.Val, sub)})
			} else {
				out.M = append(out.M, m)
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = excludePaths(e, pats)
		}
		return out
	}
	return v
}

// searchHit is one hit of a search: a document of an index, its score and
// its sort keys.
type searchHit struct {
	ix    *index
	d     *docVersion
	score float64
	keys  []sortKey
}

// searchResult is what a search found: the page of hits, the total and the
// maximum score to report.
type searchResult struct {
	hits            []searchHit
	total           int
	maxScore        any
	terminatedEarly bool
}

// checkIndex runs the checks Elasticsearch runs on each shard before the
// query: the result window, the sort and the queries.
func (sr *searchReq) checkIndex(ix *index) *esError {
	if sr.from+sr.size > ix.maxResultWindow {
		return errIllegalArgument("Result window is too large, from + size must be less than or equal to: [%d] but was [%d]. See the scroll api for a more efficient way to request large data sets. This limit can be set by changing the [index.max_result_window] index level setting.", ix.maxResultWindow, sr.from+sr.size)
	}
	if e := checkSorts(ix, sr.sorts); e != nil {
		return e
	}
	if e := checkQuery(ix, sr.query); e != nil {
		return e
	}
	if sr.postFilter != nil {
		if e := checkQuery(ix, sr.postFilter); e != nil {
			return e
		}
	}
	return nil
}

// matches evaluates the query, the post filter and min_score on d.
func (sr *searchReq) matches(c *evalCtx, d *docVersion) (bool, float64) {
	ok, score := sr.query.eval(c, d)
	if !ok {
		return false, 0
	}
	if sr.postFilter != nil {
		if ok, _ := sr.postFilter.eval(c, d); !ok {
			return false, 0
		}
	}
	if sr.minScore != nil && score < *sr.minScore {
		return false, 0
	}
	return true, score
}

// hitLess is the order of hits: the sort keys (the score first when the
// search has no sort), then the index name, then _seq_no. It is a total
// order: a document has one _seq_no in its index.
func (sr *searchReq) hitLess(a, b *searchHit) bool {
	if len(sr.sorts) == 0 && a.score != b.score {
		return a.score > b.score
	}
	if c := compareKeys(a.keys, b.keys, sr.sorts); c != 0 {
		return c < 0
	}
	if a.ix.name != b.ix.name {
		return a.ix.name < b.ix.name
	}
	return a.d.seqNo < b.d.seqNo
}

// searchAll evaluates the query on every document of the indices and
// returns the page of hits from..from+size in the order of hitLess. For
// one index, the page is found with a bounded heap rather than by sorting
// every hit (the order is total, so any selection gives the same page).
func (sr *searchReq) searchAll(live, ixs []*index, now time.Time, trackScores, fullSort bool) (*searchResult, *esError) {
	var hits []searchHit
	terminatedEarly := false
	for _, ix := range live {
		c := &evalCtx{ix: ix}
		types := sortTypes(ix, sr.sorts)
		collected := 0
		docs := ix.searcher(now)
		var order []*docVersion
		if sr.terminateAfter > 0 || len(live) > 1 || fullSort {
			// terminate_after stops collecting in doc id order; the hits
			// of several indices are sorted from that order.
			order = docOrder(docs)
		} else {
			order = make([]*docVersion, 0, len(docs))
			for _, d := range docs {
				order = append(order, d)
			}
		}
		for _, d := range order {
			if sr.terminateAfter > 0 && collected >= sr.terminateAfter {
				terminatedEarly = true
				break
			}
			ok, score := sr.matches(c, d)
			if !ok {
				continue
			}
			collected++
			hits = append(hits, searchHit{ix: ix, d: d, score: score, keys: sortKeysTyped(ix.name, types, d, score, sr.sorts)})
		}
	}
	total := len(hits)
	if sr.searchAfter != nil {
		after, err := parseSearchAfter(sr.searchAfter, sr.sorts, ixs)
		if err != nil {
			return nil, searchAfterError(ixs, err)
		}
		n := 0
		for _, hh := range hits {
			if compareKeys(hh.keys, after, sr.sorts) > 0 {
				hits[n] = hh
				n++
			}
		}
		hits = hits[:n]
	}
	var maxScore any
	// With size 0 the query phase collects no top hits, so no max score.
	if trackScores && len(hits) > 0 && sr.size > 0 {
		m := math.Inf(-1)
		for _, hh := range hits {
			m = math.Max(m, hh.score)
		}
		maxScore = m
	}
	if len(live) > 1 || fullSort {
		// Hits of several indices may compare values of different types
		// (a field mapped differently): sorted as they always were.
		sort.SliceStable(hits, func(i, j int) bool { return sr.hitLess(&hits[i], &hits[j]) })
	} else {
		hits = topHits(hits, sr.from+sr.size, sr.hitLess)
	}
	if sr.from < len(hits) {
		hits = hits[sr.from:]
	} else {
		hits = nil
	}
	if len(hits) > sr.size {
		hits = hits[:sr.size]
	}
	return &searchResult{hits: hits, total: total, maxScore: maxScore, terminatedEarly: terminatedEarly}, nil
}

// searchAfterError is the error of a search_after that does not fit the
// sort: SearchAfterBuilder.buildFieldDoc runs on the shards.
func searchAfterError(ixs []*index, err *esError) *esError {
	names := make([]string, len(ixs))
	for i, ix := range ixs {
		names[i] = ix.name
	}
	return searchPhaseErrorOn(names, err)
}

// topHits returns the first k hits in the order of less, sorted. Below
// 2k hits it sorts them all; above, it keeps the k first in a max-heap.
func topHits(hits []searchHit, k int, less func(a, b *searchHit) bool) []searchHit {
	if k <= 0 {
		return nil
	}
	if len(hits) <= 2*k {
		sort.Slice(hits, func(i, j int) bool { return less(&hits[i], &hits[j]) })
		return hits[:min(k, len(hits))]
	}
	h := append(make([]searchHit, 0, k), hits[:k]...)
	// heap order: h[0] is the greatest kept hit.
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= len(h) {
				return
			}
			g := l
			if r := l + 1; r < len(h) && less(&h[l], &h[r]) {
				g = r
			}
			if !less(&h[i], &h[g]) {
				return
			}
			h[i], h[g] = h[g], h[i]
			i = g
		}
	}
	for i := k/2 - 1; i >= 0; i-- {
		down(i)
	}
	for i := k; i < len(hits); i++ {
		if less(&hits[i], &h[0]) {
			h[0] = hits[i]
			down(0)
		}
	}
	sort.Slice(h, func(i, j int) bool { return less(&h[i], &h[j]) })
	return h
}

// searchSorted answers a search of one index sorted on fields (not on
// _score, without track_scores or terminate_after) from the index's
// sorted view: a binary search finds the search_after position, and the
// walk from there evaluates the query until the page is full. The answer
// is searchAll's: the view is in hitLess order, and a hit's score is not
// reported.
func (sr *searchReq) searchSorted(mu *sync.Mutex, ix *index, now time.Time) (*searchResult, *esError) {
	ix.searcher(now)
	v := ix.sortedView(mu, sr.sorts)
	c := &evalCtx{ix: ix}
	_, all := sr.query.(*matchAll)
	all = all && sr.postFilter == nil && sr.minScore == nil
	total := 0
	switch {
	case all:
		total = len(v.entries)
	case sr.trackTotal == 0:
		// Not reported.
	default:
		// Beyond track_total_hits, only "more than" is reported.
		limit := len(v.entries)
		if sr.trackTotal > 0 {
			limit = sr.trackTotal + 1
		}
		for i := 0; i < len(v.entries) && total < limit; i++ {
			if ok, _ := sr.matches(c, v.entries[i].d); ok {
				total++
			}
		}
	}
	start := 0
	if sr.searchAfter != nil {
		after, err := parseSearchAfter(sr.searchAfter, sr.sorts, []*index{ix})
		if err != nil {
			return nil, searchAfterError([]*index{ix}, err)
		}
		start = sort.Search(len(v.entries), func(i int) bool { return compareKeys(v.entries[i].keys, after, sr.sorts) > 0 })
	}
	var hits []searchHit
	skip := sr.from
	for i := start; i < len(v.entries) && len(hits) < sr.size; i++ {
		e := v.entries[i]
		if !all {
			if ok, _ := sr.matches(c, e.d); !ok {
				continue
			}
		}
		if skip > 0 {
			skip--
			continue
		}
		hits = append(hits, searchHit{ix: ix, d: e.d, keys: e.keys})
	}
	return &searchResult{hits: hits, total: total}, nil
}
