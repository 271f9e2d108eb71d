package balancer_test

import (
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/balancer/balancertest"
)

func first(eps []balancer.Endpoint) (balancer.Endpoint, error) { return eps[0], nil }

func last(eps []balancer.Endpoint) (balancer.Endpoint, error) { return eps[len(eps)-1], nil }

func TestPolicies(t *testing.T) {
	tests := []struct {
		name string
		p    balancer.Policy
	}{
		{"RoundRobin", balancer.RoundRobin()},
		{"MonteCarlo", balancer.MonteCarlo()},
		{"MonteCarloSeed", balancer.MonteCarloSeed(1)},
		{"LeastLoaded", balancer.LeastLoaded()},
		{"Func/first", balancer.Func(first)},
		{"Func/last", balancer.Func(last)},
		{"ZoneFirst", ZoneFirst("zone-1")},
		{"nil", nil}, // RoundRobin
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { balancertest.Run(t, tt.p) })
	}
}

func TestZeroBalancer(t *testing.T) {
	var b balancer.Balancer
	if e, err := b.Pick(); !errors.Is(err, balancer.ErrNoEndpoints) {
		t.Fatalf("Pick() = %v, %v, want %v", e, err, balancer.ErrNoEndpoints)
	}
	if got := b.Endpoints(); got != nil {
		t.Errorf("Endpoints() = %v, want nil", got)
	}
	eps := balancertest.Endpoints("e", 3)
	b.Update(eps)
	// The zero Balancer is a round robin one.
	seen := map[string]bool{}
	for range len(eps) {
		e, err := b.Pick()
		if err != nil {
			t.Fatalf("Pick() = %v, %v, want no error", e, err)
		}
		seen[e.ID] = true
	}
	if len(seen) != len(eps) {
		t.Errorf("%d picks chose %v, want each of %v once", len(eps), seen, eps)
	}
}

func TestEndpoints(t *testing.T) {
	b := balancer.New(balancer.RoundRobin())
	if got := b.Endpoints(); got != nil {
		t.Errorf("before Update: Endpoints() = %v, want nil", got)
	}
	eps := balancertest.Endpoints("e", 3)
	eps[1].Weight = 0
	b.Update(eps)
	got := b.Endpoints()
	if !slices.EqualFunc(got, eps, sameEndpoint) {
		t.Fatalf("Endpoints() = %v, want %v (weight 0 included)", got, eps)
	}
	got[0].ID = "changed"
	eps[2].ID = "changed too"
	if again := b.Endpoints(); again[0].ID != "e0" || again[2].ID != "e2" {
		t.Errorf("Endpoints() = %v after changing copies, want e0, e1, e2", again)
	}
	b.Update([]balancer.Endpoint{})
	if got := b.Endpoints(); got != nil {
		t.Errorf("after an empty Update: Endpoints() = %v, want nil", got)
	}
}

// TestBuild calls the built-in policies' Build directly, outside a
// Balancer: they copy the list, skip weight-0 endpoints and answer
// ErrNoEndpoints when none is left.
func TestBuild(t *testing.T) {
	policies := []struct {
		name string
		p    balancer.Policy
	}{
		{"RoundRobin", balancer.RoundRobin()},
		{"MonteCarlo", balancer.MonteCarlo()},
		{"LeastLoaded", balancer.LeastLoaded()},
		{"Func", balancer.Func(first)},
	}
	for _, tt := range policies {
		t.Run(tt.name, func(t *testing.T) {
			for _, eps := range [][]balancer.Endpoint{nil, {{ID: "a"}}, {{ID: "a", Weight: -3}}} {
				if e, _, err := tt.p.Build(eps).Pick(); !errors.Is(err, balancer.ErrNoEndpoints) {
					t.Errorf("Build(%v).Pick() = %v, %v, want %v", eps, e, err, balancer.ErrNoEndpoints)
				}
			}
			eps := []balancer.Endpoint{{ID: "a", Weight: 0}, {ID: "b", Weight: 1}, {ID: "c", Weight: 0}}
			p := tt.p.Build(eps)
			eps[1].ID = "changed"
			for range 100 {
				e, d, err := p.Pick()
				if e.ID != "b" || err != nil {
					t.Fatalf("Pick() = %v, %v, want b", e, err)
				}
				d.Finish(nil)
			}
		})
	}
}

// recorder is a Policy that records what it is given.
type recorder struct {
	builds atomic.Int64
	got    atomic.Pointer[[]balancer.Endpoint]
	err    error
}

func (r *recorder) Build(eps []balancer.Endpoint) balancer.Picker {
	r.builds.Add(1)
	r.got.Store(&eps)
	return r
}

func (r *recorder) Pick() (balancer.Endpoint, balancer.Done, error) {
	eps := *r.got.Load()
	return eps[0], balancer.Done{}, r.err
}

func TestCustomPolicy(t *testing.T) {
	r := &recorder{}
	b := balancer.New(r)
	eps := balancertest.Endpoints("e", 4)
	eps[0].Weight, eps[2].Weight = 0, -1
	b.Update(eps)
	if got, want := *r.got.Load(), []balancer.Endpoint{eps[1], eps[3]}; !slices.EqualFunc(got, want, sameEndpoint) {
		t.Errorf("Build got %v, want the positive-weight %v", got, want)
	}
	if e, err := b.Pick(); e.ID != "e1" || err != nil {
		t.Errorf("Pick() = %v, %v, want e1", e, err)
	}

	// No endpoints: the Balancer answers, without a Build.
	b.Update(eps[:1])
	if n := r.builds.Load(); n != 1 {
		t.Errorf("Build called %d times, want 1: not for a list without positive weights", n)
	}
	if e, err := b.Pick(); !errors.Is(err, balancer.ErrNoEndpoints) {
		t.Errorf("Pick() = %v, %v, want %v", e, err, balancer.ErrNoEndpoints)
	}

	// The Picker's errors reach the caller unchanged.
	r.err = errors.New("custom")
	b.Update(eps)
	if _, err := b.Pick(); err != r.err {
		t.Errorf("Pick() error = %v, want %v", err, r.err)
	}
	if _, d, err := b.PickTracked(); err != r.err || d != (balancer.Done{}) {
		t.Errorf("PickTracked() = %v, %v, want the zero Done, %v", d, err, r.err)
	}
}

func TestFunc(t *testing.T) {
	var calls atomic.Int64
	var seen atomic.Pointer[[]balancer.Endpoint]
	errBusy := errors.New("busy")
	f := balancer.Func(func(eps []balancer.Endpoint) (balancer.Endpoint, error) {
		calls.Add(1)
		seen.Store(&eps)
		if eps[0].Meta["busy"] == "yes" {
			return balancer.Endpoint{}, errBusy
		}
		return eps[len(eps)-1], nil
	})
	tests := []struct {
		name    string
		eps     []balancer.Endpoint
		want    string // ID
		wantErr error
		calls   int64
	}{
		{"last", balancertest.Endpoints("e", 3), "e2", nil, 1},
		{"weight 0 hidden", []balancer.Endpoint{{ID: "a", Weight: 1}, {ID: "b", Weight: 0}}, "a", nil, 1},
		{"error", []balancer.Endpoint{{ID: "a", Weight: 1, Meta: map[string]string{"busy": "yes"}}}, "", errBusy, 1},
		{"none", []balancer.Endpoint{{ID: "b", Weight: 0}}, "", balancer.ErrNoEndpoints, 0},
	}
	for _, tt := range tests {
		calls.Store(0)
		b := balancer.New(f)
		b.Update(tt.eps)
		e, err := b.Pick()
		if e.ID != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: Pick() = %v, %v, want %s, %v", tt.name, e, err, tt.want, tt.wantErr)
		}
		if n := calls.Load(); n != tt.calls {
			t.Errorf("%s: f called %d times, want %d", tt.name, n, tt.calls)
		}
		if tt.calls > 0 {
			for _, e := range *seen.Load() {
				if e.Weight <= 0 {
					t.Errorf("%s: f saw %v, of weight %d", tt.name, e, e.Weight)
				}
			}
		}
	}
}

func sameEndpoint(a, b balancer.Endpoint) bool {
	return a.ID == b.ID && a.Address == b.Address && a.Zone == b.Zone && a.Weight == b.Weight
}
