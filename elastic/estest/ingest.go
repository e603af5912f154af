package estest

import (
	"encoding/json"
	"math"
	"sort"
	"strings"
)

// pipeline is an ingest pipeline: its definition as stored (and returned by
// GET), and its processors.
type pipeline struct {
	def        *object
	processors []setProcessor
}

// setProcessor is the set processor: field set to value, unless override
// is false and the field is there already.
type setProcessor struct {
	field    string
	value    any
	override bool
}

// processorError is an error in a pipeline's definition, as
// ConfigurationUtils raises it: a parse_exception naming the processor
// type, and the property when there is one.
func processorError(typ, property, format string, a ...any) *esError {
	e := newErr(400, "parse_exception", format, a...).with("processor_type", typ)
	if property != "" {
		e.with("property_name", property)
	}
	return e
}

// parsePipeline reads a pipeline definition (PUT _ingest/pipeline/{id}).
// Only the set processor with a literal value is implemented; every other
// processor type the ingest-common module brings, and conditions,
// failure handlers and templates, are refused as not implemented.
func parsePipeline(id string, body *object) (*pipeline, *esError) {
	p := &pipeline{def: body}
	var procs *array
	var unknownKeys []string
	for _, m := range body.M {
		switch m.Key {
		case "description":
		case "processors":
			a, ok := m.Val.(*array)
			if !ok {
				return nil, newErr(400, "parse_exception", "[processors] property isn't a list, but of type [%s]", javaType(m.Val)).
					with("property_name", "processors")
			}
			procs = a
		case "version", "_meta", "on_failure", "deprecated":
			return nil, errNotImplemented("pipeline [" + m.Key + "]")
		default:
			unknownKeys = append(unknownKeys, m.Key)
		}
	}
	if procs == nil {
		return nil, newErr(400, "parse_exception", "[processors] required property is missing").with("property_name", "processors")
	}
	for _, v := range procs.V {
		o, ok := v.(*object)
		if !ok || len(o.M) == 0 {
			return nil, errNotImplemented("a processor that is not an object with one key")
		}
		// Each key of the object is a processor of its own, in order.
		for _, m := range o.M[1:] {
			if m.Key != "set" && !knownProcessors[m.Key] {
				return nil, processorError(m.Key, "", "No processor type exists with name [%s]", m.Key)
			}
		}
		if len(o.M) > 1 {
			return nil, errNotImplemented("a processor object with more than one key")
		}
		typ := o.M[0].Key
		if typ != "set" {
			if knownProcessors[typ] {
				return nil, errNotImplemented("the [" + typ + "] processor")
			}
			return nil, processorError(typ, "", "No processor type exists with name [%s]", typ)
		}
		cfg, ok := o.M[0].Val.(*object)
		if !ok {
			return nil, processorError(typ, "", "property isn't a map, but of type [%s]", javaType(o.M[0].Val))
		}
		sp := setProcessor{override: true}
		hasField, hasValue := false, false
		var unknown []string
		for _, m := range cfg.M {
			switch m.Key {
			case "field":
				s, ok := m.Val.(string)
				if !ok {
					return nil, processorError(typ, "field", "[field] property isn't a string, but of type [%s]", javaType(m.Val))
				}
				sp.field, hasField = s, true
			case "value":
				if s, ok := m.Val.(string); ok && strings.Contains(s, "{{") {
					return nil, errNotImplemented("a template in the [set] processor's value")
				}
				sp.value, hasValue = m.Val, true
			case "override":
				b, ok := m.Val.(bool)
				if !ok {
					return nil, processorError(typ, "override", "[override] property isn't a boolean, but of type [%s]", javaType(m.Val))
				}
				sp.override = b
			case "description", "tag":
			case "if", "on_failure", "ignore_failure", "copy_from", "ignore_empty_value", "media_type":
				return nil, errNotImplemented("the [set] processor's [" + m.Key + "]")
			default:
				unknown = append(unknown, m.Key)
			}
		}
		if !hasField {
			return nil, processorError(typ, "field", "[field] required property is missing")
		}
		if !hasValue {
			return nil, processorError(typ, "value", "[value] required property is missing")
		}
		if len(unknown) > 0 {
			return nil, processorError(typ, "", "processor [%s] doesn't support one or more provided configuration parameters [%s]", typ, strings.Join(unknown, ", "))
		}
		p.processors = append(p.processors, sp)
	}
	if len(unknownKeys) > 0 {
		return nil, newErr(400, "parse_exception", "pipeline [%s] doesn't support one or more provided configuration parameters [%s]", id, strings.Join(unknownKeys, ", "))
	}
	return p, nil
}

// knownProcessors are the processor types of the ingest-common module,
// which Elasticsearch has and the estest server does not implement.
var knownProcessors = map[string]bool{
	"append": true, "bytes": true, "community_id": true, "convert": true, "csv": true, "date": true,
	"date_index_name": true, "dissect": true, "dot_expander": true, "drop": true, "fail": true,
	"fingerprint": true, "foreach": true, "grok": true, "gsub": true, "html_strip": true, "join": true,
	"json": true, "kv": true, "lowercase": true, "network_direction": true, "pipeline": true,
	"redact": true, "registered_domain": true, "remove": true, "rename": true, "reroute": true,
	"script": true, "sort": true, "split": true, "terminate": true, "trim": true, "uppercase": true,
	"uri_parts": true, "urldecode": true,
}

// javaType is the Java class of a JSON value as the ingest code holds it
// (Jackson's: the smallest of Integer, Long and BigInteger for an
// integer, Double for any other number), which its errors name.
func javaType(v any) string {
	switch t := v.(type) {
	case string:
		return "java.lang.String"
	case bool:
		return "java.lang.Boolean"
	case *object:
		return "java.util.HashMap"
	case *array:
		return "java.util.ArrayList"
	case json.Number:
		if strings.ContainsAny(string(t), ".eE") {
			return "java.lang.Double"
		}
		n, err := t.Int64()
		switch {
		case err != nil:
			return "java.math.BigInteger"
		case n < math.MinInt32 || n > math.MaxInt32:
			return "java.lang.Long"
		}
		return "java.lang.Integer"
	}
	return "null"
}

// ingest runs op's pipeline over its source, as the ingest service does
// before the write reaches its index: an index or create naming a
// pipeline other than _none. A pipeline that does not exist fails the
// item. ran reports whether the op went through ingest. The caller holds
// h.mu.
func (h *Handler) ingest(op *writeOp) (ran bool, err *esError) {
	if !op.hasPipeline || op.pipeline == "_none" {
		return false, nil
	}
	switch op.kind {
	case "delete":
		return false, nil // a delete has no document for a pipeline
	case "update":
		if _, ok := h.pipelines[op.pipeline]; ok {
			return false, errNotImplemented("an update through an ingest pipeline")
		}
		return false, errIllegalArgument("pipeline with id [%s] does not exist", op.pipeline)
	}
	p, ok := h.pipelines[op.pipeline]
	if !ok {
		return true, errIllegalArgument("pipeline with id [%s] does not exist", op.pipeline)
	}
	v, present, perr := parseJSON(op.source, false)
	doc, isObj := v.(*object)
	if perr != nil || !present || !isObj {
		return true, errNotImplemented("a document that is not a JSON object through an ingest pipeline")
	}
	for _, sp := range p.processors {
		if err := setPath(doc, sp.field, clone(sp.value), sp.override); err != nil {
			return true, err
		}
	}
	op.source = marshal(doc)
	return true, nil
}

// setPath is IngestDocument.setFieldValue: it sets the dotted path field
// in doc to v, making the objects missing on the way. A value on the way
// that is not an object fails the document.
func setPath(doc *object, field string, v any, override bool) *esError {
	parts := strings.Split(field, ".")
	o := doc
	for i, k := range parts[:len(parts)-1] {
		next, ok := o.get(k)
		if !ok {
			no := &object{}
			o.set(k, no)
			o = no
			continue
		}
		no, isObj := next.(*object)
		if !isObj {
			return errIllegalArgument("cannot set [%s] with parent object of type [%s] as part of path [%s]", parts[i+1], javaType(next), field)
		}
		o = no
	}
	last := parts[len(parts)-1]
	if _, exists := o.get(last); exists && !override {
		return nil
	}
	o.set(last, v)
	return nil
}

// pipelineNames returns the pipelines' ids in order.
func (h *Handler) pipelineNames() []string {
	names := make([]string, 0, len(h.pipelines))
	for name := range h.pipelines {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// handlePutPipeline is PUT _ingest/pipeline/{id}.
func handlePutPipeline(rc *reqCtx) (int, any, *esError) {
	rc.allow("master_timeout", "timeout", "if_version")
	body, err := rc.requireBody()
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	if _, ok := rc.q.get("if_version"); ok {
		return 0, nil, errNotImplemented("if_version")
	}
	p, err := parsePipeline(rc.path["id"], body)
	if err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pipelines[rc.path["id"]] = p
	return 200, obj("acknowledged", true), nil
}

// handleGetPipeline is GET _ingest/pipeline[/{id}]: the definitions as
// stored, {} and 404 when the id names none.
func handleGetPipeline(rc *reqCtx) (int, any, *esError) {
	rc.allow("master_timeout", "summary")
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	out := obj()
	id, one := rc.path["id"]
	for _, name := range h.pipelineNames() {
		if !one || name == id {
			out.set(name, h.pipelines[name].def)
		}
	}
	if one && len(out.M) == 0 {
		return 404, out, nil
	}
	return 200, out, nil
}

// handleDeletePipeline is DELETE _ingest/pipeline/{id}.
func handleDeletePipeline(rc *reqCtx) (int, any, *esError) {
	rc.allow("master_timeout", "timeout")
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	id := rc.path["id"]
	if _, ok := h.pipelines[id]; !ok {
		return 0, nil, newErr(404, "resource_not_found_exception", "pipeline [%s] is missing", id)
	}
	delete(h.pipelines, id)
	return 200, obj("acknowledged", true), nil
}
