package redstream

import (
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// CheckCluster returns an error when the keys of stream would not all lie
// in one Redis Cluster hash slot: the main and delay streams, the delayer's
// and the trimmer's lock and notify keys and the delayer's offset, and for
// each of consumers its offset, lock, notify and dead-letter keys. The
// scripts that fence offsets, release locks and move delay messages take
// several of these keys at once, which Redis Cluster refuses (CROSSSLOT)
// unless they share a slot. Wrapping the stream name in braces ("{products}")
// makes them share one: Redis then hashes only the part in braces.
//
// NewConsumer, NewDelayer and NewTrimmer call it when given a
// *redis.ClusterClient; call it to check a configuration before that. It
// does no I/O.
func (k Keys) CheckCluster(stream string, consumers ...string) error {
	delay := DelayStream(stream)
	keys := []string{
		k.Stream(stream),
		k.Delay(stream),
		k.Offset(delay, DelayerName),
		k.Lock(ConsumerLockName(delay, DelayerName)),
		k.Notify(ConsumerLockName(delay, DelayerName)),
		k.Lock(TrimmerLockName(stream)),
		k.Notify(TrimmerLockName(stream)),
	}
	for _, c := range consumers {
		keys = append(keys,
			k.Offset(stream, c),
			k.Lock(ConsumerLockName(stream, c)),
			k.Notify(ConsumerLockName(stream, c)),
			k.DeadLetter(stream, c))
	}
	first, slot := keys[0], keySlot(keys[0])
	for _, key := range keys[1:] {
		if s := keySlot(key); s != slot {
			return fmt.Errorf("redstream: stream %q cannot be used on Redis Cluster: its keys %q (hash slot %d) and %q (hash slot %d) "+
				"must share a slot for the scripts that commit offsets and move delay messages; "+
				"wrap the stream name in braces, e.g. %s", stream, first, slot, key, s, bracedExample(stream))
		}
	}
	return nil
}

// bracedExample suggests the braced form of a stream name.
func bracedExample(stream string) string {
	if stream == "" || strings.ContainsAny(stream, "{}") {
		return "{products}"
	}
	return "{" + stream + "}"
}

// checkClusterKeys returns k.CheckCluster(stream, consumers...) when rdb is
// a Redis Cluster client, and nil for any other client.
func checkClusterKeys(rdb redis.UniversalClient, k Keys, stream string, consumers ...string) error {
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		return nil
	}
	return k.CheckCluster(stream, consumers...)
}

// checkClusterLock returns an error when rdb is a Redis Cluster client and
// the lock named lockname and its notify list, which the release script
// takes together, would lie in different hash slots.
func checkClusterLock(rdb redis.UniversalClient, k Keys, lockname string) error {
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		return nil
	}
	lock, notify := k.Lock(lockname), k.Notify(lockname)
	if a, b := keySlot(lock), keySlot(notify); a != b {
		return fmt.Errorf("redstream: lock %q cannot be used on Redis Cluster: its keys %q (hash slot %d) and %q (hash slot %d) "+
			"must share a slot; wrap the stream name in braces, e.g. %s", lockname, lock, a, notify, b,
			ConsumerLockName("{products}", "indexer"))
	}
	return nil
}

// keySlot returns the Redis Cluster hash slot of key, computed as Redis
// does: CRC16 (XMODEM) modulo 16384 of the key's hash tag, which is what
// lies between the first "{" and the first "}" after it when that is not
// empty, and otherwise the whole key.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % clusterSlots)
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0, no
// reflection), the checksum of Redis Cluster's key hashing.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
