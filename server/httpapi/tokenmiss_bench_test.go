package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// BenchmarkTokenMiss is what a node spends, in its handler, on a request
// with a made-up token naming a tenant that exists (attack pattern 7:
// each from another source address): authentication, the unauthenticated
// bucket, the node's budget of token checks, the answer. The connection's
// own cost (accept, read, write, close) is not in it.
func BenchmarkTokenMiss(b *testing.B) {
	c := servertest.Start(b, servertest.Options{Nodes: 1})
	c.CreateTenant("acme", api.Quotas{})
	h := c.Server(1).API()
	statuses := map[int]int{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r := httptest.NewRequest(http.MethodGet, "/v1/tenants/acme/services/orders", nil)
		r.RemoteAddr = fmt.Sprintf("127.%d.%d.%d:4000", 16+i>>16&0xf, i>>8&0xff, i&0xff)
		r.Header.Set("Authorization", "Bearer rft_acme_"+fmt.Sprintf("%043d", i))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		statuses[w.Code]++
	}
	b.StopTimer()
	b.Logf("%d requests: %v", b.N, statuses)
}
