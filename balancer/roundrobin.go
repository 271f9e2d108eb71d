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

func (roundRobin) build(s set) Picker {
	p := new(rrPicker)
	p.init(s)
	return p
}

// init makes p, a zero rrPicker, pick from s, which is not empty. It fills
// p in place: a Balancer keeps its round-robin Picker inside its snapshot.
func (p *rrPicker) init(s set) {
	n := min(uint64(len(s.eps)), math.MaxUint32) // more are never picked
	p.set = set{s.eps[:n], s.loads[:n], s.health}
	p.m = math.MaxUint64/n + 1
	p.next.Store(rand.Uint64N(n))
}

// rrPicker keeps its counter, which every pick writes, on a cache line of
// its own, apart from the fields that every pick only reads.
type rrPicker struct {
	set
	m    uint64 // 2^64/len(eps), rounded up, for mod
	_    [64 - 56]byte
	next atomic.Uint64
	_    [64 - 8]byte
}

func (p *rrPicker) Pick() (Endpoint, Done, error) {
	e, l := p.choose()
	return *e, track(l), nil
}

func (p *rrPicker) choose() (*Endpoint, *load) {
	i := p.mod(p.next.Add(1))
	if p.health.failing.Load() == 0 {
		return &p.eps[i], p.loads[i]
	}
	return p.skip(i)
}

// mod returns c % len(p.eps) for the counter's low 32 bits, so once in
// 2^32 picks the turn jumps back to the first endpoint.
func (p *rrPicker) mod(c uint64) uint64 {
	return fastmod(uint32(c), p.m, uint64(len(p.eps)))
}

// fastmod returns c % n without a division, given m = 2^64/n rounded up
// (Lemire, Kaser and Kurz, "Faster remainder by direct computation", 2019).
func fastmod(c uint32, m, n uint64) uint64 {
	hi, _ := bits.Mul64(m*uint64(c), n)
	return hi
}

// skip returns i, or if it is ejected the endpoint of the next turn that
// is not.
func (p *rrPicker) skip(i uint64) (*Endpoint, *load) {
	var now instant
	j := i
	for try := 1; !p.loads[j].healthy(&now); try++ {
		if try == maxProbes {
			j = uint64(p.scan(int(i), &now))
			break
		}
		j = p.mod(p.next.Add(1))
	}
	return &p.eps[j], p.loads[j]
}

// except is choose avoiding the endpoints whose ID is one of ids: an
// excluded endpoint's turn goes to the next one that is not. It returns
// nil when ids exclude every endpoint.
func (p *rrPicker) except(ids []string) (*Endpoint, *load) {
	i := int(p.mod(p.next.Add(1)))
	var now instant
	if p.usable(i, ids, &now) {
		return &p.eps[i], p.loads[i]
	}
	return p.exceptScan(i, ids)
}
