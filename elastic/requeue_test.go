package elastic_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// TestRequeueChanged: a backfill reads a page, row 3 of it changes and the
// live consumer writes the change, then the backfill's write of the state
// it read arrives. Without a version column the document is left stale;
// with the backfill's handler wrapped by RequeueChanged, the change is
// queued again after the page, and the live consumer, going on from where
// it was, writes the row's state last.
func TestRequeueChanged(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		for _, wrapped := range []bool{true, false} {
			t.Run(fmt.Sprint("wrapped=", wrapped), func(t *testing.T) {
				t.Parallel()
				s := newEngineSetup(t, tg, &Product{})
				ctx := context.Background()
				db := sqlDB(t, s.db)
				for i := range 20 {
					must(t, s.db.Create(&Product{Title: fmt.Sprint("p", i+1), Price: i + 1}).Error)
				}
				loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{Table: "products", SoftDeleteColumn: "deleted_at"})
				must(t, err)
				live, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index})
				must(t, err)
				var race sync.Once
				var liveAt string // the last entry the live consumer has handled
				tr := &hooked{next: s.es, before: func(r *http.Request, body string) error {
					if strings.HasSuffix(r.URL.Path, "/_bulk") && strings.Contains(body, `"_id":"3"`) {
						race.Do(func() {
							must(t, s.db.Model(&Product{ID: 3}).Update("title", "changed during the backfill").Error)
							end := s.rdb.XRevRangeN(ctx, s.keys.Stream("products"), "+", "-", 1).Val()[0]
							id := redstream.MustParseID(end.ID)
							must(t, live.HandleBatch(ctx, &redstream.Batch{Stream: "products", Consumer: "indexer", Attempt: 1,
								Messages: []redstream.Message{{ID: id, Stream: "products", Payload: json.RawMessage(end.Values["payload"].(string))}}}))
							liveAt = end.ID
						})
					}
					return nil
				}}
				bh, err := elastic.NewHandler(tr, loader, &elastic.Options{Index: s.index})
				must(t, err)
				var h redstream.Handler = bh
				if wrapped {
					h = elastic.RequeueChanged(bh, s.rdb, s.keys, []string{"products"})
				}
				res, err := elastic.Backfill(ctx, db, h, elastic.BackfillOptions{Table: "products", PageSize: 10})
				must(t, err)
				if res.Rows != 20 || liveAt == "" {
					t.Fatalf("backfill %+v, the race at %q", res, liveAt)
				}
				must(t, s.rdb.Set(ctx, s.keys.Offset("products", "indexer"), liveAt, 0).Err())
				c := s.run(t, "products", live)
				end := s.rdb.XRevRangeN(ctx, s.keys.Stream("products"), "+", "-", 1).Val()[0].ID
				eventually(t, "the live consumer to catch up", func() bool { return c.Stats().Committed.String() == end })
				code, b := call(t, s.es, esapi.GetRequest{Index: s.index, DocumentID: "3"})
				var d engineDoc
				if code != http.StatusOK || json.Unmarshal(b, &d) != nil {
					t.Fatalf("document 3: %d %s", code, b)
				}
				switch got := d.Source["title"]; {
				case wrapped && got != "changed during the backfill":
					t.Fatalf("document 3 = %s, want the row's title", b)
				case !wrapped && got != "p3":
					// The race this guards against: without it the page's
					// older state stays.
					t.Fatalf("unwrapped, document 3 = %s, want the page's stale title p3", b)
				}
				if wrapped {
					refreshIndex(t, s.es, s.index)
					checkDocs(t, s, s.index)
				}
			})
		}
	})
}
