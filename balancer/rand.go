package balancer

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
)

// source draws the random numbers of one Picker. Unseeded, it uses
// math/rand/v2's top-level generator, which is per-thread ChaCha8 in the
// runtime: no lock, nothing shared between goroutines. Seeded, it is
// SplitMix64 over an atomic counter: lock-free and race-free, and
// reproducible when one goroutine picks (concurrent picks interleave their
// draws).
type source struct {
	seeded bool
	state  atomic.Uint64
}

func newSource(seeded bool, seed uint64) *source {
	s := &source{seeded: seeded}
	s.state.Store(seed)
	return s
}

func (s *source) uint64() uint64 {
	if !s.seeded {
		return rand.Uint64()
	}
	z := s.state.Add(0x9e3779b97f4a7c15)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// two draws two distinct indexes below n, n >= 2, from one random number.
func (s *source) two(n int) (a, b int) {
	x, frac := bits.Mul64(s.uint64(), uint64(n))
	y, _ := bits.Mul64(frac, uint64(n-1))
	if y >= x {
		y++
	}
	return int(x), int(y)
}
