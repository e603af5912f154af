package estest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
)

// bulkBody is a _bulk request indexing docs rows shaped like a typical
// relational row, ids from first on.
func bulkBody(index string, first, docs int) []byte {
	var b bytes.Buffer
	for i := first; i < first+docs; i++ {
		n := strconv.Itoa(i)
		b.WriteString(`{"index":{"_index":"` + index + `","_id":"` + n + `"}}` + "\n")
		b.WriteString(`{"id":` + n + `,"title":"product ` + n + `","price":` + n + `,"updated_at":"2026-11-23T12:00:00.123456+00:00"}` + "\n")
	}
	return b.Bytes()
}

// BenchmarkBulkIndex sends _bulk requests of 1,000 index actions straight
// to the Handler and reports the cost per document.
func BenchmarkBulkIndex(b *testing.B) {
	const docs = 1000
	h := NewHandler()
	bodies := make([][]byte, 4)
	for i := range bodies {
		bodies[i] = bulkBody("products", i*docs, docs)
	}
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req := httptest.NewRequest(http.MethodPost, "/_bulk", bytes.NewReader(bodies[i%len(bodies)]))
		req.Header.Set("Content-Type", "application/x-ndjson")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*docs), "ns/doc")
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&after)
	// CPU time (user and system, GC included) per document: a steadier
	// figure than elapsed time on a busy machine.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*docs), "cpu-ns/doc")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*docs), "allocs/doc")
}

// BenchmarkSearchAfterWalk walks an index of 200,000 documents in pages
// of 1,000 sorted on a long field with search_after, as a verification
// does, and reports the cost per page.
func BenchmarkSearchAfterWalk(b *testing.B) {
	const docs, page = 200_000, 1000
	h := NewHandler()
	serve := func(method, path, ctype string, body []byte) []byte {
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("%s %s: status %d: %s", method, path, rec.Code, rec.Body.String())
		}
		return rec.Body.Bytes()
	}
	serve(http.MethodPut, "/products", "application/json", []byte(`{"mappings":{"properties":{"id":{"type":"long"}}}}`))
	for first := 0; first < docs; first += 10_000 {
		serve(http.MethodPost, "/_bulk", "application/x-ndjson", bulkBody("products", first, 10_000))
	}
	serve(http.MethodPost, "/products/_refresh", "", nil)
	b.ReportAllocs()
	cpu0 := cpuTime()
	pages := 0
	for b.Loop() {
		after := ""
		for {
			q := `{"size":1000,"_source":false,"track_total_hits":false,"query":{"match_all":{}},"sort":[{"id":{"order":"asc"}}]` + after + `}`
			var res struct {
				Hits struct {
					Hits []struct {
						Sort json.RawMessage `json:"sort"`
					} `json:"hits"`
				} `json:"hits"`
			}
			if err := json.Unmarshal(serve(http.MethodPost, "/products/_search", "application/json", []byte(q)), &res); err != nil {
				b.Fatal(err)
			}
			pages++
			hits := res.Hits.Hits
			if len(hits) < page {
				break
			}
			after = `,"search_after":` + string(hits[len(hits)-1].Sort)
		}
		if pages%(docs/page+1) != 0 {
			b.Fatalf("%d pages, want %d per walk", pages, docs/page+1)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(pages), "ns/page")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(pages), "cpu-ns/page")
}
