package estest

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
)

// A sortedView keeps an index's searchable documents in the order of one
// sort, so that a sorted search (a search_after walk, from/size pages)
// does not sort the whole index again for every page. It lists every
// document of the last refresh, ordered by its sort keys and then by
// _seq_no, the order handleSearch gives the hits of one index; search
// evaluates the query on the entries it walks.
//
// The view follows the index's refreshes: apply records each document a
// refresh adds or replaces, and the next search merges those changes in
// (one pass over the entries), instead of sorting again. The keys of a
// document depend only on the document and on the field types its sort
// resolves, so a view is keyed by the sort and by those types; a mapping
// change that gives a sorted field a type rebuilds it.
type sortedView struct {
	sig      string // the sort and its field types
	entries  []viewEntry
	size     int           // documents when it was built, for noteApplied while building
	building chan struct{} // closed when the entries are built; nil then
	added    []*docVersion // documents made searchable since the entries were merged
	removed  []*docVersion // documents no longer searchable since then
	used     uint64        // the index's view clock at the last use
}

type viewEntry struct {
	d    *docVersion
	keys []sortKey
}

// maxViews bounds the sorted views an index keeps (the least recently
// used goes first).
const maxViews = 4

// viewSig names a sort as the view of an index caches it: the sort
// options and the types of the sorted fields in the index's mapping.
func viewSig(sorts []sortSpec, types []string) string {
	return fmt.Sprintf("%#v %q", sorts, types)
}

// sortedView returns the view of ix's searchable documents for sorts,
// built or brought up to date. sorts must not sort on _score. mu is the
// Handler's lock, held by the caller: a view is built without it (the
// sort keys of every document computed, and sorted), so that a first
// sorted search of a large index does not stop every other request; the
// refreshes made meanwhile are recorded and merged in once mu is held
// again, so the view returned is the index's state at that moment.
func (ix *index) sortedView(mu *sync.Mutex, sorts []sortSpec) *sortedView {
	types := sortTypes(ix, sorts)
	sig := viewSig(sorts, types)
	for {
		ix.viewClock++
		i := slices.IndexFunc(ix.views, func(v *sortedView) bool { return v.sig == sig })
		if i < 0 {
			break
		}
		v := ix.views[i]
		v.used = ix.viewClock
		if v.building != nil {
			// Another search builds it: wait for it, then look again.
			ch := v.building
			mu.Unlock()
			<-ch
			mu.Lock()
			continue
		}
		if !v.catchUp(ix, sorts, types) {
			v.entries = buildEntries(ix.name, types, slices.Collect(maps.Values(ix.searchable)), sorts)
		}
		return v
	}
	docs := slices.Collect(maps.Values(ix.searchable))
	v := &sortedView{sig: sig, used: ix.viewClock, size: len(docs), building: make(chan struct{})}
	if len(ix.views) >= maxViews {
		oldest := 0
		for i, w := range ix.views {
			if w.used < ix.views[oldest].used {
				oldest = i
			}
		}
		ix.views = slices.Delete(ix.views, oldest, oldest+1)
	}
	ix.views = append(ix.views, v)
	hook := ix.onBuild
	mu.Unlock()
	if hook != nil {
		hook()
	}
	entries := buildEntries(ix.name, types, docs, sorts)
	mu.Lock()
	v.entries = entries
	close(v.building)
	v.building = nil
	if !slices.Contains(ix.views, v) {
		// Dropped while it was built (evicted, or too many changes): the
		// changes since the snapshot were not all recorded.
		v.added, v.removed = nil, nil
		v.entries = buildEntries(ix.name, types, slices.Collect(maps.Values(ix.searchable)), sorts)
		return v
	}
	if !v.catchUp(ix, sorts, types) {
		v.entries = buildEntries(ix.name, types, slices.Collect(maps.Values(ix.searchable)), sorts)
	}
	return v
}

// buildEntries returns docs with their keys, sorted. It reads only the
// documents, which never change once written, and may run without the
// Handler's lock.
func buildEntries(index string, types []string, docs []*docVersion, sorts []sortSpec) []viewEntry {
	out := make([]viewEntry, len(docs))
	for i, d := range docs {
		out[i] = viewEntry{d: d, keys: sortKeysTyped(index, types, d, 0, sorts)}
	}
	sortEntries(out, sorts)
	return out
}

func sortEntries(es []viewEntry, sorts []sortSpec) {
	sort.Slice(es, func(i, j int) bool { return entryLess(es[i], es[j], sorts) })
}

// entryLess is handleSearch's order of one index's hits sorted on fields:
// the sort keys, then _seq_no (unique in an index).
func entryLess(a, b viewEntry, sorts []sortSpec) bool {
	if c := compareKeys(a.keys, b.keys, sorts); c != 0 {
		return c < 0
	}
	return a.d.seqNo < b.d.seqNo
}

// noteApplied records that d was made searchable (unless it is a
// tombstone), replacing old (nil if the id was not searchable). A view
// whose backlog of changes is no longer small next to its size is
// dropped: sorting again is then cheaper than merging.
func (ix *index) noteApplied(d, old *docVersion) {
	n := 0
	for _, v := range ix.views {
		if old != nil {
			v.removed = append(v.removed, old)
		}
		if !d.deleted {
			v.added = append(v.added, d)
		}
		if len(v.added)+len(v.removed) > max(len(v.entries), v.size)/2+4096 {
			continue
		}
		ix.views[n] = v
		n++
	}
	clear(ix.views[n:])
	ix.views = ix.views[:n]
}

// catchUp merges the recorded changes into the entries. It reports false
// when a removed document is not where its keys say it is, which would
// be a bug; the caller then builds the entries again.
func (v *sortedView) catchUp(ix *index, sorts []sortSpec, types []string) bool {
	if len(v.added) == 0 && len(v.removed) == 0 {
		return true
	}
	added, removed := v.added, v.removed
	v.added, v.removed = nil, nil
	// A document both added and removed since the last merge (written,
	// then replaced, within the refreshes in between) was never in the
	// entries.
	gone := make(map[*docVersion]bool, len(removed))
	for _, d := range removed {
		gone[d] = true
	}
	adds := make([]viewEntry, 0, len(added))
	for _, d := range added {
		if gone[d] {
			delete(gone, d)
			continue
		}
		adds = append(adds, viewEntry{d: d, keys: sortKeysTyped(ix.name, types, d, 0, sorts)})
	}
	drop := make([]int, 0, len(gone))
	for d := range gone {
		e := viewEntry{d: d, keys: sortKeysTyped(ix.name, types, d, 0, sorts)}
		i := sort.Search(len(v.entries), func(i int) bool { return !entryLess(v.entries[i], e, sorts) })
		if i == len(v.entries) || v.entries[i].d != d {
			return false
		}
		drop = append(drop, i)
	}
	sort.Ints(drop)
	sortEntries(adds, sorts)
	// Each added entry goes before the first entry that sorts after it.
	ins := make([]int, len(adds))
	for j, a := range adds {
		ins[j] = sort.Search(len(v.entries), func(i int) bool { return entryLess(a, v.entries[i], sorts) })
	}
	out := make([]viewEntry, 0, len(v.entries)-len(drop)+len(adds))
	pos, di, ai := 0, 0, 0
	for {
		next := len(v.entries)
		if di < len(drop) {
			next = min(next, drop[di])
		}
		if ai < len(adds) {
			next = min(next, ins[ai])
		}
		out = append(out, v.entries[pos:next]...)
		pos = next
		for ai < len(adds) && ins[ai] == pos {
			out = append(out, adds[ai])
			ai++
		}
		if di < len(drop) && drop[di] == pos {
			pos++
			di++
			continue
		}
		if pos == len(v.entries) {
			break
		}
	}
	v.entries = out
	return true
}
