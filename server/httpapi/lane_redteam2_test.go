package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// TestRedTeam2KeepaliveLaneHasNoTenantCeiling: keepalives of sessions the
// node knows are outside every budget of their tenant — each session has a
// lane of its own (25 a second, burst 50), and a keepalive frame on the
// client stream names up to max_sessions of them. Before the tenant's
// whole lane had a ceiling (tenants.LaneTenantRate), one tenant's ceiling
// was 25 × max_sessions renewals a second on its leader: 250,000 at the
// default quotas, against its requests_per_second of 500; with 2,000
// sessions one stream renewed 80,000 in 0.34 s, ≈ 4.3 µs of the
// process's CPU each — about a core of the leader at the defaults. Now the
// renewals a flood gets past the lane are its burst and its rate over the
// flood's time, whatever it sends.
func TestRedTeam2KeepaliveLaneHasNoTenantCeiling(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("evil", api.Quotas{}) // default quotas
	c.WaitTenantLeader("evil")

	const sessions, frames = 2000, 40
	var wg sync.WaitGroup
	for node := 1; node <= 3; node++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := node - 1; i < sessions; i += 3 {
				for {
					r := c.Do(node, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/evil/sessions/sess-evil-%08d", i),
						api.SessionRequest{TTLMs: 120_000, LeaseMs: 60_000})
					if r.Status == http.StatusTooManyRequests {
						time.Sleep(20 * time.Millisecond)
						continue
					}
					if r.Status != http.StatusCreated && r.Status != http.StatusOK {
						t.Errorf("open session = %d %s", r.Status, r.Body)
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	node := c.WaitTenantLeader("evil")
	st := openStream(t, h2cClient(0), c.Addr(node), "evil", tok)
	items := make([]api.KeepaliveItem, sessions)
	for i := range items {
		items[i].ID = fmt.Sprintf("sess-evil-%08d", i)
	}
	start, cpu0 := time.Now(), cpuTime()
	for f := uint64(1); f <= frames; f++ {
		st.send(api.ClientFrame{Type: api.FrameKeepalive, Req: f, Sessions: items})
		if f%4 == 0 {
			st.waitResults(f-3, f, 20*time.Second)
		}
	}
	took, cpu := time.Since(start), cpuTime()-cpu0
	renewed := 0
	for f := uint64(1); f <= frames; f++ {
		var body struct{ Sessions []struct{ Status int } }
		r := st.result(f)
		_ = json.Unmarshal(r.Body, &body)
		for _, s := range body.Sessions {
			if s.Status == http.StatusOK {
				renewed++
			}
		}
	}
	if renewed == 0 {
		t.Fatal("no session renewed")
	}
	rate := tenants.LaneTenantRate(tenants.DefaultMaxSessions)
	each := cpu / time.Duration(frames*sessions) // a keepalive handled, renewed or refused
	t.Logf("%d keepalive frames of %d sessions in %v: %d renewals (%.0f a second), %v of CPU, %v a keepalive; the tenant's lane allows %d a second after a burst of %d: %.3f cores",
		frames, sessions, took, renewed, float64(renewed)/took.Seconds(), cpu, each, rate, 2*rate, (each * time.Duration(rate)).Seconds())
	// Generous: 50 % over the rate, and every frame's rounding.
	if most := 2*rate + int(1.5*float64(rate)*took.Seconds()) + frames; renewed > most {
		t.Fatalf("one tenant renewed %d sessions in %v at the default quotas: more than its lane's burst %d and rate %d a second allow (%d); "+
			"each session within its own lane, together they keep its leader busy", renewed, took, 2*rate, rate, most)
	}
}
