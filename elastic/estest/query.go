package estest

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
)

// query is a compiled query.
type query interface {
	// eval reports whether the document matches and its score.
	eval(c *evalCtx, d *docVersion) (bool, float64)
}

type evalCtx struct {
	ix *index
}

// implementedQueries are parsed and evaluated; other query types that exist
// in Elasticsearch are rejected with an explicit "not implemented" error.
var esQueryNames = map[string]bool{
	"bool": true, "boosting": true, "constant_score": true, "dis_max": true, "function_score": true,
	"match": true, "match_phrase": true, "match_phrase_prefix": true, "match_bool_prefix": true, "multi_match": true,
	"combined_fields": true, "query_string": true, "simple_query_string": true, "intervals": true,
	"exists": true, "fuzzy": true, "ids": true, "prefix": true, "range": true, "regexp": true, "term": true,
	"terms": true, "terms_set": true, "wildcard": true, "match_all": true, "match_none": true, "nested": true,
	"has_child": true, "has_parent": true, "parent_id": true, "geo_bounding_box": true, "geo_distance": true,
	"geo_grid": true, "geo_polygon": true, "geo_shape": true, "shape": true, "distance_feature": true,
	"more_like_this": true, "percolate": true, "rank_feature": true, "script": true, "script_score": true,
	"wrapper": true, "pinned": true, "rule": true, "span_containing": true, "span_field_masking": true,
	"span_first": true, "span_multi": true, "span_near": true, "span_not": true, "span_or": true,
	"span_term": true, "span_within": true, "knn": true, "semantic": true, "sparse_vector": true,
	"text_expansion": true, "weighted_tokens": true,
}

func parsingErr(p pos, format string, a ...any) *esError {
	e := newErr(400, "parsing_exception", format, a...)
	return e.with("line", p.line, "col", p.col)
}

// parseQuery compiles a query clause ({"term": {...}}).
func parseQuery(v any, p pos) (query, *esError) {
	o, ok := v.(*object)
	if !ok {
		return nil, parsingErr(p, "[_na] query malformed, must start with start_object")
	}
	if len(o.M) == 0 {
		return nil, parsingErr(p, "query malformed, empty clause found")
	}
	if len(o.M) > 1 {
		return nil, parsingErr(o.M[1].Pos, "[%s] malformed query, expected [END_OBJECT] but found [FIELD_NAME]", o.M[0].Key)
	}
	name, body, bp := o.M[0].Key, o.M[0].Val, o.M[0].Pos
	switch name {
	case "match_all":
		return &matchAll{boost: boostOf(body)}, nil
	case "match_none":
		return &matchNone{}, nil
	case "ids":
		bo, ok := body.(*object)
		if !ok {
			return nil, parsingErr(bp, "[ids] query malformed, no start_object after query name")
		}
		q := &idsQuery{}
		for _, m := range bo.M {
			switch m.Key {
			case "values":
				l, ok := stringList(m.Val)
				if !ok {
					return nil, parsingErr(m.Pos, "[ids] failed to parse field [values]")
				}
				q.ids = l
			case "boost", "_name":
			default:
				return nil, parsingErr(m.Pos, "[ids] unknown field [%s]", m.Key)
			}
		}
		return q, nil
	case "term", "prefix":
		f, val, err := singleField(name, body, bp, "value")
		if err != nil {
			return nil, err
		}
		if name == "prefix" {
			return &prefixQuery{field: f, value: scalarText(val)}, nil
		}
		return &termQuery{field: f, values: []any{val}}, nil
	case "terms":
		bo, ok := body.(*object)
		if !ok {
			return nil, parsingErr(bp, "[terms] query malformed, no start_object after query name")
		}
		var q *termQuery
		for _, m := range bo.M {
			switch m.Key {
			case "boost", "_name":
				continue
			}
			arr, ok := m.Val.(*array)
			if !ok {
				if _, isObj := m.Val.(*object); isObj {
					return nil, errNotImplemented("the terms lookup")
				}
				return nil, parsingErr(m.Pos, "[terms] query does not support [%s]", m.Key)
			}
			if q != nil {
				return nil, parsingErr(m.Pos, "[terms] query does not support multiple fields")
			}
			q = &termQuery{field: m.Key, values: arr.V, terms: true}
		}
		if q == nil {
			return nil, parsingErr(bp, "[terms] query requires a field name, followed by array of terms or a document lookup specification")
		}
		return q, nil
	case "match":
		f, val, err := singleField(name, body, bp, "query")
		if err != nil {
			return nil, err
		}
		q := &matchQuery{field: f, value: val, operator: "or"}
		if fo, ok := body.(*object); ok {
			if inner, ok := fo.M[0].Val.(*object); ok {
				for _, m := range inner.M {
					switch m.Key {
					case "operator":
						q.operator = strings.ToLower(scalarText(m.Val))
					case "query", "boost", "_name", "analyzer", "lenient", "zero_terms_query", "auto_generate_synonyms_phrase_query":
					case "fuzziness", "prefix_length", "max_expansions", "fuzzy_transpositions", "fuzzy_rewrite", "minimum_should_match", "cutoff_frequency":
						return nil, errNotImplemented("[match] option [" + m.Key + "]")
					default:
						return nil, parsingErr(m.Pos, "[match] query does not support [%s]", m.Key)
					}
				}
			}
		}
		return q, nil
	case "exists":
		bo, ok := body.(*object)
		if !ok {
			return nil, parsingErr(bp, "[exists] query malformed, no start_object after query name")
		}
		fv, ok := bo.get("field")
		if !ok {
			return nil, parsingErr(bp, "[exists] must be provided with a [field]")
		}
		return &existsQuery{field: scalarText(fv)}, nil
	case "range":
		return parseRange(body, bp)
	case "bool":
		return parseBool(body, bp)
	case "constant_score":
		bo, ok := body.(*object)
		if !ok {
			return nil, parsingErr(bp, "[constant_score] query malformed, no start_object after query name")
		}
		fv, ok := bo.get("filter")
		if !ok {
			return nil, parsingErr(bp, "[constant_score] requires a 'filter' element")
		}
		inner, err := parseQuery(fv, bo.member("filter").Pos)
		if err != nil {
			return nil, err
		}
		return &constantScore{inner: inner, boost: boostOf(body)}, nil
	}
	if esQueryNames[name] {
		return nil, errNotImplemented("query [" + name + "]")
	}
	return nil, parsingErr(bp, "unknown query [%s]", name).
		causedBy(newErr(400, "named_object_not_found_exception", "%s unknown field [%s]", bp, name))
}

func boostOf(v any) float64 {
	if o, ok := v.(*object); ok {
		if b, ok := o.get("boost"); ok {
			if n, ok := b.(json.Number); ok {
				f, _ := n.Float64()
				return f
			}
		}
	}
	return 1
}

// singleField reads {"field": value} or {"field": {"<key>": value, ...}}.
func singleField(qname string, body any, bp pos, key string) (string, any, *esError) {
	bo, ok := body.(*object)
	if !ok || len(bo.M) == 0 {
		return "", nil, parsingErr(bp, "[%s] query malformed, no start_object after query name", qname)
	}
	var field string
	var val any
	n := 0
	for _, m := range bo.M {
		if m.Key == "boost" || m.Key == "_name" {
			continue
		}
		n++
		if n > 1 {
			return "", nil, parsingErr(m.Pos, "[%s] query doesn't support multiple fields, found [%s] and [%s]", qname, field, m.Key)
		}
		field = m.Key
		if inner, ok := m.Val.(*object); ok {
			v, ok := inner.get(key)
			if !ok {
				return "", nil, parsingErr(m.Pos, "[%s] query does not support [%s]", qname, firstKey(inner))
			}
			val = v
		} else {
			val = m.Val
		}
	}
	if n == 0 {
		return "", nil, parsingErr(bp, "[%s] query malformed, no field", qname)
	}
	return field, val, nil
}

func firstKey(o *object) string {
	if len(o.M) == 0 {
		return ""
	}
	return o.M[0].Key
}

func parseBool(body any, bp pos) (query, *esError) {
	bo, ok := body.(*object)
	if !ok {
		return nil, parsingErr(bp, "[bool] query malformed, no start_object after query name")
	}
	q := &boolQuery{msm: -1}
	for _, m := range bo.M {
		var dst *[]query
		switch m.Key {
		case "must":
			dst = &q.must
		case "filter":
			dst = &q.filter
		case "should":
			dst = &q.should
		case "must_not", "mustNot":
			dst = &q.mustNot
		case "minimum_should_match":
			s := scalarText(m.Val)
			n, err := strconv.Atoi(s)
			if err != nil {
				return nil, errNotImplemented("[bool] minimum_should_match [" + s + "]")
			}
			q.msm = n
			continue
		case "boost", "_name", "adjust_pure_negative":
			continue
		default:
			return nil, parsingErr(m.Pos, "[bool] query does not support [%s]", m.Key)
		}
		switch t := m.Val.(type) {
		case *array:
			for i, e := range t.V {
				sub, err := parseQuery(e, t.P[i])
				if err != nil {
					return nil, err
				}
				*dst = append(*dst, sub)
			}
		default:
			sub, err := parseQuery(t, m.Pos)
			if err != nil {
				return nil, err
			}
			*dst = append(*dst, sub)
		}
	}
	return q, nil
}

func parseRange(body any, bp pos) (query, *esError) {
	bo, ok := body.(*object)
	if !ok || len(bo.M) == 0 {
		return nil, parsingErr(bp, "[range] query malformed, no start_object after query name")
	}
	if len(bo.M) > 1 {
		return nil, parsingErr(bo.M[1].Pos, "[range] query doesn't support multiple fields, found [%s] and [%s]", bo.M[0].Key, bo.M[1].Key)
	}
	q := &rangeQuery{field: bo.M[0].Key}
	inner, ok := bo.M[0].Val.(*object)
	if !ok {
		return nil, parsingErr(bo.M[0].Pos, "[range] query malformed, after field missing start object")
	}
	for _, m := range inner.M {
		switch m.Key {
		case "gt":
			q.gt = m.Val
		case "gte", "from":
			q.gte = m.Val
		case "lt":
			q.lt = m.Val
		case "lte", "to":
			q.lte = m.Val
		case "format":
			q.format = scalarText(m.Val)
		case "boost", "_name", "include_lower", "include_upper":
		case "time_zone", "relation":
			return nil, errNotImplemented("[range] option [" + m.Key + "]")
		default:
			return nil, parsingErr(m.Pos, "[range] query does not support [%s]", m.Key)
		}
	}
	for _, b := range []any{q.gt, q.gte, q.lt, q.lte} {
		if s, ok := b.(string); ok && strings.HasPrefix(s, "now") {
			return nil, errNotImplemented("date math in [range]")
		}
	}
	return q, nil
}

// ---- query implementations ----

type matchAll struct{ boost float64 }

func (q *matchAll) eval(*evalCtx, *docVersion) (bool, float64) { return true, q.boost }

type matchNone struct{}

func (*matchNone) eval(*evalCtx, *docVersion) (bool, float64) { return false, 0 }

type idsQuery struct{ ids []string }

func (q *idsQuery) eval(_ *evalCtx, d *docVersion) (bool, float64) {
	for _, id := range q.ids {
		if id == d.id {
			return true, 1
		}
	}
	return false, 0
}

type constantScore struct {
	inner query
	boost float64
}

func (q *constantScore) eval(c *evalCtx, d *docVersion) (bool, float64) {
	ok, _ := q.inner.eval(c, d)
	return ok, q.boost
}

type termQuery struct {
	field  string
	values []any
	terms  bool
}

func (q *termQuery) eval(c *evalCtx, d *docVersion) (bool, float64) {
	switch q.field {
	case "_id":
		for _, v := range q.values {
			if scalarText(v) == d.id {
				return true, 1
			}
		}
		return false, 0
	case "_index":
		for _, v := range q.values {
			if globMatch(scalarText(v), c.ix.name) {
				return true, 1
			}
		}
		return false, 0
	}
	f := c.ix.mapping.lookup(q.field)
	if f == nil {
		return false, 0
	}
	for _, dv := range d.indexed()[q.field] {
		for _, v := range q.values {
			if termEquals(f, dv, v) {
				return true, 1
			}
		}
	}
	return false, 0
}

// termEquals compares an indexed value with a query term of the field's type.
func termEquals(f *fieldMapping, dv any, v any) bool {
	switch t := dv.(type) {
	case textValue:
		want := scalarText(v)
		for _, tok := range analyze(string(t)) {
			if tok == want {
				return true
			}
		}
		return false
	case string:
		return t == scalarText(v)
	case bool:
		b, ok := v.(bool)
		if !ok {
			b = scalarText(v) == "true"
		}
		return t == b
	case int64:
		if f.typ == "date" || f.typ == "date_nanos" {
			ms, ok := dateTerm(f, v)
			return ok && ms == t
		}
		n, ok := numberOf(v)
		return ok && n == float64(t)
	case float64:
		n, ok := numberOf(v)
		if f.typ == "float" || f.typ == "half_float" {
			n = float64(float32(n))
		}
		return ok && n == t
	}
	return false
}

func numberOf(v any) (float64, bool) {
	switch t := v.(type) {
	case json.Number:
		f, err := t.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
		return f, err == nil
	}
	return 0, false
}

func dateTerm(f *fieldMapping, v any) (int64, bool) {
	format := f.format
	if format == "" {
		format = "strict_date_optional_time||epoch_millis"
	}
	return parseDateFormats(scalarText(v), format, false)
}

type prefixQuery struct {
	field, value string
}

func (q *prefixQuery) eval(c *evalCtx, d *docVersion) (bool, float64) {
	if q.field == "_id" {
		return strings.HasPrefix(d.id, q.value), 1
	}
	for _, dv := range d.indexed()[q.field] {
		switch t := dv.(type) {
		case string:
			if strings.HasPrefix(t, q.value) {
				return true, 1
			}
		case textValue:
			for _, tok := range analyze(string(t)) {
				if strings.HasPrefix(tok, q.value) {
					return true, 1
				}
			}
		}
	}
	return false, 0
}

type matchQuery struct {
	field    string
	value    any
	operator string
}

func (q *matchQuery) eval(c *evalCtx, d *docVersion) (bool, float64) {
	f := c.ix.mapping.lookup(q.field)
	if f == nil {
		return false, 0
	}
	switch f.typ {
	case "text", "match_only_text", "search_as_you_type", "annotated_text":
		want := analyze(scalarText(q.value))
		if len(want) == 0 {
			return false, 0
		}
		have := map[string]bool{}
		for _, dv := range d.indexed()[q.field] {
			if t, ok := dv.(textValue); ok {
				for _, tok := range analyze(string(t)) {
					have[tok] = true
				}
			}
		}
		n := 0
		for _, w := range want {
			if have[w] {
				n++
			}
		}
		if q.operator == "and" {
			return n == len(want), float64(n)
		}
		return n > 0, float64(n)
	}
	return (&termQuery{field: q.field, values: []any{q.value}}).eval(c, d)
}

type existsQuery struct{ field string }

func (q *existsQuery) eval(_ *evalCtx, d *docVersion) (bool, float64) {
	if len(d.indexed()[q.field]) > 0 {
		return true, 1
	}
	prefix := q.field + "."
	for k, vs := range d.indexed() {
		if strings.HasPrefix(k, prefix) && len(vs) > 0 {
			return true, 1
		}
	}
	return false, 0
}

type rangeQuery struct {
	field            string
	gt, gte, lt, lte any
	format           string
}

func (q *rangeQuery) eval(c *evalCtx, d *docVersion) (bool, float64) {
	f := c.ix.mapping.lookup(q.field)
	if f == nil {
		return false, 0
	}
	bound := func(v any) (any, bool) {
		if v == nil {
			return nil, false
		}
		switch f.typ {
		case "date", "date_nanos":
			ff := *f
			if q.format != "" {
				ff.format = q.format
			}
			ms, ok := dateTerm(&ff, v)
			if !ok {
				return nil, false
			}
			return float64(ms), true
		case "keyword", "constant_keyword", "wildcard", "version":
			return scalarText(v), true
		default:
			n, ok := numberOf(v)
			return n, ok
		}
	}
	for _, dv := range d.indexed()[q.field] {
		var x any
		switch t := dv.(type) {
		case int64:
			x = float64(t)
		case float64:
			x = t
		case string:
			x = t
		default:
			continue
		}
		ok := true
		check := func(b any, cmpOK func(int) bool) {
			if !ok || b == nil {
				return
			}
			bv, valid := bound(b)
			if !valid {
				ok = false
				return
			}
			if !cmpOK(compareScalars(x, bv)) {
				ok = false
			}
		}
		check(q.gt, func(r int) bool { return r > 0 })
		check(q.gte, func(r int) bool { return r >= 0 })
		check(q.lt, func(r int) bool { return r < 0 })
		check(q.lte, func(r int) bool { return r <= 0 })
		if ok {
			return true, 1
		}
	}
	return false, 0
}

func compareScalars(a, b any) int {
	switch x := a.(type) {
	case float64:
		y, _ := b.(float64)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case string:
		y, _ := b.(string)
		return strings.Compare(x, y)
	}
	return 0
}

type boolQuery struct {
	must, filter, should, mustNot []query
	msm                           int
}

func (q *boolQuery) eval(c *evalCtx, d *docVersion) (bool, float64) {
	score := 0.0
	for _, s := range q.must {
		ok, sc := s.eval(c, d)
		if !ok {
			return false, 0
		}
		score += sc
	}
	for _, s := range q.filter {
		if ok, _ := s.eval(c, d); !ok {
			return false, 0
		}
	}
	for _, s := range q.mustNot {
		if ok, _ := s.eval(c, d); ok {
			return false, 0
		}
	}
	msm := q.msm
	if msm < 0 {
		msm = 0
		if len(q.should) > 0 && len(q.must) == 0 && len(q.filter) == 0 {
			msm = 1
		}
	}
	matched := 0
	for _, s := range q.should {
		if ok, sc := s.eval(c, d); ok {
			matched++
			score += sc
		}
	}
	if matched < msm {
		return false, 0
	}
	return true, score
}

// analyze is a simplified standard analyzer: Unicode letter/digit runs,
// lowercased.
func analyze(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_'
	})
}

// checkQuery raises the shard-level error Elasticsearch raises when it
// builds a query against an index's mapping: a term, terms or range value
// that the field's type cannot parse fails with query_shard_exception
// "failed to create query: ..." caused by the parse error (a number field
// given "abc", a boolean field given "maybe").
func checkQuery(ix *index, q query) *esError {
	var values []any
	var field string
	switch t := q.(type) {
	case *termQuery:
		field, values = t.field, t.values
	case *rangeQuery:
		field, values = t.field, []any{t.gt, t.gte, t.lt, t.lte}
	case *constantScore:
		return checkQuery(ix, t.inner)
	case *boolQuery:
		for _, qs := range [][]query{t.must, t.filter, t.should, t.mustNot} {
			for _, sub := range qs {
				if err := checkQuery(ix, sub); err != nil {
					return err
				}
			}
		}
		return nil
	default:
		return nil
	}
	f := ix.mapping.lookup(field)
	if f == nil {
		return nil
	}
	for _, v := range values {
		s, ok := v.(string)
		if !ok {
			continue
		}
		var cause *esError
		switch f.typ {
		case "long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float":
			if _, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err != nil {
				cause = newErr(400, "number_format_exception", "For input string: \"%s\"", s)
			}
		case "boolean":
			if s != "true" && s != "false" && s != "" {
				cause = errIllegalArgument("Can't parse boolean value [%s], expected [true] or [false]", s)
			}
		}
		if cause != nil {
			return ix.shardMeta(newErr(400, "query_shard_exception", "failed to create query: %s", cause.reason)).withoutShard().causedBy(cause)
		}
	}
	return nil
}
