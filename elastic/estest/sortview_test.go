package estest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// tookField is the only part of a search answer that may differ between
// two identical searches.
var tookField = regexp.MustCompile(`"took":[0-9]+,`)

// TestSortedSearchMatchesFullSort runs random sorted and unsorted searches
// (search_after walks and from/size pages, ties, missing values, desc,
// several sort keys, min/max modes, unmapped types, filters, post
// filters, min_score, track_total_hits) between random writes, deletes and
// refreshes, and checks that each answer is byte for byte the answer of a
// search that evaluates and sorts every document, as the server did
// before it kept sorted views.
func TestSortedSearchMatchesFullSort(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			compareSortedSearches(t, rand.New(rand.NewPCG(seed, 15)), 1500)
		})
	}
}

func compareSortedSearches(t *testing.T, rnd *rand.Rand, steps int) {
	h := NewHandler()
	serve := func(method, path, body string) (int, string) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			ctype := "application/json"
			if strings.HasSuffix(path, "_bulk") {
				ctype = "application/x-ndjson"
			}
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, body := serve("PUT", "/items", `{"settings":{"refresh_interval":-1},"mappings":{"properties":{`+
		`"n":{"type":"long"},"k":{"type":"keyword"},"f":{"type":"double"},"t":{"type":"date"},"b":{"type":"boolean"}}}}`); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	pick := func(xs ...string) string { return xs[rnd.IntN(len(xs))] }
	field := func(name string, vals ...string) string {
		switch rnd.IntN(6) {
		case 0:
			return "" // missing
		case 1:
			return fmt.Sprintf(`,%q:[%s,%s]`, name, pick(vals...), pick(vals...))
		}
		return fmt.Sprintf(`,%q:%s`, name, pick(vals...))
	}
	doc := func(id int) string {
		src := fmt.Sprintf(`{"id":%d`, id) +
			field("n", "0", "1", "2", "3", "3", "4", "5", "7", "-2") +
			field("k", `"a"`, `"b"`, `"c"`, `"c"`, `"d"`, `""`) +
			field("f", "0.5", "-1.25", "2", "2.0", "0", "3.75") +
			field("t", `"2026-01-01"`, `"2026-01-02T10:00:00Z"`, `1767225600000`, `"2025-12-31"`) +
			field("b", "true", "false") + "}"
		return src
	}
	sorts := []string{
		`{"n":"asc"}`, `{"n":"desc"}`, `{"n":{"order":"desc","mode":"min"}}`, `{"n":{"mode":"max"}}`,
		`{"n":{"missing":"_first"}}`, `{"n":{"missing":4,"order":"desc"}}`,
		`{"k":"asc"}`, `{"k":{"order":"desc","missing":"_first"}}`, `{"k":{"missing":"c"}}`, `{"k":"desc"}`,
		`{"f":"desc"}`, `{"f":{"missing":0.5}}`, `{"f":{"missing":"_first"}}`,
		`{"t":"asc"}`, `{"t":{"order":"desc","missing":"_first"}}`, `{"b":"desc"}`, `{"b":"asc"}`,
		`{"u":{"unmapped_type":"long"}}`, `{"u":{"unmapped_type":"keyword","order":"desc"}}`,
		`"_doc"`, `{"_seq_no":"desc"}`, `"_index"`, `{"id":"asc"}`, `{"id":"desc"}`, `"_score"`,
	}
	queries := []string{
		`{"match_all":{}}`, `{"match_all":{}}`, `{"term":{"k":"c"}}`, `{"range":{"n":{"gte":2}}}`,
		`{"bool":{"filter":[{"exists":{"field":"f"}}]}}`, `{"bool":{"should":[{"term":{"k":"a"}},{"range":{"n":{"lt":3}}}]}}`,
		`{"match_none":{}}`,
	}
	type cursor struct {
		sort  string
		after json.RawMessage
	}
	var walk *cursor
	searches, fast := 0, 0
	mappedU := false
	for step := range steps {
		if step == steps/2 {
			// A sorted field that was unmapped gets a type: the sorts
			// on it with unmapped_type now use the mapped one.
			if code, body := serve("PUT", "/items/_mapping", `{"properties":{"u":{"type":"long"}}}`); code != 200 {
				t.Fatalf("put mapping: %d %s", code, body)
			}
			mappedU = true
		}
		r := rnd.IntN(20)
		// Just before and after the mapping change, the same sort on u.
		around := step == steps/2-1 || step == steps/2
		if around {
			r = 19
		}
		switch {
		case r < 5: // writes
			var b strings.Builder
			for range 1 + rnd.IntN(6) {
				id := rnd.IntN(80)
				if rnd.IntN(5) == 0 {
					fmt.Fprintf(&b, `{"delete":{"_index":"items","_id":"%d"}}`+"\n", id)
					continue
				}
				src := doc(id)
				if mappedU && rnd.IntN(2) == 0 {
					src = strings.TrimSuffix(src, "}") + fmt.Sprintf(`,"u":%d}`, rnd.IntN(5))
				}
				fmt.Fprintf(&b, `{"index":{"_index":"items","_id":"%d"}}`+"\n%s\n", id, src)
			}
			if code, body := serve("POST", "/_bulk", b.String()); code != 200 {
				t.Fatalf("bulk: %d %s", code, body)
			}
		case r < 7:
			serve("POST", "/items/_refresh", "")
		default:
			q := map[string]json.RawMessage{}
			if around {
				q["sort"] = json.RawMessage(`[{"u":{"unmapped_type":"keyword","order":"desc"}},{"id":"asc"}]`)
				walk = nil
			} else if walk != nil && rnd.IntN(4) > 0 {
				// The next page of a search_after walk.
				q["sort"] = json.RawMessage(walk.sort)
				q["search_after"] = walk.after
			} else {
				var ss []string
				for range 1 + rnd.IntN(3) {
					ss = append(ss, pick(sorts...))
				}
				if rnd.IntN(3) == 0 {
					ss = append(ss, `{"id":"asc"}`) // a unique tiebreaker
				}
				if rnd.IntN(10) > 0 {
					q["sort"] = json.RawMessage("[" + strings.Join(ss, ",") + "]")
				}
				if rnd.IntN(3) == 0 {
					q["from"] = json.RawMessage(fmt.Sprint(rnd.IntN(5)))
				}
				walk = nil
			}
			q["query"] = json.RawMessage(pick(queries...))
			q["size"] = json.RawMessage(fmt.Sprint(rnd.IntN(8)))
			switch rnd.IntN(8) {
			case 0:
				q["post_filter"] = json.RawMessage(`{"term":{"b":true}}`)
			case 1:
				q["min_score"] = json.RawMessage(`1.5`)
			case 2:
				q["track_scores"] = json.RawMessage(`true`)
			case 3:
				q["terminate_after"] = json.RawMessage(`9`)
			}
			q["track_total_hits"] = json.RawMessage(pick("true", "false", "4", "10000"))
			if rnd.IntN(4) == 0 {
				q["_source"] = json.RawMessage(`false`)
			}
			body, _ := json.Marshal(q)
			h.mu.Lock()
			h.fullSort = true
			h.mu.Unlock()
			wantCode, want := serve("POST", "/items/_search?version=true&seq_no_primary_term=true", string(body))
			h.mu.Lock()
			h.fullSort = false
			clock := h.indices["items"].viewClock
			h.mu.Unlock()
			gotCode, got := serve("POST", "/items/_search?version=true&seq_no_primary_term=true", string(body))
			searches++
			h.mu.Lock()
			if h.indices["items"].viewClock != clock {
				fast++ // answered from a sorted view
			}
			h.mu.Unlock()
			want, got = tookField.ReplaceAllString(want, ""), tookField.ReplaceAllString(got, "")
			if gotCode != wantCode || got != want {
				t.Fatalf("step %d: search %s\nanswered %d %s\nwant      %d %s", step, body, gotCode, clip(got), wantCode, clip(want))
			}
			var res struct {
				Hits struct {
					Hits []struct {
						Sort json.RawMessage `json:"sort"`
					} `json:"hits"`
				} `json:"hits"`
			}
			if err := json.Unmarshal([]byte(got), &res); err == nil && len(res.Hits.Hits) > 0 && q["sort"] != nil {
				walk = &cursor{sort: string(q["sort"]), after: res.Hits.Hits[len(res.Hits.Hits)-1].Sort}
			} else {
				walk = nil
			}
		}
	}
	if fast < searches/4 {
		t.Fatalf("only %d of %d searches used a sorted view", fast, searches)
	}
}

// TestSortedViewFollowsRefreshes walks an index of 3,000 documents sorted
// on a long field, in pages of 100, while documents before and after the
// cursor are updated, deleted and added, with a refresh between pages:
// each page is the one a full sort of the refreshed index gives.
func TestSortedViewFollowsRefreshes(t *testing.T) {
	t.Parallel()
	h := NewHandler()
	serve := func(method, path, body string) string {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/x-ndjson")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body.String())
		}
		return rec.Body.String()
	}
	var b bytes.Buffer
	for i := range 3000 {
		fmt.Fprintf(&b, `{"index":{"_index":"items","_id":"%d"}}`+"\n"+`{"key":%d,"rank":%d}`+"\n", i, i*2, i%7)
	}
	serve("POST", "/_bulk?refresh=true", b.String())
	rnd := rand.New(rand.NewPCG(3, 15))
	sortSpec := `[{"rank":"desc"},{"key":"asc"}]`
	after := ""
	for page := 0; ; page++ {
		q := `{"size":100,"_source":false,"track_total_hits":false,"sort":` + sortSpec + after + `}`
		h.mu.Lock()
		h.fullSort = true
		h.mu.Unlock()
		want := tookField.ReplaceAllString(serve("POST", "/items/_search", q), "")
		h.mu.Lock()
		h.fullSort = false
		h.mu.Unlock()
		got := tookField.ReplaceAllString(serve("POST", "/items/_search", q), "")
		if got != want {
			t.Fatalf("page %d: %s\nanswered %s\nwant     %s", page, q, clip(got), clip(want))
		}
		var res struct {
			Hits struct {
				Hits []struct {
					Sort json.RawMessage `json:"sort"`
				} `json:"hits"`
			} `json:"hits"`
		}
		if err := json.Unmarshal([]byte(got), &res); err != nil {
			t.Fatal(err)
		}
		if len(res.Hits.Hits) == 0 {
			if page < 20 {
				t.Fatalf("the walk ended after %d pages", page)
			}
			return
		}
		after = `,"search_after":` + string(res.Hits.Hits[len(res.Hits.Hits)-1].Sort)
		b.Reset()
		for range 40 {
			id := rnd.IntN(3300)
			if rnd.IntN(4) == 0 {
				fmt.Fprintf(&b, `{"delete":{"_index":"items","_id":"%d"}}`+"\n", id)
				continue
			}
			fmt.Fprintf(&b, `{"index":{"_index":"items","_id":"%d"}}`+"\n"+`{"key":%d,"rank":%d}`+"\n", id, rnd.IntN(7000), rnd.IntN(7))
		}
		serve("POST", "/_bulk?refresh=true", b.String())
	}
}

// clip shortens an answer for a failure message.
func clip(s string) string {
	if len(s) > 3000 {
		return s[:3000] + "…"
	}
	return s
}

// TestSortedPaging walks an index page by page with search_after and
// from/size on sorts with ties, missing values, desc and several keys, with
// writes and a refresh between two pages, and checks each page against the
// order the sort defines.
func TestSortedPaging(t *testing.T) {
	t.Parallel()
	c, _ := target(t)
	idx := indexName(t, c)
	mustCreate(t, c, idx, `{"settings":{"refresh_interval":-1},"mappings":{"properties":{"key":{"type":"long"},"rank":{"type":"long"},"opt":{"type":"long"},"grp":{"type":"keyword"}}}}`)
	type row struct {
		id             string
		key, rank, opt int
		grp            string // "" when missing
		hasOpt         bool
	}
	rows := map[string]row{}
	put := func(lines *[]string, r row) {
		src := fmt.Sprintf(`{"key":%d,"rank":%d`, r.key, r.rank)
		if r.hasOpt {
			src += fmt.Sprintf(`,"opt":%d`, r.opt)
		}
		if r.grp != "" {
			src += fmt.Sprintf(`,"grp":%q`, r.grp)
		}
		*lines = append(*lines, fmt.Sprintf(`{"index":{"_id":%q}}`, r.id), src+"}")
		rows[r.id] = r
	}
	var lines []string
	for i := 1; i <= 30; i++ {
		put(&lines, row{id: fmt.Sprintf("r%d", i), key: i, rank: i % 4, opt: i % 6, hasOpt: i%3 != 0, grp: []string{"", "a", "b", "c", "a"}[i%5]})
	}
	expectEq(t, "errors", bulk(t, c, "/"+idx+"/_bulk?refresh=true", lines...).get("errors"), false)

	// order returns the ids of rows in the order of less.
	order := func(less func(a, b row) bool) []string {
		var rs []row
		for _, r := range rows {
			rs = append(rs, r)
		}
		for i := range rs {
			for j := i + 1; j < len(rs); j++ {
				if less(rs[j], rs[i]) {
					rs[i], rs[j] = rs[j], rs[i]
				}
			}
		}
		ids := make([]string, len(rs))
		for i, r := range rs {
			ids[i] = r.id
		}
		return ids
	}
	// walk pages through the index with search_after; between the first
	// and the second page it runs between.
	walk := func(sort string, size int, between func()) []string {
		var got []string
		after := ""
		for page := 0; ; page++ {
			r := call(t, c, "POST", "/"+idx+"/_search", fmt.Sprintf(`{"size":%d,"_source":false,"sort":%s%s}`, size, sort, after))
			expectStatus(t, r, 200)
			ids := hitIDs(r)
			got = append(got, ids...)
			if len(ids) < size {
				return got
			}
			after = `,"search_after":` + jsonString(r.get(fmt.Sprintf("hits.hits.%d.sort", len(ids)-1)))
			if page == 0 && between != nil {
				between()
			}
		}
	}
	byKey := func(a, b row) bool { return a.key < b.key }

	// Ties on rank, broken by key; desc.
	rankDesc := func(a, b row) bool {
		if a.rank != b.rank {
			return a.rank > b.rank
		}
		return a.key < b.key
	}
	expectEq(t, "rank desc, key", walk(`[{"rank":"desc"},{"key":"asc"}]`, 7, nil), order(rankDesc))
	// A keyword with missing values first, then key desc.
	grpFirst := func(a, b row) bool {
		if a.grp != b.grp {
			return a.grp < b.grp // "" (missing) first
		}
		return a.key > b.key
	}
	r := call(t, c, "POST", "/"+idx+"/_search", `{"size":30,"_source":false,"sort":[{"grp":{"missing":"_first"}},{"key":"desc"}]}`)
	expectEq(t, "grp missing first, key desc", hitIDs(r), order(grpFirst))
	// A keyword's missing value given, desc: search_after on it.
	grpB := func(a, b row) bool {
		ga, gb := cmp.Or(a.grp, "b"), cmp.Or(b.grp, "b")
		if ga != gb {
			return ga > gb
		}
		return a.key < b.key
	}
	expectEq(t, "grp desc missing b, key", walk(`[{"grp":{"order":"desc","missing":"b"}},{"key":"asc"}]`, 4, nil), order(grpB))
	// A long with missing values (last), desc: pages end inside the
	// missing ones, whose sort value search_after takes back.
	optDesc := func(a, b row) bool {
		if a.hasOpt != b.hasOpt {
			return a.hasOpt
		}
		if a.hasOpt && a.opt != b.opt {
			return a.opt > b.opt
		}
		return a.key < b.key
	}
	expectEq(t, "opt desc, key", walk(`[{"opt":"desc"},{"key":"asc"}]`, 4, nil), order(optDesc))
	// from/size pages are search_after's pages.
	all := order(rankDesc)
	for from := 0; from < 30; from += 7 {
		r := call(t, c, "POST", "/"+idx+"/_search", fmt.Sprintf(`{"from":%d,"size":7,"_source":false,"sort":[{"rank":"desc"},{"key":"asc"}]}`, from))
		expectEq(t, fmt.Sprintf("from %d", from), hitIDs(r), all[from:min(from+7, len(all))])
		expectEq(t, "total", r.num("hits.total.value"), int64(30))
	}

	// Ties without a tiebreaker: search_after skips the rest of a tie.
	r = call(t, c, "POST", "/"+idx+"/_search", `{"size":5,"_source":false,"sort":[{"rank":"asc"}]}`)
	expectEq(t, "rank 0 page", len(hitIDs(r)), 5)
	expectEq(t, "last sort value", jsonString(r.get("hits.hits.4.sort")), `[0]`)
	r = call(t, c, "POST", "/"+idx+"/_search", `{"size":10,"_source":false,"sort":[{"rank":"asc"}],"search_after":[0]}`)
	var ranks []string
	var rank1 []string
	for i, id := range hitIDs(r) {
		ranks = append(ranks, jsonString(r.get(fmt.Sprintf("hits.hits.%d.sort.0", i))))
		if rows[id].rank == 1 {
			rank1 = append(rank1, id)
		}
	}
	expectEq(t, "ranks after a tie", ranks, []string{"1", "1", "1", "1", "1", "1", "1", "1", "2", "2"})
	expectEq(t, "rank 1 docs", len(rank1), 8)

	// Writes and a refresh between two pages: a document moved past the
	// cursor is seen again at its new place, one moved before it is not,
	// a deleted one is gone, new ones appear in order.
	got := walk(`[{"key":"asc"}]`, 10, func() {
		var lines []string
		put(&lines, row{id: "r5", key: 35, rank: 1})      // before the cursor, moved after it
		put(&lines, row{id: "r25", key: 0, rank: 1})      // after the cursor, moved before it
		put(&lines, row{id: "n1", key: 15, rank: 2})      // new, after the cursor (r15 is deleted)
		put(&lines, row{id: "n2", key: -1, rank: 2})      // new, before the cursor
		lines = append(lines, `{"delete":{"_id":"r15"}}`) // after the cursor
		delete(rows, "r15")
		expectEq(t, "errors", bulk(t, c, "/"+idx+"/_bulk", lines...).get("errors"), false)
		expectStatus(t, call(t, c, "POST", "/"+idx+"/_refresh", ""), 200)
	})
	want := []string{"r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10"}
	for _, id := range order(byKey) {
		if rows[id].key > 10 {
			want = append(want, id)
		}
	}
	expectEq(t, "walk with a refresh between pages", got, want)
	expectEq(t, "_count", call(t, c, "POST", "/"+idx+"/_count", "").num("count"), int64(31))
}

// TestSortedViewsUnderConcurrentWrites runs sorted searches on several
// sorts (more than an index keeps views for) while writers update the
// index and refresh it, so that views are built without the lock while
// refreshes go on, waited for, evicted and merged; then, once the writes
// have stopped, each sort's answer is the full sort's.
func TestSortedViewsUnderConcurrentWrites(t *testing.T) {
	t.Parallel()
	h := NewHandler()
	serve := func(method, path, body string) (int, string) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/x-ndjson")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	var b bytes.Buffer
	for i := range 20_000 {
		fmt.Fprintf(&b, `{"index":{"_index":"items","_id":"%d"}}`+"\n"+`{"key":%d,"rank":%d,"name":"n%d"}`+"\n", i, i, i%13, i%101)
	}
	if code, body := serve("POST", "/_bulk?refresh=true", b.String()); code != 200 {
		t.Fatalf("bulk: %d %.300s", code, body)
	}
	sorts := []string{
		`[{"key":"asc"}]`, `[{"key":"desc"}]`, `[{"rank":"asc"},{"key":"desc"}]`,
		`[{"name.keyword":"desc"},{"key":"asc"}]`, `[{"rank":"desc"},{"name.keyword":"asc"},{"key":"asc"}]`, `["_doc"]`,
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 15))
			for range 30 {
				var b bytes.Buffer
				for range 50 {
					id := rnd.IntN(21_000)
					if rnd.IntN(5) == 0 {
						fmt.Fprintf(&b, `{"delete":{"_index":"items","_id":"%d"}}`+"\n", id)
						continue
					}
					fmt.Fprintf(&b, `{"index":{"_index":"items","_id":"%d"}}`+"\n"+`{"key":%d,"rank":%d,"name":"n%d"}`+"\n", id, rnd.IntN(40_000), rnd.IntN(13), rnd.IntN(101))
				}
				if code, body := serve("POST", "/_bulk?refresh=true", b.String()); code != 200 {
					errs <- fmt.Errorf("bulk: %d %.300s", code, body)
					return
				}
			}
		}()
	}
	for s := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 12 {
				q := `{"size":50,"_source":false,"sort":` + sorts[(s+i)%len(sorts)] + `}`
				if code, body := serve("POST", "/items/_search", q); code != 200 {
					errs <- fmt.Errorf("search %s: %d %.300s", q, code, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, sort := range sorts {
		q := `{"size":200,"_source":false,"sort":` + sort + `,"track_total_hits":true}`
		h.mu.Lock()
		h.fullSort = true
		h.mu.Unlock()
		_, want := serve("POST", "/items/_search", q)
		h.mu.Lock()
		h.fullSort = false
		h.mu.Unlock()
		_, got := serve("POST", "/items/_search", q)
		if got, want = tookField.ReplaceAllString(got, ""), tookField.ReplaceAllString(want, ""); got != want {
			t.Fatalf("sort %s\nanswered %s\nwant     %s", sort, clip(got), clip(want))
		}
	}
}

// TestSortedViewBuiltDuringWrites: the writes and refreshes made while a
// view is built (without the lock) are in the answer of the search that
// built it and of the next ones.
func TestSortedViewBuiltDuringWrites(t *testing.T) {
	t.Parallel()
	h := NewHandler()
	serve := func(method, path, body string) string {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/x-ndjson")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Errorf("%s %s: %d %.300s", method, path, rec.Code, rec.Body.String())
		}
		return tookField.ReplaceAllString(rec.Body.String(), "")
	}
	var b bytes.Buffer
	for i := range 100 {
		fmt.Fprintf(&b, `{"index":{"_index":"items","_id":"%d"}}`+"\n"+`{"key":%d}`+"\n", i, i)
	}
	serve("POST", "/_bulk?refresh=true", b.String())
	builds := 0
	h.mu.Lock()
	h.indices["items"].onBuild = func() {
		builds++
		// Moves 5 to the end, deletes 7, adds 100 at the start.
		serve("POST", "/_bulk?refresh=true", `{"index":{"_index":"items","_id":"5"}}`+"\n"+`{"key":500}`+"\n"+
			`{"delete":{"_index":"items","_id":"7"}}`+"\n"+
			`{"index":{"_index":"items","_id":"100"}}`+"\n"+`{"key":-1}`+"\n")
	}
	h.mu.Unlock()
	q := `{"size":200,"_source":false,"sort":[{"key":"asc"}]}`
	got := serve("POST", "/items/_search", q)
	if builds != 1 {
		t.Fatalf("%d views built", builds)
	}
	h.mu.Lock()
	h.indices["items"].onBuild = nil
	h.fullSort = true
	h.mu.Unlock()
	want := serve("POST", "/items/_search", q)
	if got != want {
		t.Fatalf("the search that built the view answered %s\nwant %s", clip(got), clip(want))
	}
	h.mu.Lock()
	h.fullSort = false
	h.mu.Unlock()
	if got := serve("POST", "/items/_search", q); got != want {
		t.Fatalf("the next search answered %s\nwant %s", clip(got), clip(want))
	}
	if !strings.Contains(want, `"_id":"100"`) || strings.Contains(want, `"_id":"7"`) {
		t.Fatalf("the writes made during the build are not in %s", clip(want))
	}
}
