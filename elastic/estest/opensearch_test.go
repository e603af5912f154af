package estest

import (
	"testing"

	"github.com/redstream-go/redstream/internal/testenv"
)

// openSearchTest is the name of the test whose subtests talk to OpenSearch.
const openSearchTest = "TestOpenSearch"

// sharedTests are the protocol tests of the behaviour Elasticsearch 8 and
// OpenSearch share; where the two engines answer differently, the test
// asserts each one's own answer (see docs/ENGINES.md). The tests left out
// need the test server's fault injection or clock, or exercise the
// go-elasticsearch client itself, which refuses OpenSearch.
var sharedTests = []struct {
	name string
	fn   func(*testing.T)
}{
	{"TestProductCheckAndRoot", TestProductCheckAndRoot},
	{"TestProductHeaderOnErrorsAndHead", TestProductHeaderOnErrorsAndHead},
	{"TestCompatibilityMediaType", TestCompatibilityMediaType},
	{"TestUnknownPath", TestUnknownPath},
	{"TestWrongMethod", TestWrongMethod},
	{"TestUnrecognizedParameter", TestUnrecognizedParameter},
	{"TestContentTypeChecks", TestContentTypeChecks},
	{"TestAliases", TestAliases},
	{"TestBulkMixedOutcomes", TestBulkMixedOutcomes},
	{"TestBulkNotFoundDeleteIsNotAnError", TestBulkNotFoundDeleteIsNotAnError},
	{"TestBulkDeleteDoesNotAutoCreateIndex", TestBulkDeleteDoesNotAutoCreateIndex},
	{"TestBulkAutoCreatesIndexWithDynamicMapping", TestBulkAutoCreatesIndexWithDynamicMapping},
	{"TestExplicitMappingAndStrictDynamic", TestExplicitMappingAndStrictDynamic},
	{"TestBulkMalformed", TestBulkMalformed},
	{"TestBulkRequireAliasAndInvalidIndexName", TestBulkRequireAliasAndInvalidIndexName},
	{"TestBulkRefresh", TestBulkRefresh},
	{"TestInternalVersionsSurviveDeletes", TestInternalVersionsSurviveDeletes},
	{"TestExternalVersionTypes", TestExternalVersionTypes},
	{"TestSeqNoConcurrencyControl", TestSeqNoConcurrencyControl},
	{"TestGetDoc", TestGetDoc},
	{"TestGetIsRealtimeSearchIsNot", TestGetIsRealtimeSearchIsNot},
	{"TestPeriodicRefresh", TestPeriodicRefresh},
	{"TestUpdateAPI", TestUpdateAPI},
	{"TestMget", TestMget},
	{"TestRoutingRequired", TestRoutingRequired},
	{"TestIndexAPIs", TestIndexAPIs},
	{"TestSearchSortAndSearchAfter", TestSearchSortAndSearchAfter},
	{"TestSortedPaging", TestSortedPaging},
	{"TestSearchQueries", TestSearchQueries},
	{"TestMaxScore", TestMaxScore},
	{"TestSearchErrors", TestSearchErrors},
	{"TestShardLevelErrors", TestShardLevelErrors},
	{"TestSortOnIDIsRejected", TestSortOnIDIsRejected},
	{"TestSortOnTextIsRejected", TestSortOnTextIsRejected},
	{"TestFilterPath", TestFilterPath},
	{"TestIngestPipelines", TestIngestPipelines},
	{"TestIngestPipelineErrors", TestIngestPipelineErrors},
}

// TestOpenSearch runs the shared protocol tests against the real OpenSearch
// node at OPENSEARCH_URL (make test starts one; make opensearch starts one
// by hand), so that a real engine checks the test server's answers.
func TestOpenSearch(t *testing.T) {
	t.Parallel()
	testenv.OpenSearchURL(t)
	t.Run("engine", func(t *testing.T) {
		// The subtests talk to the node, not to a test server.
		c, s := target(t)
		if s != nil || !c.openSearch() {
			t.Fatal("a subtest of TestOpenSearch does not talk to OpenSearch")
		}
		expectEq(t, "distribution", call(t, c, "GET", "/", "").str("version.distribution"), "opensearch")
	})
	for _, tc := range sharedTests {
		t.Run(tc.name, tc.fn)
	}
}
