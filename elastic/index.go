package elastic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// ErrIndexExists is returned by CreateAliasedIndex when the physical
// index it would create exists already.
var ErrIndexExists = errors.New("elastic: index exists")

// PhysicalName returns the name of a physical index behind alias:
// "<alias>-<UTC time as yyyymmdd-hhmmss>", as the worker and a reindex
// name the indexes they create.
func PhysicalName(alias string, t time.Time) string {
	return alias + "-" + t.UTC().Format("20060102-150405")
}

// CreateAliasedIndex creates the physical index name with body, a create
// index request body (settings, mappings; nil for none), and, when alias
// is not empty, the alias pointing at it, in one request: the alias never
// exists without its index. It returns an error wrapping ErrIndexExists
// when name exists already.
func CreateAliasedIndex(ctx context.Context, es esapi.Transport, name string, body []byte, alias string) error {
	req := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return fmt.Errorf("elastic: the index body is not a JSON object: %w", err)
		}
	}
	if alias != "" {
		aliases := map[string]json.RawMessage{}
		if raw, ok := req["aliases"]; ok {
			if err := json.Unmarshal(raw, &aliases); err != nil {
				return fmt.Errorf("elastic: the index body's aliases are not an object: %w", err)
			}
		}
		aliases[alias] = json.RawMessage(`{}`)
		raw, err := json.Marshal(aliases)
		if err != nil {
			return err
		}
		req["aliases"] = raw
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	res, err := esapi.IndicesCreateRequest{Index: name, Body: bytes.NewReader(b)}.Do(ctx, es)
	if err != nil {
		return fmt.Errorf("elastic: create index %s: %w", name, err)
	}
	defer res.Body.Close()
	if res.IsError() {
		msg := readBody(res.Body)
		if strings.Contains(msg, "resource_already_exists_exception") {
			return fmt.Errorf("%w: %s", ErrIndexExists, name)
		}
		return fmt.Errorf("elastic: create index %s: %s %s", name, res.Status(), msg)
	}
	return nil
}

// aliasTargets returns the indexes the alias name points at; none when no
// alias has that name. concrete reports whether name is an index.
func aliasTargets(ctx context.Context, es esapi.Transport, name string) (indexes []string, concrete bool, err error) {
	res, err := esapi.IndicesGetAliasRequest{Name: []string{name}}.Do(ctx, es)
	if err != nil {
		return nil, false, fmt.Errorf("elastic: read alias %s: %w", name, err)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusNotFound:
		ok, err := indexExists(ctx, es, name)
		return nil, ok, err
	case res.IsError():
		return nil, false, fmt.Errorf("elastic: read alias %s: %s %s", name, res.Status(), readBody(res.Body))
	}
	var body map[string]struct {
		Aliases map[string]json.RawMessage `json:"aliases"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return nil, false, fmt.Errorf("elastic: read alias %s: %w", name, err)
	}
	for ix, a := range body {
		if _, ok := a.Aliases[name]; ok {
			indexes = append(indexes, ix)
		}
	}
	return indexes, false, nil
}

// indexExists reports whether a concrete index (not an alias) is named name.
func indexExists(ctx context.Context, es esapi.Transport, name string) (bool, error) {
	res, err := esapi.IndicesExistsRequest{Index: []string{name}}.Do(ctx, es)
	if err != nil {
		return false, fmt.Errorf("elastic: check index %s: %w", name, err)
	}
	res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("elastic: check index %s: %s", name, res.Status())
}

// deleteIndex deletes the concrete index name; a missing one is no error.
func deleteIndex(ctx context.Context, es esapi.Transport, name string) error {
	res, err := esapi.IndicesDeleteRequest{Index: []string{name}}.Do(ctx, es)
	if err != nil {
		return fmt.Errorf("elastic: delete index %s: %w", name, err)
	}
	defer res.Body.Close()
	if res.IsError() && res.StatusCode != http.StatusNotFound {
		return fmt.Errorf("elastic: delete index %s: %s %s", name, res.Status(), readBody(res.Body))
	}
	return nil
}

// refreshIndex makes what was written to name visible to searches.
func refreshIndex(ctx context.Context, es esapi.Transport, name string) error {
	res, err := esapi.IndicesRefreshRequest{Index: []string{name}}.Do(ctx, es)
	if err != nil {
		return fmt.Errorf("elastic: refresh %s: %w", name, err)
	}
	defer res.Body.Close()
	if res.IsError() {
		return fmt.Errorf("elastic: refresh %s: %s %s", name, res.Status(), readBody(res.Body))
	}
	return nil
}

// updateAliases sends one POST /_aliases with actions, applied atomically.
// An answer of 200 with "errors": true (an action that did nothing, since
// Elasticsearch 8.14) is an error too.
func updateAliases(ctx context.Context, es esapi.Transport, actions []map[string]any) error {
	b, err := json.Marshal(map[string]any{"actions": actions})
	if err != nil {
		return err
	}
	res, err := esapi.IndicesUpdateAliasesRequest{Body: bytes.NewReader(b)}.Do(ctx, es)
	if err != nil {
		return fmt.Errorf("elastic: update aliases: %w", err)
	}
	defer res.Body.Close()
	msg := readBody(res.Body)
	if res.IsError() {
		return fmt.Errorf("elastic: update aliases: %s %s", res.Status(), msg)
	}
	var r struct {
		Errors bool `json:"errors"`
	}
	if err := json.Unmarshal([]byte(msg), &r); err != nil {
		return fmt.Errorf("elastic: update aliases: %w", err)
	}
	if r.Errors {
		return fmt.Errorf("elastic: update aliases: an action failed: %s", msg)
	}
	return nil
}
