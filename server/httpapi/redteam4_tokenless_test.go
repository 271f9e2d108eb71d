package httpapi_test

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/server/servertest"
)

// TestRedTeam4TokenlessNewConnectionsNotPaced: red team 4, finding 2.
// Pacing marks an address only for a 429 of a tenant's (tarpitOn with
// who.tenant set). The same attack as TestAttackNewConnectionsArePaced —
// 32 clients, a new connection per request, for 3 s — sent without a
// token (or with any string that is not a token) is refused for the
// address's unauthenticated rate (5/s, key "ip:"), which marks nothing:
// every new connection is set up, read and refused as fast as the holds
// and parking answer them, the cost per connection the pacing was made to
// take away (DECISIONS, "A refused tenant's new connections are paced").
// A tenant over its rate gets it back by leaving its token off.
//
// Measured: the requests read and answered from the address in 3 s,
// against the bound TestAttackNewConnectionsArePaced sets for a tenant,
// at the unauthenticated rate (5/s, burst 10).
func TestRedTeam4TokenlessNewConnectionsNotPaced(t *testing.T) {
	t.Skip("red team 4 finding 2: fails until fixed")
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	c.Client.CloseIdleConnections()
	const clients, span = 32, 3 * time.Second
	counts := map[string]int{}
	var mu sync.Mutex
	ctx, cancel := context.WithTimeout(context.Background(), span)
	defer cancel()
	var wg sync.WaitGroup
	for range clients {
		client, tr := rt4Client(net.IPv4(127, 0, 0, 2), true, 0)
		defer tr.CloseIdleConnections()
		wg.Go(func() {
			for ctx.Err() == nil {
				st, _ := rt4Do(ctx, client, http.MethodGet, "http://"+c.Addr(1)+"/v1/tenants/mallory/services", "")
				if ctx.Err() != nil {
					return
				}
				if len(st) > 5 {
					st = "error"
				}
				mu.Lock()
				counts[st]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	answered := counts["401"] + counts["429"]
	t.Logf("%d clients without a token, a new connection a request, %v: %v; %d answered", clients, span, counts, answered)
	const rate, burst = 5, 10
	if most := rate*int(span/time.Second) + burst + 2*clients; answered > most {
		t.Errorf("%d requests without a token on new connections read and answered in %v from one address refused for its rate: "+
			"its new connections were not paced (a tenant's are held to at most %d)", answered, span, most)
	}
}
