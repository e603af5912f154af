package elastic

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzAppendJSONString: the bulk body's string encoder always yields one
// line of valid JSON that decodes to the input (invalid UTF-8 becomes
// U+FFFD, as encoding/json does), so no id or index name can break the
// NDJSON framing.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "7", "a\nb", `q"uote\`, "\x00\x1f", "ü€𝄞", "\xff\xfe", "<&>", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		if bytes.ContainsAny(b, "\n\r") {
			t.Fatalf("encoding of %q contains a line break: %s", s, b)
		}
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("encoding of %q is not JSON: %s: %v", s, b, err)
		}
		if utf8.ValidString(s) && back != s {
			t.Fatalf("round trip of %q gave %q", s, back)
		}
	})
}

// FuzzMessageID: any payload yields an id or an error, never a panic, and
// an id is never empty. Where the decoder-free path (simpleID) answers, the
// JSON decoder agrees.
func FuzzMessageID(f *testing.F) {
	for _, s := range []string{`{"id":1}`, `{"id":"a"}`, `{"id":1.5}`, `{"id":[1,"x"]}`, `{"id":null}`,
		`{"id":-0}`, `{"id":99999999999999999999}`, `{}`, `[]`, ``, `{"id":"\u0000"}`,
		`{"id":007}`, `{"id":-}`, `{"id":""}`, `{"id":"a\"b"}`, `{"id":1,"id":2}`, `{"id":123456789012345678}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		id, err := MessageID(payload)
		if err == nil && id == "" {
			t.Fatalf("MessageID(%q) returned an empty id", payload)
		}
		if fast, ok := simpleID(payload); ok {
			// A leading space is valid JSON and never takes the fast path.
			slow, err := MessageID(append([]byte(" "), payload...))
			if err != nil || slow != fast {
				t.Fatalf("simpleID(%q) = %q; the decoder says %q, %v", payload, fast, slow, err)
			}
		}
	})
}
