// Package redstream keeps secondary datastores (search indexes, caches,
// analytics stores) in sync with a primary PostgreSQL database written
// through GORM, over Redis streams. It speaks the wire format of the Ruby
// gem Redstream byte for byte, so Ruby and Go producers and consumers can
// share one Redis.
//
// # The data path
//
// When a record is created, updated or deleted, its id goes to two Redis
// streams:
//
//   - the delay stream ("<name>.delay"), inside the database transaction,
//     just before COMMIT: if Redis cannot take it, the transaction is rolled
//     back, so no committed change is ever unknown to Redis;
//   - the main stream ("<name>"), right after COMMIT, never on rollback.
//
// Consumers read the main stream in batches and re-read each record's
// current row, so a message says only "this record may have changed". A
// Delayer moves delay messages to the main stream once they are older than
// the longest transaction: when a process dies, or Redis fails, between a
// commit and its main-stream write, the change still arrives, only late. A
// Trimmer deletes what every consumer has processed.
//
// # Producing
//
// Register the GORM plugin right after opening the database:
//
//	producer, err := redstream.NewProducer(rdb, nil)
//	if err != nil { … }
//	db.Use(redstream.NewPlugin(producer))
//
// Writes that bypass GORM's callbacks (raw SQL, batch updates by an
// arbitrary condition) are wrapped in Producer.Bulk or Producer.BulkQuery:
// delay messages before, main-stream messages after.
//
// # Consuming
//
// A Consumer reads a stream in batches from its committed offset and hands
// them to a Handler; when the handler returns nil, the batch's last id is
// committed. Delivery is at least once. A failing batch is retried with
// capped exponential backoff, and a handler can dead-letter single messages
// (Batch.DeadLetter) so that one poison message never blocks a stream. The
// package elastic provides a Handler that writes to Elasticsearch.
//
// A Delayer moves due delay messages to their main stream; a Trimmer
// deletes, with XTRIM MINID, what every configured consumer has committed.
// Every worker has a blocking Run(ctx) that returns nil when ctx ends, and a
// Stats method for monitoring.
//
// # Leases
//
// Each worker holds a lease, a Redis lock with the Ruby gem's key, so that
// one holder per stream and name is active while others stand by. The
// lease is refreshed every TTL/3; when a refresh fails or the lease's local
// deadline passes, the worker's context is cancelled with ErrLockLost.
// Offsets are committed by a script that checks the lease in the same step,
// so a deposed holder commits nothing.
//
// # Operating
//
// NewDeadLetterQueue lists, replays and drops the dead letters of one
// consumer; ReadStatus reports a stream's length, delay backlog, the
// offsets, lag and lease holders of its consumers, and its dead-letter
// counts. The package elastic adds Backfill and Verify. Together they are
// everything the redstream binary does, callable from Go.
//
// # Keys and messages
//
// Keys computes every Redis key (see its documentation for the layout).
// Each message is one stream entry with a single field "payload" holding
// compact JSON, by default {"id":<primary key>}. A model chooses its stream
// name and payload by implementing Namer and Payloader; ShardName spreads a
// model over several streams by key. ID parses and orders stream ids
// numerically.
package redstream
