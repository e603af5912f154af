package estest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// TestScanActionLineAgreesWithParser checks that the action line fast path
// reads exactly what the JSON parser reads, and leaves everything else to it.
func TestScanActionLineAgreesWithParser(t *testing.T) {
	lines := []struct {
		line string
		fast bool
	}{
		{`{"index":{"_index":"products","_id":"1"}}`, true},
		{`{"index":{"_index":"products","_id":"1","version":7,"version_type":"external_gte"}}`, true},
		{`{"create":{"_index":"a","_id":"x","routing":"r","pipeline":"_none"}}`, true},
		{`{"update":{"_id":"1","if_seq_no":0,"if_primary_term":1,"retry_on_conflict":3}}`, true},
		{`{"delete":{"_index":"a","_id":"1","version":-1}}`, true},
		{`{"index":{}}`, true},
		{`{"index":{"_index":"a","_id":""}}`, true},
		{`{"index":{"_index":"ü","_id":"日本"}}`, true},
		{`{"index":{"_index":"a"}} trailing`, true},
		{`{"index":{"_index":"a"}}{"x":1}`, true},
		{`{"index":{"_index":"a","unknown":"x"}}`, true},
		{`{"index":{"_index":"a","op_type":"create"}}`, true},
		{`{"index":{"_index":"a","version":0}}`, true},
		{`{"index":{"_index":"a","version":12345678901234567890}}`, true},
		{`{"index":{"_index":"a","version":007}}`, false},
		{`{"index":{"_id":1,"_index":"b"}}`, true},
		{`{"index":{"_id":"1","_id":"2"}}`, false},
		{`{"index":{"_id":"1","_id":2}}`, false},
		{`{"index":{"_id":1,"_id":"2"}}`, false},
		{`{"index":{"_index":"b","_id":"1"}}`, true},
		{`{"index":{"_index":"a","version":-}}`, false},
		{`{"index":{"_index":"a","version":1.5}}`, false},
		{`{"index":{"_index":"a","version":1e3}}`, false},
		{`{"index":{"_index":"a","require_alias":true}}`, false},
		{`{"index":{"_index":"a","routing":null}}`, false},
		{`{"index":{"_index":"a","_source":{}}}`, false},
		{`{"index":{"_index":"a","x":[1]}}`, false},
		{`{"index":{"_index":"a\"b"}}`, false},
		{`{"index":{"_index":"a\u0041"}}`, false},
		{"{\"index\":{\"_index\":\"a\tb\"}}", false},
		{`{"index":{"_index":"a","_index":"b"}}`, false},
		{`{"index":{"_index":"a",}}`, false},
		{`{"index":{,"_index":"a"}}`, false},
		{`{"index":{"_index":"a"},"delete":{}}`, false},
		{`{"index":{"_index":"a"}`, false},
		{`{"index":{"_index":"a"`, false},
		{`{"index":{"_index":`, false},
		{`{"index":{"_index"`, false},
		{`{"index":`, false},
		{`{"index"`, false},
		{`{"index":null}`, false},
		{`{"index":"x"}`, false},
		{`{"index" :{}}`, false},
		{`{ "index":{}}`, false},
		{`{"index":{"_index" : "a"}}`, false},
		{`{"explode":{}}`, false},
		{`{}`, false},
		{``, false},
		{`   `, false},
		{`[]`, false},
	}
	var lastIndex any
	for _, tc := range append(lines, lines...) {
		action, params, id, hasID, ok := scanActionLine([]byte(tc.line), nil, &lastIndex)
		if ok != tc.fast {
			t.Errorf("%s: fast path %v, want %v", tc.line, ok, tc.fast)
		}
		if !ok {
			continue
		}
		v, _, err := parseJSON([]byte(tc.line), true)
		if err != nil {
			t.Errorf("%s: fast path read a line the parser rejects: %v", tc.line, err)
			continue
		}
		o := v.(*object)
		if o.M[0].Key != action {
			t.Errorf("%s: action %q, parser %q", tc.line, action, o.M[0].Key)
		}
		var want []member
		wantID, wantHasID := "", false
		for _, m := range o.M[0].Val.(*object).M {
			if s, isString := m.Val.(string); isString && m.Key == "_id" {
				wantID, wantHasID = s, true
				continue
			}
			want = append(want, m)
		}
		if id != wantID || hasID != wantHasID {
			t.Errorf("%s: _id %q %v, parser %q %v", tc.line, id, hasID, wantID, wantHasID)
		}
		if len(params) != len(want) {
			t.Errorf("%s: %d params, parser %d", tc.line, len(params), len(want))
			continue
		}
		for i := range want {
			if params[i].Key != want[i].Key || !reflect.DeepEqual(params[i].Val, want[i].Val) {
				t.Errorf("%s: param %d is %q=%#v, parser %q=%#v", tc.line, i, params[i].Key, params[i].Val, want[i].Key, want[i].Val)
			}
		}
	}
}

// TestRenderBulkItemsAgreesWithTree checks the direct rendering of bulk
// items against the JSON tree it stands in for.
func TestRenderBulkItemsAgreesWithTree(t *testing.T) {
	ix := &index{name: "products", replicas: 1}
	ix2 := &index{name: "other", replicas: 0}
	ops := []*writeOp{{kind: "index", index: "products"}, {kind: "create", index: "products"},
		{kind: "update", index: "products"}, {kind: "delete", index: "other"}, {kind: "index", index: "missing"},
		{kind: "update", index: "products"}, {kind: "index", index: "products"}}
	results := []writeResult{
		{index: "products", ix: ix, id: "1", version: 1, seqNo: 0, result: "created", status: 201},
		{index: "products", ix: ix, id: "a\"b\\c\n<&>\x01ü\xff", version: 2, seqNo: 12345, result: "updated", status: 200},
		{index: "products", ix: ix, id: "3", version: 9, seqNo: 7, result: "noop", status: 200},
		{index: "other", ix: ix2, id: "4", version: 1, seqNo: 8, result: "not_found", status: 404},
		{index: "missing", id: "5", err: errIllegalArgument("pipeline with id [%s] does not exist", "p")},
		{index: "products", ix: ix, id: "", err: versionConflict(ix, "6", "boom")},
		{index: "products", ix: ix, id: "7", version: -1, seqNo: 1 << 40, result: "deleted", status: 200},
	}
	for _, refreshed := range []bool{false, true} {
		for _, errors := range []bool{false, true} {
			for _, ingestTook := range []int64{-1, 0, 1<<63 - 1} {
				head := obj("errors", errors, "took", int64(1<<63-1))
				if ingestTook >= 0 {
					head.set("ingest_took", ingestTook)
				}
				head.set("items", bulkItemTree(ops, results, refreshed))
				want := marshal(head)
				got := bulkResponse(renderBulkItems(ops, results, refreshed), errors, 1<<63-1, ingestTook)
				if !bytes.Equal(got, want) {
					t.Errorf("refreshed=%v ingest_took %d:\n got %s\nwant %s", refreshed, ingestTook, got, want)
				}
				if !json.Valid(got) {
					t.Errorf("invalid JSON: %s", got)
				}
			}
		}
	}
}
