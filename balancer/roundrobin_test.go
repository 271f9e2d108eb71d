package balancer_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/balancer/balancertest"
)

// live returns the IDs of the endpoints of positive weight, in order.
func live(eps []balancer.Endpoint) []string {
	var ids []string
	for _, e := range eps {
		if e.Weight > 0 {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

func withWeights(weights ...int) []balancer.Endpoint {
	eps := balancertest.Endpoints("e", len(weights))
	for i, w := range weights {
		eps[i].Weight = w
	}
	return eps
}

func TestRoundRobinFair(t *testing.T) {
	tests := []struct {
		name string
		eps  []balancer.Endpoint
	}{
		{"one", balancertest.Endpoints("e", 1)},
		{"two", balancertest.Endpoints("e", 2)},
		{"seven", balancertest.Endpoints("e", 7)},
		{"hundred", balancertest.Endpoints("e", 100)},
		{"weights ignored", withWeights(1, 100, 1000, 7)},
		{"weight 0 skipped", withWeights(0, 100, 0, 100, 100, -1)},
	}
	const cycles = 5
	for _, tt := range tests {
		ids := live(tt.eps)
		b := balancer.New(balancer.RoundRobin())
		b.Update(tt.eps)
		count := map[string]int{}
		prev := -1
		for range cycles * len(ids) {
			e, err := b.Pick()
			if err != nil {
				t.Fatalf("%s: Pick() = %v, %v, want no error", tt.name, e, err)
			}
			count[e.ID]++
			i := slices.Index(ids, e.ID)
			if prev >= 0 && i != (prev+1)%len(ids) {
				t.Fatalf("%s: Pick() = %s after %s, want %s", tt.name, e.ID, ids[prev], ids[(prev+1)%len(ids)])
			}
			prev = i
		}
		for _, id := range ids {
			if count[id] != cycles {
				t.Errorf("%s: %d cycles picked %s %d times, want %d", tt.name, cycles, id, count[id], cycles)
			}
		}
	}
}

// TestRoundRobinFairConcurrent checks that concurrent picks share one turn:
// over whole cycles every endpoint is picked exactly as often.
func TestRoundRobinFairConcurrent(t *testing.T) {
	const n, goroutines, cycles = 8, 4, 250
	b := balancer.New(balancer.RoundRobin())
	b.Update(balancertest.Endpoints("e", n))
	counts := make([]map[string]int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		counts[g] = map[string]int{}
		wg.Go(func() {
			for range n * cycles {
				e, _ := b.Pick()
				counts[g][e.ID]++
			}
		})
	}
	wg.Wait()
	total := map[string]int{}
	for _, c := range counts {
		for id, k := range c {
			total[id] += k
		}
	}
	for i := range n {
		id := balancertest.Endpoints("e", n)[i].ID
		if want := goroutines * cycles; total[id] != want {
			t.Errorf("%s picked %d times, want %d", id, total[id], want)
		}
	}
}

// TestRoundRobinStart checks that Balancers given the same list do not all
// start with the same endpoint (grpc-java#4462).
func TestRoundRobinStart(t *testing.T) {
	eps := balancertest.Endpoints("e", 10)
	first := map[string]int{}
	for range 200 {
		b := balancer.New(balancer.RoundRobin())
		b.Update(eps)
		e, _ := b.Pick()
		first[e.ID]++
	}
	// Uniform starts miss 5 of 10 endpoints in 200 tries with probability
	// below 1e-50.
	if len(first) < 5 {
		t.Errorf("200 Balancers started on %v, want at least 5 distinct endpoints", first)
	}
}
