package httpapi_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/httpapi"
	"github.com/rafting/rafting/server/servertest"
)

// TestH2RefusalsAreBoundedLikeHTTP1 proves that a tenant over its rate on
// one HTTP/2 connection, with 200 streams at a time, gets its refusals
// answered no faster than the holds and the parking schedule answer them
// over HTTP/1 (MaxHeldPerKey a RateLimitHold, then one a ParkGap), and
// no stream reset: a refusal past the holds waits its turn. Before, such
// a refusal reset its stream and the client opened the next at once:
// 21,000 refusals a second on one connection of a tenant limited to 10
// requests a second.
func TestH2RefusalsAreBoundedLikeHTTP1(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("mallory", api.Quotas{RequestsPerSecond: 10, Burst: 10})
	c.WaitTenantLeader("mallory")

	p := &http.Protocols{}
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p, MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	const window = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	var refused, reset, ok atomic.Int64
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr(1)+"/v1/tenants/mallory/services", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := cl.Do(req)
				switch {
				case err != nil:
					if ctx.Err() == nil {
						reset.Add(1)
					}
					continue
				case resp.StatusCode == http.StatusOK:
					ok.Add(1)
				default:
					refused.Add(1)
				}
				resp.Body.Close()
			}
		})
	}
	wg.Wait()

	// Each of the MaxHeldPerKey holds is answered at least
	// RateLimitHold/2 after it is taken; the waiting ones one a ParkGap.
	held := httpapi.MaxHeldPerKey * int64(window/(httpapi.RateLimitHold/2)+1)
	bound := held + int64(window/httpapi.ParkGap) + 1
	t.Logf("one h2c connection, 200 streams, %v: %d refused, %d answered 200, %d reset (at most %d refusals allowed)",
		window, refused.Load(), ok.Load(), reset.Load(), bound)
	if n := refused.Load() + reset.Load(); n > bound {
		t.Errorf("%d refusals in %v on one HTTP/2 connection, want at most %d", n, window, bound)
	}
	if n := reset.Load(); n > 0 {
		t.Errorf("%d streams reset, want 0: a refusal past the holds waits its turn", n)
	}
	if refused.Load() == 0 {
		t.Error("no refusals: the tenant was never over its rate")
	}
}
