package balancer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/rafting/rafting/balancer"
)

// Do calls a farm: another instance on each try, every outcome reported.
// Here one instance of three answers 503 to everything; no call fails.
func ExampleDo() {
	var eps []balancer.Endpoint
	for i, broken := range []bool{false, true, false} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case broken:
				http.Error(w, "overloaded", http.StatusServiceUnavailable)
			case r.URL.Path != "/orders/42":
				http.NotFound(w, r)
			default:
				fmt.Fprint(w, "order 42")
			}
		}))
		defer srv.Close()
		eps = append(eps, balancer.Endpoint{
			ID:      fmt.Sprint("web-", i),
			Address: strings.TrimPrefix(srv.URL, "http://"),
			Weight:  balancer.DefaultWeight,
		})
	}
	b := balancer.New(balancer.LeastLoaded()) // or an SDK Service's Balancer
	b.Update(eps)

	get := func(ctx context.Context, path string) (string, error) {
		var body []byte
		err := balancer.Do(ctx, b, 3, func(ctx context.Context, e balancer.Endpoint) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.Address+path, nil)
			if err != nil {
				return balancer.Permanent(err) // no other endpoint will do better
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err // refused, reset, timed out: the next try goes elsewhere
			}
			defer resp.Body.Close()
			if resp.StatusCode >= 400 {
				return balancer.StatusError(resp.StatusCode) // 5xx: try another; 4xx: stop
			}
			body, err = io.ReadAll(resp.Body)
			return err
		})
		return string(body), err
	}

	ctx := context.Background()
	served := 0
	for range 100 {
		if order, err := get(ctx, "/orders/42"); err == nil && order == "order 42" {
			served++
		}
	}
	fmt.Println(served, "of 100 calls served")
	fmt.Println("ejected:", b.Stats().Ejected, "in flight:", b.Stats().InFlight)

	_, err := get(ctx, "/orders/7")
	var status *balancer.HTTPStatusError
	fmt.Println(errors.As(err, &status), status.Code, err)
	// Output:
	// 100 of 100 calls served
	// ejected: 1 in flight: 0
	// true 404 balancer: 1 endpoint tried: HTTP status 404
}

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
