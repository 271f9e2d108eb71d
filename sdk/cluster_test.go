package sdk_test

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestCluster runs the behaviours that do not hurt the servers on one
// shared cluster, each in a tenant of its own.
func TestCluster(t *testing.T) {
	c := sdktest.Start(t)
	tests := []behaviour{
		{"CacheFollowsMembership", testCacheFollows, api.Quotas{}},
		{"ReadYourWrites", testReadYourWrites, api.Quotas{}},
		{"Watch", testWatch, api.Quotas{}},
		{"TwoStepFarm", testTwoStepFarm, api.Quotas{}},
		{"OperatorState", testOperatorState, api.Quotas{}},
		{"ErrorsAcrossTheWire", testErrors, api.Quotas{MaxInstances: 1}},
		{"MasterStandby", testMasterStandby, api.Quotas{}},
		{"Releasing", testReleasing, api.Quotas{}},
		{"PausedMaster", testPausedMaster, api.Quotas{}},
		{"ColdStartAndTwoStep", testColdStart, api.Quotas{}},
		{"ResignAlone", testResignAlone, api.Quotas{}},
	}
	// Each behaviour twice: over REST and session streams, and over the
	// client stream (WithClientStream: watches, attaches and batched
	// keepalives on one stream per Client).
	runBehaviours(t, c, "t", tests)
}

// testCacheFollows: the cache follows joins, weight changes, leaves and
// session expiry, and balancers follow the cache.
func testCacheFollows(t *testing.T, tn *tenant) {
	cl := tn.connect(t)
	svc, err := cl.Service(ctxT(t, 10*time.Second), "web")
	if err != nil {
		t.Fatal(err)
	}
	b := svc.Balancer(balancer.RoundRobin())
	if _, err := b.Pick(); !errors.Is(err, sdk.ErrNoEndpoints) {
		t.Fatalf("Pick() on an empty service = %v, want ErrNoEndpoints", err)
	}
	m1 := tn.join(t, sdk.Instance{Service: "web", ID: "w1", Address: "10.0.0.1:80", Zone: "z1", Meta: map[string]string{"v": "1"}})
	m2 := tn.join(t, sdk.Instance{Service: "web", ID: "w2", Address: "10.0.0.2:80"})
	picked := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			if e, err := b.Pick(); err == nil {
				got[e.ID]++
			}
		}
		return got
	}
	eventually(t, 5*time.Second, "both instances in the balancer", func() bool { return len(picked(10)) == 2 })
	in, _ := svc.Snapshot().Instance("w1")
	if in.Address != "10.0.0.1:80" || in.Zone != "z1" || in.Meta["v"] != "1" || in.Weight != sdk.DefaultWeight || in.State != api.StateReady {
		t.Fatalf("w1 in the cache = %+v", in)
	}

	// Weight 0: listed, never picked.
	if err := m1.Update(ctxT(t, 10*time.Second), sdk.SetWeight(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "w1 out of rotation", func() bool {
		p := picked(10)
		return p["w1"] == 0 && p["w2"] == 10
	})
	if err := m1.Update(ctxT(t, 10*time.Second), sdk.SetWeight(50), sdk.SetMeta(map[string]string{"v": "2"})); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "w1 back with weight 50", func() bool {
		in, _ := svc.Snapshot().Instance("w1")
		return in.Weight == 50 && in.Meta["v"] == "2" && len(picked(10)) == 2
	})

	// Leave: draining first (out of balancers), then gone.
	left := make(chan error, 1)
	go func() { left <- m2.Leave(ctxT(t, 10*time.Second)) }()
	eventually(t, 5*time.Second, "w2 draining", func() bool {
		in, ok := svc.Snapshot().Instance("w2")
		return ok && in.State == api.StateDraining && picked(10)["w2"] == 0
	})
	if err := <-left; err != nil {
		t.Fatalf("Leave() = %v", err)
	}
	eventually(t, 5*time.Second, "w2 gone", func() bool { _, ok := svc.Snapshot().Instance("w2"); return !ok })
	if m2.Role() != sdk.Left || m2.Err() != sdk.ErrLeft {
		t.Fatalf("after Leave: role %v err %v", m2.Role(), m2.Err())
	}
	select {
	case <-m2.Done():
	default:
		t.Fatal("Done not closed after Leave")
	}

	// A crash (the stream closes, nothing else said): the session ends
	// after drop_grace and the cache drops the instance.
	m3 := tn.join(t, sdk.Instance{Service: "web", ID: "w3", Address: "10.0.0.3:80"})
	eventually(t, 5*time.Second, "w3 in the cache", func() bool { _, ok := svc.Snapshot().Instance("w3"); return ok })
	crashed := time.Now()
	sdk.Crash(m3)
	eventually(t, 5*time.Second, "w3 gone after its session ended", func() bool { _, ok := svc.Snapshot().Instance("w3"); return !ok })
	if d := time.Since(crashed); d > 3*time.Second {
		t.Fatalf("a crashed member left the cache after %v, want about drop_grace (0.5s)", d)
	}
	if got := ids(svc.Instances()); !slices.Equal(got, []string{"w1"}) {
		t.Fatalf("instances %v, want [w1]", got)
	}
	if svc.Stale() {
		t.Fatal("service stale with every server up")
	}
}

// testReadYourWrites: after Join and Update return, the joining Client's
// cache holds the write, watched or not yet watched.
func testReadYourWrites(t *testing.T, tn *tenant) {
	cl := tn.connect(t)
	svc, err := cl.Service(ctxT(t, 10*time.Second), "ryw")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		id := "r" + string(rune('0'+i))
		m, err := cl.Join(ctxT(t, 10*time.Second), sdk.Instance{Service: "ryw", ID: id, Address: "a:1"}, sdk.WithDrainDelay(0))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := svc.Snapshot().Instance(id); !ok {
			t.Fatalf("Join(%s) returned but the client's cache does not hold it (index %d)", id, svc.Index())
		}
		if err := m.Update(ctxT(t, 10*time.Second), sdk.SetWeight(7)); err != nil {
			t.Fatal(err)
		}
		if in, _ := svc.Snapshot().Instance(id); in.Weight != 7 {
			t.Fatalf("Update returned but the cache shows weight %d", in.Weight)
		}
	}
	// A service the client did not watch when it joined.
	if _, err := cl.Join(ctxT(t, 10*time.Second), sdk.Instance{Service: "later", ID: "l1", Address: "a:1"}, sdk.WithDrainDelay(0)); err != nil {
		t.Fatal(err)
	}
	later, err := cl.Service(ctxT(t, 10*time.Second), "later")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := later.Snapshot().Instance("l1"); !ok {
		t.Fatal("first fill of a service misses the client's own earlier join")
	}
	// Close leaves every member joined through the client.
	if err := cl.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	obs := tn.connect(t)
	s2, err := obs.Service(ctxT(t, 10*time.Second), "ryw")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "members gone after Close", func() bool { return len(s2.Instances()) == 0 })
}

// testWatch: Watch yields the current snapshot, then each change.
func testWatch(t *testing.T, tn *tenant) {
	cl := tn.connect(t)
	svc, err := cl.Service(ctxT(t, 10*time.Second), "w")
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 20*time.Second)
	snaps := make(chan sdk.Snapshot, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for s := range svc.Watch(ctx) {
			snaps <- s
			if len(s.Ready()) == 2 {
				return
			}
		}
	}()
	first := <-snaps
	if len(first.Instances) != 0 || first.Service != "w" {
		t.Fatalf("first snapshot %+v, want the empty service", first)
	}
	tn.join(t, sdk.Instance{Service: "w", ID: "a", Address: "a:1"})
	tn.join(t, sdk.Instance{Service: "w", ID: "b", Address: "b:1"})
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Watch did not yield a snapshot with both instances")
	}
	var last uint64
	close(snaps)
	for s := range snaps {
		if s.Index < last {
			t.Fatalf("snapshot index went back: %d after %d", s.Index, last)
		}
		last = s.Index
	}
}

// testTwoStepFarm: a member joined with two-step startup is listed but
// never picked until Ready.
func testTwoStepFarm(t *testing.T, tn *tenant) {
	cl := tn.connect(t)
	svc, err := cl.Service(ctxT(t, 10*time.Second), "ts")
	if err != nil {
		t.Fatal(err)
	}
	b := svc.Balancer(balancer.MonteCarlo())
	var r roles
	m := tn.join(t, sdk.Instance{Service: "ts", ID: "s1", Address: "a:1"}, sdk.WithTwoStepStartup(), sdk.WithRoleChange(r.record))
	if m.Role() != sdk.Starting {
		t.Fatalf("Role() = %v, want starting", m.Role())
	}
	eventually(t, 5*time.Second, "s1 listed as starting", func() bool {
		in, ok := svc.Snapshot().Instance("s1")
		return ok && in.State == api.StateStarting
	})
	if _, err := b.Pick(); !errors.Is(err, sdk.ErrNoEndpoints) {
		t.Fatalf("Pick() with only a starting instance = %v, want ErrNoEndpoints", err)
	}
	if err := m.Ready(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if m.Role() != sdk.Standby {
		t.Fatalf("Role() after Ready = %v, want standby (a ready farm member)", m.Role())
	}
	eventually(t, 5*time.Second, "s1 picked", func() bool { e, err := b.Pick(); return err == nil && e.ID == "s1" })
	eventually(t, time.Second, "role changes delivered", func() bool { return len(r.all()) >= 2 })
	if got := r.all(); got[0].Role != sdk.Starting || got[0].Previous != sdk.Starting || got[1].Role != sdk.Standby {
		t.Fatalf("role changes %v, want the replay of starting, then standby", &r)
	}
}

// testErrors: errors decoded from the wire match the SDK's sentinels.
func testErrors(t *testing.T, tn *tenant) {
	tn.join(t, sdk.Instance{Service: "q", ID: "q1", Address: "a:1"})
	_, err := sdk.Join(ctxT(t, 10*time.Second), sdk.Instance{Service: "q", ID: "q2", Address: "a:1"}, tn.opts()...)
	if !errors.Is(err, sdk.ErrQuotaExceeded) {
		t.Fatalf("Join over max_instances = %v, want ErrQuotaExceeded", err)
	}
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Quota != "max_instances" || ae.Limit != 1 {
		t.Fatalf("quota error %+v, want max_instances limit 1", ae)
	}
	_, err = sdk.Connect(ctxT(t, 10*time.Second), tn.c.TenantOptions(tn.name, "rft_"+tn.name+"_notthetoken0000000000000000000000000")...)
	if !errors.Is(err, sdk.ErrUnauthorized) {
		t.Fatalf("Connect with a bad token = %v, want ErrUnauthorized", err)
	}
	_, err = sdk.Connect(ctxT(t, 10*time.Second), tn.c.TenantOptions("nosuch", tn.tok)...)
	if !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Connect to another tenant's path = %v, want ErrNotFound", err)
	}
	cl := tn.connect(t)
	if _, err := cl.Service(ctxT(t, time.Second), "bad name"); !errors.Is(err, sdk.ErrBadRequest) {
		t.Fatalf("Service(bad name) = %v, want ErrBadRequest", err)
	}
	if _, err := cl.Join(ctxT(t, time.Second), sdk.Instance{Service: "q"}, sdk.WithTenant("x")); err == nil {
		t.Fatal("(*Client).Join accepted a connection option")
	}
	_, err = sdk.Connect(ctxT(t, time.Second), sdk.WithServers(), sdk.WithTenant("x"), sdk.WithToken("y"))
	if !errors.Is(err, sdk.ErrNoServers) {
		t.Fatalf("Connect with no servers = %v, want ErrNoServers", err)
	}
	if r := tn.rest(t, http.MethodGet, "/services/q", nil); r.Status != http.StatusOK {
		t.Fatalf("GET service = %d", r.Status)
	}
}

// testOperatorState: an operator drains a farm member through the REST API
// (without its session). The member reports Draining, and its own later
// writes keep the drain: an Update of its weight, and its registration
// under a new session when the servers ended the old one. The operator's
// undoing is followed too.
func testOperatorState(t *testing.T, tn *tenant) {
	var r roles
	m := tn.join(t, sdk.Instance{Service: "op", ID: "o1", Address: "a:1"}, sdk.WithRoleChange(r.record))
	listed := func() (api.Instance, bool) {
		t.Helper()
		var got api.ServiceResponse
		tn.rest(t, http.MethodGet, "/services/op?consistent=true", nil).JSON(t, &got)
		if len(got.Instances) != 1 {
			return api.Instance{}, false
		}
		return got.Instances[0], true
	}
	server := func() api.Instance {
		t.Helper()
		in, ok := listed()
		if !ok {
			t.Fatal("o1 is not listed")
		}
		return in
	}
	operator := func(state api.State) {
		t.Helper()
		w := 100
		res := tn.rest(t, http.MethodPut, "/services/op/instances/o1",
			api.RegisterRequest{Address: "a:1", State: state, Weight: &w})
		if res.Status >= 300 {
			t.Fatalf("operator sets %s: %d %s", state, res.Status, res.Body)
		}
	}

	// Keepalives paused: the session's stream tells the member, at once.
	sdk.PauseKeepalives(m, true)
	operator(api.StateDraining)
	eventually(t, 3*time.Second, "the member to see the drain", func() bool { return m.Role() == sdk.Draining })
	// Role reads at once; callbacks follow on their own goroutine.
	eventually(t, 3*time.Second, "the drain reported to OnRoleChange", func() bool {
		_, ok := r.firstAt(sdk.Draining, time.Time{})
		return ok
	})
	sdk.PauseKeepalives(m, false)
	if err := m.Update(ctxT(t, 10*time.Second), sdk.SetWeight(7)); err != nil {
		t.Fatal(err)
	}
	if in := server(); in.State != api.StateDraining || in.Weight != 7 {
		t.Fatalf("after the member's Update: %+v, want draining with weight 7", in)
	}

	// The servers end the session: the member registers again, drained.
	old := sdk.SessionID(m)
	if res := tn.rest(t, http.MethodDelete, "/sessions/"+old, nil); res.Status != http.StatusNoContent {
		t.Fatalf("DELETE session = %d %s", res.Status, res.Body)
	}
	eventually(t, 10*time.Second, "a registration under a new session", func() bool {
		in, ok := listed()
		return ok && in.SessionTag != api.SessionTag(old)
	})
	if in := server(); in.State != api.StateDraining || m.Role() != sdk.Draining {
		t.Fatalf("after a new session: %+v, role %v; want still draining", in, m.Role())
	}

	operator(api.StateReady)
	eventually(t, 5*time.Second, "the member to see the undoing", func() bool { return m.Role() == sdk.Standby })

	// Someone deregisters the live member: it registers again, as it was,
	// told by its stream (keepalives paused) or else by a keepalive.
	sdk.PauseKeepalives(m, true)
	if res := tn.rest(t, http.MethodDelete, "/services/op/instances/o1", nil); res.Status != http.StatusNoContent {
		t.Fatalf("DELETE instance = %d %s", res.Status, res.Body)
	}
	tag := api.SessionTag(sdk.SessionID(m))
	eventually(t, 3*time.Second, "o1 registered again under its session", func() bool {
		in, ok := listed()
		return ok && in.SessionTag == tag && in.State == api.StateReady && in.Weight == 7
	})
	sdk.PauseKeepalives(m, false)
}
