package elastic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/opensearch-project/opensearch-go/v4"
)

// Engine is the search engine a cluster runs. The package writes the same
// bulk bodies to both engines and reads their answers the same way; the
// differences it knows of are named here, and docs/ENGINES.md lists every
// difference found between them.
type Engine string

// The engines the package writes to.
const (
	// Elasticsearch 8. Its client is an *elasticsearch.Client.
	Elasticsearch Engine = "elasticsearch"
	// OpenSearch 2 (and Amazon OpenSearch Service). Its client is an
	// *opensearch.Client, from NewOpenSearchClient or opensearch.NewClient.
	OpenSearch Engine = "opensearch"
)

// MappingErrorType is the bulk item error type of a document that does not
// fit its index's mapping, as an ItemError carries it when the document is
// dead-lettered: document_parsing_exception in Elasticsearch 8 (its reason
// prefixed with the [line:col] of the value), mapper_parsing_exception in
// OpenSearch.
func (e Engine) MappingErrorType() string {
	if e == OpenSearch {
		return "mapper_parsing_exception"
	}
	return "document_parsing_exception"
}

// ProductHeader reports whether the engine names itself in an
// X-Elastic-Product header on every answer, as Elasticsearch 8 does (and
// its client requires); OpenSearch sends none.
func (e Engine) ProductHeader() bool { return e == Elasticsearch }

// SortsOnID reports whether a search may sort on _id: OpenSearch allows it
// (indices.id_field_data.enabled defaults to true), Elasticsearch 8 refuses
// it. Verify therefore sorts on a key field of the document instead.
func (e Engine) SortsOnID() bool { return e == OpenSearch }

// PointInTimePath is the path that opens a point in time on index:
// /{index}/_pit in Elasticsearch 8, /{index}/_search/point_in_time in
// OpenSearch.
func (e Engine) PointInTimePath(index string) string {
	if e == OpenSearch {
		return "/" + index + "/_search/point_in_time"
	}
	return "/" + index + "/_pit"
}

// ParseEngine returns the Engine named s: "elasticsearch" or "opensearch".
func ParseEngine(s string) (Engine, error) {
	switch e := Engine(s); e {
	case Elasticsearch, OpenSearch:
		return e, nil
	}
	return "", fmt.Errorf("elastic: unknown engine %q: elasticsearch or opensearch", s)
}

// DetectEngine asks the cluster behind tr which engine it runs (GET /), and
// returns it with its version number. A client of one engine may ask a
// cluster of the other only with a bare transport: the Elasticsearch
// client refuses a cluster that is not Elasticsearch before answering.
func DetectEngine(ctx context.Context, tr esapi.Transport) (Engine, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	if err != nil {
		return "", "", err
	}
	res, err := tr.Perform(req)
	if err != nil {
		return "", "", fmt.Errorf("elastic: GET /: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("elastic: GET /: %s %s", res.Status, readBody(res.Body))
	}
	var root struct {
		Version struct {
			Number       string `json:"number"`
			Distribution string `json:"distribution"`
		} `json:"version"`
	}
	if err := json.NewDecoder(res.Body).Decode(&root); err != nil {
		return "", "", fmt.Errorf("elastic: GET /: %w", err)
	}
	if root.Version.Distribution == "opensearch" {
		return OpenSearch, root.Version.Number, nil
	}
	if root.Version.Number == "" {
		return "", "", errors.New("elastic: GET / names no version: not a search engine")
	}
	return Elasticsearch, root.Version.Number, nil
}

// NewOpenSearchClient returns a client of the OpenSearch cluster at
// cfg.Addresses, to hand to NewHandler, Verify, Backfill and the repair
// functions in place of an *elasticsearch.Client: it is the one change that
// points the package at OpenSearch. The client talks to the addresses
// given, without discovering the other nodes unless cfg says otherwise;
// everything else is opensearch-go's (cfg.RetryOnStatus and RetryBackoff
// shape its retries of a whole request, as for the Elasticsearch client).
func NewOpenSearchClient(cfg opensearch.Config) (*opensearch.Client, error) {
	if len(cfg.Addresses) == 0 {
		return nil, errors.New("elastic: NewOpenSearchClient needs at least one address")
	}
	if cfg.DiscoverNodesOnStart == nil {
		off := false
		cfg.DiscoverNodesOnStart = &off
	}
	c, err := opensearch.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("elastic: opensearch client: %w", err)
	}
	return c, nil
}
