package sdk_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestRecoverAfterReplacementLost: a joined member whose session the
// servers end registers again under a new one; when that new session too
// is ended before the registration lands, the member opens a third, as
// Join does, instead of retrying under the dead one for ever.
func TestRecoverAfterReplacementLost(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	const ttl = 3 * time.Second // the shortest a tenant may ask for
	var mu sync.Mutex
	var order []string // sessions in the order they were opened
	var second time.Time
	proxy := newFrontProxy(t, c.Servers.Addrs()[0], func(w http.ResponseWriter, r *http.Request) bool {
		sid := sessionOf(r)
		mu.Lock()
		if _, ok := opensSession(r); ok {
			order = append(order, sid)
			if len(order) == 2 {
				second = time.Now()
			}
		}
		lost := sid != "" && len(order) >= 2 && sid == order[1]
		until := second.Add(ttl + ttl/2) // the servers have ended it by then
		mu.Unlock()
		held := strings.Contains(r.URL.Path, "/instances/") || strings.HasSuffix(r.URL.Path, "/stream")
		return lost && loseSession(w, r, held, until)
	})

	ctx := ctxT(t, 40*time.Second)
	m, err := sdk.Join(ctx, sdk.Instance{Service: "relost", ID: "r-1", Address: "10.0.0.1:80"},
		sdk.WithServers(proxy.addr), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token),
		sdk.WithTTL(ttl), sdk.WithDrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Leave(context.Background())
	mu.Lock()
	first := order[0]
	mu.Unlock()
	// The servers end the first session (as an operator's DELETE would).
	if r := c.Servers.Do(1, c.Token, http.MethodDelete, "/v1/tenants/"+c.Tenant+"/sessions/"+first, nil); r.Status != http.StatusNoContent && r.Status != http.StatusOK {
		t.Fatalf("DELETE session = %d %s", r.Status, r.Body)
	}
	svc, err := c.Connect(t).Service(ctx, "relost")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 25*time.Second, "the instance registered under a third session", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if len(order) < 3 {
			return false
		}
		in, ok := svc.Snapshot().Instance(m.ID())
		return ok && in.SessionTag == api.SessionTag(order[2])
	})
}
