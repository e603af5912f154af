package estest

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// docVersion is one version of a document, or a delete tombstone.
type docVersion struct {
	id          string
	source      []byte
	parsed      *object    // use tree()
	fields      indexedDoc // use indexed()
	version     int64
	seqNo       int64
	primaryTerm int64
	routing     string
	deleted     bool
	at          time.Time

	// A document indexed from its source bytes keeps only those: its tree
	// and indexed values are computed again, the same, when first needed,
	// from source and the mapping it was indexed with (mappings are never
	// changed in place once an index uses them).
	lazy       bool
	mapping    *mapping
	treeOnce   sync.Once
	fieldsOnce sync.Once
}

// tree returns the document's source as a JSON tree.
func (d *docVersion) tree() *object {
	if d.lazy {
		d.treeOnce.Do(func() {
			v, _, _ := parseJSON(d.source, false)
			d.parsed, _ = v.(*object)
		})
	}
	return d.parsed
}

// indexed returns the values the document contributes to each field.
func (d *docVersion) indexed() indexedDoc {
	if d.lazy {
		d.fieldsOnce.Do(func() {
			d.fields, _, _ = parseDocument(d.mapping, d.tree(), d.id, false)
		})
	}
	return d.fields
}

// index is one single-shard index.
type index struct {
	name     string
	uuid     string
	created  time.Time
	shards   int
	replicas int

	refreshInterval time.Duration // <= 0: no periodic refresh
	refreshExplicit bool          // index.refresh_interval was set (no search-idle behaviour)
	gcDeletes       time.Duration
	maxResultWindow int
	settings        map[string]any // user settings, flattened ("index.x.y")

	mapping *mapping
	docs    map[string]*docVersion // live documents and tombstones
	seqNo   int64                  // last assigned sequence number

	searchable map[string]*docVersion // the point-in-time reader of the last refresh
	pending    []*docVersion          // writes since the last refresh, in order
	lastSearch time.Time
	refreshed  chan struct{} // closed (and replaced) at every refresh, for refresh=wait_for

	views     []*sortedView // searchable documents in the order of recent sorts
	viewClock uint64
	onBuild   func() // tests: called while a view is built, without the lock
}

type aliasMeta struct {
	isWriteIndex *bool
	body         *object // alias definition echoed by GET _alias (filter, routing, ...)
}

const (
	searchIdleAfter = 30 * time.Second
	primaryTerm     = 1
)

func (h *Handler) newIndex(name string, now time.Time) *index {
	return &index{
		name:            name,
		uuid:            newUUID(),
		created:         now,
		shards:          1,
		replicas:        1,
		refreshInterval: time.Second,
		gcDeletes:       60 * time.Second,
		maxResultWindow: 10000,
		settings:        map[string]any{},
		mapping:         newMapping(),
		docs:            map[string]*docVersion{},
		seqNo:           -1,
		searchable:      map[string]*docVersion{},
		lastSearch:      now,
		refreshed:       make(chan struct{}),
	}
}

// get returns the document or tombstone for id, forgetting tombstones older
// than index.gc_deletes.
func (ix *index) get(id string, now time.Time) *docVersion {
	d := ix.docs[id]
	if d != nil && d.deleted && ix.gcDeletes >= 0 && now.Sub(d.at) > ix.gcDeletes {
		delete(ix.docs, id)
		return nil
	}
	return d
}

// live returns the current version of a document that exists.
func (ix *index) live(id string, now time.Time) *docVersion {
	d := ix.get(id, now)
	if d == nil || d.deleted {
		return nil
	}
	return d
}

func (ix *index) record(d *docVersion) {
	ix.docs[d.id] = d
	ix.pending = append(ix.pending, d)
}

// refresh makes every write so far visible to search.
func (ix *index) refresh() {
	for _, d := range ix.pending {
		ix.apply(d)
	}
	ix.pending = nil
	close(ix.refreshed)
	ix.refreshed = make(chan struct{})
}

// waitTarget says how a refresh=wait_for write to this index waits: until
// the wall-clock instant of the next scheduled refresh, or (with periodic
// refresh disabled) until the channel is closed by an explicit refresh. A
// search-idle shard refreshes at once.
func (ix *index) waitTarget(now time.Time) (until time.Time, ch <-chan struct{}) {
	if len(ix.pending) == 0 {
		return time.Time{}, nil
	}
	if !ix.refreshExplicit && now.Sub(ix.lastSearch) >= searchIdleAfter {
		ix.refresh()
		return time.Time{}, nil
	}
	if ix.refreshInterval <= 0 {
		return time.Time{}, ix.refreshed
	}
	last := ix.pending[len(ix.pending)-1].at
	ticks := last.Sub(ix.created)/ix.refreshInterval + 1
	return ix.created.Add(ticks * ix.refreshInterval), nil
}

func (ix *index) apply(d *docVersion) {
	if len(ix.views) > 0 {
		ix.noteApplied(d, ix.searchable[d.id])
	}
	if d.deleted {
		delete(ix.searchable, d.id)
	} else {
		ix.searchable[d.id] = d
	}
}

// searcher returns the documents search sees at now: the state as of the
// last refresh. Scheduled refreshes run every refresh_interval since index
// creation; a shard that has not been searched for 30s (and has no explicit
// refresh_interval) is search idle and refreshes when the next search comes.
func (ix *index) searcher(now time.Time) map[string]*docVersion {
	if !ix.refreshExplicit && now.Sub(ix.lastSearch) >= searchIdleAfter {
		ix.refresh()
	} else if ix.refreshInterval > 0 && len(ix.pending) > 0 {
		ticks := now.Sub(ix.created) / ix.refreshInterval
		last := ix.created.Add(ticks * ix.refreshInterval)
		n := 0
		for n < len(ix.pending) && !ix.pending[n].at.After(last) {
			ix.apply(ix.pending[n])
			n++
		}
		ix.pending = ix.pending[n:]
	}
	ix.lastSearch = now
	return ix.searchable
}

func (ix *index) shardsHeader() *object {
	return obj("total", 1+ix.replicas, "successful", 1, "failed", 0)
}

// ---- index names ----

const invalidFilenameChars = `[ , ", *, \, <, |, ,, >, /, ?]`

// validateIndexName is MetadataCreateIndexService.validateIndexName.
func validateIndexName(name string) *esError {
	bad := func(reason string) *esError {
		return newErr(400, "invalid_index_name_exception", "Invalid index name [%s], %s", name, reason).
			with("index_uuid", "_na_", "index", name)
	}
	if strings.ContainsAny(name, "\\/*?\"<>| ,") {
		return bad("must not contain the following characters " + invalidFilenameChars)
	}
	if strings.Contains(name, "#") {
		return bad("must not contain '#'")
	}
	if strings.Contains(name, ":") {
		return bad("must not contain ':'")
	}
	if name == "" {
		return bad("must not be empty")
	}
	if c := name[0]; c == '_' || c == '-' || c == '+' {
		return bad("must not start with '_', '-', or '+'")
	}
	if n := len(name); n > 255 {
		return bad(fmt.Sprintf("index name is too long, (%d > 255)", n))
	}
	if name == "." || name == ".." {
		return bad("must not be '.' or '..'")
	}
	if strings.ToLower(name) != name {
		return bad("must be lowercase")
	}
	return nil
}

// ---- index resolution ----

// resolveWrite resolves the target of a write: an index, or an alias with a
// write index (or exactly one index). Missing indices are auto-created when
// create is set (action.auto_create_index defaults to true).
func (h *Handler) resolveWrite(name string, requireAlias, create bool, now time.Time) (*index, *esError) {
	if ix := h.indices[name]; ix != nil {
		if requireAlias {
			return nil, requireAliasErr(name)
		}
		return ix, nil
	}
	if al := h.aliases[name]; al != nil {
		var write *index
		for n, m := range al {
			if m.isWriteIndex != nil && *m.isWriteIndex {
				write = h.indices[n]
			}
		}
		if write == nil && len(al) == 1 {
			for n, m := range al {
				if m.isWriteIndex == nil || *m.isWriteIndex {
					write = h.indices[n]
				}
			}
		}
		if write == nil {
			return nil, errIllegalArgument("no write index is defined for alias [%s]. The write index may be explicitly disabled using is_write_index=false or the alias points to multiple indices without one being designated as a write index", name)
		}
		return write, nil
	}
	if requireAlias {
		return nil, requireAliasErr(name)
	}
	if !create {
		return nil, errIndexNotFound(name)
	}
	if err := validateIndexName(name); err != nil {
		return nil, err
	}
	ix := h.newIndex(name, now)
	h.indices[name] = ix
	return ix, nil
}

func requireAliasErr(name string) *esError {
	return newErr(404, "index_not_found_exception", "no such index [%s] and [require_alias] request flag is [true] and [%s] is not an alias", name, name).
		with("index", name)
}

// resolveSingle resolves a name for a single-document read: an index or an
// alias pointing at one index.
func (h *Handler) resolveSingle(name string) (*index, *esError) {
	if ix := h.indices[name]; ix != nil {
		return ix, nil
	}
	if al := h.aliases[name]; al != nil {
		if len(al) > 1 {
			var names []string
			for n := range al {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, errIllegalArgument("alias [%s] has more than one index associated with it [%s], can't execute a single index op", name, strings.Join(names, ", "))
		}
		for n := range al {
			return h.indices[n], nil
		}
	}
	return nil, errIndexNotFound(name)
}

// resolveRead resolves an index expression (comma separated names, aliases,
// wildcards, _all, -exclusions) to concrete indices, sorted by name.
func (h *Handler) resolveRead(expr string, allowNoIndices, ignoreUnavailable bool) ([]*index, *esError) {
	set := map[string]bool{}
	all := func() {
		for n := range h.indices {
			set[n] = true
		}
	}
	if expr == "" || expr == "_all" {
		all()
	} else {
		wildcardSeen := false
		for _, part := range strings.Split(expr, ",") {
			if part == "" {
				continue
			}
			if strings.HasPrefix(part, "-") && wildcardSeen {
				pat := part[1:]
				for n := range set {
					if globMatch(pat, n) {
						delete(set, n)
					}
				}
				continue
			}
			if part == "_all" {
				all()
				wildcardSeen = true
				continue
			}
			if strings.Contains(part, "*") {
				wildcardSeen = true
				for n := range h.indices {
					if globMatch(part, n) {
						set[n] = true
					}
				}
				for a, ixs := range h.aliases {
					if globMatch(part, a) {
						for n := range ixs {
							set[n] = true
						}
					}
				}
				continue
			}
			if h.indices[part] != nil {
				set[part] = true
				continue
			}
			if al := h.aliases[part]; al != nil {
				for n := range al {
					set[n] = true
				}
				continue
			}
			if ignoreUnavailable {
				continue
			}
			return nil, errIndexNotFound(part)
		}
	}
	if len(set) == 0 && !allowNoIndices {
		return nil, errIndexNotFound(expr)
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*index, len(names))
	for i, n := range names {
		out[i] = h.indices[n]
	}
	return out, nil
}

func globMatch(pattern, name string) bool {
	ok, err := path.Match(strings.NewReplacer("[", "\\[", "?", "\\?", "\\", "\\\\").Replace(pattern), name)
	return err == nil && ok
}

// ---- writes ----

// writeOp is one document write: a _bulk item or a single-document API call.
type writeOp struct {
	kind         string // index, create, update, delete
	index        string
	id           string
	hasID        bool
	routing      string
	version      int64
	hasVersion   bool
	versionType  string // internal, external, external_gte
	ifSeqNo      int64
	ifTerm       int64
	hasIfSeqNo   bool
	hasIfTerm    bool
	pipeline     string
	hasPipeline  bool
	requireAlias bool
	source       []byte
	update       *updateBody
}

type updateBody struct {
	doc         *object
	upsert      *object
	docAsUpsert bool
	detectNoop  bool
	script      bool
	source      any // _source fetch option
}

// writeResult is the outcome of a writeOp.
type writeResult struct {
	index   string
	ix      *index
	id      string
	version int64
	seqNo   int64
	result  string // created, updated, deleted, not_found, noop
	status  int
	err     *esError
	// ingested: the write went through an ingest pipeline (or failed
	// for want of one).
	ingested bool
}

const (
	versionMatchAny     = -3
	versionMatchDeleted = -4
)

// validate is IndexRequest/DeleteRequest/UpdateRequest.validate: the
// messages of an action_request_validation_exception (empty when valid).
func (op *writeOp) validate() []string {
	var msgs []string
	add := func(s string) { msgs = append(msgs, s) }
	version := int64(versionMatchAny)
	if op.hasVersion {
		version = op.version
	}
	vt := op.versionType
	switch op.kind {
	case "index", "create":
		if op.source == nil {
			add("source is missing")
		}
		if op.kind == "create" {
			if vt != "internal" {
				add("create operations only support internal versioning. use index instead")
				return msgs
			}
			if version == versionMatchAny {
				version = versionMatchDeleted
			}
			if version != versionMatchDeleted {
				add("create operations do not support explicit versions. use index instead")
				return msgs
			}
			if op.hasIfSeqNo || op.hasIfTerm {
				add("create operations do not support compare and set. use index instead")
				return msgs
			}
		}
		if !op.hasID && (vt != "internal" || (version != versionMatchDeleted && version != versionMatchAny)) {
			add("an id must be provided if version type or value are set")
		}
	case "delete", "update":
		if !op.hasID {
			add("id is missing")
		}
	}
	if op.kind == "update" {
		if op.update != nil {
			u := op.update
			if !u.script && u.doc == nil {
				add("script or doc is missing")
			}
			if u.script && u.doc != nil {
				add("can't provide both script and doc")
			}
			if u.docAsUpsert && u.doc == nil {
				add("doc must be specified if doc_as_upsert is enabled")
			}
		}
	} else {
		if !validVersionForWrites(vt, version) {
			add(fmt.Sprintf("illegal version value [%d] for version type [%s]", version, strings.ToUpper(vt)))
		}
		if vt == "internal" && version != versionMatchAny && version != versionMatchDeleted {
			add("internal versioning can not be used for optimistic concurrency control. Please use `if_seq_no` and `if_primary_term` instead")
		}
	}
	if op.hasIfSeqNo && (vt != "internal" || (op.hasVersion && op.kind != "update")) {
		add("compare and write operations can not use versioning")
	}
	if op.hasIfSeqNo && !op.hasIfTerm {
		add("ifSeqNo is set, but primary term is [0]")
	}
	if op.hasIfTerm && !op.hasIfSeqNo {
		add(fmt.Sprintf("ifSeqNo is unassigned, but primary term is [%d]", op.ifTerm))
	}
	if op.hasID {
		if n := len(op.id); n > 512 {
			add(fmt.Sprintf("id [%s] is too long, must be no longer than 512 bytes but was: %d", op.id, n))
		}
	}
	if op.hasPipeline && op.pipeline == "" && op.kind != "delete" {
		add("pipeline cannot be an empty string")
	}
	return msgs
}

func validVersionForWrites(vt string, v int64) bool {
	if vt == "internal" {
		return v > 0 || v == versionMatchAny || v == versionMatchDeleted
	}
	return v >= 0
}

func versionConflict(ix *index, id, explanation string) *esError {
	return ix.shardMeta(newErr(409, "version_conflict_engine_exception", "[%s]: version conflict, %s", id, explanation))
}

// checkVersion applies the concurrency control of a write (if_seq_no or
// version types) against the current document or tombstone.
func checkVersion(ix *index, op *writeOp, cur *docVersion) *esError {
	if op.hasIfSeqNo {
		if cur == nil || cur.deleted {
			return versionConflict(ix, op.id, fmt.Sprintf("required seqNo [%d], primary term [%d]. but no document was found", op.ifSeqNo, op.ifTerm))
		}
		if cur.seqNo != op.ifSeqNo || cur.primaryTerm != op.ifTerm {
			return versionConflict(ix, op.id, fmt.Sprintf("required seqNo [%d], primary term [%d]. current document has seqNo [%d] and primary term [%d]", op.ifSeqNo, op.ifTerm, cur.seqNo, cur.primaryTerm))
		}
		return nil
	}
	switch op.versionType {
	case "external":
		if cur != nil && cur.version >= op.version {
			return versionConflict(ix, op.id, fmt.Sprintf("current version [%d] is higher or equal to the one provided [%d]", cur.version, op.version))
		}
	case "external_gte":
		if cur != nil && cur.version > op.version {
			return versionConflict(ix, op.id, fmt.Sprintf("current version [%d] is higher than the one provided [%d]", cur.version, op.version))
		}
	}
	return nil
}

func nextVersion(op *writeOp, cur *docVersion) int64 {
	if op.versionType == "external" || op.versionType == "external_gte" {
		return op.version
	}
	if cur == nil {
		return 1
	}
	return cur.version + 1
}

// execWrite performs one write. The caller holds h.mu.
func (h *Handler) execWrite(op *writeOp, now time.Time) writeResult {
	res := writeResult{index: op.index, id: op.id}
	// The ingest service runs a document's pipeline before the write goes
	// to its index: a document the pipeline fails creates no index.
	if res.ingested, res.err = h.ingest(op); res.err != nil {
		return res
	}
	// Deletes do not auto-create an index unless they use external versioning
	// (TransportBulkAction).
	create := op.kind != "delete" || op.versionType != "internal"
	ix, err := h.resolveWrite(op.index, op.requireAlias, create, now)
	if err != nil {
		res.err = err
		return res
	}
	res.ix, res.index = ix, ix.name
	if op.kind == "index" || op.kind == "create" {
		if !op.hasID {
			op.id, op.hasID = newDocID(), true
			res.id = op.id
		} else if op.id == "" {
			res.err = errIllegalArgument("if _id is specified it must not be empty")
			return res
		}
	}
	if op.routing == "" && ix.mapping.routingRequired() {
		res.err = errRoutingMissing(ix.name, op.id)
		return res
	}
	if f := h.takeItemFault([]string{ix.name, op.index}, op.id); f != nil {
		res.err = f
		return res
	}
	switch op.kind {
	case "index", "create":
		h.execIndex(ix, op, op.source, nil, now, &res)
	case "delete":
		h.execDelete(ix, op, now, &res)
	case "update":
		h.execUpdate(ix, op, now, &res)
	}
	return res
}

// execIndex indexes a source. parsed may carry an already parsed source.
func (h *Handler) execIndex(ix *index, op *writeOp, source []byte, parsed *object, now time.Time, res *writeResult) {
	// A source parsed here can be parsed again, the same, from the bytes
	// kept; its tree and indexed values are left for when they are needed.
	lazy := parsed == nil
	if parsed == nil {
		v, ok, perr := parseJSON(source, false)
		switch {
		case perr != nil:
			pe := perr.(*parseError)
			res.err = newErr(400, "document_parsing_exception", "%s failed to parse: %s", pe.pos, pe.Error()).
				causedBy(newErr(400, "x_content_parse_exception", "%s", pe.Error()))
			return
		case !ok:
			res.err = newErr(400, "document_parsing_exception", "[1:1] failed to parse, document is empty")
			return
		}
		o, isObj := v.(*object)
		if !isObj {
			res.err = newErr(400, "document_parsing_exception", "[1:1] Malformed content, must start with an object")
			return
		}
		parsed = o
	}
	// Parse against the mapping first: dynamic mapping updates are applied
	// (and kept) before the engine checks versions, as in IndexShard.
	// A first pass against the live mapping, changing nothing, suffices
	// when every field is mapped; only a document that brings new fields
	// pays for a copy of the mapping, which a failed document must not
	// change.
	fields, changed, perr := walkDocument(ix.mapping, parsed, op.id, false, !lazy)
	if perr != nil {
		res.err = perr
		return
	}
	if changed {
		m := ix.mapping.clone()
		if fields, _, perr = walkDocument(m, parsed, op.id, true, !lazy); perr != nil {
			res.err = perr
			return
		}
		ix.mapping = m
	}
	cur := ix.get(op.id, now)
	if op.kind == "create" && cur != nil && !cur.deleted {
		res.err = versionConflict(ix, op.id, fmt.Sprintf("document already exists (current version [%d])", cur.version))
		return
	}
	if err := checkVersion(ix, op, cur); err != nil {
		res.err = err
		return
	}
	ix.seqNo++
	d := &docVersion{
		id: op.id, source: trimSource(source),
		version: nextVersion(op, cur), seqNo: ix.seqNo, primaryTerm: primaryTerm,
		routing: op.routing, at: now,
	}
	if lazy {
		d.lazy, d.mapping = true, ix.mapping
	} else {
		d.parsed, d.fields = parsed, fields
	}
	ix.record(d)
	res.version, res.seqNo = d.version, d.seqNo
	if cur == nil || cur.deleted {
		res.result, res.status = "created", 201
	} else {
		res.result, res.status = "updated", 200
	}
}

func trimSource(b []byte) []byte {
	return append([]byte(nil), b...)
}

func (h *Handler) execDelete(ix *index, op *writeOp, now time.Time, res *writeResult) {
	cur := ix.get(op.id, now)
	if err := checkVersion(ix, op, cur); err != nil {
		res.err = err
		return
	}
	ix.seqNo++
	found := cur != nil && !cur.deleted
	d := &docVersion{id: op.id, version: nextVersion(op, cur), seqNo: ix.seqNo, primaryTerm: primaryTerm, deleted: true, at: now}
	ix.record(d)
	res.version, res.seqNo = d.version, d.seqNo
	if found {
		res.result, res.status = "deleted", 200
	} else {
		res.result, res.status = "not_found", 404
	}
}

func (h *Handler) execUpdate(ix *index, op *writeOp, now time.Time, res *writeResult) {
	u := op.update
	if u.script {
		res.err = errNotImplemented("a scripted update")
		return
	}
	cur := ix.live(op.id, now)
	if cur == nil {
		if op.hasIfSeqNo {
			res.err = checkVersion(ix, op, nil)
			return
		}
		var up *object
		switch {
		case u.upsert != nil:
			up = u.upsert
		case u.docAsUpsert:
			up = u.doc
		default:
			res.err = ix.shardMeta(newErr(404, "document_missing_exception", "[%s]: document missing", op.id))
			return
		}
		h.execIndex(ix, &writeOp{kind: "index", id: op.id, hasID: true, versionType: "internal", routing: op.routing}, marshal(up), clone(up).(*object), now, res)
		return
	}
	if err := checkVersion(ix, op, cur); err != nil {
		res.err = err
		return
	}
	merged := clone(cur.tree()).(*object)
	changed := mergeInto(merged, u.doc)
	if !changed && u.detectNoop {
		res.version, res.seqNo = cur.version, cur.seqNo
		res.result, res.status = "noop", 200
		return
	}
	iop := &writeOp{kind: "index", id: op.id, hasID: true, versionType: "internal", routing: op.routing}
	h.execIndex(ix, iop, marshal(merged), merged, now, res)
}

// mergeInto is XContentHelper.update: objects merge recursively, everything
// else is replaced. It reports whether anything changed.
func mergeInto(dst, changes *object) bool {
	changed := false
	for _, c := range changes.M {
		old := dst.member(c.Key)
		if old == nil {
			dst.M = append(dst.M, member{Key: c.Key, Val: clone(c.Val)})
			changed = true
			continue
		}
		oo, ok1 := old.Val.(*object)
		co, ok2 := c.Val.(*object)
		if ok1 && ok2 {
			if mergeInto(oo, co) {
				changed = true
			}
			continue
		}
		if !jsonEqual(old.Val, c.Val) {
			old.Val = clone(c.Val)
			changed = true
		}
	}
	return changed
}

// writeResponse renders a successful write as DocWriteResponse does.
func writeResponse(res *writeResult, forcedRefresh bool) *object {
	o := obj("_index", res.index, "_id", res.id, "_version", res.version, "result", res.result)
	if forcedRefresh {
		o.set("forced_refresh", true)
	}
	if res.result == "noop" {
		o.set("_shards", obj("total", 0, "successful", 0, "failed", 0))
	} else {
		o.set("_shards", res.ix.shardsHeader())
	}
	o.set("_seq_no", res.seqNo)
	o.set("_primary_term", primaryTerm)
	return o
}

// ---- settings ----

var knownSettingPrefixes = []string{
	"index.number_of_shards", "index.number_of_replicas", "index.refresh_interval", "index.gc_deletes",
	"index.max_result_window", "index.mapping.", "index.analysis.", "index.codec", "index.routing",
	"index.blocks.", "index.auto_expand_replicas", "index.hidden", "index.lifecycle.", "index.search.",
	"index.translog.", "index.sort.", "index.max_inner_result_window", "index.query.", "index.similarity.",
	"index.write.", "index.priority", "index.number_of_routing_shards", "index.merge.", "index.store.",
	"index.max_", "index.default_pipeline", "index.final_pipeline", "index.shard.", "index.unassigned.",
	"index.allocation.", "index.indexing.", "index.highlight.", "index.load_fixed_bitset_filters_eagerly",
	"index.soft_deletes.", "index.frozen", "index.format", "index.requests.", "index.version.", "index.uuid",
	"index.creation_date", "index.provided_name",
}

// flattenSettings turns {"index":{"a":1}} / {"a":1} / {"index.a":1} into
// "index.a" -> "1".
func flattenSettings(v any, prefix string, out map[string]any) {
	o, ok := v.(*object)
	if !ok {
		out[prefix] = settingString(v)
		return
	}
	for _, m := range o.M {
		key := m.Key
		if prefix != "" {
			key = prefix + "." + key
		}
		flattenSettings(m.Val, key, out)
	}
}

func settingString(v any) any {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return string(t)
	case bool:
		return strconv.FormatBool(t)
	case *array:
		out := make([]any, len(t.V))
		for i, e := range t.V {
			out[i] = settingString(e)
		}
		return out
	case nil:
		return nil
	}
	return javaString(v)
}

// applySettings validates and applies index settings at creation.
func (ix *index) applySettings(v any) *esError {
	flat := map[string]any{}
	flattenSettings(v, "", flat)
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := flat[k]
		full := k
		if !strings.HasPrefix(full, "index.") {
			full = "index." + full
		}
		known := false
		for _, p := range knownSettingPrefixes {
			if strings.HasPrefix(full, p) {
				known = true
				break
			}
		}
		if !known {
			return errIllegalArgument("unknown setting [%s] please check that any required plugins are installed, or check the breaking changes documentation for removed settings", full)
		}
		s, _ := val.(string)
		intSetting := func(minV int) (int, *esError) {
			n, err := strconv.Atoi(s)
			if err != nil {
				return 0, errIllegalArgument("Failed to parse value [%s] for setting [%s]", s, full)
			}
			if n < minV {
				return 0, errIllegalArgument("Failed to parse value [%s] for setting [%s] must be >= %d", s, full, minV)
			}
			return n, nil
		}
		switch full {
		case "index.number_of_shards":
			n, err := intSetting(1)
			if err != nil {
				return err
			}
			ix.shards = n
		case "index.number_of_replicas":
			n, err := intSetting(0)
			if err != nil {
				return err
			}
			ix.replicas = n
		case "index.refresh_interval":
			d, err := parseTimeValue(s, full)
			if err != nil {
				return err
			}
			ix.refreshInterval, ix.refreshExplicit = d, true
		case "index.gc_deletes":
			d, err := parseTimeValue(s, full)
			if err != nil {
				return err
			}
			ix.gcDeletes = d
		case "index.max_result_window":
			n, err := intSetting(1)
			if err != nil {
				return err
			}
			ix.maxResultWindow = n
		case "index.uuid", "index.creation_date", "index.provided_name", "index.version.created":
			return errIllegalArgument("private index setting [%s] can not be set explicitly", full)
		}
		ix.settings[full] = val
	}
	return nil
}

// renderSettings is the "settings" of GET /<index>: nested and sorted.
func (ix *index) renderSettings() *object {
	flat := map[string]any{
		"index.creation_date":                               strconv.FormatInt(ix.created.UnixMilli(), 10),
		"index.number_of_shards":                            strconv.Itoa(ix.shards),
		"index.number_of_replicas":                          strconv.Itoa(ix.replicas),
		"index.uuid":                                        ix.uuid,
		"index.version.created":                             "8512000",
		"index.provided_name":                               ix.name,
		"index.routing.allocation.include._tier_preference": "data_content",
	}
	for k, v := range ix.settings {
		flat[k] = v
	}
	return nestSettings(flat)
}

func nestSettings(flat map[string]any) *object {
	keys := make([]string, 0, len(flat))
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	root := &object{}
	for _, k := range keys {
		parts := strings.Split(k, ".")
		cur := root
		for _, p := range parts[:len(parts)-1] {
			next, ok := cur.get(p)
			no, isObj := next.(*object)
			if !ok || !isObj {
				no = &object{}
				cur.set(p, no)
			}
			cur = no
		}
		cur.set(parts[len(parts)-1], flat[k])
	}
	return root
}
