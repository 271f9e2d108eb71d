package sdk_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestServiceBalancer runs the behaviours of Service.Balancer on one
// shared single-node cluster, each in a service of its own.
func TestServiceBalancer(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	tn := &tenant{c: c, name: c.Tenant, tok: c.Token}
	cl := tn.connect(t)
	t.Run("OnePerPolicy", func(t *testing.T) { testBalancerOnePerPolicy(t, tn, cl) })
	t.Run("PerRequest", func(t *testing.T) { testBalancerPerRequest(t, tn, cl) })
	t.Run("NotReady", func(t *testing.T) { testBalancerNotReady(t, tn, cl) })
	t.Run("Do", func(t *testing.T) { testBalancerDo(t, tn, cl) })
}

func service(t *testing.T, cl *sdk.Client, name string) *sdk.Service {
	t.Helper()
	svc, err := cl.Service(ctxT(t, 10*time.Second), name)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// testBalancerOnePerPolicy: asking again with an equal policy returns the
// same Balancer; nil is RoundRobin.
func testBalancerOnePerPolicy(t *testing.T, tn *tenant, cl *sdk.Client) {
	svc := service(t, cl, "one")
	tn.join(t, sdk.Instance{Service: "one", ID: "o1", Address: "10.0.0.1:80"})
	tests := []struct {
		name string
		p, q balancer.Policy
	}{
		{"RoundRobin", balancer.RoundRobin(), balancer.RoundRobin()},
		{"nil", nil, balancer.RoundRobin()},
		{"LeastLoaded", balancer.LeastLoaded(), balancer.LeastLoaded()},
		{"MonteCarlo", balancer.MonteCarlo(), balancer.MonteCarlo()},
		{"MonteCarloSeed", balancer.MonteCarloSeed(9), balancer.MonteCarloSeed(9)},
	}
	seen := map[*balancer.Balancer]string{}
	for _, tt := range tests {
		b := svc.Balancer(tt.p)
		if again := svc.Balancer(tt.q); again != b {
			t.Errorf("%s: Balancer() twice = %p, %p, want one Balancer", tt.name, b, again)
		}
		if other, ok := seen[b]; ok && tt.name != "nil" {
			t.Errorf("%s: the Balancer of %s", tt.name, other)
		}
		seen[b] = tt.name
		eventually(t, 5*time.Second, "o1 picked", func() bool { e, err := b.Pick(); return err == nil && e.ID == "o1" })
	}
	if n := testing.AllocsPerRun(1000, func() { svc.Balancer(balancer.LeastLoaded()) }); n != 0 {
		t.Errorf("Balancer(LeastLoaded()) asked again allocates %v times, want 0", n)
	}
}

// testBalancerPerRequest is the leak: a Balancer asked for per request,
// 200,000 times, kept 74 MB. Now the built-in policy's is one Balancer,
// and a custom policy's that the caller dropped are collected.
func testBalancerPerRequest(t *testing.T, tn *tenant, cl *sdk.Client) {
	svc := service(t, cl, "perreq")
	for _, id := range []string{"p1", "p2", "p3"} {
		tn.join(t, sdk.Instance{Service: "perreq", ID: id, Address: "10.0.0.1:80"})
	}
	first := svc.Balancer(balancer.LeastLoaded())
	eventually(t, 5*time.Second, "3 endpoints", func() bool { return len(first.Endpoints()) == 3 })

	before := heap()
	for i := range 200_000 {
		b := svc.Balancer(balancer.LeastLoaded())
		if b != first {
			t.Fatalf("call %d: Balancer(LeastLoaded()) = %p, want the first one, %p", i, b, first)
		}
		_, d, err := b.PickTracked()
		if err != nil {
			t.Fatal(err)
		}
		d.Finish(nil)
	}
	if grew := heap() - before; grew > 2<<20 {
		t.Errorf("200,000 Balancer(LeastLoaded()) calls kept %d bytes, want under 2 MiB", grew)
	}

	// A Func is not comparable: each call makes a Balancer, which must go
	// once dropped.
	pick := balancer.Func(func(eps []balancer.Endpoint) (balancer.Endpoint, error) { return eps[0], nil })
	before = heap()
	for range 20_000 {
		if _, err := svc.Balancer(pick).Pick(); err != nil {
			t.Fatal(err)
		}
	}
	var grew int64
	eventually(t, 10*time.Second, "the dropped Balancers collected", func() bool {
		grew = heap() - before
		return grew < 1<<20
	})
	// And a custom Balancer kept is kept current.
	kept := svc.Balancer(pick)
	tn.join(t, sdk.Instance{Service: "perreq", ID: "p4", Address: "10.0.0.1:80"})
	eventually(t, 5*time.Second, "the kept custom Balancer updated", func() bool { return len(kept.Endpoints()) == 4 })
}

// heap returns the bytes in use on the heap after a collection.
func heap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC() // a second time: cleanups of the first may free more
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// testBalancerNotReady: the error of a pick names the service and counts
// its instances that are not ready.
func testBalancerNotReady(t *testing.T, tn *tenant, cl *sdk.Client) {
	svc := service(t, cl, "orders")
	early := svc.Balancer(balancer.LeastLoaded()) // before any instance
	_, err := early.Pick()
	if want := `sdk: service "orders": no endpoints to pick (0 registered)`; !errors.Is(err, sdk.ErrNoEndpoints) || err.Error() != want {
		t.Errorf("Pick() on an empty service = %v, want %q", err, want)
	}
	m1 := tn.join(t, sdk.Instance{Service: "orders", ID: "r1", Address: "10.0.0.1:80"}, sdk.WithTwoStepStartup())
	tn.join(t, sdk.Instance{Service: "orders", ID: "r2", Address: "10.0.0.2:80"}, sdk.WithTwoStepStartup())
	want := `sdk: service "orders": no endpoints to pick (2 registered, 2 not ready: starting/draining/weight 0)`
	eventually(t, 5*time.Second, "two instances starting", func() bool { return len(svc.Instances()) == 2 })
	for _, b := range []*balancer.Balancer{early, svc.Balancer(balancer.RoundRobin()), svc.Balancer(balancer.MonteCarlo())} {
		eventually(t, 5*time.Second, "the error counting them", func() bool {
			_, err := b.Pick()
			return err != nil && err.Error() == want
		})
		_, err := b.Pick()
		if !errors.Is(err, sdk.ErrNoEndpoints) || !errors.Is(err, balancer.ErrNoEndpoints) {
			t.Errorf("Pick() = %v, want errors.Is ErrNoEndpoints", err)
		}
		if n := testing.AllocsPerRun(100, func() { b.Pick() }); n != 0 {
			t.Errorf("Pick() with no endpoint allocates %v times, want 0", n)
		}
	}
	err = balancer.Do(ctxT(t, 5*time.Second), early, 3, func(context.Context, balancer.Endpoint) error {
		t.Error("fn called with no endpoint ready")
		return nil
	})
	if err == nil || err.Error() != want {
		t.Errorf("Do() = %v, want %q", err, want)
	}
	if err := m1.Ready(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "r1 picked", func() bool { e, err := early.Pick(); return err == nil && e.ID == "r1" })
	if _, _, err := early.PickExcept("r1"); err == nil ||
		err.Error() != `sdk: service "orders": no endpoints to pick (2 registered, 1 not ready: starting/draining/weight 0, 1 excluded)` {
		t.Errorf("PickExcept(r1) = %v, want the one ready excluded, the other not ready", err)
	}
}

// testBalancerDo: Do over a Service's Balancer never calls one instance
// twice, and skips the dead one.
func testBalancerDo(t *testing.T, tn *tenant, cl *sdk.Client) {
	svc := service(t, cl, "farm")
	for _, id := range []string{"f1", "f2", "f3"} {
		tn.join(t, sdk.Instance{Service: "farm", ID: id, Address: id + ":80", Mode: sdk.Farm})
	}
	b := svc.Balancer(balancer.LeastLoaded())
	eventually(t, 5*time.Second, "3 endpoints", func() bool { return len(b.Endpoints()) == 3 })
	for i := range 100 {
		var tried []string
		err := balancer.Do(ctxT(t, 5*time.Second), b, 3, func(_ context.Context, e balancer.Endpoint) error {
			for _, id := range tried {
				if id == e.ID {
					t.Fatalf("call %d: %s tried twice", i, id)
				}
			}
			tried = append(tried, e.ID)
			if e.ID == "f2" {
				return balancer.StatusError(503)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("call %d: Do() = %v", i, err)
		}
	}
	if st := b.Stats(); st.InFlight != 0 || st.Ejected != 1 {
		t.Errorf("Stats() = %+v, want none in flight and f2 ejected", st)
	}
}
