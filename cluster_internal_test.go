package redstream

import (
	"strings"
	"testing"
)

func TestCRC16(t *testing.T) {
	// The check value of CRC-16/XMODEM, and the example of the Redis
	// Cluster specification.
	if got, want := crc16("123456789"), uint16(0x31C3); got != want {
		t.Fatalf("crc16(123456789) = %#04x, want %#04x", got, want)
	}
}

// TestKeySlot compares keySlot with the slots Redis itself gives
// (CLUSTER KEYSLOT on Redis 7).
func TestKeySlot(t *testing.T) {
	for _, tc := range []struct {
		key  string
		slot int
	}{
		{"", 0},
		{"foo", 12182},
		{"bar", 5061},
		{"hello", 866},
		{"123456789", 12739},
		{"products", 10285},
		{"{products}", 10285},
		{"orders", 105},
		{"{orders}", 105},
		{"a{products}b", 10285},
		{"t1:redstream:stream:{products}.delay", 10285},
		{"redstream:lock:consumer:products:indexer", 6335},
		{"{user1000}.following", 3443},
		{"x{}y", 16116},        // empty tag: the whole key
		{"{}{products}", 4236}, // the first "{" counts, and its tag is empty
		{"{{a}}", 10276},       // tag "{a"
		{"{a", 10276},          // no "}": the whole key
		{"a}", 5921},           // no "{": the whole key
	} {
		if got := keySlot(tc.key); got != tc.slot {
			t.Errorf("keySlot(%q) = %d, want %d", tc.key, got, tc.slot)
		}
	}
}

func TestCheckCluster(t *testing.T) {
	for _, tc := range []struct {
		ns, stream string
		consumers  []string
		ok         bool
	}{
		{"", "{products}", []string{"indexer", "cache"}, true},
		{"shop", "{products}", []string{"indexer"}, true},
		{"shop", "{products-3}", nil, true},               // a shard of a braced name
		{"shop", "{products}-3", nil, true},               // a shard named the Ruby gem's way
		{"{shop}", "products", []string{"indexer"}, true}, // every key tagged by the namespace
		{"shop", "products", []string{"indexer"}, false},
		{"shop", "products", nil, false},
		{"shop", "{}products", nil, false},              // an empty tag is no tag
		{"shop", "{products}", []string{"{idx}"}, true}, // the stream's tag comes first
	} {
		err := NewKeys(tc.ns).CheckCluster(tc.stream, tc.consumers...)
		if (err == nil) != tc.ok {
			t.Errorf("CheckCluster(ns %q, %q, %q) = %v, want ok %v", tc.ns, tc.stream, tc.consumers, err, tc.ok)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), "wrap the stream name in braces, e.g. {products}") {
			t.Errorf("CheckCluster(%q): error %q does not name the fix", tc.stream, err)
		}
	}
}
