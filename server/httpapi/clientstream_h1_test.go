package httpapi_test

import (
	"net/http"
	"testing"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// TestClientStreamLeavesH1ConnectionUsable: a client stream over HTTP/1.1
// that the client ends (its body ends) leaves its connection fit for the
// next request. The stream's end used to put the connection's read
// deadline in the past after net/http had begun reading on for the next
// request, which cancelled the connection's context: the requests after it
// on that connection were answered "context canceled" (138 to 176 of 200
// here; TestAnswersMatchOpenAPI met it as 504s).
func TestClientStreamLeavesH1ConnectionUsable(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("acme", api.Quotas{})
	failed := 0
	for range 200 {
		if r := c.Do(1, tok, http.MethodPost, "/v1/tenants/acme/stream", `{"type":"ping","req":1}`+"\n"); r.Status != http.StatusOK {
			t.Fatalf("a client stream over HTTP/1.1 = %d %s", r.Status, r.Body)
		}
		// The next request goes on the same connection (one client, in turn).
		if r := c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/services/web?consistent=true", nil); r.Status != http.StatusOK {
			if failed++; failed <= 3 {
				t.Errorf("the request after a client stream on its connection = %d %s", r.Status, r.Body)
			}
		}
	}
	if failed > 0 {
		t.Errorf("%d of 200 requests after a client stream on their connection failed", failed)
	}
}
