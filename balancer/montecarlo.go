package balancer

import (
	"math"
	"math/bits"
)

// MonteCarlo returns a Policy that picks an endpoint at random, with
// probability proportional to its Weight. A pick costs O(1) whatever the
// number of endpoints (Vose's alias method, whose table Build makes in
// O(n)), and draws from math/rand/v2's per-thread generator, so concurrent
// picks share no lock and no counter. An ejected endpoint is redrawn.
func MonteCarlo() Policy { return monteCarlo{} }

// MonteCarloSeed is MonteCarlo drawing from a deterministic generator
// seeded with seed, for tests and simulations: a Picker built by it makes
// the same picks from the same seed when one goroutine picks. Every Picker
// (every Update) starts again from seed. It stays safe for concurrent use,
// through one atomic counter per Picker that concurrent picks contend on,
// so production code should use MonteCarlo.
func MonteCarloSeed(seed uint64) Policy { return monteCarlo{seeded: true, seed: seed} }

type monteCarlo struct {
	seeded bool
	seed   uint64
}

func (m monteCarlo) Build(eps []Endpoint) Picker { return buildFresh(m, eps) }

func (m monteCarlo) build(s set) Picker {
	return &mcPicker{set: s, src: newSource(m.seeded, m.seed), cols: alias(s.eps)}
}

type mcPicker struct {
	set
	src  *source
	cols []column // len(cols) == len(eps)
}

// column i of an alias table: index i is kept when a uniform draw in
// [0, 2^32) is below keep, and replaced by other otherwise. 32 bits are
// precise enough (an error of 2^-32 per column) and make the table of 1,000
// endpoints 8 KB, which stays in the L1 cache.
type column struct {
	keep  uint32
	other uint32
}

func (p *mcPicker) Pick() (Endpoint, Done, error) {
	e, l := p.choose()
	return *e, track(l), nil
}

func (p *mcPicker) choose() (*Endpoint, *load) {
	i := p.draw()
	if p.health.failing.Load() == 0 {
		return &p.eps[i], p.loads[i]
	}
	return p.redraw(i)
}

func (p *mcPicker) draw() int {
	// One draw gives both the column (the high word of r*n) and the coin
	// (the low word, uniform and independent of the column).
	i, coin := bits.Mul64(p.src.uint64(), uint64(len(p.cols)))
	c := p.cols[i]
	j := int(i)
	if uint32(coin>>32) >= c.keep { // a conditional move: the coin is not predictable
		j = int(c.other)
	}
	return j
}

// redraw returns i, or if it is ejected another draw that is not.
func (p *mcPicker) redraw(i int) (*Endpoint, *load) {
	var now instant
	for try := 1; !p.loads[i].healthy(&now); try++ {
		if try == maxProbes {
			i = p.scan(i, &now)
			break
		}
		i = p.draw()
	}
	return &p.eps[i], p.loads[i]
}

// alias makes the alias table of the endpoints' weights, by Vose's method.
func alias(eps []Endpoint) []column {
	n := len(eps)
	var sum float64
	for _, e := range eps {
		sum += float64(e.Weight)
	}
	// p[i] is i's probability scaled so that the mean is 1; small and large
	// hold the indexes below and at or above 1.
	p := make([]float64, n)
	small := make([]int, 0, n)
	large := make([]int, 0, n)
	for i, e := range eps {
		p[i] = float64(e.Weight) * float64(n) / sum
		if p[i] < 1 {
			small = append(small, i)
		} else {
			large = append(large, i)
		}
	}
	cols := make([]column, n)
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small, large = small[:len(small)-1], large[:len(large)-1]
		cols[s] = column{keep: scale(p[s]), other: uint32(l)}
		p[l] = (p[l] + p[s]) - 1
		if p[l] < 1 {
			small = append(small, l)
		} else {
			large = append(large, l)
		}
	}
	// What is left is 1 up to rounding: the column keeps its own index.
	for _, i := range append(small, large...) {
		cols[i] = column{keep: math.MaxUint32, other: uint32(i)}
	}
	return cols
}

// scale maps a probability in [0, 1] to [0, 2^32).
func scale(p float64) uint32 {
	switch {
	case p <= 0:
		return 0
	case p >= 1:
		return math.MaxUint32
	}
	return uint32(p * 0x1p32)
}

// except is choose avoiding the endpoints whose ID is one of ids: it draws
// again, up to maxProbes times, then draws by weight among the endpoints
// left. It returns nil when ids exclude every endpoint.
func (p *mcPicker) except(ids []string) (*Endpoint, *load) {
	var now instant
	for range maxProbes {
		if i := p.draw(); p.usable(i, ids, &now) {
			return &p.eps[i], p.loads[i]
		}
	}
	// Most of the weight is excluded or ejected: draw among the rest, in
	// O(len(eps)), the healthy ones first.
	for _, healthy := range [2]bool{true, false} {
		ok := func(i int) bool {
			return !excluded(p.eps[i].ID, ids) && (!healthy || p.loads[i].healthy(&now))
		}
		var sum float64
		for i := range p.eps {
			if ok(i) {
				sum += float64(p.eps[i].Weight)
			}
		}
		if sum == 0 {
			continue
		}
		r := float64(p.src.uint64()>>11) / (1 << 53) * sum
		j := -1
		for i := range p.eps {
			if ok(i) {
				j = i
				if r -= float64(p.eps[i].Weight); r < 0 {
					break
				}
			}
		}
		return &p.eps[j], p.loads[j]
	}
	return nil, nil
}
