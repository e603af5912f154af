package estest

import (
	"bytes"
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
