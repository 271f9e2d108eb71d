package balancer_test

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/rafting/rafting/balancer"
)

func Example() {
	b := balancer.New(balancer.RoundRobin())
	b.Update([]balancer.Endpoint{
		{ID: "a", Address: "10.0.0.1:8080", Weight: balancer.DefaultWeight},
		{ID: "b", Address: "10.0.0.2:8080", Weight: balancer.DefaultWeight},
		{ID: "c", Address: "10.0.0.3:8080", Weight: 0}, // draining: never picked
	})

	// Round robin starts at a random endpoint, then takes turns.
	picks := map[string]int{}
	for range 6 {
		e, err := b.Pick()
		if err != nil {
			fmt.Println(err)
			return
		}
		picks[e.Address]++
	}
	fmt.Println(picks)

	b.Update(nil)
	_, err := b.Pick()
	fmt.Println(err)
	// Output:
	// map[10.0.0.1:8080:3 10.0.0.2:8080:3]
	// balancer: no endpoints
}

// A caller that reports how each request ends lets LeastLoaded count
// requests in flight, and lets every built-in policy eject an endpoint that
// keeps failing.
func ExampleBalancer_PickTracked() {
	b := balancer.New(balancer.LeastLoaded())
	b.Update([]balancer.Endpoint{
		{ID: "a", Address: "10.0.0.1:8080", Weight: 100},
		{ID: "b", Address: "10.0.0.2:8080", Weight: 100},
	})

	// A long request holds one endpoint...
	slow, slowDone, err := b.PickTracked()
	if err != nil {
		fmt.Println(err)
		return
	}
	// ...so short ones go to the other.
	for range 3 {
		e, done, err := b.PickTracked()
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(e.ID != slow.ID)
		done.Finish(call(e.Address))
	}
	slowDone.Finish(nil)
	// Output:
	// true
	// true
	// true
}

// call stands for a request to an endpoint.
func call(addr string) error { return nil }

func ExampleFunc() {
	// Send everything to the newest version, among the endpoints of
	// positive weight (Func never sees the others).
	newest := balancer.Func(func(eps []balancer.Endpoint) (balancer.Endpoint, error) {
		best := eps[0]
		for _, e := range eps[1:] {
			if e.Meta["version"] > best.Meta["version"] {
				best = e
			}
		}
		return best, nil
	})
	b := balancer.New(newest)
	b.Update([]balancer.Endpoint{
		{ID: "a", Weight: 100, Meta: map[string]string{"version": "1.4.0"}},
		{ID: "b", Weight: 100, Meta: map[string]string{"version": "1.5.0"}},
		{ID: "c", Weight: 0, Meta: map[string]string{"version": "1.6.0"}},
	})
	e, err := b.Pick()
	fmt.Println(e.ID, err)
	// Output: b <nil>
}

// ZoneFirst is a Policy that keeps requests in one zone while it has
// endpoints, taking them in turn, and uses every zone otherwise.
type ZoneFirst string

// Build is called by the Balancer on each Update, with the endpoints of
// positive weight: never an empty list, and a slice the Picker may keep.
func (z ZoneFirst) Build(eps []balancer.Endpoint) balancer.Picker {
	local := slices.DeleteFunc(slices.Clone(eps), func(e balancer.Endpoint) bool { return e.Zone != string(z) })
	if len(local) == 0 {
		local = eps
	}
	return &zonePicker{eps: local}
}

// zonePicker is immutable but for its counter, so that many goroutines can
// pick at once without a lock; Pick allocates nothing.
type zonePicker struct {
	next atomic.Uint64
	eps  []balancer.Endpoint
}

func (p *zonePicker) Pick() (balancer.Endpoint, balancer.Done, error) {
	if len(p.eps) == 0 { // only if Build is called directly with none
		return balancer.Endpoint{}, balancer.Done{}, balancer.ErrNoEndpoints
	}
	i := (p.next.Add(1) - 1) % uint64(len(p.eps))
	return p.eps[i], balancer.Done{}, nil
}

func Example_customPolicy() {
	b := balancer.New(ZoneFirst("eu-west-1a"))
	b.Update([]balancer.Endpoint{
		{ID: "us1", Zone: "us-east-1a", Weight: 100},
		{ID: "eu1", Zone: "eu-west-1a", Weight: 100},
		{ID: "eu2", Zone: "eu-west-1a", Weight: 100},
		{ID: "eu3", Zone: "eu-west-1a", Weight: 0},
	})
	var ids []string
	for range 3 {
		e, _ := b.Pick()
		ids = append(ids, e.ID)
	}
	fmt.Println(ids)

	b.Update([]balancer.Endpoint{{ID: "us1", Zone: "us-east-1a", Weight: 100}})
	e, _ := b.Pick()
	fmt.Println(e.ID)

	b.Update(nil)
	_, err := b.Pick()
	fmt.Println(errors.Is(err, balancer.ErrNoEndpoints))
	// Output:
	// [eu1 eu2 eu1]
	// us1
	// true
}
