package estest

import (
	"reflect"
	"testing"
)

// TestLazyFieldsMatchIndexTime checks that the indexed values computed when
// a document is first searched are the ones computed while indexing it,
// dynamic mapping updates included.
func TestLazyFieldsMatchIndexTime(t *testing.T) {
	docs := []string{
		`{"id":1,"title":"product 1","price":1,"updated_at":"2026-11-23T12:00:00.123456+00:00"}`,
		`{"id":2,"title":"product 2","price":2.5,"updated_at":"2026-11-23T12:00:00Z","new":"x"}`,
		`{"tags":["a","b",null,"c"],"nested":{"a":{"b":1,"c":"2015/09/02"}},"a.b.c":true}`,
		`{"when":"2015/09/02 10:11:12","n":[null,3,4],"e":[],"o":{},"z":null}`,
		`{"nested":{"a":{"d":"2026-01-01"}},"tags":"d","flag":false,"big":12345678901234}`,
		`{"title":"","unicode":"日本語","escaped":"a\"b\u00e9","d2":"2026-02-29"}`,
	}
	m := newMapping()
	for i, src := range docs {
		v, _, err := parseJSON([]byte(src), false)
		if err != nil {
			t.Fatal(err)
		}
		fields, changed, perr := parseDocument(m, v, "1", false)
		if perr != nil {
			t.Fatalf("doc %d: %v", i, perr)
		}
		if changed {
			m = m.clone()
			if fields, _, perr = parseDocument(m, v, "1", true); perr != nil {
				t.Fatalf("doc %d: %v", i, perr)
			}
		}
		d := &docVersion{id: "1", source: []byte(src), lazy: true, mapping: m}
		if got := d.indexed(); !reflect.DeepEqual(got, fields) {
			t.Errorf("doc %d: lazy %v, at index time %v", i, got, fields)
		}
		if !jsonEqual(d.tree(), v) || string(marshal(d.tree())) != string(marshal(v)) {
			t.Errorf("doc %d: tree %s, want %s", i, marshal(d.tree()), marshal(v))
		}
	}
}
