package balancer

import (
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"
	"unsafe"
)

// TestAlias checks that the alias table gives every endpoint the
// probability of its weight.
func TestAlias(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tests := [][]int{
		{1},
		{5, 5},
		{1, 1000},
		{1, 2, 3, 4},
		{math.MaxInt32, 1, math.MaxInt32},
	}
	for range 50 {
		ws := make([]int, 1+r.IntN(300))
		for i := range ws {
			ws[i] = 1 + r.IntN(1000)
		}
		tests = append(tests, ws)
	}
	for _, ws := range tests {
		eps := make([]Endpoint, len(ws))
		var sum float64
		for i, w := range ws {
			eps[i].Weight = w
			sum += float64(w)
		}
		cols := alias(eps)
		n := float64(len(cols))
		p := make([]float64, len(cols))
		for i, c := range cols {
			keep := float64(c.keep) / 0x1p32
			p[i] += keep / n
			p[c.other] += (1 - keep) / n
		}
		for i, w := range ws {
			if want := float64(w) / sum; math.Abs(p[i]-want) > 1e-9 {
				t.Errorf("weights %v: endpoint %d has probability %g, want %g", ws, i, p[i], want)
				break
			}
		}
	}
}

// TestTwo checks that two draws two distinct indexes, and every ordered
// pair.
func TestTwo(t *testing.T) {
	s := newSource(true, 42)
	for n := 2; n <= 6; n++ {
		seen := map[[2]int]int{}
		for range 1000 * n * n {
			a, b := s.two(n)
			if a == b || a < 0 || b < 0 || a >= n || b >= n {
				t.Fatalf("two(%d) = %d, %d, want distinct indexes below %d", n, a, b, n)
			}
			seen[[2]int{a, b}]++
		}
		if len(seen) != n*(n-1) {
			t.Errorf("two(%d) drew %d ordered pairs, want %d", n, len(seen), n*(n-1))
		}
		for pair, k := range seen {
			if want := 1000 * n * n / (n * (n - 1)); k < want*8/10 || k > want*12/10 {
				t.Errorf("two(%d) drew %v %d times, want about %d", n, pair, k, want)
			}
		}
	}
}

func TestLighter(t *testing.T) {
	tests := []struct {
		inA, wA, inB, wB int
		want             bool // a lighter than b
	}{
		{0, 100, 1, 100, true},
		{1, 100, 0, 100, false},
		{1, 100, 1, 100, false}, // a tie is not lighter
		{2, 300, 1, 100, true},
		{3, 300, 1, 100, false},
		{1, 100, 2, 200, false},
		{5, 1 << 62, 1, 1, true}, // no overflow
		{-1, 100, 0, 100, false}, // a negative count reads as 0
	}
	for _, tt := range tests {
		p := &llPicker{set: fresh([]Endpoint{{Weight: tt.wA}, {Weight: tt.wB}})}
		setInFlight(p.loads[0], tt.inA)
		setInFlight(p.loads[1], tt.inB)
		if got := p.lighter(0, 1); got != tt.want {
			t.Errorf("lighter(%d/%d, %d/%d) = %v, want %v", tt.inA, tt.wA, tt.inB, tt.wB, got, tt.want)
		}
	}
}

// setInFlight makes l count n requests in flight; a negative n is what
// Dones ended twice leave.
func setInFlight(l *load, n int) {
	if n >= 0 {
		l.picked.Store(uint64(n))
	} else {
		l.finished.Store(uint64(-n))
	}
}

// TestHealth checks that health.failing counts the endpoints at or past
// EjectAfter failures, through resets and Updates.
func TestHealth(t *testing.T) {
	down := errors.New("down")
	b := New(RoundRobin())
	b.Update([]Endpoint{{ID: "a", Weight: 1}, {ID: "b", Weight: 1}, {ID: "c", Weight: 1}})
	a, c := b.loads["a"], b.loads["c"]
	steps := []struct {
		l    *load
		err  error
		want int64
	}{
		{a, down, 0}, {a, down, 0}, {a, down, 0}, {a, down, 0},
		{a, down, 1}, // EjectAfter
		{a, down, 1},
		{c, down, 1},
		{a, nil, 0},
		{a, nil, 0},
	}
	for i, s := range steps {
		s.l.report(s.err)
		if got := b.health.failing.Load(); got != s.want {
			t.Fatalf("step %d: failing = %d, want %d", i, got, s.want)
		}
	}
	for range EjectAfter {
		c.report(down)
	}
	if got := b.health.failing.Load(); got != 1 {
		t.Fatalf("c ejected: failing = %d, want 1", got)
	}
	b.Update([]Endpoint{{ID: "a", Weight: 1}, {ID: "c", Weight: 1}})
	if got := b.health.failing.Load(); got != 1 {
		t.Fatalf("after an Update keeping c: failing = %d, want 1", got)
	}
	b.Update([]Endpoint{{ID: "a", Weight: 1}})
	if got := b.health.failing.Load(); got != 0 {
		t.Fatalf("after an Update dropping c: failing = %d, want 0", got)
	}
	c.report(down) // a late report from a request to c
	if got := b.health.failing.Load(); got != 0 {
		t.Fatalf("after a late failure on c: failing = %d, want 0", got)
	}
}

func TestFastmod(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 7, 10, 1000, 1 << 20, 1<<32 - 5, math.MaxUint32} {
		m := math.MaxUint64/n + 1
		for _, c := range []uint64{0, 1, n - 1, n, n + 1, 12345678, math.MaxUint32 - 1, math.MaxUint32} {
			c := uint32(c)
			if got, want := fastmod(c, m, n), uint64(c)%n; got != want {
				t.Errorf("fastmod(%d) with n = %d: %d, want %d", c, n, got, want)
			}
		}
	}
}

// TestFollowerCollected: followers of policies other than the built-in
// ones are held weakly: those nothing refers to are collected and
// forgotten, however many are made, and the others stay.
func TestFollowerCollected(t *testing.T) {
	b := New(nil)
	b.Update([]Endpoint{{ID: "a", Weight: 1}, {ID: "b", Weight: 1}})
	first := Func(func(eps []Endpoint) (Endpoint, error) { return eps[0], nil })
	kept := b.Follower(first)
	ll := b.Follower(LeastLoaded())
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 20_000 {
		f := b.Follower(first) // a new one each time: a Func is not comparable
		if i%1000 == 0 {
			b.Follower(zone(strconv.Itoa(i))) // comparable, new: weak too
		}
		if e, err := f.Pick(); err != nil || e.ID != "a" {
			t.Fatalf("Pick() = %v, %v", e, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		b.fmu.Lock()
		n := len(b.followers)
		b.fmu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d followers left after 20,000 dropped, want 2", n)
		}
		time.Sleep(time.Millisecond) // cleanups run on their own goroutine
	}
	var after runtime.MemStats
	runtime.GC() // what the cleanups themselves left
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("the heap grew by %d bytes", grew)
	// The 20,000 Balancers alone would hold 20,000 × unsafe.Sizeof(Balancer{})
	// (≈ 2 MB), their map entries more: half of that catches any of them
	// kept, and leaves room for what the runtime keeps of a burst of
	// cleanups on a loaded machine (547 KB once in CI beside other tests).
	if limit := int64(20_000*unsafe.Sizeof(Balancer{})) / 2; grew > limit {
		t.Errorf("the heap grew by %d bytes for 20,000 dropped followers, want under %d", grew, limit)
	}
	if b.Follower(LeastLoaded()) != ll {
		t.Error("the LeastLoaded follower was dropped")
	}
	b.Update([]Endpoint{{ID: "c", Weight: 1}})
	if e, _ := kept.Pick(); e.ID != "c" {
		t.Errorf("a follower still referred to was not updated: Pick() = %v, want c", e)
	}
	runtime.KeepAlive(kept)
}

// zone is a comparable custom policy.
type zone string

func (z zone) Build(eps []Endpoint) Picker { return RoundRobin().Build(eps) }
