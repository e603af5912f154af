package estest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// fieldMapping is one mapped field.
type fieldMapping struct {
	typ         string
	props       map[string]*fieldMapping // object and nested
	fields      map[string]*fieldMapping // multi-fields
	ignoreAbove int                      // keyword: longer values are not indexed
	format      string                   // date
	dynamic     string                   // object: "", "true", "false", "strict", "runtime"
	coerce      bool
	params      *object // parameters echoed back by GET _mapping (besides type, properties, fields)
}

// mapping is an index's mapping.
type mapping struct {
	dynamic            string
	dateDetection      bool
	numericDetection   bool
	dynamicDateFormats []string
	props              map[string]*fieldMapping
	extra              *object // other root parameters (_source, _meta, ...), echoed back
}

func newMapping() *mapping {
	return &mapping{
		dynamic:            "true",
		dateDetection:      true,
		dynamicDateFormats: []string{"strict_date_optional_time", "yyyy/MM/dd HH:mm:ss Z||yyyy/MM/dd Z"},
		props:              map[string]*fieldMapping{},
		extra:              &object{},
	}
}

func (m *mapping) clone() *mapping {
	c := *m
	c.props = cloneProps(m.props)
	c.extra = clone(m.extra).(*object)
	return &c
}

func cloneProps(p map[string]*fieldMapping) map[string]*fieldMapping {
	if p == nil {
		return nil
	}
	c := make(map[string]*fieldMapping, len(p))
	for k, f := range p {
		c[k] = f.clone()
	}
	return c
}

func (f *fieldMapping) clone() *fieldMapping {
	c := *f
	c.props = cloneProps(f.props)
	c.fields = cloneProps(f.fields)
	if f.params != nil {
		c.params = clone(f.params).(*object)
	}
	return &c
}

// knownTypes are the field types the server accepts in explicit mappings.
// Values of types outside validatedTypes are stored and returned, but not
// type checked or searchable.
var knownTypes = map[string]bool{
	"long": true, "integer": true, "short": true, "byte": true, "unsigned_long": true,
	"double": true, "float": true, "half_float": true, "scaled_float": true,
	"boolean": true, "keyword": true, "constant_keyword": true, "wildcard": true,
	"text": true, "match_only_text": true, "date": true, "date_nanos": true,
	"object": true, "nested": true, "flattened": true, "ip": true, "binary": true,
	"geo_point": true, "geo_shape": true, "dense_vector": true, "sparse_vector": true,
	"integer_range": true, "long_range": true, "float_range": true, "double_range": true,
	"date_range": true, "ip_range": true, "alias": true, "search_as_you_type": true,
	"completion": true, "token_count": true, "version": true, "histogram": true,
	"rank_feature": true, "rank_features": true, "semantic_text": true, "point": true, "shape": true,
	"percolator": true, "join": true, "annotated_text": true, "murmur3": true,
}

// ---- parsing explicit mappings ----

func parseMappingBody(v any) (*mapping, *esError) {
	m := newMapping()
	if err := m.merge(v); err != nil {
		return nil, err
	}
	return m, nil
}

func mapperParsing(reason string) *esError {
	inner := newErr(400, "mapper_parsing_exception", "%s", reason)
	return newErr(400, "mapper_parsing_exception", "Failed to parse mapping: %s", reason).causedBy(inner)
}

// merge applies a mapping definition ({"properties":..., "dynamic":...}) to m,
// as PUT _mapping does: new fields are added, existing ones must keep their type.
func (m *mapping) merge(v any) *esError {
	o, ok := v.(*object)
	if !ok {
		return mapperParsing("Expected map for property [mappings] but got a " + tokenName(v))
	}
	if pm, ok := o.get("_doc"); ok && len(o.M) == 1 {
		// typed mappings from 7.x are rejected in 8
		_ = pm
		return mapperParsing("Root mapping definition has unsupported parameters:  [_doc : " + javaString(pm) + "]")
	}
	for _, mem := range o.M {
		switch mem.Key {
		case "properties":
			po, ok := mem.Val.(*object)
			if !ok {
				return mapperParsing("Expected map for property [properties] on field [_doc] but got a " + tokenName(mem.Val))
			}
			if err := mergeProps(m.props, po, ""); err != nil {
				return err
			}
		case "dynamic":
			d, err := dynamicValue(mem.Val)
			if err != nil {
				return err
			}
			m.dynamic = d
		case "date_detection":
			b, ok := boolish(mem.Val)
			if !ok {
				return mapperParsing("Failed to parse value [" + javaString(mem.Val) + "] as only [true] or [false] are allowed.")
			}
			m.dateDetection = b
		case "numeric_detection":
			b, ok := boolish(mem.Val)
			if !ok {
				return mapperParsing("Failed to parse value [" + javaString(mem.Val) + "] as only [true] or [false] are allowed.")
			}
			m.numericDetection = b
		case "dynamic_date_formats":
			var fs []string
			switch t := mem.Val.(type) {
			case string:
				fs = []string{t}
			case *array:
				for _, e := range t.V {
					s, ok := e.(string)
					if !ok {
						return mapperParsing("Invalid format: [" + javaString(e) + "]")
					}
					fs = append(fs, s)
				}
			}
			m.dynamicDateFormats = fs
		case "_source", "_meta", "_routing", "dynamic_templates", "runtime", "_field_names", "_data_stream_timestamp", "subobjects", "enabled":
			m.extra.set(mem.Key, mem.Val)
		default:
			return mapperParsing(fmt.Sprintf("Root mapping definition has unsupported parameters:  [%s : %s]", mem.Key, javaString(mem.Val)))
		}
	}
	return nil
}

// routingRequired reports whether the mapping has "_routing": {"required":
// true}: then every read and write of a document by its id needs a routing.
func (m *mapping) routingRequired() bool {
	r, _ := m.extra.get("_routing")
	ro, ok := r.(*object)
	if !ok {
		return false
	}
	v, _ := ro.get("required")
	b, _ := boolish(v)
	return b
}

func dynamicValue(v any) (string, *esError) {
	switch t := v.(type) {
	case bool:
		return strconv.FormatBool(t), nil
	case string:
		switch t {
		case "true", "false", "strict", "runtime":
			return t, nil
		}
	}
	return "", mapperParsing(fmt.Sprintf("No enum constant org.elasticsearch.index.mapper.ObjectMapper.Dynamic.%s", strings.ToUpper(javaString(v))))
}

func boolish(v any) (bool, bool) {
	switch t := v.(type) {
	case bool:
		return t, true
	case string:
		switch t {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	return false, false
}

func mergeProps(props map[string]*fieldMapping, po *object, prefix string) *esError {
	for _, mem := range po.M {
		name := prefix + mem.Key
		def, ok := mem.Val.(*object)
		if !ok {
			return mapperParsing(fmt.Sprintf("Expected map for property [fields] on field [%s] but got a class java.lang.String", name))
		}
		nf, err := parseFieldDef(name, def)
		if err != nil {
			return err
		}
		if old := props[mem.Key]; old != nil {
			if old.typ != nf.typ {
				return errIllegalArgument("mapper [%s] cannot be changed from type [%s] to [%s]", name, old.typ, nf.typ)
			}
			if old.props != nil && nf.props != nil {
				if p, ok := def.get("properties"); ok {
					if err := mergeProps(old.props, p.(*object), name+"."); err != nil {
						return err
					}
				}
				continue
			}
			for k, sub := range nf.fields {
				if old.fields == nil {
					old.fields = map[string]*fieldMapping{}
				}
				old.fields[k] = sub
			}
			continue
		}
		props[mem.Key] = nf
	}
	return nil
}

func parseFieldDef(name string, def *object) (*fieldMapping, *esError) {
	f := &fieldMapping{coerce: true, params: &object{}}
	tv, hasType := def.get("type")
	_, hasProps := def.get("properties")
	switch {
	case hasType:
		s, ok := tv.(string)
		if !ok {
			return nil, mapperParsing(fmt.Sprintf("No type specified for field [%s]", name))
		}
		f.typ = s
	case hasProps:
		f.typ = "object"
	default:
		f.typ = "object"
	}
	if !knownTypes[f.typ] {
		return nil, mapperParsing(fmt.Sprintf("No handler for type [%s] declared on field [%s]", f.typ, name))
	}
	if f.typ == "object" || f.typ == "nested" {
		f.props = map[string]*fieldMapping{}
	}
	for _, mem := range def.M {
		switch mem.Key {
		case "type":
		case "properties":
			if f.props == nil {
				return nil, mapperParsing(fmt.Sprintf("unknown parameter [properties] on mapper [%s] of type [%s]", name, f.typ))
			}
			po, ok := mem.Val.(*object)
			if !ok {
				return nil, mapperParsing(fmt.Sprintf("Expected map for property [properties] on field [%s] but got a %s", name, tokenName(mem.Val)))
			}
			if err := mergeProps(f.props, po, name+"."); err != nil {
				return nil, err
			}
		case "fields":
			fo, ok := mem.Val.(*object)
			if !ok {
				return nil, mapperParsing(fmt.Sprintf("Expected map for property [fields] on field [%s] but got a %s", name, tokenName(mem.Val)))
			}
			f.fields = map[string]*fieldMapping{}
			for _, sm := range fo.M {
				sd, ok := sm.Val.(*object)
				if !ok {
					return nil, mapperParsing(fmt.Sprintf("Expected map for property [fields] on field [%s] but got a %s", name, tokenName(sm.Val)))
				}
				sf, err := parseFieldDef(name+"."+sm.Key, sd)
				if err != nil {
					return nil, err
				}
				f.fields[sm.Key] = sf
			}
		case "dynamic":
			d, err := dynamicValue(mem.Val)
			if err != nil {
				return nil, err
			}
			f.dynamic = d
			f.params.set(mem.Key, mem.Val)
		case "ignore_above":
			n, ok := mem.Val.(json.Number)
			if !ok {
				return nil, mapperParsing(fmt.Sprintf("Failed to parse value [%s] for field [ignore_above] of type [int]", javaString(mem.Val)))
			}
			i, _ := strconv.Atoi(string(n))
			f.ignoreAbove = i
			f.params.set(mem.Key, mem.Val)
		case "format":
			s, _ := mem.Val.(string)
			f.format = s
			f.params.set(mem.Key, mem.Val)
		case "coerce":
			if b, ok := boolish(mem.Val); ok {
				f.coerce = b
			}
			f.params.set(mem.Key, mem.Val)
		default:
			f.params.set(mem.Key, mem.Val)
		}
	}
	return f, nil
}

// ---- rendering ----

func (m *mapping) render() *object {
	o := &object{}
	if m.dynamic != "true" {
		o.set("dynamic", m.dynamic)
	}
	if !m.dateDetection {
		o.set("date_detection", false)
	}
	if m.numericDetection {
		o.set("numeric_detection", true)
	}
	o.M = append(o.M, m.extra.M...)
	if len(m.props) > 0 {
		o.set("properties", renderProps(m.props))
	}
	return o
}

func renderProps(p map[string]*fieldMapping) *object {
	names := make([]string, 0, len(p))
	for k := range p {
		names = append(names, k)
	}
	sort.Strings(names)
	o := &object{}
	for _, n := range names {
		o.set(n, p[n].render())
	}
	return o
}

func (f *fieldMapping) render() *object {
	o := &object{}
	if f.typ != "object" {
		o.set("type", f.typ)
	}
	if f.params != nil {
		keys := f.params.keys()
		sort.Strings(keys)
		for _, k := range keys {
			v, _ := f.params.get(k)
			o.set(k, v)
		}
	}
	if len(f.fields) > 0 {
		o.set("fields", renderProps(f.fields))
	}
	if len(f.props) > 0 {
		o.set("properties", renderProps(f.props))
	}
	return o
}

// lookup finds the mapping of a dotted field path, multi-fields included.
func (m *mapping) lookup(path string) *fieldMapping {
	parts := strings.Split(path, ".")
	props := m.props
	var cur *fieldMapping
	for i := 0; i < len(parts); i++ {
		var f *fieldMapping
		// field names may themselves contain dots only via objects; try the
		// longest match first to honour "a.b" keys mapped under objects.
		if props != nil {
			f = props[parts[i]]
		}
		if f == nil {
			if cur != nil && cur.fields != nil {
				if sub := cur.fields[strings.Join(parts[i:], ".")]; sub != nil {
					return sub
				}
			}
			return nil
		}
		cur = f
		props = f.props
	}
	return cur
}

// ---- document parsing ----

// indexedDoc holds the values a document contributes to each field path.
type indexedDoc map[string][]any

// docParser walks a document source against a mapping, the way
// DocumentParser does: it type checks values, adds dynamic fields to the
// mapping (when mutate is set) and collects the indexed values.
type docParser struct {
	m       *mapping
	id      string
	mutate  bool
	changed bool
	out     indexedDoc
	vals    []any // backing store of the first value of each path in out
}

// add appends an indexed value to a path. The first value of each path is
// cut from a shared slab with its capacity limited, so that a path's slice
// is a one-value slice in most documents, grows by itself when a path has
// more values and never overwrites another path's values.
func (dp *docParser) add(path string, v any) {
	if dp.out == nil {
		return
	}
	if cur, ok := dp.out[path]; ok {
		dp.out[path] = append(cur, v)
		return
	}
	if len(dp.vals) == cap(dp.vals) {
		dp.vals = make([]any, 0, 16)
	}
	dp.vals = append(dp.vals, v)
	n := len(dp.vals)
	dp.out[path] = dp.vals[n-1 : n : n]
}

func (dp *docParser) docDesc() string { return "document with id '" + dp.id + "'" }

func parseDocument(m *mapping, src any, id string, mutate bool) (indexedDoc, bool, *esError) {
	return walkDocument(m, src, id, mutate, true)
}

// walkDocument is parseDocument; without collect it only checks the
// document (and updates the mapping when mutate is set) and returns no
// indexed values.
func walkDocument(m *mapping, src any, id string, mutate, collect bool) (indexedDoc, bool, *esError) {
	root, ok := src.(*object)
	if !ok {
		return nil, false, newErr(400, "document_parsing_exception", "[1:1] Malformed content, must start with an object")
	}
	dp := &docParser{m: m, id: id, mutate: mutate}
	if collect {
		dp.out, dp.vals = make(indexedDoc, 2*len(root.M)), make([]any, 0, 2*len(root.M))
	}
	if err := dp.object(root, "", m.props, m.dynamic, "_doc"); err != nil {
		return nil, false, err
	}
	return dp.out, dp.changed, nil
}

func (dp *docParser) object(o *object, prefix string, props map[string]*fieldMapping, dynamic string, parentPath string) *esError {
	for _, mem := range o.M {
		if err := dp.field(mem.Key, mem.Val, mem.Pos, prefix, props, dynamic, parentPath); err != nil {
			return err
		}
	}
	return nil
}

func (dp *docParser) field(key string, v any, p pos, prefix string, props map[string]*fieldMapping, dynamic string, parentPath string) *esError {
	if key == "" {
		return newErr(400, "document_parsing_exception", "%s field name cannot be an empty string", p)
	}
	if i := strings.IndexByte(key, '.'); i > 0 && i < len(key)-1 {
		// "a.b": v is the value of b inside object a
		head, rest := key[:i], key[i+1:]
		return dp.field(head, &object{M: []member{{Key: rest, Val: v, Pos: p}}}, p, prefix, props, dynamic, parentPath)
	}
	switch key {
	case "_id", "_index", "_source", "_routing", "_seq_no", "_version", "_primary_term", "_ignored", "_field_names", "_doc_count", "_tier", "_data_stream_timestamp":
		return newErr(400, "document_parsing_exception", "%s Field [%s] is a metadata field and cannot be added inside a document. Use the index API request parameters.", p, key)
	}
	path := prefix + key
	if v == nil {
		return nil
	}
	f := props[key]
	if f == nil {
		if props == nil {
			return nil
		}
		switch dynamic {
		case "strict":
			return newErr(400, "strict_dynamic_mapping_exception", "%s mapping set to strict, dynamic introduction of [%s] within [%s] is not allowed", p, key, parentPath)
		case "false", "runtime":
			return nil
		}
		f = dp.dynamicField(v)
		if f == nil {
			return nil
		}
		dp.changed = true
		if !dp.mutate {
			// Not mapped yet, so not indexed by this pass; changed tells
			// the caller that a mutating pass would add it.
			return nil
		}
		props[key] = f
	}
	return dp.value(f, key, path, v, p, dynamic)
}

// dynamicField is DynamicFieldsBuilder: the type a new field gets from its
// first value.
func (dp *docParser) dynamicField(v any) *fieldMapping {
	switch t := v.(type) {
	case *array:
		for _, e := range t.V {
			if e == nil {
				continue
			}
			if f := dp.dynamicField(e); f != nil {
				return f
			}
		}
		return nil
	case *object:
		return &fieldMapping{typ: "object", props: map[string]*fieldMapping{}, coerce: true}
	case bool:
		return &fieldMapping{typ: "boolean", coerce: true}
	case json.Number:
		if strings.ContainsAny(string(t), ".eE") {
			return &fieldMapping{typ: "float", coerce: true}
		}
		return &fieldMapping{typ: "long", coerce: true}
	case string:
		if dp.m.dateDetection {
			if _, err := strconv.ParseInt(t, 10, 64); err != nil {
				for _, fs := range dp.m.dynamicDateFormats {
					if _, ok := parseDateFormats(t, fs, true); ok {
						f := &fieldMapping{typ: "date", coerce: true}
						if fs != "strict_date_optional_time" {
							f.format = dynamicDateFormatMapping(fs)
							f.params = obj("format", f.format)
						}
						return f
					}
				}
			}
		}
		if dp.m.numericDetection {
			if _, err := strconv.ParseInt(t, 10, 64); err == nil {
				return &fieldMapping{typ: "long", coerce: true}
			}
			if _, err := strconv.ParseFloat(t, 64); err == nil {
				return &fieldMapping{typ: "float", coerce: true}
			}
		}
		return &fieldMapping{typ: "text", coerce: true, fields: map[string]*fieldMapping{
			"keyword": {typ: "keyword", ignoreAbove: 256, coerce: true, params: obj("ignore_above", json.Number("256"))},
		}}
	}
	return nil
}

func dynamicDateFormatMapping(fs string) string {
	// ES drops the zone from the dynamic formats and appends epoch_millis.
	parts := strings.Split(fs, "||")
	for i, p := range parts {
		parts[i] = strings.TrimSuffix(p, " Z")
	}
	return strings.Join(parts, "||") + "||epoch_millis"
}

func (dp *docParser) fail(f *fieldMapping, path string, v any, p pos, cause *esError) *esError {
	if o, ok := v.(*object); ok {
		// the parser stands on the END_OBJECT after reading the preview
		p = o.End
	}
	return newErr(400, "document_parsing_exception", "%s failed to parse field [%s] of type [%s] in %s. Preview of field's value: '%s'",
		p, path, f.typ, dp.docDesc(), javaString(v)).causedBy(cause)
}

func (dp *docParser) value(f *fieldMapping, key, path string, v any, p pos, dynamic string) *esError {
	if a, ok := v.(*array); ok {
		for i, e := range a.V {
			if e == nil {
				continue
			}
			if err := dp.value(f, key, path, e, a.P[i], dynamic); err != nil {
				return err
			}
		}
		return nil
	}
	switch f.typ {
	case "object", "nested":
		o, ok := v.(*object)
		if !ok {
			return newErr(400, "document_parsing_exception", "%s object mapping for [%s] tried to parse field [%s] as object, but found a concrete value", p, path, key)
		}
		d := f.dynamic
		if d == "" {
			d = dynamic
		}
		return dp.object(o, path+".", f.props, d, path)
	}
	iv, cause := convertValue(f, v, p)
	if cause != nil {
		return dp.fail(f, path, v, p, cause)
	}
	if iv != nil {
		dp.add(path, iv)
	}
	for name, sub := range f.fields {
		sv, cause := convertValue(sub, v, p)
		if cause != nil {
			return dp.fail(sub, path+"."+name, v, p, cause)
		}
		if sv != nil && dp.out != nil {
			dp.add(path+"."+name, sv)
		}
	}
	return nil
}

// textValue is an indexed text value (analyzed at query time).
type textValue string

func notNumeric(v any, p pos) *esError {
	return newErr(400, "x_content_parse_exception", "%s Current token (%s) not numeric, can not use numeric value accessors", p, jacksonToken(v))
}

// convertValue turns a JSON value into the indexed value of a field type, or
// returns the exception ES reports as the cause. A nil value is not indexed.
func convertValue(f *fieldMapping, v any, p pos) (any, *esError) {
	switch f.typ {
	case "long", "integer", "short", "byte", "unsigned_long":
		return convertIntegral(f, v, p)
	case "double", "float", "half_float", "scaled_float":
		return convertFloating(f, v, p)
	case "boolean":
		switch t := v.(type) {
		case bool:
			return t, nil
		case string:
			switch t {
			case "true":
				return true, nil
			case "false":
				return false, nil
			case "":
				return nil, nil
			}
			return nil, errIllegalArgument("Failed to parse value [%s] as only [true] or [false] are allowed.", t)
		case *object:
			return nil, newErr(400, "x_content_parse_exception", "%s Current token (START_OBJECT) not of boolean type", p)
		default:
			return nil, newErr(400, "x_content_parse_exception", "%s Current token (%s) not of boolean type", p, jacksonToken(v))
		}
	case "keyword", "constant_keyword", "wildcard", "version":
		s, err := textOf(v, p)
		if err != nil {
			return nil, err
		}
		if f.ignoreAbove > 0 && len(s) > f.ignoreAbove && utf8.RuneCountInString(s) > f.ignoreAbove {
			return nil, nil
		}
		if _, isString := v.(string); isString {
			return v, nil // the same string, without boxing it again
		}
		return s, nil
	case "text", "match_only_text", "search_as_you_type", "annotated_text":
		s, err := textOf(v, p)
		if err != nil {
			return nil, err
		}
		return textValue(s), nil
	case "date", "date_nanos":
		format := f.format
		if format == "" {
			format = "strict_date_optional_time||epoch_millis"
			if f.typ == "date_nanos" {
				format = "strict_date_optional_time_nanos||epoch_millis"
			}
		}
		switch t := v.(type) {
		case string:
			ms, ok := parseDateFormats(t, format, false)
			if !ok {
				return nil, errIllegalArgument("failed to parse date field [%s] with format [%s]", t, format).
					causedBy(newErr(400, "date_time_parse_exception", "Failed to parse with all enclosed parsers"))
			}
			return ms, nil
		case json.Number:
			if !strings.Contains(format, "epoch_millis") && !strings.Contains(format, "epoch_second") {
				return nil, errIllegalArgument("failed to parse date field [%s] with format [%s]", t, format).
					causedBy(newErr(400, "date_time_parse_exception", "Failed to parse with all enclosed parsers"))
			}
			ms, ok := parseDateFormats(string(t), format, false)
			if !ok {
				return nil, errIllegalArgument("failed to parse date field [%s] with format [%s]", t, format)
			}
			return ms, nil
		case *object:
			return nil, newErr(400, "illegal_state_exception", "Can't get text on a START_OBJECT at %d:%d", p.line, p.col)
		default:
			return nil, errIllegalArgument("failed to parse date field [%s] with format [%s]", javaString(v), format)
		}
	case "flattened":
		return nil, nil
	default:
		// stored, returned in _source, not checked or searchable here
		return nil, nil
	}
}

func textOf(v any, p pos) (string, *esError) {
	switch t := v.(type) {
	case string:
		return t, nil
	case json.Number:
		return string(t), nil
	case bool:
		return strconv.FormatBool(t), nil
	case *object:
		return "", newErr(400, "illegal_state_exception", "Can't get text on a START_OBJECT at %d:%d", p.line, p.col)
	}
	return "", newErr(400, "illegal_state_exception", "Can't get text on a %s at %d:%d", tokenName(v), p.line, p.col)
}

var integralRange = map[string][2]float64{
	"long":          {math.MinInt64, math.MaxInt64},
	"integer":       {math.MinInt32, math.MaxInt32},
	"short":         {math.MinInt16, math.MaxInt16},
	"byte":          {math.MinInt8, math.MaxInt8},
	"unsigned_long": {0, math.MaxUint64},
}

var integralArticle = map[string]string{
	"long": "a long", "integer": "an integer", "short": "a short", "byte": "a byte", "unsigned_long": "an unsigned_long",
}

func convertIntegral(f *fieldMapping, v any, p pos) (any, *esError) {
	var text string
	switch t := v.(type) {
	case json.Number:
		text = string(t)
	case string:
		if t == "" {
			return nil, nil // an empty string is the null value
		}
		text = t
		if f.typ != "long" && f.typ != "unsigned_long" {
			// intValue(coerce) parses strings with Double.parseDouble
			d, err := javaParseDouble(t)
			if err != nil {
				return nil, newErr(400, "number_format_exception", "For input string: \"%s\"", t)
			}
			return checkIntegralRange(f, t, d)
		}
	default:
		return nil, notNumeric(v, p)
	}
	if i, err := strconv.ParseInt(text, 10, 64); err == nil {
		if f.typ == "unsigned_long" && i < 0 {
			return nil, errIllegalArgument("Value \"%s\" is out of range for an unsigned_long", text)
		}
		return checkIntegralRange(f, text, float64(i))
	}
	bf, ok := new(big.Float).SetPrec(200).SetString(strings.TrimSpace(text))
	if !ok {
		return nil, errIllegalArgument("For input string: \"%s\"", text)
	}
	if !bf.IsInt() && !f.coerce {
		return nil, errIllegalArgument("Value [%s] has a decimal part", text)
	}
	bi, _ := bf.Int(nil)
	if f.typ == "unsigned_long" {
		if bi.Sign() < 0 || bi.BitLen() > 64 {
			return nil, errIllegalArgument("Value \"%s\" is out of range for an unsigned_long", text)
		}
		d, _ := new(big.Float).SetInt(bi).Float64()
		return d, nil
	}
	if !bi.IsInt64() {
		return nil, errIllegalArgument("Value [%s] is out of range for %s", text, integralArticle[f.typ])
	}
	return checkIntegralRange(f, text, float64(bi.Int64()))
}

func checkIntegralRange(f *fieldMapping, text string, d float64) (any, *esError) {
	r := integralRange[f.typ]
	if d < r[0] || d > r[1] {
		return nil, errIllegalArgument("Value [%s] is out of range for %s", text, integralArticle[f.typ])
	}
	if f.typ == "long" {
		if i, err := strconv.ParseInt(text, 10, 64); err == nil {
			return i, nil
		}
	}
	return int64(d), nil
}

// javaParseDouble accepts what Double.parseDouble does for plain inputs.
func javaParseDouble(s string) (float64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimRight(t, "dDfF")
	switch t {
	case "NaN":
		return math.NaN(), nil
	case "Infinity", "+Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	if t == "" || strings.ContainsAny(t, "xXpP_") || strings.EqualFold(t, "inf") || strings.EqualFold(t, "+inf") || strings.EqualFold(t, "-inf") || strings.EqualFold(t, "nan") {
		return 0, fmt.Errorf("bad number")
	}
	return strconv.ParseFloat(t, 64)
}

func convertFloating(f *fieldMapping, v any, p pos) (any, *esError) {
	var d float64
	switch t := v.(type) {
	case json.Number:
		d, _ = strconv.ParseFloat(string(t), 64)
	case string:
		if t == "" {
			return nil, nil
		}
		var err error
		d, err = javaParseDouble(t)
		if err != nil {
			return nil, newErr(400, "number_format_exception", "For input string: \"%s\"", t)
		}
	default:
		return nil, notNumeric(v, p)
	}
	if f.typ == "float" || f.typ == "half_float" {
		d = float64(float32(d))
	}
	if math.IsNaN(d) || math.IsInf(d, 0) {
		return nil, errIllegalArgument("[%s] supports only finite values, but got [%s]", f.typ, javaDouble(d))
	}
	return d, nil
}

func javaDouble(d float64) string {
	switch {
	case math.IsNaN(d):
		return "NaN"
	case math.IsInf(d, 1):
		return "Infinity"
	case math.IsInf(d, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(d, 'g', -1, 64)
}
