package elastic_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"sync"
	"testing"

	"github.com/opensearch-project/opensearch-go/v4"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
)

// signedRequest is what the recording server saw of one request.
type signedRequest struct {
	method, path, auth, date, contentSHA string
	body                                 []byte
}

// TestAWSSigner checks the shape of the requests an OpenSearch client with
// AWSSigner sends (no AWS endpoint can be reached here, so the signature
// itself is not checked by a server): each carries a SigV4 Authorization
// for the configured region and service with the credentials of the
// environment, X-Amz-Date, and X-Amz-Content-Sha256 the SHA-256 of its
// body; the handler's bulk requests included.
func TestAWSSigner(t *testing.T) {
	// The SDK's default chain reads the environment: no t.Parallel.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	var (
		mu   sync.Mutex
		seen []signedRequest
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, signedRequest{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("X-Amz-Date"), r.Header.Get("X-Amz-Content-Sha256"), body})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/":
			_, _ = io.WriteString(w, `{"version":{"distribution":"opensearch","number":"2.19.6"}}`)
		case "/_bulk":
			_, _ = io.WriteString(w, `{"took":1,"errors":false,"items":[{"index":{"_id":"1","status":201}}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	for _, tc := range []struct{ region, service string }{{"eu-west-1", "es"}, {"us-east-2", "aoss"}} {
		t.Run(tc.service, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			ctx := context.Background()
			sg, err := elastic.AWSSigner(ctx, tc.region, tc.service)
			must(t, err)
			c, err := elastic.NewOpenSearchClient(opensearch.Config{Addresses: []string{srv.URL}, Signer: sg})
			must(t, err)
			defer c.Close()
			if e, _, err := elastic.DetectEngine(ctx, c); err != nil || e != elastic.OpenSearch {
				t.Fatalf("DetectEngine = %q, %v", e, err)
			}
			loader := elastic.LoaderFunc(func(context.Context, []string) ([]elastic.Document, error) {
				return []elastic.Document{{ID: "1", Source: json.RawMessage(`{"title":"tea"}`)}}, nil
			})
			h, err := elastic.NewHandler(c, loader, &elastic.Options{Index: "products"})
			must(t, err)
			must(t, h.HandleBatch(ctx, &redstream.Batch{Stream: "products", Messages: []redstream.Message{{
				ID: redstream.MustParseID("1-0"), Stream: "products", Payload: json.RawMessage(`{"id":1}`),
			}}}))

			auth := regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/(\d{8})/` + tc.region + `/` + tc.service +
				`/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}$`)
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != 2 || seen[0].path != "/" || seen[1].path != "/_bulk" {
				t.Fatalf("requests: %+v", seen)
			}
			for _, r := range seen {
				m := auth.FindStringSubmatch(r.auth)
				if m == nil {
					t.Errorf("%s %s: Authorization %q is not SigV4 for %s in %s", r.method, r.path, r.auth, tc.service, tc.region)
					continue
				}
				if !regexp.MustCompile(`^` + m[1] + `T\d{6}Z$`).MatchString(r.date) {
					t.Errorf("%s %s: X-Amz-Date %q, credential date %s", r.method, r.path, r.date, m[1])
				}
				for _, h := range []string{"host", "x-amz-content-sha256", "x-amz-date"} {
					if !regexp.MustCompile(`(^|;)` + h + `(;|$)`).MatchString(m[2]) {
						t.Errorf("%s %s: SignedHeaders %s lacks %s", r.method, r.path, m[2], h)
					}
				}
				sum := sha256.Sum256(r.body)
				if r.contentSHA != hex.EncodeToString(sum[:]) {
					t.Errorf("%s %s: X-Amz-Content-Sha256 %s is not the SHA-256 of its %d-byte body", r.method, r.path, r.contentSHA, len(r.body))
				}
			}
			if len(seen[1].body) == 0 {
				t.Error("the bulk request was signed without its body")
			}
		})
	}
	for _, bad := range []struct{ region, service string }{{"", "es"}, {"eu-west-1", "s3"}, {"eu-west-1", ""}} {
		if _, err := elastic.AWSSigner(context.Background(), bad.region, bad.service); err == nil {
			t.Errorf("AWSSigner(%q, %q) accepted", bad.region, bad.service)
		}
	}
}
