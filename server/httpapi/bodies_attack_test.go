package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// bigRefusedBody is a registration of 1 MiB whose meta is over the default
// max_meta_bytes: refused 409 at the edge, after it was read and decoded.
var bigRefusedBody = []byte(`{"address":"a:1","meta":{"k":"` + strings.Repeat("x", api.MaxBodyBytes-64) + `"}}`)

// TestAttackRefusedBodiesAreUnbudgeted: a write refused at the edge
// (fsm.Check) costs no write quota and no write bytes — but the node read
// and decoded its body first, up to 1 MiB, and nothing budgets the bytes
// a tenant makes a node read: requests_per_second counts requests (1000 a
// second by default: 1 GB/s of JSON), WriteBytesPerSecond (then 8 MiB/s) only
// what is proposed. Here 40 MiB of bodies in a row from one tenant: all
// read, decoded and refused 409, none refused for its bytes.
//
// Fails on 48b9090; passes since 22b2233 (bodies charged to
// WriteBytesPerSecond before they are read): kept as a regression test.
func TestAttackRefusedBodiesAreUnbudgeted(t *testing.T) {
	t.Cleanup(func() { time.Sleep(time.Second) }) // the server's lingering closes end (goleak)
	// A budget the loop exceeds however slow the machine (the race
	// detector slows the client to ~7 MiB/s).
	c := servertest.Start(t, servertest.Options{Nodes: 1, Configure: func(cfg *config.Config) { cfg.WriteBytesPerSecond = 2 << 20 }})
	flood := c.CreateTenant("flood", api.Quotas{})
	start := time.Now()
	statuses := map[int]int{}
	for i := range 40 {
		r := c.Do(1, flood, http.MethodPut, fmt.Sprintf("/v1/tenants/flood/services/big/instances/b%d", i), bigRefusedBody)
		statuses[r.Status]++
	}
	took := time.Since(start)
	t.Logf("40 MiB of refused registrations in %v: %v", took.Round(time.Millisecond), statuses)
	if statuses[http.StatusTooManyRequests] == 0 {
		t.Fatalf("one tenant had the node read and decode 40 MiB of JSON in %v (%.0f MiB/s; the write-bytes budget is 2 MiB/s), "+
			"every one refused at the edge and none for its bytes: %v", took.Round(time.Millisecond), 40/took.Seconds(), statuses)
	}
}
