package estest

import (
	"sort"
	"strings"
)

func handleRoot(rc *reqCtx) (int, any, *esError) {
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	if rc.r.Method == "HEAD" {
		return 200, nil, nil
	}
	return 200, obj(
		"name", nodeName,
		"cluster_name", clusterName,
		"cluster_uuid", clusterUUID,
		"version", obj(
			"number", Version,
			"build_flavor", "default",
			"build_type", "docker",
			"build_hash", "1a77947f34deddb41af25e6f0ddb8e830159c179",
			"build_date", "2024-08-05T10:05:34.233336849Z",
			"build_snapshot", false,
			"lucene_version", "9.11.1",
			"minimum_wire_compatibility_version", "7.17.0",
			"minimum_index_compatibility_version", "7.0.0",
		),
		"tagline", "You Know, for Search",
	), nil
}

func handleHealth(rc *reqCtx) (int, any, *esError) {
	rc.allow("level", "local", "master_timeout", "timeout", "wait_for_active_shards", "wait_for_nodes", "wait_for_events",
		"wait_for_no_relocating_shards", "wait_for_no_initializing_shards", "wait_for_status", "expand_wildcards")
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ixs, err := h.resolveRead(rc.path["index"], true, false)
	if err != nil {
		return 0, nil, err
	}
	status := "green"
	unassigned := 0
	for _, ix := range ixs {
		if ix.replicas > 0 {
			status = "yellow"
			unassigned += ix.replicas * ix.shards
		}
	}
	return 200, obj("cluster_name", clusterName, "status", status, "timed_out", false,
		"number_of_nodes", 1, "number_of_data_nodes", 1, "active_primary_shards", len(ixs), "active_shards", len(ixs),
		"relocating_shards", 0, "initializing_shards", 0, "unassigned_shards", unassigned,
		"delayed_unassigned_shards", 0, "number_of_pending_tasks", 0, "number_of_in_flight_fetch", 0,
		"task_max_waiting_in_queue_millis", 0, "active_shards_percent_as_number", 100.0), nil
}

func handleCreateIndex(rc *reqCtx) (int, any, *esError) {
	rc.allow("wait_for_active_shards", "timeout", "master_timeout")
	body, _, err := rc.optionalBody()
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	name := rc.path["index"]
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := validateIndexName(name); err != nil {
		return 0, nil, err
	}
	if ix := h.indices[name]; ix != nil {
		return 0, nil, newErr(400, "resource_already_exists_exception", "index [%s/%s] already exists", name, ix.uuid).
			with("index_uuid", ix.uuid, "index", name)
	}
	if h.aliases[name] != nil {
		return 0, nil, newErr(400, "invalid_index_name_exception", "Invalid index name [%s], already exists as alias", name).
			with("index_uuid", "_na_", "index", name)
	}
	ix := h.newIndex(name, h.now())
	var aliases *object
	if body != nil {
		for _, m := range body.M {
			switch m.Key {
			case "settings":
				if err := ix.applySettings(m.Val); err != nil {
					return 0, nil, err
				}
			case "mappings":
				mp, err := parseMappingBody(m.Val)
				if err != nil {
					return 0, nil, err
				}
				ix.mapping = mp
			case "aliases":
				a, ok := m.Val.(*object)
				if !ok {
					return 0, nil, newErr(400, "parse_exception", "Failed to parse aliases")
				}
				aliases = a
			default:
				// CreateIndexRequest treats unknown top-level keys as settings
				// only for the legacy format; in 8 they are rejected.
				return 0, nil, newErr(400, "parse_exception", "unknown key [%s] for create index", m.Key)
			}
		}
	}
	if aliases != nil {
		for _, a := range aliases.M {
			if err := validateAliasName(a.Key); err != nil {
				return 0, nil, err
			}
			if h.indices[a.Key] != nil {
				return 0, nil, newErr(400, "invalid_alias_name_exception", "Invalid alias name [%s]: an index or data stream exists with the same name as the alias", a.Key)
			}
		}
	}
	h.indices[name] = ix
	if aliases != nil {
		for _, a := range aliases.M {
			def, _ := a.Val.(*object)
			h.addAlias(a.Key, name, def)
		}
	}
	return 200, obj("acknowledged", true, "shards_acknowledged", true, "index", name), nil
}

func validateAliasName(name string) *esError {
	if name == "" || strings.ContainsAny(name, "\\/*?\"<>| ,#") || name[0] == '_' || name[0] == '-' || name[0] == '+' || strings.ToLower(name) != name {
		return newErr(400, "invalid_alias_name_exception", "Invalid alias name [%s]", name)
	}
	return nil
}

func (h *Handler) addAlias(alias, idx string, def *object) {
	m := &aliasMeta{body: &object{}}
	if def != nil {
		for _, f := range def.M {
			switch f.Key {
			case "is_write_index":
				if b, ok := f.Val.(bool); ok {
					m.isWriteIndex = &b
				}
			case "index", "indices", "alias", "aliases", "must_exist":
				continue
			}
			if f.Key != "is_write_index" {
				m.body.set(f.Key, f.Val)
			}
		}
	}
	if h.aliases[alias] == nil {
		h.aliases[alias] = map[string]*aliasMeta{}
	}
	h.aliases[alias][idx] = m
}

func (h *Handler) aliasesOf(idx string) *object {
	var names []string
	for a, ixs := range h.aliases {
		if ixs[idx] != nil {
			names = append(names, a)
		}
	}
	sort.Strings(names)
	o := &object{}
	for _, a := range names {
		m := h.aliases[a][idx]
		def := clone(m.body).(*object)
		if m.isWriteIndex != nil {
			def.set("is_write_index", *m.isWriteIndex)
		}
		o.set(a, def)
	}
	return o
}

var readIndexParams = []string{"ignore_unavailable", "allow_no_indices", "expand_wildcards", "local", "master_timeout",
	"flat_settings", "include_defaults", "features"}

// readOptions parses the IndicesOptions parameters.
func (rc *reqCtx) readOptions(defAllowNo, defIgnore bool) (allowNo, ignore bool, err *esError) {
	if allowNo, err = rc.boolParam("allow_no_indices", defAllowNo); err != nil {
		return
	}
	ignore, err = rc.boolParam("ignore_unavailable", defIgnore)
	return
}

func handleGetIndex(rc *reqCtx) (int, any, *esError) {
	rc.allow(readIndexParams...)
	allowNo, ignore, err := rc.readOptions(false, false)
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ixs, err := h.resolveRead(rc.path["index"], allowNo, ignore)
	if err != nil {
		return 0, nil, err
	}
	out := &object{}
	for _, ix := range ixs {
		out.set(ix.name, obj("aliases", h.aliasesOf(ix.name), "mappings", ix.mapping.render(), "settings", ix.renderSettings()))
	}
	return 200, out, nil
}

func handleIndexExists(rc *reqCtx) (int, any, *esError) {
	rc.allow(readIndexParams...)
	allowNo, ignore, err := rc.readOptions(false, false)
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, err := h.resolveRead(rc.path["index"], allowNo, ignore); err != nil {
		return 404, nil, nil
	}
	return 200, nil, nil
}

func handleDeleteIndex(rc *reqCtx) (int, any, *esError) {
	rc.allow("timeout", "master_timeout", "ignore_unavailable", "allow_no_indices", "expand_wildcards")
	allowNo, ignore, err := rc.readOptions(true, false)
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	expr := rc.path["index"]
	if expr == "_all" || strings.Contains(expr, "*") {
		// action.destructive_requires_name defaults to true in 8.x
		return 0, nil, errIllegalArgument("Wildcard expressions or all indices are not allowed")
	}
	// Aliases cannot be deleted through the delete index API.
	for _, part := range strings.Split(expr, ",") {
		if h.indices[part] == nil && h.aliases[part] != nil {
			return 0, nil, errIllegalArgument("The provided expression [%s] matches an alias, specify the corresponding concrete indices instead.", part)
		}
	}
	ixs, err := h.resolveRead(expr, allowNo, ignore)
	if err != nil {
		return 0, nil, err
	}
	for _, ix := range ixs {
		delete(h.indices, ix.name)
		close(ix.refreshed) // release refresh=wait_for waiters
		ix.refreshed = make(chan struct{})
		for a, m := range h.aliases {
			delete(m, ix.name)
			if len(m) == 0 {
				delete(h.aliases, a)
			}
		}
	}
	return 200, obj("acknowledged", true), nil
}

func handleRefresh(rc *reqCtx) (int, any, *esError) {
	rc.allow("ignore_unavailable", "allow_no_indices", "expand_wildcards")
	allowNo, ignore, err := rc.readOptions(true, false)
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ixs, err := h.resolveRead(rc.path["index"], allowNo, ignore)
	if err != nil {
		return 0, nil, err
	}
	total := 0
	for _, ix := range ixs {
		ix.refresh()
		total += ix.shards * (1 + ix.replicas)
	}
	return 200, obj("_shards", obj("total", total, "successful", len(ixs), "failed", 0)), nil
}

func handleGetMapping(rc *reqCtx) (int, any, *esError) {
	rc.allow("ignore_unavailable", "allow_no_indices", "expand_wildcards", "local", "master_timeout")
	allowNo, ignore, err := rc.readOptions(true, false)
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ixs, err := h.resolveRead(rc.path["index"], allowNo, ignore)
	if err != nil {
		return 0, nil, err
	}
	out := &object{}
	for _, ix := range ixs {
		out.set(ix.name, obj("mappings", ix.mapping.render()))
	}
	return 200, out, nil
}

func handlePutMapping(rc *reqCtx) (int, any, *esError) {
	rc.allow("timeout", "master_timeout", "ignore_unavailable", "allow_no_indices", "expand_wildcards", "write_index_only")
	allowNo, ignore, err := rc.readOptions(false, false)
	if err != nil {
		return 0, nil, err
	}
	body, err := rc.requireBody()
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ixs, err := h.resolveRead(rc.path["index"], allowNo, ignore)
	if err != nil {
		return 0, nil, err
	}
	updated := make([]*mapping, len(ixs))
	for i, ix := range ixs {
		m := ix.mapping.clone()
		if err := m.merge(body); err != nil {
			return 0, nil, err
		}
		updated[i] = m
	}
	for i, ix := range ixs {
		ix.mapping = updated[i]
	}
	return 200, obj("acknowledged", true), nil
}

func handleGetSettings(rc *reqCtx) (int, any, *esError) {
	rc.allow("ignore_unavailable", "allow_no_indices", "expand_wildcards", "local", "master_timeout", "flat_settings", "include_defaults")
	allowNo, ignore, err := rc.readOptions(true, false)
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ixs, err := h.resolveRead(rc.path["index"], allowNo, ignore)
	if err != nil {
		return 0, nil, err
	}
	out := &object{}
	for _, ix := range ixs {
		out.set(ix.name, obj("settings", ix.renderSettings()))
	}
	return 200, out, nil
}

// ---- aliases ----

// aliasAction is one parsed action of POST /_aliases.
type aliasAction struct {
	kind      string // add, remove, remove_index
	indices   []string
	aliases   []string
	def       *object
	mustExist *bool
}

func handleUpdateAliases(rc *reqCtx) (int, any, *esError) {
	rc.allow("timeout", "master_timeout")
	body, err := rc.requireBody()
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	actsV, ok := body.get("actions")
	arr, isArr := actsV.(*array)
	if !ok || !isArr {
		if len(body.M) > 0 && body.M[0].Key != "actions" {
			return 0, nil, errParse(body.M[0].Pos, "[aliases] unknown field [%s]", body.M[0].Key)
		}
		return 0, nil, errValidation("no actions specified")
	}
	var acts []aliasAction
	for _, e := range arr.V {
		ao, ok := e.(*object)
		if !ok || len(ao.M) != 1 {
			return 0, nil, newErr(400, "x_content_parse_exception", "[1:1] [alias_action] Expected START_OBJECT but was: %s", tokenName(e))
		}
		kind := ao.M[0].Key
		def, ok := ao.M[0].Val.(*object)
		if !ok {
			return 0, nil, newErr(400, "x_content_parse_exception", "[1:1] [%s] Expected START_OBJECT", kind)
		}
		switch kind {
		case "add", "remove", "remove_index":
		default:
			return 0, nil, errParse(ao.M[0].Pos, "[alias_action] unknown field [%s]", kind)
		}
		a := aliasAction{kind: kind, def: def}
		for _, f := range def.M {
			switch f.Key {
			case "index":
				a.indices = append(a.indices, scalarText(f.Val))
			case "indices":
				l, _ := stringList(f.Val)
				a.indices = append(a.indices, l...)
			case "alias":
				a.aliases = append(a.aliases, scalarText(f.Val))
			case "aliases":
				l, _ := stringList(f.Val)
				a.aliases = append(a.aliases, l...)
			case "must_exist":
				if b, ok := f.Val.(bool); ok {
					a.mustExist = &b
				}
			case "is_write_index", "filter", "routing", "index_routing", "search_routing", "is_hidden":
				if kind != "add" {
					return 0, nil, errParse(f.Pos, "[%s] unknown field [%s]", kind, f.Key)
				}
			default:
				return 0, nil, errParse(f.Pos, "[%s] unknown field [%s]", kind, f.Key)
			}
		}
		if len(a.indices) == 0 {
			return 0, nil, errValidation("One of [index] or [indices] is required")
		}
		if kind != "remove_index" && len(a.aliases) == 0 {
			return 0, nil, errValidation("One of [alias] or [aliases] is required")
		}
		acts = append(acts, a)
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	// Validate every action against the current state first: the update is
	// applied atomically, all or nothing.
	staged := cloneAliases(h.aliases)
	removedIndices := map[string]bool{}
	var results []any // AliasActionResult, reported when an action failed
	var failed []*esError
	applied := 0
	// Every remove_index runs first, wherever it stands in the request
	// (MetadataIndexAliasesService), so an add may name a removed index's
	// name as its alias.
	for _, a := range acts {
		if a.kind != "remove_index" {
			continue
		}
		for _, expr := range a.indices {
			ixs, err := h.resolveRead(expr, false, false)
			if err != nil {
				return 0, nil, err
			}
			for _, ix := range ixs {
				removedIndices[ix.name] = true
			}
		}
	}
	for _, a := range acts {
		var ixNames []string
		for _, expr := range a.indices {
			ixs, err := h.resolveRead(expr, false, false)
			if err != nil {
				return 0, nil, err
			}
			for _, ix := range ixs {
				ixNames = append(ixNames, ix.name)
			}
		}
		switch a.kind {
		case "add":
			for _, al := range a.aliases {
				if err := validateAliasName(al); err != nil {
					return 0, nil, err
				}
				if h.indices[al] != nil && !removedIndices[al] {
					return 0, nil, newErr(400, "invalid_alias_name_exception", "Invalid alias name [%s]: an index or data stream exists with the same name as the alias", al)
				}
				for _, n := range ixNames {
					m := &aliasMeta{body: &object{}}
					for _, f := range a.def.M {
						switch f.Key {
						case "is_write_index":
							if b, ok := f.Val.(bool); ok {
								m.isWriteIndex = &b
							}
						case "filter", "routing", "index_routing", "search_routing", "is_hidden":
							m.body.set(f.Key, f.Val)
						}
					}
					if staged[al] == nil {
						staged[al] = map[string]*aliasMeta{}
					}
					staged[al][n] = m
				}
			}
		case "remove":
			removedAny := false
			for _, al := range a.aliases {
				removed := false
				for name, ixs := range staged {
					if name != al && !(strings.Contains(al, "*") && globMatch(al, name)) {
						continue
					}
					for _, n := range ixNames {
						if ixs[n] != nil {
							delete(ixs, n)
							removed = true
						}
					}
					if len(ixs) == 0 {
						delete(staged, name)
					}
				}
				if !removed && a.mustExist != nil && *a.mustExist {
					return 0, nil, newErr(404, "resource_not_found_exception", "required alias [%s] does not exist", al)
				}
				removedAny = removedAny || removed
			}
			if removedAny {
				applied++
				results = append(results, obj("action", a.describe(ixNames), "status", 200))
			} else {
				e := aliasesNotFound(a.aliases)
				failed = append(failed, e)
				results = append(results, obj("action", a.describe(ixNames), "status", 404, "error", e.inner()))
			}
			continue
		case "remove_index": // applied first, above
		}
		applied++
		results = append(results, obj("action", a.describe(ixNames), "status", 200))
	}
	// Removing aliases that do not exist is only an error when nothing else
	// is done (AliasesNotFoundException naming every alias of the request);
	// otherwise, since 8.14, the response lists the failed actions.
	if applied == 0 && len(failed) > 0 {
		var names []string
		seen := map[string]bool{}
		for _, a := range acts {
			for _, al := range a.aliases {
				if !seen[al] {
					seen[al] = true
					names = append(names, al)
				}
			}
		}
		return 0, nil, aliasesNotFound(names)
	}
	// multiple write indices are rejected
	for al, ixs := range staged {
		w := 0
		for _, m := range ixs {
			if m.isWriteIndex != nil && *m.isWriteIndex {
				w++
			}
		}
		if w > 1 {
			return 0, nil, errIllegalArgument("alias [%s] has more than one write index [%s]", al, strings.Join(sortedKeys(ixs), ","))
		}
	}
	for n := range removedIndices {
		if ix := h.indices[n]; ix != nil {
			close(ix.refreshed)
			ix.refreshed = make(chan struct{})
		}
		delete(h.indices, n)
		for al, ixs := range staged {
			delete(ixs, n)
			if len(ixs) == 0 {
				delete(staged, al)
			}
		}
	}
	h.aliases = staged
	if len(failed) > 0 {
		return 200, obj("acknowledged", true, "errors", true, "action_results", results), nil
	}
	return 200, obj("acknowledged", true, "errors", false), nil
}

// describe renders an action as an entry of action_results does
// (IndicesAliasesResponse.AliasActionResult): its type, the indices it
// resolved to, sorted, and the aliases as the request named them, an
// empty list for remove_index.
func (a *aliasAction) describe(indices []string) *object {
	ixs := append([]string{}, indices...)
	sort.Strings(ixs)
	return obj("type", a.kind, "indices", ixs, "aliases", append([]string{}, a.aliases...))
}

func sortedKeys(m map[string]*aliasMeta) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func cloneAliases(a map[string]map[string]*aliasMeta) map[string]map[string]*aliasMeta {
	c := make(map[string]map[string]*aliasMeta, len(a))
	for k, v := range a {
		m := make(map[string]*aliasMeta, len(v))
		for ik, iv := range v {
			m[ik] = iv
		}
		c[k] = m
	}
	return c
}

func handlePutAlias(rc *reqCtx) (int, any, *esError) {
	rc.allow("timeout", "master_timeout")
	body, _, err := rc.optionalBody()
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ixs, err := h.resolveRead(rc.path["index"], false, false)
	if err != nil {
		return 0, nil, err
	}
	al := rc.path["name"]
	if err := validateAliasName(al); err != nil {
		return 0, nil, err
	}
	if h.indices[al] != nil {
		return 0, nil, newErr(400, "invalid_alias_name_exception", "Invalid alias name [%s]: an index or data stream exists with the same name as the alias", al)
	}
	for _, ix := range ixs {
		h.addAlias(al, ix.name, body)
	}
	return 200, obj("acknowledged", true), nil
}

func handleDeleteAlias(rc *reqCtx) (int, any, *esError) {
	rc.allow("timeout", "master_timeout")
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	ixs, err := h.resolveRead(rc.path["index"], false, false)
	if err != nil {
		return 0, nil, err
	}
	al := rc.path["name"]
	removed := false
	for _, ix := range ixs {
		if m := h.aliases[al]; m != nil && m[ix.name] != nil {
			delete(m, ix.name)
			removed = true
			if len(m) == 0 {
				delete(h.aliases, al)
			}
		}
	}
	if !removed {
		return 0, nil, newErr(404, "aliases_not_found_exception", "aliases [%s] missing", al).
			with("resource.type", "aliases", "resource.id", al)
	}
	return 200, obj("acknowledged", true), nil
}

func handleGetAlias(rc *reqCtx) (int, any, *esError) {
	rc.allow("ignore_unavailable", "allow_no_indices", "expand_wildcards", "local", "master_timeout")
	allowNo, ignore, err := rc.readOptions(true, false)
	if err != nil {
		return 0, nil, err
	}
	if err := rc.checkParams(); err != nil {
		return 0, nil, err
	}
	h := rc.h
	h.mu.Lock()
	defer h.mu.Unlock()
	var ixs []*index
	if expr, ok := rc.path["index"]; ok {
		ixs, err = h.resolveRead(expr, allowNo, ignore)
		if err != nil {
			return 0, nil, err
		}
	} else {
		ixs, _ = h.resolveRead("", true, true)
	}
	names, hasName := rc.path["name"]
	var patterns []string
	if hasName {
		patterns = splitList(names)
	}
	match := func(a string) bool {
		if !hasName {
			return true
		}
		for _, p := range patterns {
			if p == a || p == "_all" || globMatch(p, a) {
				return true
			}
		}
		return false
	}
	out := &object{}
	found := map[string]bool{}
	for _, ix := range ixs {
		all := h.aliasesOf(ix.name)
		sel := &object{}
		for _, m := range all.M {
			if match(m.Key) {
				sel.M = append(sel.M, m)
				found[m.Key] = true
			}
		}
		if hasName && len(sel.M) == 0 {
			continue
		}
		out.set(ix.name, obj("aliases", sel))
	}
	if hasName {
		var missing []string
		for _, p := range patterns {
			if !strings.Contains(p, "*") && p != "_all" && !found[p] {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			if rc.r.Method == "HEAD" {
				return 404, nil, nil
			}
			msg := "alias [" + strings.Join(missing, ",") + "] missing"
			if len(missing) > 1 {
				msg = "aliases [" + strings.Join(missing, ",") + "] missing"
			}
			body := &object{M: append([]member{{Key: "error", Val: msg}, {Key: "status", Val: 404}}, out.M...)}
			return 404, body, nil
		}
	}
	if rc.r.Method == "HEAD" {
		return 200, nil, nil
	}
	return 200, out, nil
}

// aliasesNotFound is AliasesNotFoundException: "aliases [a, b] missing",
// its resource ids one string for one alias and a list for more.
func aliasesNotFound(names []string) *esError {
	var id any = strings.Join(names, ",")
	if len(names) > 1 {
		id = append([]string{}, names...)
	}
	return newErr(404, "aliases_not_found_exception", "aliases [%s] missing", strings.Join(names, ", ")).
		with("resource.type", "aliases", "resource.id", id)
}
