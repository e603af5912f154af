package estest

import (
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// reqCtx is one request being served.
type reqCtx struct {
	h         *Handler
	w         http.ResponseWriter
	r         *http.Request
	body      []byte
	start     time.Time
	now       time.Time
	mediaType string

	q       params
	path    map[string]string // path parameters
	allowed map[string]bool
}

// params are the query parameters; like RestRequest, the last value wins.
type params struct {
	keys []string
	vals map[string]string
}

func parseParams(raw string) params {
	p := params{vals: map[string]string{}}
	for _, kv := range strings.Split(raw, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, err1 := url.QueryUnescape(k)
		v, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			continue
		}
		if _, seen := p.vals[k]; !seen {
			p.keys = append(p.keys, k)
		}
		p.vals[k] = v
	}
	return p
}

func (p params) get(k string) (string, bool) {
	v, ok := p.vals[k]
	return v, ok
}

// handlerFunc serves a matched route. It returns the status and body, or an
// error to render.
type handlerFunc func(rc *reqCtx) (int, any, *esError)

type route struct {
	segs    []string // literal segments, or "{name}" wildcards
	methods map[string]handlerFunc
	rank    int
}

func (h *Handler) buildRoutes() []*route {
	byPath := map[string]*route{}
	var order []*route
	add := func(path string, fn handlerFunc, methods ...string) {
		rt := byPath[path]
		if rt == nil {
			rt = &route{methods: map[string]handlerFunc{}}
			for _, s := range strings.Split(strings.Trim(path, "/"), "/") {
				if s != "" {
					rt.segs = append(rt.segs, s)
				}
			}
			rt.rank = routeRank(rt.segs)
			byPath[path] = rt
			order = append(order, rt)
		}
		for _, m := range methods {
			rt.methods[m] = fn
		}
	}
	add("/", handleRoot, "GET", "HEAD")
	add("/_cluster/health", handleHealth, "GET")
	add("/_cluster/health/{index}", handleHealth, "GET")

	add("/_bulk", handleBulk, "POST", "PUT")
	add("/{index}/_bulk", handleBulk, "POST", "PUT")

	add("/_search", handleSearch, "GET", "POST")
	add("/{index}/_search", handleSearch, "GET", "POST")
	add("/_count", handleCount, "GET", "POST")
	add("/{index}/_count", handleCount, "GET", "POST")

	add("/_mget", handleMget, "GET", "POST")
	add("/{index}/_mget", handleMget, "GET", "POST")

	add("/_refresh", handleRefresh, "GET", "POST")
	add("/{index}/_refresh", handleRefresh, "GET", "POST")

	add("/_aliases", handleUpdateAliases, "POST")
	add("/_alias", handleGetAlias, "GET")
	add("/_alias/{name}", handleGetAlias, "GET", "HEAD")
	add("/{index}/_alias", handleGetAlias, "GET")
	add("/{index}/_alias/{name}", handleGetAlias, "GET", "HEAD")
	add("/{index}/_alias/{name}", handlePutAlias, "PUT", "POST")
	add("/{index}/_alias/{name}", handleDeleteAlias, "DELETE")
	add("/{index}/_aliases/{name}", handlePutAlias, "PUT", "POST")
	add("/{index}/_aliases/{name}", handleDeleteAlias, "DELETE")

	add("/_mapping", handleGetMapping, "GET")
	add("/{index}/_mapping", handleGetMapping, "GET")
	add("/{index}/_mapping", handlePutMapping, "PUT", "POST")
	add("/_settings", handleGetSettings, "GET")
	add("/{index}/_settings", handleGetSettings, "GET")

	add("/_ingest/pipeline", handleGetPipeline, "GET")
	add("/_ingest/pipeline/{id}", handleGetPipeline, "GET")
	add("/_ingest/pipeline/{id}", handlePutPipeline, "PUT")
	add("/_ingest/pipeline/{id}", handleDeletePipeline, "DELETE")

	add("/{index}", handleCreateIndex, "PUT")
	add("/{index}", handleGetIndex, "GET")
	add("/{index}", handleIndexExists, "HEAD")
	add("/{index}", handleDeleteIndex, "DELETE")

	add("/{index}/_doc/{id}", handleIndexDoc, "PUT", "POST")
	add("/{index}/_doc", handleIndexDoc, "POST")
	add("/{index}/_doc/{id}", handleGetDoc, "GET", "HEAD")
	add("/{index}/_doc/{id}", handleDeleteDoc, "DELETE")
	add("/{index}/_create/{id}", handleCreateDoc, "PUT", "POST")
	add("/{index}/_update/{id}", handleUpdateDoc, "POST")
	add("/{index}/_source/{id}", handleGetSource, "GET", "HEAD")

	sort.SliceStable(order, func(i, j int) bool { return order[i].rank < order[j].rank })
	return order
}

// routeRank orders candidates like PathTrie's matching modes: explicit
// paths first, then a wildcard at the root, then at the leaf, then anywhere.
func routeRank(segs []string) int {
	wild := func(s string) bool { return strings.HasPrefix(s, "{") }
	n := 0
	for _, s := range segs {
		if wild(s) {
			n++
		}
	}
	switch {
	case n == 0:
		return 0
	case n == 1 && wild(segs[0]):
		return 1
	case n == 1 && wild(segs[len(segs)-1]):
		return 2
	default:
		return 3
	}
}

func (rt *route) match(segs []string) (map[string]string, bool) {
	if len(segs) != len(rt.segs) {
		return nil, false
	}
	var ps map[string]string
	for i, s := range rt.segs {
		if strings.HasPrefix(s, "{") {
			if ps == nil {
				ps = map[string]string{}
			}
			ps[strings.Trim(s, "{}")] = segs[i]
			continue
		}
		if s != segs[i] {
			return nil, false
		}
	}
	return ps, true
}

var methodOrder = []string{"GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE", "CONNECT"}

// dispatch is RestController.tryAllHandlers.
func (h *Handler) dispatch(rc *reqCtx) {
	r := rc.r
	rawPath := r.URL.EscapedPath()
	uri := r.URL.RequestURI()
	var segs []string
	for _, s := range strings.Split(rawPath, "/") {
		if s == "" {
			continue
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			d = s
		}
		segs = append(segs, d)
	}
	rc.q = parseParams(r.URL.RawQuery)

	allowed := map[string]bool{}
	var fn handlerFunc
	for _, rt := range h.routes {
		ps, ok := rt.match(segs)
		if !ok {
			continue
		}
		for m := range rt.methods {
			allowed[m] = true
		}
		if fn == nil {
			if f := rt.methods[r.Method]; f != nil {
				fn, rc.path = f, ps
			}
		}
	}
	if fn == nil {
		if len(allowed) > 0 {
			var ms []string
			for _, m := range methodOrder {
				if allowed[m] {
					ms = append(ms, m)
				}
			}
			if r.Method == http.MethodOptions {
				rc.w.Header().Set("Allow", strings.Join(ms, ","))
				rc.w.WriteHeader(200)
				return
			}
			rc.sendErr(&esError{status: 405, simple: true, allow: strings.Join(ms, ","),
				reason: "Incorrect HTTP method for uri [" + uri + "] and method [" + r.Method + "], allowed: [" + strings.Join(ms, ", ") + "]"})
			return
		}
		rc.sendErr(&esError{status: 400, simple: true, noStatus: true,
			reason: "no handler found for uri [" + uri + "] and method [" + r.Method + "]"})
		return
	}
	if len(rc.body) > 0 {
		if e := contentTypeError(r, false); e != nil {
			rc.sendErr(e)
			return
		}
	}
	status, body, err := fn(rc)
	if err != nil {
		rc.sendErr(err)
		return
	}
	rc.send(status, body)
}

// allow declares the query parameters a handler supports, as
// BaseRestHandler checks consumed parameters.
func (rc *reqCtx) allow(names ...string) {
	if rc.allowed == nil {
		rc.allowed = map[string]bool{}
	}
	for _, n := range names {
		rc.allowed[n] = true
	}
}

var alwaysSupported = map[string]bool{"format": true, "filter_path": true, "pretty": true, "human": true, "error_trace": true}

// checkParams rejects unrecognized query parameters with BaseRestHandler's
// message, including its "did you mean" suggestions.
func (rc *reqCtx) checkParams() *esError {
	var bad []string
	for _, k := range rc.q.keys {
		if !alwaysSupported[k] && !rc.allowed[k] && rc.path[k] == "" {
			bad = append(bad, k)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	candidates := []string{"error_trace"}
	for k := range rc.allowed {
		candidates = append(candidates, k)
	}
	for k := range rc.path {
		candidates = append(candidates, k)
	}
	var sb strings.Builder
	sb.WriteString("request [" + rc.r.URL.EscapedPath() + "] contains unrecognized parameter")
	if len(bad) > 1 {
		sb.WriteString("s")
	}
	sb.WriteString(": ")
	for i, b := range bad {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("[" + b + "]")
		type cand struct {
			s string
			d float64
		}
		var cs []cand
		for _, c := range candidates {
			if d := levenshteinSimilarity(b, c); d > 0.5 {
				cs = append(cs, cand{c, d})
			}
		}
		sort.Slice(cs, func(i, j int) bool {
			if cs[i].d != cs[j].d {
				return cs[i].d > cs[j].d
			}
			return cs[i].s < cs[j].s
		})
		if len(cs) > 0 {
			sb.WriteString(" -> did you mean ")
			if len(cs) > 1 {
				sb.WriteString("any of ")
			}
			names := make([]string, len(cs))
			for i, c := range cs {
				names[i] = c.s
			}
			sb.WriteString("[" + strings.Join(names, ", ") + "]?")
		}
	}
	return errIllegalArgument("%s", sb.String())
}

// levenshteinSimilarity is Lucene's LevenshteinDistance.getDistance:
// 1 - distance / max(len).
func levenshteinSimilarity(a, b string) float64 {
	ra, rb := []rune(a), []rune(b)
	if len(ra) == 0 || len(rb) == 0 {
		if len(ra) == len(rb) {
			return 1
		}
		return 0
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return 1 - float64(prev[len(rb)])/float64(max(len(ra), len(rb)))
}

// ---- typed parameter helpers ----

// boolParam parses a boolean parameter the way RestRequest.paramAsBoolean
// does: "", "true" are true, "false" false, anything else an error.
func (rc *reqCtx) boolParam(name string, def bool) (bool, *esError) {
	v, ok := rc.q.get(name)
	if !ok {
		return def, nil
	}
	switch v {
	case "", "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errIllegalArgument("Failed to parse value [%s] as only [true] or [false] are allowed.", v)
}

func (rc *reqCtx) intParam(name string, def int) (int, *esError) {
	v, ok := rc.q.get(name)
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, errIllegalArgument("Failed to parse int parameter [%s] with value [%s]", name, v)
	}
	return n, nil
}

// refreshPolicy parses the refresh parameter (WriteRequest.RefreshPolicy).
func (rc *reqCtx) refreshPolicy() (string, *esError) {
	v, ok := rc.q.get("refresh")
	if !ok {
		return "false", nil
	}
	switch v {
	case "", "true":
		return "true", nil
	case "false", "wait_for":
		return v, nil
	}
	return "", errIllegalArgument("Unknown value for refresh: [%s].", v)
}

// timeParam validates a time value parameter (TimeValue.parseTimeValue).
func (rc *reqCtx) timeParam(name string) *esError {
	v, ok := rc.q.get(name)
	if !ok {
		return nil
	}
	if _, err := parseTimeValue(v, name); err != nil {
		return err
	}
	return nil
}

// parseTimeValue parses "1s", "500ms", "-1" ...
func parseTimeValue(v, setting string) (time.Duration, *esError) {
	bad := errIllegalArgument("failed to parse setting [%s] with value [%s] as a time value: unit is missing or unrecognized", setting, v)
	s := strings.ToLower(strings.TrimSpace(v))
	if s == "-1" {
		return -1, nil
	}
	if s == "0" {
		return 0, nil
	}
	units := []struct {
		suffix string
		d      time.Duration
	}{{"nanos", time.Nanosecond}, {"micros", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}, {"d", 24 * time.Hour}}
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num := strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil {
				f, ferr := strconv.ParseFloat(num, 64)
				if ferr != nil {
					return 0, errIllegalArgument("failed to parse setting [%s] with value [%s] as a time value", setting, v)
				}
				return time.Duration(f * float64(u.d)), nil
			}
			if n < -1 {
				return 0, errIllegalArgument("failed to parse setting [%s] with value [%s] as a time value: negative durations are not supported", setting, v)
			}
			return time.Duration(n) * u.d, nil
		}
	}
	return 0, bad
}

// requireBody returns the parsed request body, or "request body is required".
func (rc *reqCtx) requireBody() (*object, *esError) {
	o, present, err := rc.optionalBody()
	if err != nil {
		return nil, err
	}
	if !present {
		return nil, errBodyRequired()
	}
	return o, nil
}

// optionalBody parses a JSON object body if there is one.
func (rc *reqCtx) optionalBody() (*object, bool, *esError) {
	if len(rc.body) == 0 {
		return nil, false, nil
	}
	v, ok, err := parseJSON(rc.body, false)
	if err != nil {
		return nil, false, errFromParse(err)
	}
	if !ok {
		return nil, false, nil
	}
	o, isObj := v.(*object)
	if !isObj {
		return nil, false, newErr(400, "parse_exception", "request body or source parameter is required")
	}
	return o, true, nil
}
