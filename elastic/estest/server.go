package estest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
)

// Version is the Elasticsearch version the server reports in GET /.
const Version = "8.15.0"

const (
	clusterName = "estest"
	nodeName    = "estest-node"
	nodeID      = "estestNodeId00000000AA"
	clusterUUID = "estestClusterUuid00000A"

	// maxContentLength is http.max_content_length (100mb).
	maxContentLength = 100 << 20
)

// Server is an in-memory Elasticsearch 8 test server listening on a local
// port (net/http/httptest). It embeds the Handler that serves the API, so the
// fault injection and inspection methods are available on the Server.
type Server struct {
	// URL is the base URL of the server, e.g. http://127.0.0.1:41234.
	URL string

	*Handler
	ts *httptest.Server
}

// New starts a Server for a test or benchmark and closes it in t.Cleanup.
func New(t testing.TB) *Server {
	t.Helper()
	s := NewServer()
	t.Cleanup(s.Close)
	return s
}

// NewServer starts a Server outside of a test (for instance in a demo
// binary). The caller must call Close.
func NewServer() *Server {
	h := NewHandler()
	ts := httptest.NewServer(h)
	return &Server{URL: ts.URL, Handler: h, ts: ts}
}

// Close shuts the server down, waiting for requests in flight.
func (s *Server) Close() {
	s.ts.Close()
}

// Client returns a go-elasticsearch v8 client pointed at the server, with
// the client's default configuration. It fails the test if the client cannot
// be built.
func (s *Server) Client(t testing.TB) *elasticsearch.Client {
	t.Helper()
	c, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{s.URL}})
	if err != nil {
		t.Fatalf("estest: building client: %v", err)
	}
	return c
}

// Handler serves the Elasticsearch REST API from memory. Use it directly to
// serve the API on a real port (http.ListenAndServe(addr, estest.NewHandler())).
// All methods are safe for concurrent use.
type Handler struct {
	mu      sync.Mutex // guards the cluster state below
	indices map[string]*index
	aliases map[string]map[string]*aliasMeta // alias -> index -> meta
	// pipelines are the ingest pipelines, by id.
	pipelines map[string]*pipeline
	clockMu   sync.Mutex
	offset    time.Duration // added to the wall clock (AdvanceClock)

	faultMu   sync.Mutex
	reject    int
	fail      int
	failCode  int
	drop      int
	dropBulk  int
	latency   time.Duration
	itemFails map[string]*itemFault

	requests atomic.Int64

	maxContent int64 // http.max_content_length

	// fullSort makes every search evaluate and sort every document, as
	// the server did before it kept sorted views: the tests compare the
	// two answers. Guarded by mu.
	fullSort bool

	routes []*route
}

type itemFault struct {
	status      int
	typ, reason string
	times       int // < 0: always
}

// NewHandler returns an empty cluster.
func NewHandler() *Handler {
	h := &Handler{
		indices:    map[string]*index{},
		aliases:    map[string]map[string]*aliasMeta{},
		pipelines:  map[string]*pipeline{},
		itemFails:  map[string]*itemFault{},
		maxContent: maxContentLength,
	}
	h.routes = h.buildRoutes()
	return h
}

// now is the server's clock: the wall clock plus AdvanceClock offsets.
func (h *Handler) now() time.Time {
	h.clockMu.Lock()
	defer h.clockMu.Unlock()
	return time.Now().Add(h.offset)
}

// waitForRefresh blocks a refresh=wait_for request until its writes are
// visible to search, as Elasticsearch's refresh listeners do. The caller
// must not hold h.mu.
func (h *Handler) waitForRefresh(rc *reqCtx, targets []waitTarget) {
	ctx := rc.r.Context()
	for _, t := range targets {
		if t.ch != nil {
			select {
			case <-t.ch:
			case <-ctx.Done():
				return
			}
			continue
		}
		for {
			d := t.until.Sub(h.now())
			if d <= 0 {
				break
			}
			timer := time.NewTimer(min(d, 50*time.Millisecond))
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return
			}
		}
	}
}

type waitTarget struct {
	until time.Time
	ch    <-chan struct{}
}

// AdvanceClock moves the server's clock forward by d: periodic refreshes
// (index.refresh_interval), search idleness and the index.gc_deletes window
// elapse without sleeping. Real time keeps running as well.
func (h *Handler) AdvanceClock(d time.Duration) {
	h.clockMu.Lock()
	h.offset += d
	h.clockMu.Unlock()
}

// RejectNext makes the next n requests fail as a whole with 429
// es_rejected_execution_exception, as a node under indexing pressure does.
func (h *Handler) RejectNext(n int) {
	h.faultMu.Lock()
	h.reject = n
	h.faultMu.Unlock()
}

// FailNext makes the next n requests fail with the given HTTP status (a 5xx)
// and an Elasticsearch error body.
func (h *Handler) FailNext(n int, status int) {
	h.faultMu.Lock()
	h.fail, h.failCode = n, status
	h.faultMu.Unlock()
}

// DropNext makes the server close the connection of the next n requests
// without sending a response.
func (h *Handler) DropNext(n int) {
	h.faultMu.Lock()
	h.drop = n
	h.faultMu.Unlock()
}

// DropBulkNext makes the next n _bulk requests end as when the node
// coordinating them fails in the middle of the bulk: the first half of each
// request's actions (rounded down) are applied, the others are not, and
// the connection is closed without a response. The client cannot tell
// which actions took effect; sending the whole request again is how it
// recovers. Other requests are served as usual and do not count.
func (h *Handler) DropBulkNext(n int) {
	h.faultMu.Lock()
	h.dropBulk = n
	h.faultMu.Unlock()
}

// takeDropBulk consumes one DropBulkNext fault, if any.
func (h *Handler) takeDropBulk() bool {
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	if h.dropBulk <= 0 {
		return false
	}
	h.dropBulk--
	return true
}

// SetLatency adds d before every response (0 turns it off).
func (h *Handler) SetLatency(d time.Duration) {
	h.faultMu.Lock()
	h.latency = d
	h.faultMu.Unlock()
}

// FailItem makes writes of document id in index (a concrete index name or
// the name the request used) fail with the given status and error type and
// reason, times times (times < 0: always). It applies to _bulk items, where
// the rest of the request goes on, and to single-document writes, which get
// the error as the response. The write is not applied. FailItem(idx, id, 429,
// "es_rejected_execution_exception", "...", 2) gives item-level rejections.
func (h *Handler) FailItem(index, id string, status int, errType, reason string, times int) {
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	if times == 0 {
		delete(h.itemFails, index+"\x00"+id)
		return
	}
	h.itemFails[index+"\x00"+id] = &itemFault{status: status, typ: errType, reason: reason, times: times}
}

// takeItemFault consumes one injected failure for the document, if any.
func (h *Handler) takeItemFault(names []string, id string) *esError {
	h.faultMu.Lock()
	defer h.faultMu.Unlock()
	for _, n := range names {
		f := h.itemFails[n+"\x00"+id]
		if f == nil {
			continue
		}
		if f.times > 0 {
			f.times--
			if f.times == 0 {
				delete(h.itemFails, n+"\x00"+id)
			}
		}
		return newErr(f.status, f.typ, "%s", f.reason)
	}
	return nil
}

// Requests is the number of HTTP requests the server received, faulted ones
// included.
func (h *Handler) Requests() int {
	return int(h.requests.Load())
}

// Doc returns the current _source and version of a document, bypassing HTTP
// and refresh. index may be an alias with one index.
func (h *Handler) Doc(index, id string) (source json.RawMessage, version int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ix := h.lookupOne(index)
	if ix == nil {
		return nil, 0, false
	}
	d := ix.live(id, h.now())
	if d == nil {
		return nil, 0, false
	}
	return append(json.RawMessage(nil), d.source...), d.version, true
}

// Count returns the number of live documents in an index (or in the indices
// behind an alias), bypassing HTTP and refresh.
func (h *Handler) Count(index string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, ix := range h.lookupAll(index) {
		for _, d := range ix.docs {
			if !d.deleted {
				n++
			}
		}
	}
	return n
}

func (h *Handler) lookupAll(name string) []*index {
	if ix := h.indices[name]; ix != nil {
		return []*index{ix}
	}
	var out []*index
	for n := range h.aliases[name] {
		if ix := h.indices[n]; ix != nil {
			out = append(out, ix)
		}
	}
	return out
}

func (h *Handler) lookupOne(name string) *index {
	all := h.lookupAll(name)
	if len(all) != 1 {
		return nil
	}
	return all[0]
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)

	h.faultMu.Lock()
	latency := h.latency
	drop := h.drop > 0
	if drop {
		h.drop--
	}
	h.faultMu.Unlock()

	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	if drop {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}

	rc := &reqCtx{h: h, w: w, r: r, start: time.Now(), now: h.now()}
	rc.w.Header().Set("X-Elastic-Product", "Elasticsearch")
	if id := r.Header.Get("X-Opaque-Id"); id != "" {
		rc.w.Header().Set("X-Opaque-Id", id)
	}
	rc.mediaType = responseMediaType(r.Header.Get("Accept"), r.Header.Get("Content-Type"))

	h.faultMu.Lock()
	var fault *esError
	switch {
	case h.reject > 0:
		h.reject--
		fault = newErr(429, "es_rejected_execution_exception",
			"rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=%d, max_coordinating_and_primary_bytes=107374182]", max(r.ContentLength, 0))
	case h.fail > 0:
		h.fail--
		fault = injectedFailure(h.failCode)
	}
	h.faultMu.Unlock()
	if fault != nil {
		io.Copy(io.Discard, io.LimitReader(r.Body, maxContentLength))
		rc.sendErr(fault)
		return
	}

	// http.max_content_length: Netty answers 413 with an empty body before
	// any Elasticsearch code runs.
	if r.ContentLength > h.maxContent {
		tooLarge(w)
		return
	}
	body, err := readBody(io.LimitReader(r.Body, h.maxContent+1), min(r.ContentLength, h.maxContent))
	if err != nil {
		rc.sendErr(newErr(400, "parse_exception", "failed to read request body: %v", err))
		return
	}
	if int64(len(body)) > h.maxContent {
		tooLarge(w)
		return
	}
	rc.body = body
	h.dispatch(rc)
}

// readBody is io.ReadAll with a first buffer of the announced length, so
// that a large body is read without repeated growing.
func readBody(r io.Reader, sizeHint int64) ([]byte, error) {
	b := make([]byte, 0, max(sizeHint, 511)+1)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

func tooLarge(w http.ResponseWriter) {
	w.Header().Del("X-Elastic-Product")
	w.Header().Set("Content-Length", "0")
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusRequestEntityTooLarge)
}

func injectedFailure(status int) *esError {
	switch status {
	case 503:
		return newErr(503, "cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized];")
	case 504:
		return newErr(504, "process_cluster_event_timeout_exception", "failed to process cluster event within 30s")
	case 429:
		return newErr(429, "es_rejected_execution_exception", "rejected execution of TimedRunnable on EsThreadPoolExecutor[name = estest-node/write, queue capacity = 10000]")
	default:
		if status < 400 || status > 599 {
			status = 500
		}
		return newErr(status, "exception", "injected failure with status [%d]", status)
	}
}

// responseMediaType follows RestRequest: a compatible-with media type asked
// for in Accept (or Content-Type) is echoed, plain JSON otherwise.
func responseMediaType(accept, contentType string) string {
	for _, h := range []string{accept, contentType} {
		for _, part := range strings.Split(h, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			if strings.HasPrefix(mt, "application/vnd.elasticsearch+") {
				if v := params["compatible-with"]; v != "" {
					return "application/vnd.elasticsearch+json;compatible-with=" + v
				}
			}
		}
	}
	return "application/json"
}

// contentTypeError checks a request body's Content-Type the way
// RestController does; nil when acceptable.
func contentTypeError(r *http.Request, bulk bool) *esError {
	ct := r.Header.Values("Content-Type")
	if len(ct) == 0 {
		return &esError{status: 406, simple: true, reason: "Content-Type header is missing"}
	}
	mt, params, err := mime.ParseMediaType(ct[0])
	bad := &esError{status: 406, simple: true, reason: fmt.Sprintf("Content-Type header [%s] is not supported", strings.Join(ct, ","))}
	if err != nil {
		return bad
	}
	switch mt {
	case "application/json", "application/x-ndjson", "application/*":
		return nil
	case "application/vnd.elasticsearch+json", "application/vnd.elasticsearch+x-ndjson":
		switch params["compatible-with"] {
		case "7", "8":
			return nil
		case "":
			return bad
		default:
			return newErr(400, "media_type_header_exception", "Invalid media-type value on headers [Content-Type, Accept]").
				causedBy(newErr(400, "status_exception", "Content-Type version must be either version 8 or 7, but found %s. Content-Type=%s", params["compatible-with"], ct[0]))
		}
	}
	return bad
}

// newUUID is a 22 character base64 UUID like Elasticsearch's index UUIDs.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newDocID is a 20 character auto-generated document id (UUIDs.base64UUID).
func newDocID() string {
	b := make([]byte, 15)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ---- responses ----

func (rc *reqCtx) send(status int, body any) {
	if body == nil {
		rc.w.Header().Set("Content-Type", rc.mediaType)
		rc.w.Header().Set("Content-Length", "0")
		rc.w.WriteHeader(status)
		return
	}
	var out []byte
	if raw, ok := body.(rawResponse); ok {
		out = raw
	} else {
		if fp, ok := rc.q.get("filter_path"); ok && fp != "" {
			body = filterPath(body, fp)
		}
		out = marshal(body)
	}
	if p, ok := rc.q.get("pretty"); ok && p != "false" {
		var b bytes.Buffer
		if json.Indent(&b, out, "", "  ") == nil {
			b.WriteByte('\n')
			out = b.Bytes()
		}
	}
	rc.w.Header().Set("Content-Type", rc.mediaType)
	rc.w.Header().Set("Content-Length", fmt.Sprint(len(out)))
	rc.w.WriteHeader(status)
	if rc.r.Method != http.MethodHead {
		rc.w.Write(out)
	}
}

func (rc *reqCtx) sendErr(e *esError) {
	if e.empty {
		rc.w.WriteHeader(e.status)
		return
	}
	if e.allow != "" {
		rc.w.Header().Set("Allow", e.allow)
	}
	rc.send(e.status, e.body())
}

func (rc *reqCtx) tookMillis() int64 {
	return time.Since(rc.start).Milliseconds()
}
