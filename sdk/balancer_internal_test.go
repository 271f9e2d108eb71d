package sdk

import (
	"errors"
	"testing"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
)

func inState(id string, state api.State, weight int) api.Instance {
	in := ready(id)
	in.State, in.Weight = state, weight
	return in
}

// TestBalancerNotReadyCount: a Service's Balancers name it in their
// error, and count the instances not ready from each new snapshot, before
// the (debounced) rebuild.
func TestBalancerNotReadyCount(t *testing.T) {
	s := newService(testClient(), "orders")
	s.apply(answer(10, inState("a", api.StateStarting, 100), inState("b", api.StateDraining, 100)), 0)
	ll := s.Balancer(balancer.LeastLoaded())
	rr := s.Balancer(nil)
	tests := []struct {
		instances []api.Instance
		want      string // the pick's error; "" for a pick of a
	}{
		{nil, `sdk: service "orders": no endpoints to pick (2 registered, 2 not ready: starting/draining/weight 0)`},
		{[]api.Instance{inState("a", api.StateStarting, 100), inState("b", api.StateDraining, 100), inState("c", api.StateReady, 0)},
			`sdk: service "orders": no endpoints to pick (3 registered, 3 not ready: starting/draining/weight 0)`},
		{[]api.Instance{inState("a", api.StateReady, 100), inState("c", api.StateReady, 0)}, ""},
		{[]api.Instance{inState("c", api.StateReady, 0)},
			`sdk: service "orders": no endpoints to pick (1 registered, 1 not ready: starting/draining/weight 0)`},
		{[]api.Instance{}, `sdk: service "orders": no endpoints to pick (0 registered)`},
	}
	for i, tt := range tests {
		if tt.instances != nil {
			s.apply(answer(uint64(11+i), tt.instances...), 0)
			s.rebuild()
		}
		for _, b := range []*balancer.Balancer{ll, rr} {
			e, err := b.Pick()
			switch {
			case tt.want == "" && (err != nil || e.ID != "a"):
				t.Errorf("step %d: Pick() = %v, %v, want a", i, e, err)
			case tt.want != "" && (err == nil || err.Error() != tt.want || !errors.Is(err, ErrNoEndpoints)):
				t.Errorf("step %d: Pick() = %v, %v, want %q", i, e, err, tt.want)
			}
		}
	}
}

// BenchmarkServiceBalancer measures asking a Service for its Balancer of
// a policy again, as a caller that asks per request does.
func BenchmarkServiceBalancer(b *testing.B) {
	s := newService(testClient(), "s")
	s.apply(answer(10, ready("a"), ready("b"), ready("c")), 0)
	for _, p := range []struct {
		name string
		p    balancer.Policy
	}{{"RoundRobin", balancer.RoundRobin()}, {"LeastLoaded", balancer.LeastLoaded()}, {"MonteCarloSeed", balancer.MonteCarloSeed(1)}} {
		b.Run(p.name, func(b *testing.B) {
			first := s.Balancer(p.p)
			b.ReportAllocs()
			for b.Loop() {
				if s.Balancer(p.p) != first {
					b.Fatal("another Balancer")
				}
			}
		})
	}
}
