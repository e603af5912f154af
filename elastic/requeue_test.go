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
// it read arrives. Unwrapped, the page's state stays: without a version
// column an updated title, and with one a soft delete, which leaves the
// version as it was (external_gte takes the page's equal version and
// brings the document back). With the backfill's handler wrapped by
// RequeueChanged, the change is queued again after the page, and the live
// consumer, going on from where it was, writes the row's state last.
func TestRequeueChanged(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, version string
		change        func(s *engineSetup) error
		want          func(found bool, title any) bool
	}{
		{"update", "", func(s *engineSetup) error {
			return s.db.Model(&Product{ID: 3}).Update("title", "changed during the backfill").Error
		}, func(found bool, title any) bool { return found && title == "changed during the backfill" }},
		{"soft delete with a version column", "updated_at", func(s *engineSetup) error {
			return s.db.Delete(&Product{ID: 3}).Error
		}, func(found bool, _ any) bool { return !found }},
	}
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		for _, tc := range cases {
			for _, wrapped := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/wrapped=%v", tc.name, wrapped), func(t *testing.T) {
					t.Parallel()
					s := newEngineSetup(t, tg, &Product{})
					ctx := context.Background()
					db := sqlDB(t, s.db)
					for i := range 20 {
						must(t, s.db.Create(&Product{Title: fmt.Sprint("p", i+1), Price: i + 1}).Error)
					}
					loader, err := elastic.NewTableLoader(ctx, db, elastic.TableOptions{
						Table: "products", SoftDeleteColumn: "deleted_at", VersionColumn: tc.version,
					})
					must(t, err)
					live, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index})
					must(t, err)
					var race sync.Once
					var liveAt string // the last entry the live consumer has handled
					tr := &hooked{next: s.es, before: func(r *http.Request, body string) error {
						if strings.HasSuffix(r.URL.Path, "/_bulk") && strings.Contains(body, `"_id":"3"`) {
							race.Do(func() {
								must(t, tc.change(s))
								end := s.rdb.XRevRangeN(ctx, s.keys.Stream("products"), "+", "-", 1).Val()[0]
								must(t, live.HandleBatch(ctx, &redstream.Batch{Stream: "products", Consumer: "indexer", Attempt: 1,
									Messages: []redstream.Message{{ID: redstream.MustParseID(end.ID), Stream: "products", Payload: json.RawMessage(end.Values["payload"].(string))}}}))
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
					if (code != http.StatusOK && code != http.StatusNotFound) || json.Unmarshal(b, &d) != nil {
						t.Fatalf("document 3: %d %s", code, b)
					}
					switch {
					case wrapped && !tc.want(d.Found, d.Source["title"]):
						t.Fatalf("document 3 = %d %s, not the row's state", code, b)
					case !wrapped && !(d.Found && d.Source["title"] == "p3"):
						// The race this guards against: unwrapped, the page's
						// state stays.
						t.Fatalf("unwrapped, document 3 = %d %s, want the page's stale state (title p3)", code, b)
					}
					if wrapped {
						refreshIndex(t, s.es, s.index)
						checkDocs(t, s, s.index)
					}
				})
			}
		}
	})
}
