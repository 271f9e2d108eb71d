package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestStaticStability: with every server down, the cache keeps the last
// known membership (marked stale) and Pick keeps working; when the
// servers return, the cache catches up.
func TestStaticStability(t *testing.T) {
	c := sdktest.Start(t)
	tn := &tenant{c: c, name: c.Tenant, tok: c.Token}
	for i := 1; i <= 3; i++ {
		// Instances without a session stay registered through the outage.
		r := tn.rest(t, http.MethodPut, fmt.Sprintf("/services/api/instances/a%d", i), api.RegisterRequest{Address: fmt.Sprintf("10.0.0.%d:80", i)})
		if r.Status >= 300 {
			t.Fatalf("register: %d %s", r.Status, r.Body)
		}
	}
	cl := tn.connect(t)
	svc, err := cl.Service(ctxT(t, 10*time.Second), "api")
	if err != nil {
		t.Fatal(err)
	}
	b := svc.Balancer(balancer.RoundRobin())
	eventually(t, 5*time.Second, "three instances", func() bool { return len(svc.Snapshot().Ready()) == 3 })
	m := tn.join(t, msInstance("lone", "l1", 0), sdk.WithLeaveTimeout(1500*time.Millisecond))

	c.Servers.Stop()
	eventually(t, 15*time.Second, "the service to be marked stale", svc.Stale)
	seen := map[string]int{}
	for range 30 {
		e, err := b.Pick()
		if err != nil {
			t.Fatalf("Pick() with every server down = %v, want the last known membership", err)
		}
		seen[e.ID]++
	}
	if len(seen) != 3 || len(svc.Instances()) != 3 {
		t.Fatalf("picked %v from %v while stale, want a1..a3", seen, ids(svc.Instances()))
	}
	if snap := svc.Snapshot(); !snap.Stale || time.Since(snap.Synced) < 0 {
		t.Fatalf("snapshot %+v, want stale", snap)
	}
	// Leave is bounded with every server gone, and ends the member.
	start := time.Now()
	err = m.Leave(ctxT(t, time.Minute))
	if d := time.Since(start); err == nil || d > 2500*time.Millisecond {
		t.Fatalf("Leave() with no server = %v after %v, want an error within the leave timeout", err, d)
	}
	select {
	case <-m.Done():
	default:
		t.Fatal("Done not closed after a failed Leave")
	}
	if m.Role() != sdk.Left {
		t.Fatalf("role after Leave = %v", m.Role())
	}

	restartAll(c)
	r := tn.rest(t, http.MethodPut, "/services/api/instances/a4", api.RegisterRequest{Address: "10.0.0.4:80"})
	if r.Status >= 300 {
		t.Fatalf("register after restart: %d %s", r.Status, r.Body)
	}
	eventually(t, 20*time.Second, "the cache to catch up", func() bool {
		return len(svc.Snapshot().Ready()) == 4 && !svc.Stale()
	})
	eventually(t, 5*time.Second, "the balancer to pick the new instance", func() bool {
		e, err := b.Pick()
		return err == nil && e.ID == "a4"
	})
}

// TestServerFailover: the tenant shard's leader stops (gracefully, then
// by a crash) under connected members: they stay registered, the master
// keeps its mastership and token, and no standby is granted.
func TestServerFailover(t *testing.T) {
	c := sdktest.Start(t)
	tn := &tenant{c: c, name: c.Tenant, tok: c.Token}
	var r roles
	m := tn.join(t, msInstance("f", "m1", 0), sdk.WithRoleChange(r.record))
	s := tn.join(t, msInstance("f", "m2", 0))
	tn.join(t, sdk.Instance{Service: "web", ID: "w1", Address: "w:1"})
	watchOneMaster(t, m, s)
	obs := tn.connect(t)
	svc, err := obs.Service(ctxT(t, 10*time.Second), "f")
	if err != nil {
		t.Fatal(err)
	}
	web, err := obs.Service(ctxT(t, 10*time.Second), "web")
	if err != nil {
		t.Fatal(err)
	}
	tok := fencingToken(m)
	if tok == 0 {
		t.Fatal("m1 is not master")
	}
	for _, crash := range []bool{false, true} {
		leader := c.Servers.WaitTenantLeader(tn.name)
		start := time.Now()
		if crash {
			c.Servers.AbortNode(leader)
		} else {
			c.Servers.StopNode(leader)
		}
		for deadline := time.Now().Add(15 * time.Second); c.Servers.TenantLeader(tn.name) == 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("crash=%v: no node answers the tenant's sessions 15s after its leader stopped:%s", crash, tenantState(c, tn.name))
			}
		}
		eventually(t, 10*time.Second, "m1 master again", m.IsMaster)
		// Past drop_grace and the lease: nothing expired meanwhile.
		throughout(t, time.Until(start.Add(2500*time.Millisecond)), func() error {
			if s.IsMaster() {
				return errors.New("a standby was granted during a server failover")
			}
			return nil
		})
		eventually(t, 5*time.Second, "m1 master", m.IsMaster)
		if got := fencingToken(m); got != tok {
			t.Fatalf("token %d after failover, want %d", got, tok)
		}
		if master, ok := svc.Master(); !ok || master.Instance != "m1" || master.FencingToken != tok {
			t.Fatalf("observer sees master %+v", master)
		}
		if len(svc.Instances()) != 2 || len(web.Instances()) != 1 {
			t.Fatalf("after failover: f %v, web %v", ids(svc.Instances()), ids(web.Instances()))
		}
		var suspended time.Duration
		var since time.Time
		for _, ch := range r.all() {
			if ch.At.Before(start) {
				continue
			}
			switch {
			case ch.Role == sdk.Suspended:
				since = ch.At
			case ch.Role == sdk.Master && !since.IsZero():
				suspended += ch.At.Sub(since)
				since = time.Time{}
			}
		}
		t.Logf("crash=%v: master suspended for %v in total", crash, suspended)
		c.Servers.StartNode(leader)
		c.Servers.WaitReady()
		eventually(t, 20*time.Second, "the restarted node to run the tenant", func() bool {
			srv := c.Servers.Server(leader)
			if srv == nil {
				return false
			}
			tr, ok := srv.Node().Tenant(tn.name)
			if !ok {
				return false
			}
			_, _, known := tr.Leader()
			return known
		})
	}
	if err := m.Leave(ctxT(t, 10*time.Second)); err != nil && !errors.Is(err, sdk.ErrLeft) {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "m2 to take over after the leave", s.IsMaster)
}

// tenantState describes each running node's view of a tenant's shard, for
// failures.
func tenantState(c *sdktest.Cluster, name string) string {
	out := ""
	for n := 1; n <= len(c.Servers.Addrs()); n++ {
		srv := c.Servers.Server(n)
		if srv == nil {
			out += fmt.Sprintf("\n  node %d: stopped", n)
			continue
		}
		tr, ok := srv.Node().Tenant(name)
		if !ok {
			out += fmt.Sprintf("\n  node %d: no replica", n)
			continue
		}
		leader, term, known := tr.Leader()
		sterm, leading := tr.Sessions.Term()
		out += fmt.Sprintf("\n  node %d: raft leader %d term %d known %v local %v; session manager term %d leading %v; barrier term %d",
			n, leader, term, known, tr.LeaderIsLocal(), sterm, leading, tr.SM.BarrierTerm())
	}
	return out
}

// TestSlowJoinKeepsSession: a registration that takes longer than the
// session's TTL (a loaded server) does not lose the session it was made
// under: the member keeps the session alive while it joins.
func TestSlowJoinKeepsSession(t *testing.T) {
	c := sdktest.Start(t)
	const ttl = 3 * time.Second
	var mu sync.Mutex
	var until time.Time // registrations wait until then
	proxy := newFrontProxy(t, c.Servers.Addrs()[0], func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/instances/") {
			mu.Lock()
			if until.IsZero() {
				until = time.Now().Add(ttl + ttl/2) // past the TTL, retries included
			}
			wait := time.Until(until)
			mu.Unlock()
			time.Sleep(wait)
		}
		return false
	})

	ctx := ctxT(t, 30*time.Second)
	m, err := sdk.Join(ctx, sdk.Instance{Service: "slow", ID: "s1", Address: "10.0.0.1:80"},
		sdk.WithServers(proxy.addr), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token),
		sdk.WithTTL(ttl), sdk.WithDrainDelay(0))
	if err != nil {
		t.Fatalf("a join slower than the TTL failed: %v", err)
	}
	defer m.Leave(context.Background())
	mu.Lock()
	delayed := !until.IsZero()
	mu.Unlock()
	if !delayed {
		t.Fatal("the registration was not delayed")
	}
	svc, err := c.Connect(t).Service(ctx, "slow")
	if err != nil {
		t.Fatal(err)
	}
	// Another client's cache, filled from any node: it follows shortly.
	eventually(t, 5*time.Second, "s1 registered", func() bool { _, ok := svc.Snapshot().Instance("s1"); return ok })
}

// TestJoinAfterSessionLoss: when the servers end the session a member is
// joining under — none of its keepalives arrived within the TTL — before
// its registration or its stream got through, Join starts again under a
// new session (the same instance ID) instead of failing.
func TestJoinAfterSessionLoss(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	const ttl = 3 * time.Second // the shortest a tenant may ask for
	for _, held := range []string{"/instances/", "/stream"} {
		t.Run(strings.Trim(held, "/"), func(t *testing.T) {
			var mu sync.Mutex
			var first string // the first session opened through the proxy
			var opened time.Time
			sessions := map[string]bool{}
			proxy := newFrontProxy(t, c.Servers.Addrs()[0], func(w http.ResponseWriter, r *http.Request) bool {
				sid := sessionOf(r)
				mu.Lock()
				if _, ok := opensSession(r); ok {
					sessions[sid] = true
					if first == "" {
						first, opened = sid, time.Now()
					}
				}
				lost := sid != "" && sid == first
				until := opened.Add(ttl + ttl/2) // the servers have ended it by then
				mu.Unlock()
				return lost && loseSession(w, r, strings.Contains(r.URL.Path, held), until)
			})

			ctx := ctxT(t, 30*time.Second)
			m, err := sdk.Join(ctx, sdk.Instance{Service: "lost", ID: "l-" + strings.Trim(held, "/"), Address: "10.0.0.1:80"},
				sdk.WithServers(proxy.addr), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token),
				sdk.WithTTL(ttl), sdk.WithDrainDelay(0))
			if err != nil {
				t.Fatalf("Join after the servers ended its first session: %v", err)
			}
			defer m.Leave(context.Background())
			mu.Lock()
			n, firstID := len(sessions), first
			mu.Unlock()
			if n != 2 {
				t.Fatalf("%d sessions opened, want 2 (the lost one, then its replacement)", n)
			}
			svc, err := c.Connect(t).Service(ctx, "lost")
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "the instance registered under the new session", func() bool {
				in, ok := svc.Snapshot().Instance(m.ID())
				return ok && in.SessionTag != "" && in.SessionTag != api.SessionTag(firstID)
			})
		})
	}
}

// TestJoinAfterSessionForgotten: a tenant remembers only its last
// fsm.MaxTombstones ended sessions, so after a storm of expiries (10,000
// members joining an overloaded cluster) the registration of a joining
// member can be refused with not_found — the session it opened is not
// known, not even by its tombstone. Join takes that as the session's end
// and starts again under a new one, as it does on session_expired.
// Forgetting takes 10,000 ended sessions; the proxy answers the refusal
// the servers give then, word for word.
func TestJoinAfterSessionForgotten(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	var mu sync.Mutex
	var first string
	sessions := map[string]bool{}
	proxy := newFrontProxy(t, c.Servers.Addrs()[0], func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		if sid, ok := opensSession(r); ok {
			sessions[sid] = true
			if first == "" {
				first = sid
			}
		}
		forgotten := first != "" && r.Header.Get(api.HeaderSession) == first
		mu.Unlock()
		if forgotten && r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/instances/") {
			answer(w, api.Errorf(api.CodeNotFound, "write 1 names session %s, which is not known", api.SessionTag(first)))
			return true
		}
		return false
	})

	ctx := ctxT(t, 30*time.Second)
	m, err := sdk.Join(ctx, sdk.Instance{Service: "forgotten", ID: "f1", Address: "10.0.0.1:80"},
		sdk.WithServers(proxy.addr), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token),
		sdk.WithDrainDelay(0))
	if err != nil {
		t.Fatalf("Join whose first session was forgotten: %v", err)
	}
	defer m.Leave(context.Background())
	mu.Lock()
	n := len(sessions)
	mu.Unlock()
	if n != 2 {
		t.Fatalf("%d sessions opened, want 2 (the forgotten one, then its replacement)", n)
	}
}

// TestWatchOnCutOffReplica: a watch parked on a server cut off from the
// others (it has applied everything it knows: not behind) is told so when
// its wait ends (503 stale_replica), and the cache is marked stale — not
// served as fresh for as long as the partition lasts — and never emptied.
func TestWatchOnCutOffReplica(t *testing.T) {
	c := sdktest.Start(t)
	tn := &tenant{c: c, name: c.Tenant, tok: c.Token}
	tn.join(t, sdk.Instance{Service: "web", ID: "w1", Address: "w:1"})
	obs, err := sdk.Connect(ctxT(t, 10*time.Second), sdk.WithServers(c.Servers.Addr(3)), sdk.WithTenant(c.Tenant),
		sdk.WithToken(c.Token), sdk.WithWatchWait(time.Second),
		sdk.WithClientStream(false)) // blocking queries: their wait bounds the check (a stream's server checks every 30 s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { obs.Close() })
	svc, err := obs.Service(ctxT(t, 10*time.Second), "web")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // a wait ended on a connected replica: fresh
	if svc.Stale() || len(svc.Instances()) != 1 {
		t.Fatalf("connected: stale %v, %d instances", svc.Stale(), len(svc.Instances()))
	}
	c.Servers.AbortNode(1)
	c.Servers.AbortNode(2)
	eventually(t, 10*time.Second, "the cache on the cut-off server to be marked stale", svc.Stale)
	if n := len(svc.Instances()); n != 1 {
		t.Fatalf("a stale cache holds %d instances, want the last known 1", n)
	}
}
