// Package balancertest checks that a balancer.Policy keeps the contract of
// package balancer. Every built-in policy passes it; run it for your own:
//
//	func TestZoneFirst(t *testing.T) {
//		balancertest.Run(t, ZoneFirst("eu-west-1a"))
//	}
//
// Run drives the policy through a balancer.Balancer, the way it is used,
// and requires that:
//
//   - with no endpoints, or only weight-0 ones, Pick returns
//     balancer.ErrNoEndpoints;
//   - every pick is one of the endpoints of positive weight of the last
//     Update (compared field by field) and returns no error;
//   - a single endpoint is always the one picked;
//   - an Update takes effect for the picks that follow it, and changing the
//     caller's slice afterwards changes nothing;
//   - PickExcept never returns an endpoint it was told to avoid, and
//     returns balancer.ErrNoEndpoints when it avoids them all;
//   - Pick, PickTracked and PickExcept, Done.Finish and Done.Release
//     included, allocate nothing;
//   - concurrent picks, concurrent with Updates, are safe (run the tests
//     with -race to check that part).
//
// It does not require any distribution of the picks: a policy may always
// choose the same endpoint among several.
package balancertest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/rafting/rafting/balancer"
)

// picks is the number of picks each check makes.
const picks = 1000

// Run runs the conformance checks for p as subtests of t. It does not call
// t.Parallel: the allocation checks need the process to themselves.
func Run(t *testing.T, p balancer.Policy) {
	t.Helper()
	t.Run("Empty", func(t *testing.T) { testEmpty(t, p) })
	t.Run("Single", func(t *testing.T) { testSingle(t, p) })
	t.Run("Members", func(t *testing.T) { testMembers(t, p) })
	t.Run("Update", func(t *testing.T) { testUpdate(t, p) })
	t.Run("Copy", func(t *testing.T) { testCopy(t, p) })
	t.Run("Tracked", func(t *testing.T) { testTracked(t, p) })
	t.Run("Except", func(t *testing.T) { testExcept(t, p) })
	t.Run("Allocs", func(t *testing.T) { testAllocs(t, p) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, p) })
}

// Endpoints returns n endpoints "<prefix>0".."<prefix>n-1" of weight
// balancer.DefaultWeight, each with a distinct address and zone.
func Endpoints(prefix string, n int) []balancer.Endpoint {
	eps := make([]balancer.Endpoint, n)
	for i := range eps {
		eps[i] = balancer.Endpoint{
			ID:      fmt.Sprintf("%s%d", prefix, i),
			Address: fmt.Sprintf("10.0.0.%d:%d", i%250+1, 8000+i),
			Zone:    fmt.Sprintf("zone-%d", i%3),
			Weight:  balancer.DefaultWeight,
		}
	}
	return eps
}

func testEmpty(t *testing.T, p balancer.Policy) {
	tests := []struct {
		name string
		eps  []balancer.Endpoint
	}{
		{"nil", nil},
		{"empty", []balancer.Endpoint{}},
		{"weight 0", []balancer.Endpoint{{ID: "a", Weight: 0}, {ID: "b", Weight: 0}}},
		{"negative weight", []balancer.Endpoint{{ID: "a", Weight: -1}}},
	}
	b := balancer.New(p)
	if e, err := b.Pick(); !errors.Is(err, balancer.ErrNoEndpoints) {
		t.Errorf("before Update: Pick() = %v, %v, want %v", e, err, balancer.ErrNoEndpoints)
	}
	for _, tt := range tests {
		b := balancer.New(p)
		b.Update(Endpoints("x", 3)) // must be replaced
		b.Update(tt.eps)
		if e, err := b.Pick(); !errors.Is(err, balancer.ErrNoEndpoints) {
			t.Errorf("%s: Pick() = %v, %v, want %v", tt.name, e, err, balancer.ErrNoEndpoints)
		}
		e, d, err := b.PickTracked()
		if !errors.Is(err, balancer.ErrNoEndpoints) {
			t.Errorf("%s: PickTracked() = %v, %v, want %v", tt.name, e, err, balancer.ErrNoEndpoints)
		}
		d.Finish(nil) // the zero Done: a no-op
	}
}

func testSingle(t *testing.T, p balancer.Policy) {
	for _, weight := range []int{1, balancer.DefaultWeight, 1 << 30} {
		one := balancer.Endpoint{ID: "only", Address: "10.0.0.1:80", Weight: weight}
		b := balancer.New(p)
		b.Update([]balancer.Endpoint{one, {ID: "drained", Address: "10.0.0.2:80"}})
		for range picks {
			if e, err := b.Pick(); err != nil || !same(e, one) {
				t.Fatalf("weight %d: Pick() = %v, %v, want %v", weight, e, err, one)
			}
		}
	}
}

func testMembers(t *testing.T, p balancer.Policy) {
	eps := Endpoints("e", 10)
	eps[2].Weight, eps[5].Weight, eps[7].Weight = 0, -5, 1
	eps[9].Meta = map[string]string{"version": "2"}
	b := balancer.New(p)
	b.Update(eps)
	for range picks {
		e, err := b.Pick()
		if err != nil || !member(e, eps) {
			t.Fatalf("Pick() = %v, %v, want one of the positive-weight %v", e, err, eps)
		}
	}
}

func testUpdate(t *testing.T, p balancer.Policy) {
	b := balancer.New(p)
	steps := [][]balancer.Endpoint{
		Endpoints("a", 3),
		Endpoints("b", 5),
		Endpoints("a", 1),
		append(Endpoints("c", 2), Endpoints("a", 2)...), // a0, a1 stay
		Endpoints("d", 100),
	}
	for i, eps := range steps {
		b.Update(eps)
		if got := b.Endpoints(); !slices.EqualFunc(got, eps, same) {
			t.Errorf("step %d: Endpoints() = %v, want %v", i, got, eps)
		}
		for range picks {
			e, err := b.Pick()
			if err != nil || !member(e, eps) {
				t.Fatalf("step %d: Pick() = %v, %v, want one of %v", i, e, err, eps)
			}
		}
	}
}

func testCopy(t *testing.T, p balancer.Policy) {
	eps := Endpoints("e", 4)
	want := slices.Clone(eps)
	b := balancer.New(p)
	b.Update(eps)
	for i := range eps {
		eps[i] = balancer.Endpoint{ID: "changed", Weight: 1}
	}
	for range picks {
		e, err := b.Pick()
		if err != nil || !member(e, want) {
			t.Fatalf("after changing the caller's slice: Pick() = %v, %v, want one of %v", e, err, want)
		}
	}
}

func testTracked(t *testing.T, p balancer.Policy) {
	eps := Endpoints("e", 5)
	b := balancer.New(p)
	b.Update(eps)
	failed := errors.New("balancertest: failed")
	var held []balancer.Done
	for i := range picks {
		e, d, err := b.PickTracked()
		if err != nil || !member(e, eps) {
			t.Fatalf("PickTracked() = %v, %v, want one of %v", e, err, eps)
		}
		switch i % 3 {
		case 0:
			d.Finish(nil)
		case 1:
			d.Finish(failed)
		case 2:
			held = append(held, d) // finished below, after more picks
		}
	}
	for _, d := range held {
		d.Finish(nil)
	}
	if e, err := b.Pick(); err != nil || !member(e, eps) {
		t.Fatalf("after failures: Pick() = %v, %v, want one of %v", e, err, eps)
	}
}

func testExcept(t *testing.T, p balancer.Policy) {
	eps := Endpoints("e", 5)
	b := balancer.New(p)
	b.Update(eps)
	ids := make([]string, len(eps))
	for i, e := range eps {
		ids[i] = e.ID
	}
	for k := range len(eps) {
		avoid := ids[:k] // e0..e(k-1)
		for range picks / 10 {
			e, d, err := b.PickExcept(avoid...)
			if err != nil || !member(e, eps[k:]) {
				t.Fatalf("PickExcept(%v) = %v, %v, want one of %v", avoid, e, err, eps[k:])
			}
			d.Finish(nil)
		}
	}
	e, d, err := b.PickExcept(ids...)
	if !errors.Is(err, balancer.ErrNoEndpoints) {
		t.Errorf("PickExcept(every ID) = %v, %v, want %v", e, err, balancer.ErrNoEndpoints)
	}
	d.Finish(nil) // the zero Done: a no-op
	e, d, err = b.PickExcept("unknown", "ids")
	if err != nil || !member(e, eps) {
		t.Errorf("PickExcept(unknown IDs) = %v, %v, want one of %v", e, err, eps)
	}
	d.Release()
}

func testAllocs(t *testing.T, p balancer.Policy) {
	b := balancer.New(p)
	b.Update(Endpoints("e", 10))
	if n := testing.AllocsPerRun(picks, func() { b.Pick() }); n != 0 {
		t.Errorf("Pick() allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(picks, func() {
		_, d, _ := b.PickTracked()
		d.Finish(nil)
	}); n != 0 {
		t.Errorf("PickTracked() and Finish allocate %v times, want 0", n)
	}
	tried := []string{"e0", "e3", "e7"}
	if n := testing.AllocsPerRun(picks, func() {
		_, d, _ := b.PickExcept(tried...)
		d.Release()
	}); n != 0 {
		t.Errorf("PickExcept() and Release allocate %v times, want 0", n)
	}
	all := make([]string, 10)
	for i := range all {
		all[i] = fmt.Sprintf("e%d", i)
	}
	if n := testing.AllocsPerRun(picks, func() { b.PickExcept(all...) }); n != 0 {
		t.Errorf("PickExcept() of no endpoint allocates %v times, want 0", n)
	}
}

func testConcurrent(t *testing.T, p balancer.Policy) {
	lists := [][]balancer.Endpoint{Endpoints("a", 3), Endpoints("b", 7), Endpoints("a", 5)}
	var all []balancer.Endpoint
	for _, eps := range lists {
		all = append(all, eps...)
	}
	b := balancer.New(p)
	b.Update(lists[0])

	const pickers = 4
	errs := make(chan error, pickers)
	var wg sync.WaitGroup
	for g := range pickers {
		wg.Go(func() {
			for i := range picks {
				var e balancer.Endpoint
				var err error
				switch (g + i) % 3 {
				case 0:
					e, err = b.Pick()
				case 1:
					var d balancer.Done
					e, d, err = b.PickExcept("a0", "b1")
					d.Release()
				default:
					var d balancer.Done
					e, d, err = b.PickTracked()
					d.Finish(nil)
				}
				if err != nil || !member(e, all) {
					errs <- fmt.Errorf("Pick() = %v, %v, want one of %v", e, err, all)
					return
				}
			}
		})
	}
	for i := range picks / 10 {
		b.Update(lists[i%len(lists)])
		b.Endpoints()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// same reports whether a and b are the same endpoint.
func same(a, b balancer.Endpoint) bool {
	return a.ID == b.ID && a.Address == b.Address && a.Zone == b.Zone &&
		a.Weight == b.Weight && maps.Equal(a.Meta, b.Meta)
}

// member reports whether e is one of the endpoints of positive weight in eps.
func member(e balancer.Endpoint, eps []balancer.Endpoint) bool {
	return e.Weight > 0 && slices.ContainsFunc(eps, func(x balancer.Endpoint) bool { return same(e, x) })
}
