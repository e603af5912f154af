// Package estest is an in-memory Elasticsearch 8 server for tests.
//
// A Server speaks the Elasticsearch 8 REST protocol over net/http/httptest,
// so the official go-elasticsearch v8 client (esapi, esutil.BulkIndexer and
// the typed client) talks to it as to a one-node cluster:
//
//	srv := estest.New(t)          // closed when the test ends
//	es := srv.Client(t)           // *elasticsearch.Client pointed at srv
//	srv.FailItem("products", "7", 429, "es_rejected_execution_exception", "busy", 2)
//	src, version, ok := srv.Doc("products", "7")
//
// NewHandler returns the same API as an http.Handler, to serve it on a real
// port (for instance from a demo binary).
//
// # What is faithful
//
// The behaviour follows the Elasticsearch 8.x source (RestController,
// BaseRestHandler, BulkRequestParser, IndexRequest/DeleteRequest/UpdateRequest
// validation, VersionType, InternalEngine, DocumentParser,
// DynamicFieldsBuilder) and the reference documentation:
//
//   - Every response carries X-Elastic-Product: Elasticsearch, so the client's
//     product check passes. Responses are application/json, or the
//     application/vnd.elasticsearch+json;compatible-with=N media type when the
//     request asks for it. Request bodies must be JSON or NDJSON (plain or
//     vnd compatible-with 7/8): other or missing Content-Types get 406.
//   - Routing works like RestController's path trie: an unknown path is 400
//     {"error":"no handler found for uri [...] and method [...]"}, a known path
//     with a wrong method is 405 with an Allow header, and paths that match
//     /{index} wildcards behave as in Elasticsearch (GET /_bulk looks for an
//     index named "_bulk"). Unknown query parameters are 400
//     illegal_argument_exception "request [path] contains unrecognized
//     parameter: [x]", with the "did you mean" suggestions.
//   - Errors have Elasticsearch's shape: {"error":{"root_cause":[...],"type",
//     "reason", metadata, "caused_by"},"status":N}, with Elasticsearch's
//     exception types and reason strings for the cases implemented.
//   - _bulk parses NDJSON like BulkRequestParser (8.x, REST API version 8):
//     the body must end with a newline, blank lines are skipped, malformed or
//     unknown action lines fail the whole request with 400, invalid documents
//     fail only their item. index, create, update (doc, upsert,
//     doc_as_upsert, detect_noop) and delete are supported with _index, _id,
//     routing, version, version_type (internal, external, external_gte),
//     if_seq_no, if_primary_term, pipeline and require_alias. Items come back
//     in order with _index, _id, _version, result, _shards, _seq_no,
//     _primary_term and status, or status and error; "errors" is true iff an
//     item failed (a delete answered 404 not_found is not a failure). The
//     request-level checks of BulkRequest.validate apply (no requests added,
//     id is missing, internal versioning used for concurrency control, ...).
//   - Versions: internal versions start at 1 and grow on every write,
//     deletes and not_found deletes included (a delete leaves a tombstone,
//     kept for index.gc_deletes, 60s by default). external and external_gte
//     conflict with the exact VersionType messages; create on an existing
//     document and if_seq_no mismatches give 409
//     version_conflict_engine_exception. _seq_no grows per index (one shard),
//     _primary_term is 1. A delete with internal versioning does not
//     auto-create a missing index (its item fails with index_not_found_exception);
//     every other write auto-creates the index.
//   - Mapping: dynamic mapping fixes a field's type at first sight (integers
//     long, decimals float, strings text with a keyword sub-field with
//     ignore_above 256 unless date detection matches, booleans, objects);
//     explicit mappings at index creation and PUT _mapping are honoured, with
//     dynamic true/false/strict. A value that does not parse as the mapped
//     type is rejected with document_parsing_exception and the
//     "[line:col] failed to parse field [f] of type [t] in document with id
//     'x'. Preview of field's value: 'v'" reason and its cause. Checked types:
//     long, integer, short, byte, unsigned_long, double, float, half_float,
//     scaled_float, boolean, keyword, text, date and object. The _source is
//     stored and returned byte for byte.
//   - Refresh: GET and _mget are realtime; _search and _count see the state
//     of the last refresh. A write becomes searchable after refresh=true, a
//     refresh=wait_for request returns once the next scheduled refresh made it
//     visible (and blocks until an explicit refresh when periodic refresh is
//     off), after POST _refresh, or at the next refresh_interval tick (1s by
//     default, -1 disables). A shard without an explicit refresh_interval that
//     has not been searched for 30s is search idle and refreshes on the next
//     search. AdvanceClock moves the server's clock to test these without
//     sleeping.
//   - Sorting on _id is rejected as in 8.x (indices.id_field_data.enabled is
//     false): 400 search_phase_execution_exception "all shards failed" caused
//     by illegal_argument_exception "Fielddata access on the _id field is
//     disallowed, ...". Sorting on a text field and on an unmapped field
//     without unmapped_type fail the same way with Elasticsearch's messages.
//   - Indices and aliases: PUT/GET/HEAD/DELETE /<index> (settings
//     number_of_shards, number_of_replicas, refresh_interval, gc_deletes,
//     max_result_window; index name validation), POST _aliases (add, remove,
//     remove_index, applied atomically, is_write_index), GET _alias, writes
//     through an alias with one index or a write index, reads through aliases,
//     comma lists, wildcards and _all.
//   - Ingest pipelines: PUT, GET and DELETE _ingest/pipeline/{id} with
//     the definition errors of ConfigurationUtils. An index or create action
//     naming a pipeline (on the action, as the bulk request's default or on
//     the single-document API) runs it before the write reaches its index,
//     so a document whose pipeline does not exist ("pipeline with id [x]
//     does not exist") or fails creates no index; "_none" and deletes skip
//     it; the bulk answer then has "ingest_took". Only the set processor is
//     implemented (field, with dotted paths; a literal value; override).
//   - A request body over http.max_content_length (100mb) gets 413 with an
//     empty body; like Elasticsearch's HTTP layer, which answers before any
//     REST handler runs, that response has no X-Elastic-Product header.
//
// # Endpoints
//
// GET|HEAD /, GET /_cluster/health[/{index}], POST|PUT [/{index}]/_bulk,
// GET|POST [/{index}]/_search, GET|POST [/{index}]/_count,
// GET|POST [/{index}]/_mget, GET|POST [/{index}]/_refresh, POST /_aliases,
// GET /_alias[/{name}], GET /{index}/_alias[/{name}],
// PUT|POST|DELETE /{index}/_alias/{name}, GET [/{index}]/_mapping,
// PUT|POST /{index}/_mapping, GET [/{index}]/_settings,
// PUT|GET|HEAD|DELETE /{index}, PUT|POST /{index}/_doc/{id}, POST /{index}/_doc,
// GET|HEAD|DELETE /{index}/_doc/{id}, PUT|POST /{index}/_create/{id},
// POST /{index}/_update/{id}, GET|HEAD /{index}/_source/{id},
// GET /_ingest/pipeline[/{id}], PUT|DELETE /_ingest/pipeline/{id}.
//
// # What is not implemented
//
//   - One node, one shard per index: number_of_shards is recorded and
//     reported but documents are not distributed, routing is stored and
//     returned but does not select a shard (a mapping's "_routing":
//     {"required": true} is enforced: a read or write by id without a
//     routing fails with routing_missing_exception), replicas are never assigned
//     (_shards.successful is 1, health is yellow when replicas are asked for).
//   - Queries: match_all, match_none, ids, term, terms (no lookup), match
//     (operator or/and; no fuzziness or minimum_should_match), bool (integer
//     minimum_should_match), range (no date math, time_zone or relation),
//     exists, prefix and constant_score. Every other query type is rejected
//     with 400 "... is not implemented by the estest server", as are the q
//     parameter, scroll, aggregations, highlighting, suggesters, collapse,
//     fields/docvalue_fields, point in time, knn and runtime fields. A term,
//     terms or range value that a number or boolean field cannot parse fails
//     the search on its shards (query_shard_exception "failed to create
//     query: ..."), as in Elasticsearch; one that a date field cannot parse
//     matches nothing instead.
//   - Scores are not BM25: a matching scoring clause adds its boost (1), so
//     relevance ordering is only roughly like Elasticsearch's. Text analysis
//     is a simplified standard analyzer (lowercased letter and digit runs);
//     custom analyzers, normalizers and synonyms are ignored.
//   - Sorting supports document fields of the checked types, _score, _doc,
//     _seq_no and _index, asc/desc, missing and unmapped_type, min/max modes;
//     not scripts, geo distance or nested sorts. search_after works on these.
//   - Scripted updates, data streams, index templates, dynamic templates,
//     runtime fields, security, tasks and the cat, snapshot and cluster
//     settings APIs do not exist. Of ingest, every processor but set, and
//     conditions, failure handlers and templated values are not
//     implemented (a pipeline naming them is refused as such), nor are an
//     update through a pipeline and the simulate API; the
//     index.default_pipeline and index.final_pipeline settings are
//     accepted and ignored. A source a pipeline changed is written
//     in its original key order, the new keys last; Elasticsearch writes
//     it from a hash map, in an order of its own.
//   - The refresh model is per index and lazy; wait_for_active_shards and
//     timeouts are validated and otherwise ignored.
//   - Reasons that quote Jackson's own parse errors (malformed JSON) and a
//     few causes of document_parsing_exception are close to, not identical
//     with, Elasticsearch's wording; ?pretty output is indented JSON but not
//     byte-identical to Elasticsearch's pretty printer.
//
// # Cost
//
// A search of one index sorted on fields (not on _score, without
// track_scores or terminate_after) is answered from the index's documents
// kept in the order of that sort and brought up to date at each refresh:
// paging through a large index with search_after or from/size costs each
// page about its own hits, not a sort of the index. Other searches
// evaluate and order every document. Answers are the same either way.
//
// # Fault injection
//
// RejectNext (whole-request 429 es_rejected_execution_exception), FailNext
// (5xx with an error body), DropNext (connection closed without a response),
// DropBulkNext (half of a _bulk applied, then the connection closed without
// a response), SetLatency and FailItem (per-document item failures, for
// instance item-level 429s) are safe for concurrent use, as are the
// inspection helpers Doc, Count and Requests, which bypass HTTP and refresh.
package estest
