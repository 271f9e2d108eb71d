package balancer

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
)

// RoundRobin returns a Policy that picks the endpoints of positive weight in
// turn. Weights other than 0 are ignored: every such endpoint gets the same
// share (use MonteCarlo or LeastLoaded for weighted choice).
//
// Each Picker starts at a random place in the list, so that many clients
// given the same list at once (a deploy) do not all send their first
// request to the same endpoint. An ejected endpoint's turn goes to the
// next one.
func RoundRobin() Policy { return roundRobin{} }

type roundRobin struct{}

func (r roundRobin) Build(eps []Endpoint) Picker { return buildFresh(r, eps) }

func (roundRobin) build(es []entry) Picker {
	n := min(uint64(len(es)), math.MaxUint32) // more are never picked
	p := &rrPicker{es: es[:n], m: math.MaxUint64/n + 1}
	p.next.Store(rand.Uint64N(n))
	return p
}

// rrPicker keeps its counter, which every pick writes, on a cache line of
// its own, apart from the fields that every pick only reads.
type rrPicker struct {
	es   []entry
	m    uint64 // 2^64/len(es), rounded up, for mod
	_    [64 - 32]byte
	next atomic.Uint64
	_    [64 - 8]byte
}

// mod returns c % len(p.es) without a division (Lemire's fastmod). The
// counter's low 32 bits are used, so once in 2^32 picks the turn jumps
// back to the first endpoint.
func (p *rrPicker) mod(c uint64) uint64 {
	hi, _ := bits.Mul64(p.m*uint64(uint32(c)), uint64(len(p.es)))
	return hi
}

func (p *rrPicker) Pick() (Endpoint, Done, error) {
	e, count := p.choose()
	return e.Endpoint, track(e, count), nil
}

func (p *rrPicker) choose() (*entry, bool) {
	e := &p.es[p.mod(p.next.Add(1))]
	if e.l.fails.Load() >= EjectAfter {
		e = p.skip(e)
	}
	return e, false
}

// skip returns the next healthy endpoint from e's turn, or e.
func (p *rrPicker) skip(e *entry) *entry {
	var now int64
	if e.l.healthy(&now) {
		return e
	}
	for range min(len(p.es), maxProbes) - 1 {
		if f := &p.es[p.mod(p.next.Add(1))]; f.l.healthy(&now) {
			return f
		}
	}
	return e
}
