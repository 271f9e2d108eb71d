package balancer_test

import (
	"testing"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/balancer/balancertest"
)

// counts picks n times and counts the picks of each endpoint index.
func counts(t *testing.T, b *balancer.Balancer, eps []balancer.Endpoint, n int) []int {
	t.Helper()
	index := map[string]int{}
	for i, e := range eps {
		index[e.ID] = i
	}
	got := make([]int, len(eps))
	for range n {
		e, err := b.Pick()
		if err != nil {
			t.Fatalf("Pick() = %v, %v, want no error", e, err)
		}
		got[index[e.ID]]++
	}
	return got
}

// TestMonteCarloDistribution runs Pearson's chi-square test of the picks
// against the weights, at significance 0.001, with fixed seeds so that the
// test is deterministic.
func TestMonteCarloDistribution(t *testing.T) {
	ramp := make([]int, 100)
	for i := range ramp {
		ramp[i] = i + 1
	}
	tests := []struct {
		name     string
		weights  []int
		critical float64 // chi-square at p = 0.001, for (positive weights - 1) degrees of freedom
	}{
		{"equal", []int{100, 100, 100, 100}, 16.266},
		{"skewed", []int{1, 2, 3, 4, 10, 30, 50, 100}, 24.322},
		{"zeros", []int{0, 5, 0, 10, 20}, 13.816},
		{"heavy", []int{1, 1000}, 10.828},
		{"ramp of 100", ramp, 148.230},
	}
	const picks = 100_000
	for _, tt := range tests {
		for _, seed := range []uint64{1, 2, 3} {
			eps := withWeights(tt.weights...)
			b := balancer.New(balancer.MonteCarloSeed(seed))
			b.Update(eps)
			got := counts(t, b, eps, picks)
			var sum float64
			for _, w := range tt.weights {
				sum += float64(max(w, 0))
			}
			var chi2 float64
			for i, w := range tt.weights {
				if w <= 0 {
					if got[i] != 0 {
						t.Errorf("%s, seed %d: weight-%d endpoint picked %d times, want 0", tt.name, seed, w, got[i])
					}
					continue
				}
				want := picks * float64(w) / sum
				chi2 += (float64(got[i]) - want) * (float64(got[i]) - want) / want
			}
			if chi2 > tt.critical {
				t.Errorf("%s, seed %d: chi-square = %.2f, want <= %.3f (counts %v)", tt.name, seed, chi2, tt.critical, got)
			}
		}
	}
}

// TestMonteCarloShares checks the production generator, loosely enough
// never to fail by chance: each share within 20% of its weight's (over 20
// standard deviations).
func TestMonteCarloShares(t *testing.T) {
	weights := []int{10, 20, 30, 40}
	eps := withWeights(weights...)
	b := balancer.New(balancer.MonteCarlo())
	b.Update(eps)
	const picks = 100_000
	got := counts(t, b, eps, picks)
	for i, w := range weights {
		want := picks * w / 100
		if got[i] < want*8/10 || got[i] > want*12/10 {
			t.Errorf("%s picked %d times of %d, want about %d", eps[i].ID, got[i], picks, want)
		}
	}
}

func TestMonteCarloSeed(t *testing.T) {
	eps := balancertest.Endpoints("e", 50)
	sequence := func(seed uint64) []string {
		b := balancer.New(balancer.MonteCarloSeed(seed))
		b.Update(eps)
		var ids []string
		for range 100 {
			e, _ := b.Pick()
			ids = append(ids, e.ID)
		}
		return ids
	}
	a, again, other := sequence(7), sequence(7), sequence(8)
	for i := range a {
		if a[i] != again[i] {
			t.Fatalf("seed 7: pick %d = %s, then %s, want the same", i, a[i], again[i])
		}
	}
	same := 0
	for i := range a {
		if a[i] == other[i] {
			same++
		}
	}
	if same > 20 {
		t.Errorf("seeds 7 and 8 agree on %d of %d picks, want different sequences", same, len(a))
	}
}
