package balancer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/balancer/balancertest"
)

var errDown = errors.New("connection refused")

// report picks with b until it picks id and finishes that pick with err,
// finishing the others with nil; it does so n times.
func report(t *testing.T, b *balancer.Balancer, id string, err error, n int) {
	t.Helper()
	for range n {
		hold(t, b, id).Finish(err)
	}
}

// picked picks 1000 times, half with Pick and half with PickTracked (whose
// picks succeed), and counts the picks of each endpoint.
func picked(t *testing.T, b *balancer.Balancer) map[string]int {
	t.Helper()
	return pickedWith(t, b, true)
}

// pickedWith is picked, with PickTracked only if tracked.
func pickedWith(t *testing.T, b *balancer.Balancer, tracked bool) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := range 1000 {
		var e balancer.Endpoint
		var err error
		if i%2 == 0 || !tracked {
			e, err = b.Pick()
		} else {
			var d balancer.Done
			e, d, err = b.PickTracked()
			d.Finish(nil)
		}
		if err != nil {
			t.Fatalf("Pick() = %v, %v, want no error", e, err)
		}
		got[e.ID]++
	}
	return got
}

var ejecting = []struct {
	name string
	p    balancer.Policy
}{
	{"RoundRobin", balancer.RoundRobin()},
	{"MonteCarlo", balancer.MonteCarlo()},
	{"LeastLoaded", balancer.LeastLoaded()},
}

func TestEject(t *testing.T) {
	for _, tt := range ejecting {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := balancer.New(tt.p)
				b.Update(balancertest.Endpoints("e", 3))

				report(t, b, "e0", errDown, balancer.EjectAfter)
				if got := picked(t, b); got["e0"] != 0 {
					t.Fatalf("after %d failures: picks %v, want none of e0", balancer.EjectAfter, got)
				}
				time.Sleep(balancer.EjectFor - time.Nanosecond)
				if got := picked(t, b); got["e0"] != 0 {
					t.Fatalf("just before EjectFor: picks %v, want none of e0", got)
				}

				// On probation: picked again, and one failure ejects it again.
				time.Sleep(time.Nanosecond)
				if got := pickedWith(t, b, false); got["e0"] == 0 {
					t.Fatalf("after EjectFor: picks %v, want some of e0", got)
				}
				report(t, b, "e0", errDown, 1)
				if got := picked(t, b); got["e0"] != 0 {
					t.Fatalf("failure on probation: picks %v, want none of e0", got)
				}

				// A success on probation clears the record.
				time.Sleep(balancer.EjectFor)
				report(t, b, "e0", nil, 1)
				report(t, b, "e0", errDown, balancer.EjectAfter-1)
				if got := picked(t, b); got["e0"] == 0 {
					t.Fatalf("after a success and %d failures: picks %v, want some of e0", balancer.EjectAfter-1, got)
				}
			})
		})
	}
}

func TestEjectConsecutive(t *testing.T) {
	canceled := fmt.Errorf("call: %w", context.Canceled)
	tests := []struct {
		name    string
		reports []error // on e0, in order
		ejected bool
	}{
		{"EjectAfter failures", repeat(errDown, balancer.EjectAfter), true},
		{"one short", repeat(errDown, balancer.EjectAfter-1), false},
		{"success between", append(append(repeat(errDown, balancer.EjectAfter-1), nil), repeat(errDown, balancer.EjectAfter-1)...), false},
		{"cancel not counted", append(repeat(errDown, balancer.EjectAfter-1), repeat(canceled, 10)...), false},
		{"cancel no reset", append(append(repeat(errDown, balancer.EjectAfter-1), canceled), errDown), true},
	}
	for _, p := range ejecting {
		for _, tt := range tests {
			b := balancer.New(p.p)
			b.Update(balancertest.Endpoints("e", 3))
			for _, err := range tt.reports {
				report(t, b, "e0", err, 1)
			}
			if got := picked(t, b); (got["e0"] == 0) != tt.ejected {
				t.Errorf("%s, %s: picks %v, want e0 ejected %v", p.name, tt.name, got, tt.ejected)
			}
		}
	}
}

func repeat(err error, n int) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// TestEjectMany ejects most endpoints: picks find the others whatever the
// policy's order, and fail open when none is left.
func TestEjectMany(t *testing.T) {
	for _, tt := range ejecting {
		t.Run(tt.name, func(t *testing.T) {
			eps := balancertest.Endpoints("e", 40)
			b := balancer.New(tt.p)
			b.Update(eps)
			for _, e := range eps[:39] {
				report(t, b, e.ID, errDown, balancer.EjectAfter)
			}
			if got := picked(t, b); got["e39"] != 1000 {
				t.Fatalf("39 of 40 ejected: picks %v, want all e39", got)
			}
			report(t, b, "e39", errDown, balancer.EjectAfter)
			if got := picked(t, b); len(got) == 0 {
				t.Fatalf("all ejected: no picks, want them to fail open")
			}
		})
	}
}

// TestEjectUpdate checks that a failure record survives an Update for an
// endpoint that stays, and is forgotten for one that leaves.
func TestEjectUpdate(t *testing.T) {
	for _, tt := range ejecting {
		b := balancer.New(tt.p)
		b.Update(balancertest.Endpoints("e", 3))
		report(t, b, "e0", errDown, balancer.EjectAfter)
		b.Update(balancertest.Endpoints("e", 4))
		if got := picked(t, b); got["e0"] != 0 {
			t.Errorf("%s: after an Update keeping e0: picks %v, want none of e0", tt.name, got)
		}
		b.Update(balancertest.Endpoints("e", 4)[1:])
		b.Update(balancertest.Endpoints("e", 4))
		if got := picked(t, b); got["e0"] == 0 {
			t.Errorf("%s: e0 removed and added back: picks %v, want some of e0", tt.name, got)
		}
	}
}

// TestEjectFunc checks that Func policies, whose Done is the zero Done,
// ignore reports.
func TestEjectFunc(t *testing.T) {
	b := balancer.New(balancer.Func(first))
	b.Update(balancertest.Endpoints("e", 2))
	for range 2 * balancer.EjectAfter {
		_, d, _ := b.PickTracked()
		d.Finish(errDown)
	}
	if e, err := b.Pick(); e.ID != "e0" || err != nil {
		t.Errorf("Pick() = %v, %v, want e0", e, err)
	}
}
