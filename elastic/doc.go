// Package elastic keeps an Elasticsearch 8 index in sync with a PostgreSQL
// table through redstream streams. Its Handler is a redstream.Handler: hand
// it to redstream.NewConsumer.
//
// For each batch, the Handler collects the batch's record ids, loads their
// current state with a Loader in one call (TableLoader: one query,
// WHERE pk = ANY($1)), and writes one or more _bulk requests: an index of
// each row found, a delete of each id not found or soft-deleted. It returns
// only when every document is written or dead-lettered, so the consumer's
// offset never moves past a change that is not in the index.
//
// # Item results
//
//	2xx                               done
//	404 on a delete                   done (already absent)
//	409 under external versioning     done (a newer version is indexed)
//	429, 5xx                          resent alone, with capped exponential backoff and jitter
//	other 4xx (mapping, parse errors) dead-lettered with status, type and reason
//
// An item answered 500 is resent like the other 5xx: at item level
// Elasticsearch answers 500 for an exception it did not classify, which a
// shard failing over can cause as well as a document that trips a bug, and
// a resend that succeeds loses nothing. Items still refused after
// Options.MaxItemRetries resends fail the batch.
//
// A bulk request that fails as a whole (connection refused, timeout, 429 or
// 5xx for the request) returns an error: the consumer backs off and delivers
// the batch again, and the rows are re-read.
//
// # Messages without a usable id
//
// A message whose payload has no id that is a number or a string, or whose
// id can never name a row (TableLoader's IDChecker: "abc" or 2^63 for a
// bigint key), is dead-lettered with the reason and never loaded. When the
// database refuses a batch's query with a data exception (SQLSTATE class
// 22, for instance an id a custom query cannot cast), the ids are loaded
// again in halves until those that fail alone are found; they are
// dead-lettered with the database's message (an *IDError) and the rest of
// the batch is written. One bad id never holds up the stream.
//
// # Stale writes
//
// With TableOptions.VersionColumn, documents are written with
// version_type=external_gte and the row's version, so a late write of an
// older state (a deposed worker, a replayed batch) is refused by
// Elasticsearch with 409 and counted as a conflict, never applied.
//
// # Backfill and verify
//
// Backfill indexes the rows that never went through a stream (a table
// written before the plugin, a new index): it walks the table's primary
// keys in key order, a keyset page at a time, and hands each page to the
// Handler as a batch of {"id":"<key>"} messages. A Cursor (RedisCursor)
// makes an interrupted walk resume where it stopped.
//
// Verify compares a table with its index and reports the rows whose
// document is missing, the documents whose row is gone or soft-deleted,
// and, with versions, the documents older than their row. A RepairFunc
// fixes what differs: Requeue queues the ids for the stream's worker,
// Reindex writes them at once.
//
// The redstream binary's backfill and verify commands are these functions
// with flags.
//
// # Reindex
//
// A Reindexer rebuilds the index behind an alias with no downtime: a new
// physical index, backfilled, the streams' changes since its start
// replayed from a hold the trimmers respect (redstream.Keys.Hold),
// verified, and the alias swapped in one POST /_aliases request. Its state
// lives in Redis, so a run killed at any step resumes. CreateAliasedIndex
// creates a physical index with its alias, as the redstream worker does.
// The binary's reindex command is a Reindexer with flags.
//
// # Clients
//
// The Handler and Verify talk to Elasticsearch through an esapi.Transport:
// an *elasticsearch.Client, or anything with its Perform method (a
// wrapper that counts, delays or fails requests in a test).
//
// OpenSearch 2 is the other engine they write to: hand them the
// *opensearch.Client of NewOpenSearchClient (opensearch-go v4) instead,
// and nothing else changes. The bulk bodies and the reading of their
// answers are the same code for both engines; Engine names where the
// engines differ (the error type of a document its mapping refuses, the
// product header, sorting on _id, the point-in-time path), and
// DetectEngine tells which one a cluster runs.
//
// Retries of a whole request inside the request are the client's: the
// official client resends on connection errors and on the statuses of
// elasticsearch.Config.RetryOnStatus (502, 503 and 504 by default), up to
// MaxRetries times, with no pause unless RetryBackoff is set. The
// redstream binary adds 429, and pauses from 100 ms doubling up to 1 s
// with jitter; a whole-request 500 is left to the consumer's backoff
// (redstream.ConsumerOptions.MaxBackoff), which bounds how long the stream
// stays idle once Elasticsearch answers normally again.
//
// The Handler does not create indices; create them with your mapping
// first (CreateAliasedIndex puts one behind an alias, which a Reindexer
// can later rebuild), or let Elasticsearch create them dynamically.
package elastic
