package balancer

import "math/bits"

// LeastLoaded returns a Policy that sends each request to the less loaded of
// two distinct endpoints drawn at random ("the power of two choices"). Load
// is the endpoint's requests in flight divided by its Weight, so an endpoint
// of weight 200 is as loaded with 2 requests as one of weight 100 with 1.
//
// In-flight counts come from PickTracked and Done.Finish; requests started
// with Pick are not counted. They survive Updates for endpoints that stay
// (same ID). Of the two endpoints drawn, an ejected one loses to a healthy
// one; when both are ejected the pair is redrawn.
func LeastLoaded() Policy { return leastLoaded{} }

type leastLoaded struct{}

func (l leastLoaded) Build(eps []Endpoint) Picker { return buildFresh(l, eps) }

func (leastLoaded) build(s set) Picker {
	return &llPicker{set: s, src: newSource(false, 0)}
}

type llPicker struct {
	set
	src *source
}

func (p *llPicker) Pick() (Endpoint, Done, error) {
	e, l := p.choose()
	return *e, track(l), nil
}

func (p *llPicker) choose() (*Endpoint, *load) {
	if len(p.eps) == 1 {
		return &p.eps[0], p.loads[0]
	}
	a, b := p.src.two(len(p.eps))
	if p.health.failing.Load() != 0 {
		a, b = p.healthy(a, b)
	}
	if p.lighter(b, a) {
		a = b
	}
	return &p.eps[a], p.loads[a]
}

// healthy returns the pair to choose from instead of a and b: the same if
// neither is ejected, the healthy one twice if the other is, a new pair if
// both are.
func (p *llPicker) healthy(a, b int) (int, int) {
	var now instant
	for try := 1; ; try++ {
		ha, hb := p.loads[a].healthy(&now), p.loads[b].healthy(&now)
		switch {
		case ha && hb:
			return a, b
		case ha:
			return a, a
		case hb:
			return b, b
		case 2*try >= maxProbes:
			a = p.scan(a, &now)
			return a, a
		}
		a, b = p.src.two(len(p.eps))
	}
}

// lighter reports whether a has fewer requests in flight per unit of weight
// than b.
func (p *llPicker) lighter(a, b int) bool {
	// inflight(a)/weight(a) < inflight(b)/weight(b), multiplied out in 128 bits.
	ahi, alo := bits.Mul64(p.loads[a].count(), uint64(p.eps[b].Weight))
	bhi, blo := bits.Mul64(p.loads[b].count(), uint64(p.eps[a].Weight))
	return ahi < bhi || ahi == bhi && alo < blo
}

// except is choose avoiding the endpoints whose ID is one of ids: the
// lighter of two distinct endpoints drawn among those that ids do not
// exclude (and that are not ejected, while some are not). It draws pairs
// up to maxProbes endpoints until both are usable, then draws among the
// usable ones by rank, in O(len(eps)). It returns nil when ids exclude
// every endpoint.
func (p *llPicker) except(ids []string) (*Endpoint, *load) {
	var now instant
	if len(p.eps) > 1 {
		for try := 0; 2*try < maxProbes; try++ {
			a, b := p.src.two(len(p.eps))
			if p.usable(a, ids, &now) && p.usable(b, ids, &now) {
				if p.lighter(b, a) {
					a = b
				}
				return &p.eps[a], p.loads[a]
			}
		}
	}
	for _, healthy := range [2]bool{true, false} {
		ok := func(i int) bool {
			return !excluded(p.eps[i].ID, ids) && (!healthy || p.loads[i].healthy(&now))
		}
		m := 0
		for i := range p.eps {
			if ok(i) {
				m++
			}
		}
		switch m {
		case 0:
			continue
		case 1:
			a := p.nth(0, ok)
			return &p.eps[a], p.loads[a]
		}
		ra, rb := p.src.two(m)
		a, b := p.nth(ra, ok), p.nth(rb, ok)
		if p.lighter(b, a) {
			a = b
		}
		return &p.eps[a], p.loads[a]
	}
	return nil, nil
}

// nth returns the index of the endpoint of rank k among those for which
// ok is true.
func (p *llPicker) nth(k int, ok func(int) bool) int {
	for i := range p.eps {
		if ok(i) {
			if k == 0 {
				return i
			}
			k--
		}
	}
	return -1
}
