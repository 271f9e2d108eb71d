package balancer_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/balancer/balancertest"
)

// TestFollowerSame: asking again with an equal policy returns the same
// Balancer, at no cost.
func TestFollowerSame(t *testing.T) {
	b := balancer.New(balancer.RoundRobin())
	b.Update(balancertest.Endpoints("e", 3))
	tests := []struct {
		name string
		p, q balancer.Policy
		self bool // the answer is b itself
	}{
		{"RoundRobin", balancer.RoundRobin(), balancer.RoundRobin(), true},
		{"nil", nil, balancer.RoundRobin(), true},
		{"LeastLoaded", balancer.LeastLoaded(), balancer.LeastLoaded(), false},
		{"MonteCarlo", balancer.MonteCarlo(), balancer.MonteCarlo(), false},
		{"MonteCarloSeed", balancer.MonteCarloSeed(3), balancer.MonteCarloSeed(3), false},
		{"custom value", ZoneFirst("zone-1"), ZoneFirst("zone-1"), false},
	}
	for _, tt := range tests {
		f := b.Follower(tt.p)
		if g := b.Follower(tt.q); g != f {
			t.Errorf("%s: Follower() twice returned %p and %p, want one Balancer", tt.name, f, g)
		}
		if (f == b) != tt.self {
			t.Errorf("%s: Follower() is b: %v, want %v", tt.name, f == b, tt.self)
		}
		if g := f.Follower(tt.q); g != f {
			t.Errorf("%s: Follower() of the follower is %p, want %p (its leader's answer)", tt.name, g, f)
		}
		if n := testing.AllocsPerRun(100, func() { b.Follower(tt.q) }); n != 0 {
			t.Errorf("%s: Follower() asked again allocates %v times, want 0", tt.name, n)
		}
	}
	if b.Follower(balancer.MonteCarloSeed(3)) == b.Follower(balancer.MonteCarloSeed(4)) {
		t.Error("MonteCarloSeed(3) and (4) share a follower, want one each")
	}
	if b.Follower(balancer.MonteCarlo()) == b.Follower(balancer.LeastLoaded()) {
		t.Error("MonteCarlo and LeastLoaded share a follower")
	}
	f := balancer.Func(first)
	if b.Follower(f) == b.Follower(f) {
		t.Error("a Func's followers are one Balancer, want a new one per call: a func is not comparable")
	}
}

// TestFollowerUpdates: a follower picks from its leader's list, and
// follows every Update and SetNotReady, with its policy and counts of its
// own.
func TestFollowerUpdates(t *testing.T) {
	b := balancer.New(nil, balancer.WithName("orders"))
	ll := b.Follower(balancer.LeastLoaded())
	fn := b.Follower(balancer.Func(last))
	if _, err := ll.Pick(); err == nil || err.Error() != "orders: no endpoints to pick (0 registered)" {
		t.Errorf("before any Update: follower's Pick() error = %v, want b's name", err)
	}
	eps := balancertest.Endpoints("e", 3)
	b.Update(eps)
	for _, f := range []*balancer.Balancer{ll, fn} {
		if got := f.Endpoints(); !slices.EqualFunc(got, eps, sameEndpoint) {
			t.Errorf("follower's Endpoints() = %v, want %v", got, eps)
		}
	}
	if e, err := fn.Pick(); err != nil || e.ID != "e2" {
		t.Errorf("Func follower: Pick() = %v, %v, want e2", e, err)
	}
	// Counts are the follower's own.
	_, d, _ := ll.PickTracked()
	if ll.Stats().InFlight != 1 || b.Stats().InFlight != 0 {
		t.Errorf("in flight: follower %d, leader %d, want 1 and 0", ll.Stats().InFlight, b.Stats().InFlight)
	}
	d.Finish(nil)
	b.Update(eps[:2])
	// A follower made late starts with the list.
	mc := b.Follower(balancer.MonteCarlo())
	if got := mc.Endpoints(); !slices.EqualFunc(got, eps[:2], sameEndpoint) {
		t.Errorf("late follower's Endpoints() = %v, want %v", got, eps[:2])
	}
	b.Update(nil)
	b.SetNotReady(2)
	for _, f := range []*balancer.Balancer{b, ll, fn, mc} {
		_, err := f.Pick()
		if !errors.Is(err, balancer.ErrNoEndpoints) || err.Error() != "orders: no endpoints to pick (2 registered, 2 not ready: starting/draining/weight 0)" {
			t.Errorf("after SetNotReady(2): Pick() error = %v", err)
		}
	}
	// A follower's own Update holds until its leader's next one.
	ll.Update(balancertest.Endpoints("x", 1))
	if e, err := ll.Pick(); err != nil || e.ID != "x0" {
		t.Errorf("after its own Update: follower's Pick() = %v, %v, want x0", e, err)
	}
	b.Update(eps)
	if got := ll.Endpoints(); !slices.EqualFunc(got, eps, sameEndpoint) {
		t.Errorf("after the leader's Update: follower's Endpoints() = %v, want %v", got, eps)
	}
}
