package estest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/elastic/go-elasticsearch/v8"
)

// TestDropBulkNext: a dropped bulk applies its first half, answers nothing,
// and leaves other requests alone; sending it again completes it.
func TestDropBulkNext(t *testing.T) {
	t.Parallel()
	c, s := target(t)
	needServer(t, s)
	nr, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{s.URL}, DisableRetry: true})
	if err != nil {
		t.Fatal(err)
	}
	idx := indexName(t, c)
	var body strings.Builder
	for i := 1; i <= 4; i++ {
		fmt.Fprintf(&body, `{"index":{"_index":%q,"_id":"%d"}}`+"\n"+`{"n":%d}`+"\n", idx, i, i)
	}
	fmt.Fprintf(&body, `{"delete":{"_index":%q,"_id":"5"}}`+"\n", idx)

	s.DropBulkNext(1)
	// Not a bulk request: served, and the fault is still pending.
	if r := call(t, &client{Client: nr}, "GET", "/", ""); r.status != 200 {
		t.Fatalf("GET / with a bulk drop pending: %d", r.status)
	}
	res, err := nr.Bulk(strings.NewReader(body.String()))
	if err == nil {
		res.Body.Close()
		t.Fatalf("the dropped bulk was answered: %s", res.Status())
	}
	// Five actions: the first two were applied.
	for i, want := range []bool{true, true, false, false} {
		if _, _, ok := s.Doc(idx, fmt.Sprint(i+1)); ok != want {
			t.Errorf("after the dropped bulk, document %d exists = %v, want %v", i+1, ok, want)
		}
	}
	res, err = nr.Bulk(strings.NewReader(body.String()))
	if err != nil {
		t.Fatalf("the bulk sent again: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || s.Count(idx) != 4 {
		t.Fatalf("the bulk sent again: %s, %d documents, want 200 and 4", res.Status(), s.Count(idx))
	}
	if _, v, _ := s.Doc(idx, "1"); v != 2 {
		t.Errorf("document 1 has version %d after being written twice, want 2", v)
	}
}
