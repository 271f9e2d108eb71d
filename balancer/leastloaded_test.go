package balancer_test

import (
	"testing"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/balancer/balancertest"
)

// hold picks with b until it picks id, and returns the Done of that pick;
// the other picks are finished at once.
func hold(t *testing.T, b *balancer.Balancer, id string) balancer.Done {
	t.Helper()
	for range 10_000 {
		e, d, err := b.PickTracked()
		if err != nil {
			t.Fatalf("PickTracked() = %v, %v, want no error", e, err)
		}
		if e.ID == id {
			return d
		}
		d.Finish(nil)
	}
	t.Fatalf("PickTracked() never picked %s", id)
	return balancer.Done{}
}

func TestLeastLoadedPrefersIdle(t *testing.T) {
	tests := []struct {
		name string
		n    int // endpoints; e0 is held
	}{
		{"two", 2},
		{"three", 3},
		{"ten", 10},
	}
	for _, tt := range tests {
		eps := balancertest.Endpoints("e", tt.n)
		b := balancer.New(balancer.LeastLoaded())
		b.Update(eps)
		held := hold(t, b, "e0")
		for range 1000 {
			e, d, err := b.PickTracked()
			if err != nil || e.ID == "e0" {
				t.Fatalf("%s: PickTracked() = %v, %v with a request in flight on e0, want another endpoint", tt.name, e, err)
			}
			d.Finish(nil)
		}
		// Untracked picks see the load too, and add none.
		for range 1000 {
			if e, err := b.Pick(); err != nil || e.ID == "e0" {
				t.Fatalf("%s: Pick() = %v, %v with a request in flight on e0, want another endpoint", tt.name, e, err)
			}
		}
		held.Finish(nil)
		seen := map[string]bool{}
		for range 1000 {
			e, d, _ := b.PickTracked()
			seen[e.ID] = true
			d.Finish(nil)
		}
		if !seen["e0"] {
			t.Errorf("%s: after Finish, e0 never picked, want it back", tt.name)
		}
	}
}

// TestLeastLoadedWeighted holds every pick open: the in-flight counts must
// follow the weights. With two endpoints, which are both drawn every time,
// they do within one request.
func TestLeastLoadedWeighted(t *testing.T) {
	tests := []struct {
		weights []int
		picks   int
		want    []int // in flight per endpoint, each within 1
	}{
		{[]int{100, 100}, 100, []int{50, 50}},
		{[]int{300, 100}, 400, []int{300, 100}},
		{[]int{1, 1 << 30}, 100, []int{0, 100}},
		{[]int{0, 100, 100}, 100, []int{0, 50, 50}},
		{[]int{100, 0, 200, -1}, 300, []int{100, 0, 200, 0}},
	}
	for _, tt := range tests {
		eps := withWeights(tt.weights...)
		b := balancer.New(balancer.LeastLoaded())
		b.Update(eps)
		got := make([]int, len(eps))
		var dones []balancer.Done
		for range tt.picks {
			e, d, err := b.PickTracked()
			if err != nil {
				t.Fatalf("weights %v: PickTracked() = %v, %v, want no error", tt.weights, e, err)
			}
			dones = append(dones, d)
			for i := range eps {
				if eps[i].ID == e.ID {
					got[i]++
				}
			}
		}
		for i := range got {
			if d := got[i] - tt.want[i]; d < -1 || d > 1 {
				t.Errorf("weights %v: %d picks held gave %v in flight, want %v", tt.weights, tt.picks, got, tt.want)
				break
			}
		}
		for _, d := range dones {
			d.Finish(nil)
		}
	}

	// With more, the two drawn are not always the best pair, so the heavier
	// endpoints take less than their share; but they take more than the
	// lighter ones.
	eps := withWeights(100, 200, 700)
	b := balancer.New(balancer.LeastLoaded())
	b.Update(eps)
	got := map[string]int{}
	for range 1000 {
		e, _, _ := b.PickTracked() // held for good
		got[e.ID]++
	}
	if !(got["e0"] < got["e1"] && got["e1"] < got["e2"]) {
		t.Errorf("weights 100, 200, 700: 1000 picks held gave %v in flight, want them in the weights' order", got)
	}
}

// TestLeastLoadedKeepsCounts checks that in-flight counts survive an Update
// for the endpoints that stay.
func TestLeastLoadedKeepsCounts(t *testing.T) {
	b := balancer.New(balancer.LeastLoaded())
	b.Update(balancertest.Endpoints("e", 2))
	held := hold(t, b, "e0")
	b.Update(balancertest.Endpoints("e", 3)) // e0 stays, e2 is new
	for range 1000 {
		e, d, _ := b.PickTracked()
		if e.ID == "e0" {
			t.Fatalf("PickTracked() = e0 after Update, with a request in flight on it")
		}
		d.Finish(nil)
	}
	// An endpoint that leaves and comes back starts afresh; finishing the
	// request of its previous life is harmless.
	b.Update(balancertest.Endpoints("e", 3)[1:])
	b.Update(balancertest.Endpoints("e", 2))
	held.Finish(nil)
	seen := map[string]int{}
	for range 1000 {
		e, d, _ := b.PickTracked()
		seen[e.ID]++
		d.Finish(nil)
	}
	if seen["e0"] == 0 || seen["e1"] == 0 {
		t.Errorf("picks after re-adding e0: %v, want both e0 and e1", seen)
	}
}
