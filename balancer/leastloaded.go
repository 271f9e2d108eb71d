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
	return *e, track(l, true), nil
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
