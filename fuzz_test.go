package redstream

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseID: any text either fails with ErrInvalidID or parses to an id
// that formats and parses back to itself, and Next never goes backwards.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"0-0", "999-0", "1000-0", "5-9", "5-10", "1", "007-01",
		"18446744073709551615-18446744073709551615", "18446744073709551616-0", "-1", "1-", "a-b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("ParseID(%q) error %v is not ErrInvalidID", s, err)
			}
			return
		}
		back, err := ParseID(id.String())
		if err != nil || back != id {
			t.Fatalf("ParseID(%q) = %v; its String %q parses to %v, %v", s, id, id.String(), back, err)
		}
		if id.Compare(id) != 0 || id.Next().Less(id) {
			t.Fatalf("ordering broken for %v (Next %v)", id, id.Next())
		}
	})
}

// FuzzEntryPayload: a stream entry's payload is accepted only when it is
// JSON within the size limit, and a refused entry always says
// ErrInvalidMessage (so the consumer dead-letters it instead of failing).
func FuzzEntryPayload(f *testing.F) {
	for _, s := range []string{`{"id":1}`, `{"id":"x"}`, `not json`, ``, `{"id":`, `[]`, `null`, "\xff"} {
		f.Add(s, true)
	}
	f.Add(`{"id":1}`, false)
	f.Fuzz(func(t *testing.T, s string, hasPayload bool) {
		values := map[string]any{"other": s}
		if hasPayload {
			values = map[string]any{"payload": s}
		}
		// A limit the inputs reach, so that both sides of it are explored.
		const limit = 64
		p, err := entryPayload(values, limit)
		switch {
		case err != nil && !errors.Is(err, ErrInvalidMessage):
			t.Fatalf("error %v is not ErrInvalidMessage", err)
		case err == nil && !json.Valid(p):
			t.Fatalf("accepted invalid JSON %q", p)
		case err == nil && !hasPayload:
			t.Fatal("accepted an entry without a payload field")
		case err == nil && len(p) > limit:
			t.Fatalf("accepted a payload of %d bytes over the limit of %d", len(p), limit)
		}
	})
}
