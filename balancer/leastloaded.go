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

type leastLoaded struct {
	seeded bool // for tests
	seed   uint64
}

func (l leastLoaded) Build(eps []Endpoint) Picker { return buildFresh(l, eps) }

func (l leastLoaded) build(es []entry) Picker {
	return &llPicker{src: newSource(l.seeded, l.seed), es: es}
}

type llPicker struct {
	src *source
	es  []entry
}

func (p *llPicker) Pick() (Endpoint, Done, error) {
	e, count := p.choose()
	return e.Endpoint, track(e, count), nil
}

func (p *llPicker) choose() (*entry, bool) {
	if len(p.es) == 1 {
		return &p.es[0], true
	}
	a, b := p.src.two(len(p.es))
	return p.better(&p.es[a], &p.es[b]), true
}

// better returns the better of a and b: a healthy one, then the lighter.
func (p *llPicker) better(a, b *entry) *entry {
	if a.l.fails.Load() < EjectAfter && b.l.fails.Load() < EjectAfter {
		return lighter(a, b)
	}
	var now int64
	for try := 1; ; try++ {
		ha, hb := a.l.healthy(&now), b.l.healthy(&now)
		switch {
		case ha && hb:
			return lighter(a, b)
		case ha:
			return a
		case hb:
			return b
		case try >= maxProbes/2:
			return lighter(a, b)
		}
		i, j := p.src.two(len(p.es))
		a, b = &p.es[i], &p.es[j]
	}
}

// lighter returns the one of a and b with fewer requests in flight per unit
// of weight, a on a tie.
func lighter(a, b *entry) *entry {
	// a.inflight/a.Weight <= b.inflight/b.Weight, multiplied out in 128 bits.
	ahi, alo := bits.Mul64(inflight(a), uint64(b.Weight))
	bhi, blo := bits.Mul64(inflight(b), uint64(a.Weight))
	if ahi < bhi || ahi == bhi && alo <= blo {
		return a
	}
	return b
}

func inflight(e *entry) uint64 {
	return uint64(max(e.l.inflight.Load(), 0))
}
