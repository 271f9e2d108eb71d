package balancer_test

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/rafting/rafting/balancer"
)

// endpoints returns n endpoints of weights 1..n, the ID of the i-th being "e<i>".
func endpoints(n int) []balancer.Endpoint {
	eps := make([]balancer.Endpoint, n)
	for i := range eps {
		eps[i] = balancer.Endpoint{
			ID:      "e" + strconv.Itoa(i),
			Address: fmt.Sprintf("10.0.%d.%d:8080", i/256, i%256),
			Weight:  i + 1,
		}
	}
	return eps
}

// The loops range over b.N rather than call b.Loop, which keeps every result
// of the call alive by spilling it: for a 64-byte Endpoint that adds about
// 8 ns/op that a caller using the Endpoint does not pay.

func benchPick(b *testing.B, p balancer.Policy, n int) {
	bl := balancer.New(p)
	bl.Update(endpoints(n))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := bl.Pick(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchPickParallel(b *testing.B, p balancer.Policy, n int) {
	bl := balancer.New(p)
	bl.Update(endpoints(n))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var e balancer.Endpoint
		for pb.Next() {
			e, _ = bl.Pick()
		}
		_ = e
	})
}

func benchPickDone(b *testing.B, p balancer.Policy, n int) {
	bl := balancer.New(p)
	bl.Update(endpoints(n))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_, d, err := bl.PickTracked()
		if err != nil {
			b.Fatal(err)
		}
		d.Finish(nil)
	}
}

func benchPickDoneParallel(b *testing.B, p balancer.Policy, n int) {
	bl := balancer.New(p)
	bl.Update(endpoints(n))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, d, _ := bl.PickTracked()
			d.Finish(nil)
		}
	})
}

// benchPickExcept measures a retry's pick: PickExcept avoiding the two
// endpoints already tried, and Finish.
func benchPickExcept(b *testing.B, p balancer.Policy, n int) {
	bl := balancer.New(p)
	eps := endpoints(n)
	bl.Update(eps)
	tried := []string{eps[0].ID, eps[n/2].ID}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_, d, err := bl.PickExcept(tried...)
		if err != nil {
			b.Fatal(err)
		}
		d.Finish(nil)
	}
}

func BenchmarkRoundRobin(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) { benchPick(b, balancer.RoundRobin(), n) })
		b.Run(fmt.Sprintf("n=%d/parallel", n), func(b *testing.B) { benchPickParallel(b, balancer.RoundRobin(), n) })
		b.Run(fmt.Sprintf("n=%d/done", n), func(b *testing.B) { benchPickDone(b, balancer.RoundRobin(), n) })
		b.Run(fmt.Sprintf("n=%d/done/parallel", n), func(b *testing.B) { benchPickDoneParallel(b, balancer.RoundRobin(), n) })
		b.Run(fmt.Sprintf("n=%d/except", n), func(b *testing.B) { benchPickExcept(b, balancer.RoundRobin(), n) })
	}
}

func BenchmarkMonteCarlo(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) { benchPick(b, balancer.MonteCarlo(), n) })
		b.Run(fmt.Sprintf("n=%d/parallel", n), func(b *testing.B) { benchPickParallel(b, balancer.MonteCarlo(), n) })
		b.Run(fmt.Sprintf("n=%d/done", n), func(b *testing.B) { benchPickDone(b, balancer.MonteCarlo(), n) })
		b.Run(fmt.Sprintf("n=%d/done/parallel", n), func(b *testing.B) { benchPickDoneParallel(b, balancer.MonteCarlo(), n) })
		b.Run(fmt.Sprintf("n=%d/except", n), func(b *testing.B) { benchPickExcept(b, balancer.MonteCarlo(), n) })
	}
}

func BenchmarkLeastLoaded(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("n=%d/done", n), func(b *testing.B) { benchPickDone(b, balancer.LeastLoaded(), n) })
		b.Run(fmt.Sprintf("n=%d/done/parallel", n), func(b *testing.B) { benchPickDoneParallel(b, balancer.LeastLoaded(), n) })
		b.Run(fmt.Sprintf("n=%d/pick", n), func(b *testing.B) { benchPick(b, balancer.LeastLoaded(), n) })
		b.Run(fmt.Sprintf("n=%d/except", n), func(b *testing.B) { benchPickExcept(b, balancer.LeastLoaded(), n) })
	}
}

func BenchmarkFunc(b *testing.B) {
	first := balancer.Func(first)
	b.Run("n=10", func(b *testing.B) { benchPick(b, first, 10) })
	b.Run("n=10/parallel", func(b *testing.B) { benchPickParallel(b, first, 10) })
	b.Run("n=10/except", func(b *testing.B) { benchPickExcept(b, first, 10) })
}

func BenchmarkCustom(b *testing.B) {
	b.Run("n=10", func(b *testing.B) { benchPick(b, ZoneFirst("zone-1"), 10) })
	b.Run("n=10/parallel", func(b *testing.B) { benchPickParallel(b, ZoneFirst("zone-1"), 10) })
	b.Run("n=10/except", func(b *testing.B) { benchPickExcept(b, ZoneFirst("zone-1"), 10) })
}

// BenchmarkFollower measures asking a Balancer again for the follower of
// a policy, which the SDK's Service.Balancer does per call.
func BenchmarkFollower(b *testing.B) {
	bl := balancer.New(nil)
	bl.Update(endpoints(10))
	for _, p := range []struct {
		name string
		p    balancer.Policy
	}{{"own", balancer.RoundRobin()}, {"LeastLoaded", balancer.LeastLoaded()}, {"custom", ZoneFirst("zone-1")}} {
		b.Run(p.name, func(b *testing.B) {
			f := bl.Follower(p.p)
			b.ReportAllocs()
			for b.Loop() {
				if bl.Follower(p.p) != f {
					b.Fatal("another follower")
				}
			}
		})
	}
}

func BenchmarkStats(b *testing.B) {
	bl := balancer.New(balancer.LeastLoaded())
	bl.Update(endpoints(10))
	b.ReportAllocs()
	for b.Loop() {
		bl.Stats()
	}
}

// BenchmarkUpdate measures the slow path: copying the list, carrying the
// counts over and building the Picker.
func BenchmarkUpdate(b *testing.B) {
	policies := []struct {
		name string
		p    balancer.Policy
	}{
		{"RoundRobin", balancer.RoundRobin()},
		{"MonteCarlo", balancer.MonteCarlo()},
		{"LeastLoaded", balancer.LeastLoaded()},
	}
	for _, tt := range policies {
		for _, n := range []int{10, 1000} {
			b.Run(fmt.Sprintf("%s/n=%d", tt.name, n), func(b *testing.B) {
				bl := balancer.New(tt.p)
				eps := endpoints(n)
				b.ReportAllocs()
				for b.Loop() {
					bl.Update(eps)
				}
			})
		}
	}
}

// floor is the least a non-inlined Pick can do: one atomic add, the
// remainder by multiplication as RoundRobin takes it, and the copy of an
// Endpoint out through (Endpoint, error).
type floor struct {
	eps  []balancer.Endpoint
	m    uint64 // 2^64/len(eps), rounded up
	next atomic.Uint64
}

//go:noinline
func (f *floor) pick() (balancer.Endpoint, error) {
	i, _ := bits.Mul64(f.m*uint64(uint32(f.next.Add(1))), uint64(len(f.eps)))
	return f.eps[i], nil
}

// BenchmarkSignatureFloor measures what Pick's signature costs by itself,
// the bound under RoundRobin's figure while Pick is too large to inline.
func BenchmarkSignatureFloor(b *testing.B) {
	f := &floor{eps: endpoints(10), m: math.MaxUint64/10 + 1}
	b.ReportAllocs()
	for range b.N {
		if _, err := f.pick(); err != nil {
			b.Fatal(err)
		}
	}
}
