package testenv

import (
	"os"
	"testing"
)

// OpenSearchURL returns $OPENSEARCH_URL, the OpenSearch node that
// `make test` starts (scripts/opensearch.sh). Without it the test fails,
// with a hint on how to start the node: the suite never skips the engine.
func OpenSearchURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("OPENSEARCH_URL")
	if url == "" {
		t.Fatal("OPENSEARCH_URL is not set: run the tests with make test, which starts an OpenSearch node, " +
			"or start one with make opensearch and set OPENSEARCH_URL to the URL it prints")
	}
	return url
}
