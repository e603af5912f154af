package elastic_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// TestVersionedDeleteRefusesStaleIndex pins that, under VersionColumn, a
// hard delete carries the database clock as its external version.
//
// The race: a slow or deposed worker loads a row, stalls, and sends its
// index op only after the row was hard-deleted and another worker deleted
// the document. That stale op is versioned (external_gte, the row's
// updated_at as read); only a delete whose version is later than every
// updated_at the row ever had makes Elasticsearch refuse it (409). A delete
// without version gets an internal one — the stored version + 1, or 1 for
// a document that was never indexed — below any timestamp version, so the
// stale op would bring the deleted row back.
//
// The refusal rests on the delete's tombstone, which Elasticsearch keeps
// only for index.gc_deletes (60 s by default): a stale op arriving later
// is accepted. The test runs well within that window.
//
// "never indexed" covers a row created and deleted before any worker
// indexed it: the delete answers not_found, yet under external versioning
// still leaves a tombstone with its version (elastic/elasticsearch#15451).
func TestVersionedDeleteRefusesStaleIndex(t *testing.T) {
	t.Parallel()
	for _, indexFirst := range []bool{true, false} {
		name := "overtaken"
		if !indexFirst {
			name = "never indexed"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			eachEngine(t, func(t *testing.T, tg engineTarget) {
				s := newEngineSetup(t, tg)
				ctx := context.Background()
				loader, err := elastic.NewTableLoader(ctx, s.sqlDB(t), elastic.TableOptions{
					Table: "products", VersionColumn: "updated_at", SoftDeleteColumn: "deleted_at",
				})
				must(t, err)
				h, err := elastic.NewHandler(s.es, loader, &elastic.Options{Index: s.index})
				must(t, err)

				p := Product{Title: "v1", Price: 1}
				must(t, s.db.Create(&p).Error)
				id := fmt.Sprint(p.ID)
				// updatedAt reads the row's updated_at as stored (microseconds),
				// not as GORM set it in Go (nanoseconds).
				updatedAt := func() int64 {
					var r Product
					must(t, s.db.First(&r, p.ID).Error)
					return r.UpdatedAt.UnixMicro()
				}
				batch := func() *redstream.Batch {
					return &redstream.Batch{Stream: "products", Messages: []redstream.Message{{
						ID: redstream.MustParseID("1-0"), Stream: "products", Payload: json.RawMessage(fmt.Sprintf(`{"id":%d}`, p.ID)),
					}}}
				}
				indexed := int64(0)
				if !indexFirst {
					// The index exists, as the worker makes sure: the delete of the
					// missing document is answered not_found, not index_not_found.
					s.createIndex(t, "")
				}
				if indexFirst {
					indexed = updatedAt()
					must(t, h.HandleBatch(ctx, batch()))
					_, version, found := s.doc(t, id)
					if got, want := version, indexed; !found || got != want {
						t.Fatalf("indexed version = %d (found %v), want updated_at in microseconds %d", got, found, want)
					}
					must(t, s.db.Model(&p).Update("title", "v2").Error)
				}
				// What a slow worker read, and sends only after the delete: the
				// row's latest state, never indexed.
				stale, err := loader.Load(ctx, []string{id})
				must(t, err)
				if got, want := len(stale), 1; got != want {
					t.Fatalf("loaded %d documents, want %d", got, want)
				}
				if got, want := stale[0].Version, updatedAt(); !stale[0].HasVersion || got != want {
					t.Fatalf("stale document version = %d (has %v), want updated_at %d", got, stale[0].HasVersion, want)
				}
				// The stale op is newer than anything indexed: only the delete's
				// version stands in its way.
				if stale[0].Version <= indexed {
					t.Fatalf("stale version %d is not after the indexed version %d", stale[0].Version, indexed)
				}

				must(t, s.db.Unscoped().Delete(&p).Error)
				must(t, h.HandleBatch(ctx, batch()))
				if _, _, found := s.doc(t, id); found {
					t.Fatal("document still indexed after the hard delete")
				}
				if st := h.Stats(); st.Deleted != 1 || st.Conflicts != 0 {
					t.Fatalf("handler stats after the delete = %+v, want one delete and no conflict", st)
				}

				slow, err := elastic.NewHandler(s.es, elastic.LoaderFunc(func(context.Context, []string) ([]elastic.Document, error) {
					return stale, nil
				}), &elastic.Options{Index: s.index})
				must(t, err)
				must(t, slow.HandleBatch(ctx, batch()))
				if src, version, found := s.doc(t, id); found {
					t.Fatalf("the stale index op brought the deleted row back: %v, version %d", src, version)
				}
				st := slow.Stats()
				if got, want := st.Conflicts, int64(1); got != want {
					t.Fatalf("stale handler conflicts = %d, want %d (stats %+v)", got, want, st)
				}
				if got, want := st.Indexed, int64(0); got != want {
					t.Fatalf("stale handler indexed = %d, want %d", got, want)
				}
			})
		})
	}
}
