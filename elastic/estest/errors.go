package estest

import (
	"fmt"
	"strings"
)

// esError is an Elasticsearch exception as rendered by
// ElasticsearchException.generateFailureXContent: {"error":{...},"status":N}.
type esError struct {
	status int
	typ    string
	reason string
	meta   []member // extra fields written after "reason" (index_uuid, shard, index, ...)
	cause  *esError

	// rootCauses overrides the computed root_cause list (search phase failures).
	rootCauses []*esError

	// simple errors are RestController's own: {"error":"text","status":N}.
	simple bool
	// noStatus drops "status" from a simple error (the "no handler found" body).
	noStatus bool
	// empty sends no body at all (413).
	empty bool
	// allow is the Allow header of a 405.
	allow string
}

func (e *esError) Error() string { return e.typ + ": " + e.reason }

func newErr(status int, typ, format string, a ...any) *esError {
	reason := format
	if len(a) > 0 {
		reason = fmt.Sprintf(format, a...)
	}
	return &esError{status: status, typ: typ, reason: reason}
}

func (e *esError) with(kv ...any) *esError {
	for i := 0; i+1 < len(kv); i += 2 {
		e.meta = append(e.meta, member{Key: kv[i].(string), Val: kv[i+1]})
	}
	return e
}

func (e *esError) causedBy(c *esError) *esError {
	e.cause = c
	return e
}

// inner renders the exception itself: type, reason, metadata, caused_by.
func (e *esError) inner() *object {
	o := obj("type", e.typ, "reason", e.reason)
	o.M = append(o.M, e.meta...)
	if e.cause != nil {
		o.M = append(o.M, member{Key: "caused_by", Val: e.cause.inner()})
	}
	return o
}

// rootCause is the exception without its cause, as in "root_cause".
func (e *esError) rootCause() *object {
	o := obj("type", e.typ, "reason", e.reason)
	o.M = append(o.M, e.meta...)
	return o
}

// body is the full HTTP error body.
func (e *esError) body() *object {
	if e.simple {
		o := obj("error", e.reason)
		if !e.noStatus {
			o.set("status", e.status)
		}
		return o
	}
	roots := e.rootCauses
	if roots == nil {
		// ElasticsearchException.guessRootCauses: the deepest ElasticsearchException;
		// for our shapes the outermost one is what ES reports.
		roots = []*esError{e}
	}
	rc := make([]any, len(roots))
	for i, r := range roots {
		rc[i] = r.rootCause()
	}
	inner := obj("root_cause", rc)
	inner.M = append(inner.M, e.inner().M...)
	return obj("error", inner, "status", e.status)
}

// ---- constructors for the exceptions the server raises ----

func errIllegalArgument(format string, a ...any) *esError {
	return newErr(400, "illegal_argument_exception", format, a...)
}

func errValidation(msgs ...string) *esError {
	var sb strings.Builder
	sb.WriteString("Validation Failed: ")
	for i, m := range msgs {
		fmt.Fprintf(&sb, "%d: %s;", i+1, m)
	}
	return newErr(400, "action_request_validation_exception", "%s", sb.String())
}

func errIndexNotFound(name string) *esError {
	return newErr(404, "index_not_found_exception", "no such index [%s]", name).
		with("resource.type", "index_or_alias", "resource.id", name, "index_uuid", "_na_", "index", name)
}

// errRoutingMissing is RoutingMissingException: a document of an index whose
// mapping has "_routing": {"required": true}, read or written without a
// routing.
func errRoutingMissing(index, id string) *esError {
	return newErr(400, "routing_missing_exception", "routing is required for [%s]/[%s]", index, id).
		with("index_uuid", "_na_", "index", index)
}

func errParse(p pos, format string, a ...any) *esError {
	return newErr(400, "x_content_parse_exception", "%s %s", p, fmt.Sprintf(format, a...))
}

func errFromParse(err error) *esError {
	if pe, ok := err.(*parseError); ok {
		return newErr(400, "x_content_parse_exception", "%s", pe.Error())
	}
	if ee, ok := err.(*esError); ok {
		return ee
	}
	return newErr(400, "parse_exception", "%s", err.Error())
}

func errBodyRequired() *esError {
	return newErr(400, "parse_exception", "request body is required")
}

func errNotImplemented(what string) *esError {
	return errIllegalArgument("%s is not implemented by the estest server", what)
}

// shardMeta is the metadata a shard-level exception carries.
func (ix *index) shardMeta(e *esError) *esError {
	return e.with("index_uuid", ix.uuid, "shard", "0", "index", ix.name)
}

// javaExceptions are the exception types raised by the JDK rather than
// ElasticsearchExceptions. ElasticsearchException.guessRootCauses wraps
// such an exception in one of the same name whose cause it is, so a search
// phase's caused_by shows it twice; an ElasticsearchException is its own
// root cause unless its cause is one too.
var javaExceptions = map[string]bool{
	"illegal_argument_exception": true, "number_format_exception": true,
	"illegal_state_exception": true, "null_pointer_exception": true,
	"arithmetic_exception": true, "unsupported_operation_exception": true,
	"class_cast_exception": true, "date_time_parse_exception": true,
}

// searchPhaseError wraps a shard failure the way a search that failed on
// every shard reports it: search_phase_execution_exception "all shards
// failed", with the shard failure's guessed root cause as caused_by
// (SearchPhaseExecutionException.guessFirstRootCause).
func searchPhaseError(indexName string, shardErr *esError) *esError {
	return searchPhaseErrorOn([]string{indexName}, shardErr)
}

// searchPhaseErrorOn is searchPhaseError for a failure on every shard of
// several indices.
func searchPhaseErrorOn(indexNames []string, shardErr *esError) *esError {
	failed := make([]any, len(indexNames))
	for i, name := range indexNames {
		failed[i] = obj("shard", 0, "index", name, "node", nodeID, "reason", shardErr.inner())
	}
	root := shardErr
	for !javaExceptions[root.typ] && root.cause != nil && !javaExceptions[root.cause.typ] {
		root = root.cause
	}
	cause := root
	if javaExceptions[root.typ] {
		wrapper := *root
		wrapper.cause = root
		cause = &wrapper
	}
	e := &esError{
		status:     shardErr.status,
		typ:        "search_phase_execution_exception",
		reason:     "all shards failed",
		meta:       []member{{Key: "phase", Val: "query"}, {Key: "grouped", Val: true}, {Key: "failed_shards", Val: failed}},
		cause:      cause,
		rootCauses: []*esError{root},
	}
	return e
}
