package balancer_test

import (
	"errors"
	"math"
	"testing"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/balancer/balancertest"
)

// TestPickExcept: each policy picks the way it does among the endpoints
// it is not told to avoid.
func TestPickExcept(t *testing.T) {
	const n = 30_000
	t.Run("RoundRobin", func(t *testing.T) {
		b := balancer.New(balancer.RoundRobin())
		b.Update(balancertest.Endpoints("e", 4))
		got := map[string]int{}
		for range n {
			e, d, err := b.PickExcept("e1")
			if err != nil {
				t.Fatal(err)
			}
			d.Finish(nil)
			got[e.ID]++
		}
		// e1's turn goes to e2: e2 gets twice the others' share.
		if got["e1"] != 0 || got["e0"] != n/4 || got["e3"] != n/4 || got["e2"] != n/2 {
			t.Errorf("PickExcept(e1) %d times picked %v, want e0 and e3 %d times each, e2 %d", n, got, n/4, n/2)
		}
	})
	t.Run("MonteCarlo", func(t *testing.T) {
		b := balancer.New(balancer.MonteCarloSeed(7))
		b.Update(withWeights(100, 100, 200, 700)) // e3 holds 70% of the weight
		for _, avoid := range [][]string{{"e0"}, {"e3"}, {"e3", "e2"}} {
			got := map[string]int{}
			for range n {
				e, d, err := b.PickExcept(avoid...)
				if err != nil {
					t.Fatal(err)
				}
				d.Finish(nil)
				got[e.ID]++
			}
			weights := map[string]float64{"e0": 100, "e1": 100, "e2": 200, "e3": 700}
			var sum float64
			for _, id := range avoid {
				delete(weights, id)
			}
			for _, w := range weights {
				sum += w
			}
			for _, id := range avoid {
				if got[id] != 0 {
					t.Errorf("PickExcept(%v) picked %s %d times", avoid, id, got[id])
				}
			}
			for id, w := range weights {
				if want := n * w / sum; math.Abs(float64(got[id])-want) > 0.05*want+50 {
					t.Errorf("PickExcept(%v) picked %s %d times in %d, want about %.0f (by weight)", avoid, id, got[id], n, want)
				}
			}
		}
	})
	t.Run("LeastLoaded", func(t *testing.T) {
		b := balancer.New(balancer.LeastLoaded())
		b.Update(balancertest.Endpoints("e", 3))
		held := hold(t, b, "e0") // e0 is busy, e1 excluded: e2 every time
		for range 1000 {
			e, d, err := b.PickExcept("e1")
			if err != nil || e.ID != "e2" {
				t.Fatalf("PickExcept(e1) = %v, %v with e0 busy, want e2", e, err)
			}
			d.Finish(nil)
		}
		held.Finish(nil)
		// e2 is busy: of e0 and e2, e0 always.
		held = hold(t, b, "e2")
		for range 1000 {
			e, d, err := b.PickExcept("e1")
			if err != nil || e.ID != "e0" {
				t.Fatalf("PickExcept(e1) = %v, %v with e2 busy, want e0", e, err)
			}
			d.Finish(nil)
		}
		held.Finish(nil)
	})
	t.Run("Func", func(t *testing.T) {
		// A policy that always picks the first endpoint: PickExcept asks
		// it again, then takes the first endpoint not excluded.
		b := balancer.New(balancer.Func(first))
		b.Update(balancertest.Endpoints("e", 3))
		for _, tt := range []struct {
			avoid []string
			want  string
		}{{nil, "e0"}, {[]string{"e0"}, "e1"}, {[]string{"e0", "e1"}, "e2"}, {[]string{"e1"}, "e0"}} {
			if e, _, err := b.PickExcept(tt.avoid...); err != nil || e.ID != tt.want {
				t.Errorf("PickExcept(%v) = %v, %v, want %s", tt.avoid, e, err, tt.want)
			}
		}
	})
	t.Run("Custom", func(t *testing.T) {
		b := balancer.New(ZoneFirst("zone-0")) // e0 and e3 are in zone-0
		b.Update(balancertest.Endpoints("e", 4))
		got := map[string]int{}
		for range 1000 {
			e, _, err := b.PickExcept("e0")
			if err != nil {
				t.Fatal(err)
			}
			got[e.ID]++
		}
		if got["e3"] != 1000 {
			t.Errorf("PickExcept(e0) picked %v, want e3, the other one of the zone, every time", got)
		}
		if e, _, err := b.PickExcept("e0", "e3"); err != nil || e.ID != "e1" {
			t.Errorf("PickExcept(e0, e3) = %v, %v, want e1: the zone has none left, so the first of the list", e, err)
		}
	})
}

// TestPickExceptEjected: PickExcept prefers an endpoint that is not
// ejected, and fails open to one that is when no other is left.
func TestPickExceptEjected(t *testing.T) {
	for _, tt := range ejecting {
		b := balancer.New(tt.p)
		b.Update(balancertest.Endpoints("e", 3))
		report(t, b, "e2", errDown, balancer.EjectAfter)
		for range 1000 {
			e, d, err := b.PickExcept("e0")
			if err != nil || e.ID != "e1" {
				t.Fatalf("%s: PickExcept(e0) = %v, %v with e2 ejected, want e1", tt.name, e, err)
			}
			d.Release()
		}
		for range 100 {
			e, d, err := b.PickExcept("e0", "e1")
			if err != nil || e.ID != "e2" {
				t.Fatalf("%s: PickExcept(e0, e1) = %v, %v, want e2, ejected, as the only one left", tt.name, e, err)
			}
			d.Release()
		}
	}
}

func TestPickExceptAll(t *testing.T) {
	for _, tt := range retrying {
		b := balancer.New(tt.p, balancer.WithName("orders"))
		eps := balancertest.Endpoints("e", 3)
		eps = append(eps, balancer.Endpoint{ID: "w0", Weight: 0})
		b.Update(eps)
		_, d, err := b.PickExcept("e2", "e0", "e1")
		var ne *balancer.NoEndpointsError
		if !errors.Is(err, balancer.ErrNoEndpoints) || !errors.As(err, &ne) {
			t.Fatalf("%s: PickExcept(every ID) = %v, want a *NoEndpointsError", tt.name, err)
		}
		want := balancer.NoEndpointsError{Name: "orders", Registered: 4, NotReady: 1, Excluded: 3}
		if *ne != want {
			t.Errorf("%s: PickExcept(every ID) = %+v, want %+v", tt.name, *ne, want)
		}
		if d != (balancer.Done{}) {
			t.Errorf("%s: PickExcept(every ID) returned a Done, want the zero Done", tt.name)
		}
		if got, want := err.Error(), "orders: no endpoints to pick (4 registered, 1 not ready: starting/draining/weight 0, 3 excluded)"; got != want {
			t.Errorf("%s: error %q, want %q", tt.name, got, want)
		}
	}
}
