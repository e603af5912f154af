package elastic_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// TestReindexReplayRacesLiveConsumer: after the swap, the reindex's last
// replay and the live consumer write the same documents into the new
// index. Without a version column nothing refuses an older state: here
// the replay reads row 3, the row is updated and the live consumer writes
// the newer state, and only then does the replay's write (of the state it
// read before) arrive. The document must still end equal to its row once
// the live consumer has handled what follows in the stream.
func TestReindexReplayRacesLiveConsumer(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		f := newReindexFixture(t, tg, 20)
		ctx := context.Background()
		// The live consumer's work, as it would do it: row 3's change is
		// read from the stream and written through the alias.
		liveWrite := func(title string) {
			must(t, f.db.Model(&Product{ID: 3}).Update("title", title).Error)
			b := &redstream.Batch{Stream: "products", Consumer: "indexer", Attempt: 1, Messages: []redstream.Message{
				{ID: redstream.ID{MS: 1}, Stream: "products", Payload: json.RawMessage(`{"id":3}`)},
			}}
			must(t, f.live.HandleBatch(ctx, b))
		}
		var swap, race sync.Once
		var liveAt string // the stream's last entry the live consumer has handled
		f.tr.before = func(r *http.Request, body string) error {
			if isSwap(r) {
				// Written to the old index: the last replay has row 3 to write.
				swap.Do(func() { liveWrite("before the swap") })
			}
			index := f.rdb.HGet(ctx, f.keys.Reindex("products"), "index").Val()
			if f.phase() == elastic.PhaseSwapped && isBulkTo(r, body, index) && strings.Contains(body, `"_id":"3"`) {
				// The replay read row 3 already; the live consumer writes
				// the row's next state, through the swapped alias.
				race.Do(func() {
					liveWrite("after the swap")
					liveAt = f.rdb.XRevRangeN(ctx, f.keys.Stream("products"), "+", "-", 1).Val()[0].ID
				})
			}
			return nil
		}
		res, err := f.reindexer(t, elastic.ReindexOptions{}).Run(ctx)
		must(t, err)
		if liveAt == "" {
			t.Fatal("the last replay never wrote row 3")
		}
		// The live consumer goes on from where it was.
		must(t, f.rdb.Set(ctx, f.keys.Offset("products", "indexer"), liveAt, 0).Err())
		c := f.run(t, "products", f.live)
		end := f.rdb.XRevRangeN(ctx, f.keys.Stream("products"), "+", "-", 1).Val()[0].ID
		eventually(t, "the live consumer to catch up", func() bool { return c.Stats().Committed.String() == end })
		code, b := call(t, f.es, esapi.GetRequest{Index: f.alias, DocumentID: "3"})
		var d engineDoc
		if code != http.StatusOK || json.Unmarshal(b, &d) != nil || d.Source["title"] != "after the swap" {
			t.Fatalf("document 3 = %d %s, want the row's title %q", code, b, "after the swap")
		}
		f.checkNew(t, res.Index)
	})
}
