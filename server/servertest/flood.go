package servertest

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/tenants"
)

// RequireAnonymousLimited floods GET path on node id from one address
// without a token (8 connections, up to 100 requests each, 1.5 s) and
// fails t when more were answered than the address's unauthenticated
// bucket allows (tenants.UnauthenticatedRate a second, burst
// UnauthenticatedBurst), with room for the holds' timing: a route that
// needs no token must still be charged to its caller's address.
func (c *Cluster) RequireAnonymousLimited(t *testing.T, id int, path string) {
	t.Helper()
	const conns, each = 8, 100
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns}}
	defer client.CloseIdleConnections()
	var answered, limited, bytes atomic.Int64
	start := time.Now()
	deadline := start.Add(1500 * time.Millisecond)
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for range each {
				if time.Now().After(deadline) {
					return
				}
				resp, err := client.Get("http://" + c.Addr(id) + path)
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
		})
	}
	wg.Wait()
	took := time.Since(start)
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
