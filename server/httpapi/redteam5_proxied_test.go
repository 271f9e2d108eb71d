package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// TestRedTeam5ForgedNodeHeadersSkipPacing: red team 5, finding 3. A
// refusal marks its connection's source address for pacing unless the
// request carries X-Rafting-Proxied or X-Rafting-Forwarded (tarpitOn):
// "not a node's address". Nothing checks that a node sent them — they are
// plain request headers, and a request for a tenant this node serves is
// answered here whatever X-Rafting-Proxied says (proxyTarget only stops
// proxying it again). A tenant over its rate that adds either header to
// each request is never paced: its new connections are set up, read and
// refused as fast as it dials them, which is attack pattern 5 as it was
// before pacing (TestAttackNewConnectionsArePaced, with one header more).
// docs/DECISIONS.md ("Never marked by a node's traffic") records this as
// left open; this test measures it, so a fix (e.g. honouring the headers
// only from a connection authenticated with a node's or admin token) can
// be checked. Without the header the same run answers 57 (bound 104).
//
// Measured: as TestAttackNewConnectionsArePaced — 32 clients of a tenant
// at 10 requests a second from 127.0.0.2, each request on a new
// connection, for 3 s — with the header set: the requests answered
// (200 or 429) against the paced bound.
func TestRedTeam5ForgedNodeHeadersSkipPacing(t *testing.T) {
	t.Skip("red team 5 finding 3: fails until fixed")
	for _, h := range []string{"X-Rafting-Proxied", "X-Rafting-Forwarded"} {
		t.Run(h, func(t *testing.T) {
			c := servertest.Start(t, servertest.Options{Nodes: 1})
			const rate = 10
			mallory := c.CreateTenant("mallory", api.Quotas{RequestsPerSecond: rate, Burst: rate})
			c.Client.CloseIdleConnections()

			const clients, span = 32, 3 * time.Second
			counts := map[string]int{}
			var mu sync.Mutex
			ctx, cancel := context.WithTimeout(context.Background(), span)
			defer cancel()
			var wg sync.WaitGroup
			for range clients {
				d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
				tr := &http.Transport{DisableKeepAlives: true, DialContext: d.DialContext}
				defer tr.CloseIdleConnections()
				client := &http.Client{Transport: tr}
				wg.Go(func() {
					for ctx.Err() == nil {
						req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr(1)+"/v1/tenants/mallory/services", nil)
						req.Header.Set("Authorization", "Bearer "+mallory)
						req.Header.Set(h, "1") // forged: this client is no node
						resp, err := client.Do(req)
						k := "error"
						if err == nil {
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							k = fmt.Sprint(resp.StatusCode)
						} else if ctx.Err() != nil {
							return
						}
						mu.Lock()
						counts[k]++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			answered := counts["200"] + counts["429"]
			most := rate*int(span/time.Second) + rate + 2*clients
			t.Logf("%d clients over the rate with %s set, a new connection a request, %v: %v; %d answered (paced: at most %d)",
				clients, h, span, counts, answered, most)
			if counts["429"] == 0 {
				t.Fatalf("no refusal: %v", counts)
			}
			if answered > most {
				t.Errorf("%d requests on new connections answered in %v for a tenant at %d a second with a forged %s: "+
					"never paced (want at most %d)", answered, span, rate, h, most)
			}
		})
	}
}
