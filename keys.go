package redstream

// Keys computes the Redis key names of one Redstream namespace. Every key
// this package reads or writes is named here, so the layout lives in exactly
// one place. It is the Ruby gem's layout, byte for byte:
//
//	<base>:stream:<name>                  main stream
//	<base>:stream:<name>.delay            delay stream
//	<base>:offset:<stream>:<consumer>     a consumer's committed offset
//	<base>:lock:<lockname>                a lock
//	<base>:lock:<lockname>.notify         a lock's release signal
//
// where <base> is "redstream", or "<namespace>:redstream" when a namespace is
// set. Dead-letter streams, backfill cursors, holds and reindex state, which
// the Ruby gem does not have, follow the same pattern:
// <base>:dlq:<stream>:<consumer>, <base>:backfill:<stream>:<index>,
// <base>:hold:<stream> and <base>:reindex:<name>.
//
// In Redis Cluster, wrap stream names in braces ("{products}"): every key of
// one stream then carries the same hash tag and lands in one slot, which the
// lock, offset and stream scripts need.
//
// The zero Keys has no namespace. Keys is a small value, safe to copy and to
// use concurrently.
type Keys struct {
	base string
}

// NewKeys returns the key layout for namespace ("" for none).
//
// The Ruby gem distinguishes a nil namespace ("redstream:…") from an empty
// one (":redstream:…"); here the empty string means no namespace.
func NewKeys(namespace string) Keys {
	if namespace == "" {
		return Keys{}
	}
	return Keys{base: namespace + ":redstream"}
}

func (k Keys) prefix() string {
	if k.base == "" {
		return "redstream"
	}
	return k.base
}

// Stream returns the key of the main stream name.
func (k Keys) Stream(name string) string { return k.prefix() + ":stream:" + name }

// Delay returns the key of the delay stream of name.
func (k Keys) Delay(name string) string { return k.prefix() + ":stream:" + DelayStream(name) }

// Offset returns the key holding the committed offset of consumer on stream.
func (k Keys) Offset(stream, consumer string) string {
	return k.prefix() + ":offset:" + stream + ":" + consumer
}

// Lock returns the key of the lock named lockname.
func (k Keys) Lock(lockname string) string { return k.prefix() + ":lock:" + lockname }

// Notify returns the list a lock's holder pushes to when it releases the
// lock named lockname, so that waiters wake at once.
func (k Keys) Notify(lockname string) string { return k.Lock(lockname) + ".notify" }

// DeadLetter returns the key of the dead-letter stream of consumer on stream.
func (k Keys) DeadLetter(stream, consumer string) string {
	return k.prefix() + ":dlq:" + stream + ":" + consumer
}

// Backfill returns the key holding the cursor (the last primary key
// finished) of an interrupted backfill of stream into index.
func (k Keys) Backfill(stream, index string) string {
	return k.prefix() + ":backfill:" + stream + ":" + index
}

// Hold returns the hash of the holds on stream: each field names a holder
// (such as a reindex) and holds the id after which it still needs the
// stream's messages. A Trimmer never trims past the lowest hold.
func (k Keys) Hold(stream string) string { return k.prefix() + ":hold:" + stream }

// Reindex returns the hash holding the state of the reindex of the
// configured stream name (all its shards), while one is in progress.
func (k Keys) Reindex(name string) string { return k.prefix() + ":reindex:" + name }

// ReindexLog returns the list of the records of the finished reindexes of
// the configured stream name, newest first.
func (k Keys) ReindexLog(name string) string { return k.Reindex(name) + ":log" }

// Group returns the sorted set of the live members of the worker group
// name: each member with the expiry of its heartbeat (Unix milliseconds).
func (k Keys) Group(name string) string { return k.prefix() + ":group:" + name }

// Want returns the key by which a group member asks the holder of the lock
// named lockname to hand it over.
func (k Keys) Want(lockname string) string { return k.Lock(lockname) + ".want" }

// DelayStream returns the name of the delay stream of the stream name.
func DelayStream(name string) string { return name + ".delay" }

// ConsumerLockName returns the lock name a consumer named consumer takes on
// stream, as the Ruby gem names it.
func ConsumerLockName(stream, consumer string) string { return "consumer:" + stream + ":" + consumer }

// ReindexLockName returns the lock name a reindex of the configured stream
// name takes, so that two reindexes of one stream never run at once.
func ReindexLockName(name string) string { return "reindex:" + name }

// TrimmerLockName returns the lock name a trimmer takes on stream.
func TrimmerLockName(stream string) string { return "trimmer:" + stream }

// DelayerName is the consumer name of a delayer on a delay stream: a delayer
// of "products" consumes "products.delay" as "delayer", so its offset and
// lock are those of that consumer, as in the Ruby gem.
const DelayerName = "delayer"
