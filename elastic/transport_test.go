package elastic_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/redstream-go/redstream"
	"github.com/redstream-go/redstream/elastic"
	"github.com/redstream-go/redstream/internal/testenv"
)

// recordingTransport is an esapi.Transport that passes requests on to a
// client and keeps their method, path and body.
type recordingTransport struct {
	next esapi.Transport
	mu   sync.Mutex
	reqs []string
}

func (r *recordingTransport) Perform(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.Path+"?"+req.URL.RawQuery+"\n"+string(body))
	r.mu.Unlock()
	return r.next.Perform(req)
}

// deleteVersionLoader finds no row, and deletes with version 42.
type deleteVersionLoader struct{}

func (deleteVersionLoader) Load(context.Context, []string) ([]elastic.Document, error) {
	return nil, nil
}
func (deleteVersionLoader) DeleteVersion(context.Context) (int64, bool, error) {
	return 42, true, nil
}

var _ elastic.DeleteVersioner = deleteVersionLoader{}

// TestHandlerTransport: a Handler takes any esapi.Transport, and asks a
// Loader that is a DeleteVersioner for the version of its deletes.
func TestHandlerTransport(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, tg engineTarget) {
		index := "t-transport-" + testenv.RandomHex(6)
		t.Cleanup(func() { deleteIndex(tg.es, index) })
		tr := &recordingTransport{next: tg.es}
		h, err := elastic.NewHandler(tr, deleteVersionLoader{}, &elastic.Options{Index: index, Refresh: "false"})
		must(t, err)
		b := &redstream.Batch{Stream: "products", Messages: []redstream.Message{
			{ID: redstream.MustParseID("1-0"), Payload: json.RawMessage(`{"id":7}`)},
		}}
		must(t, h.HandleBatch(context.Background(), b))
		if len(tr.reqs) != 1 {
			t.Fatalf("requests = %q, want one bulk request", tr.reqs)
		}
		want := "POST /_bulk?refresh=false\n" +
			`{"delete":{"_index":"` + index + `","_id":"7","version":42,"version_type":"external_gte"}}` + "\n"
		if got := tr.reqs[0]; got != want {
			t.Errorf("request =\n%s\nwant\n%s", got, want)
		}
		if st := h.Stats(); st.Deleted != 1 || st.Requests != 1 {
			t.Errorf("stats = %+v, want one delete", st)
		}

		if _, err := elastic.NewHandler(tg.nilClient(), deleteVersionLoader{}, &elastic.Options{Index: index}); err == nil {
			t.Errorf("a nil %T accepted", tg.nilClient())
		}
	})
}
