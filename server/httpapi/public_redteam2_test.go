package httpapi_test

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// TestRedTeam2PublicRoutesAreUnlimited: "requests without a valid token
// share one small per-address bucket" (DESIGN.md; 5 a second, burst 10),
// and a refusal of it is held. The routes that need no token skipped it
// whole: GET /v1/openapi.json answers 72 KB to anyone, as often as asked,
// and so did a path no route matches (404). From one address, on 8
// keep-alive connections, a client without a token had all 800 of its
// requests answered in 91 ms (57.7 MB of OpenAPI document; 404s likewise
// in 63 ms): a tiny request for a 72 KB answer, as fast as the node could
// write them, no hold, no 429. /healthz and /readyz stay unlimited (peers,
// probes and load balancers ask them often from few addresses; their
// answers are small).
func TestRedTeam2PublicRoutesAreUnlimited(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	const conns, each = 8, 100
	for _, path := range []string{"/v1/openapi.json", "/v1/no-such-route"} {
		client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns}}
		var answered, limited, bytes atomic.Int64
		start := time.Now()
		deadline := start.Add(1500 * time.Millisecond)
		var wg sync.WaitGroup
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					if time.Now().After(deadline) {
						return
					}
					resp, err := client.Get("http://" + c.Addr(1) + path)
					if err != nil {
						return
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusTooManyRequests {
						limited.Add(1)
						continue
					}
					answered.Add(1)
					bytes.Add(n)
				}
			}()
		}
		wg.Wait()
		took := time.Since(start)
		client.CloseIdleConnections()
		// What the address's bucket would have let through meanwhile,
		// with room for the holds' timing.
		allowed := int64(2*tenants.UnauthenticatedBurst) + int64(4*tenants.UnauthenticatedRate*took.Seconds())
		t.Logf("%s without a token from one address: %d answered (%.1f MB), %d refused 429, in %v; the address's bucket allows about %d",
			path, answered.Load(), float64(bytes.Load())/1e6, limited.Load(), took.Round(time.Millisecond), allowed)
		if answered.Load() > allowed {
			t.Errorf("%s without a token from one address: %d answered (%.1f MB) in %v, no 429: "+
				"the unauthenticated per-address bucket (%d a second, burst %d) would have allowed about %d",
				path, answered.Load(), float64(bytes.Load())/1e6, took.Round(time.Millisecond),
				tenants.UnauthenticatedRate, tenants.UnauthenticatedBurst, allowed)
		}
	}
}
