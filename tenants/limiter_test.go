package tenants

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// drain takes tokens from key until Allow refuses, and returns how many it got.
func drain(t *testing.T, l *Limiters, key string, rps float64, burst int, now time.Time) int {
	t.Helper()
	for n := 0; n < 1_000_000; n++ {
		if ok, ra := l.Allow(key, rps, burst, now); !ok {
			return n
		} else if ra != 0 {
			t.Fatalf("Allow() = true, %v, want retryAfter 0", ra)
		}
	}
	t.Fatal("Allow() never refused")
	return 0
}

func TestLimitersBurstThenRefuse(t *testing.T) {
	var l Limiters // the zero value is ready
	if got := drain(t, &l, "acme", 10, 20, t0); got != 20 {
		t.Fatalf("allowed %d at once, want the burst of 20", got)
	}
	ok, ra := l.Allow("acme", 10, 20, t0)
	if ok || ra != 100*time.Millisecond {
		t.Fatalf("Allow(empty) = %v, %v, want false, 100ms (one token at 10/s)", ok, ra)
	}
	// Part-way through the refill the wait shrinks, rounded up to the ms.
	ok, ra = l.Allow("acme", 10, 20, t0.Add(30*time.Millisecond+time.Microsecond))
	if ok || ra != 70*time.Millisecond {
		t.Fatalf("Allow(+30ms) = %v, %v, want false, 70ms", ok, ra)
	}
	// A refusal takes nothing: the token is there when retryAfter said.
	if ok, ra := l.Allow("acme", 10, 20, t0.Add(100*time.Millisecond)); !ok || ra != 0 {
		t.Fatalf("Allow(+100ms) = %v, %v, want true, 0", ok, ra)
	}
	if ok, _ := l.Allow("acme", 10, 20, t0.Add(100*time.Millisecond)); ok {
		t.Fatal("Allow(+100ms) second = true, want false")
	}
}

func TestLimitersRetryAfter(t *testing.T) {
	tests := []struct {
		rps   float64
		burst int
		want  time.Duration
	}{
		{1000, 1, time.Millisecond},
		{5000, 1, time.Millisecond}, // 0.2 ms rounds up to 1 ms
		{3, 1, 334 * time.Millisecond},
		{UnauthenticatedRate, UnauthenticatedBurst, 200 * time.Millisecond},
		{LaneRate, LaneBurst, 40 * time.Millisecond},
		{0.5, 1, 2 * time.Second},
	}
	for _, tt := range tests {
		var l Limiters
		drain(t, &l, "k", tt.rps, tt.burst, t0)
		if ok, ra := l.Allow("k", tt.rps, tt.burst, t0); ok || ra != tt.want {
			t.Errorf("Allow(rps %v, burst %d) after draining = %v, %v, want false, %v", tt.rps, tt.burst, ok, ra, tt.want)
		}
	}
}

func TestLimitersRefill(t *testing.T) {
	var l Limiters
	drain(t, &l, "acme", 100, 50, t0)
	// 100 ms at 100/s refills 10 tokens.
	if got := drain(t, &l, "acme", 100, 50, t0.Add(100*time.Millisecond)); got != 10 {
		t.Fatalf("after 100ms, allowed %d, want 10", got)
	}
	// A long pause refills only up to the burst.
	if got := drain(t, &l, "acme", 100, 50, t0.Add(time.Hour)); got != 50 {
		t.Fatalf("after an hour, allowed %d, want the burst of 50", got)
	}
	// A steady rate at the limit is always allowed.
	now := t0.Add(2 * time.Hour)
	drain(t, &l, "acme", 100, 50, now)
	for i := 1; i <= 1000; i++ {
		if ok, ra := l.Allow("acme", 100, 50, now.Add(time.Duration(i)*10*time.Millisecond)); !ok {
			t.Fatalf("steady call %d refused, retryAfter %v", i, ra)
		}
	}
}

func TestLimitersKeysIndependent(t *testing.T) {
	var l Limiters
	drain(t, &l, "noisy", 10, 10, t0)
	for range 100 {
		l.Allow("noisy", 10, 10, t0)
	}
	if got := drain(t, &l, "quiet", 10, 10, t0); got != 10 {
		t.Fatalf("quiet allowed %d, want its full burst of 10", got)
	}
	if got := drain(t, &l, "quiet-2", 1, 3, t0); got != 3 {
		t.Fatalf("quiet-2 allowed %d, want 3", got)
	}
	if l.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", l.Len())
	}
}

func TestLimitersQuotaChange(t *testing.T) {
	var l Limiters
	drain(t, &l, "acme", 10, 10, t0)

	// Raising the rate applies to the refill from the first call that
	// carries it on.
	if ok, ra := l.Allow("acme", 100, 10, t0); ok || ra != 10*time.Millisecond {
		t.Fatalf("Allow(rps 100) = %v, %v, want false, 10ms", ok, ra)
	}
	if got := drain(t, &l, "acme", 100, 10, t0.Add(50*time.Millisecond)); got != 5 {
		t.Fatalf("50ms at 100/s allowed %d, want 5", got)
	}
	// Raising the burst lets the bucket fill further.
	if got := drain(t, &l, "acme", 100, 40, t0.Add(time.Hour)); got != 40 {
		t.Fatalf("burst 40 allowed %d, want 40", got)
	}
	// Lowering the burst caps what has built up.
	now := t0.Add(2 * time.Hour)
	if got := drain(t, &l, "acme", 100, 5, now); got != 5 {
		t.Fatalf("burst 5 allowed %d, want 5", got)
	}
	// Lowering the rate lengthens the wait.
	if ok, ra := l.Allow("acme", 1, 5, now); ok || ra != time.Second {
		t.Fatalf("Allow(rps 1) = %v, %v, want false, 1s", ok, ra)
	}
	if l.Len() != 1 {
		t.Fatalf("Len() = %d, want 1", l.Len())
	}
}

func TestLimitersOddQuotas(t *testing.T) {
	var l Limiters
	for _, rps := range []float64{0, -1, math.NaN(), math.Inf(-1)} {
		if ok, ra := l.Allow("k", rps, 10, t0); ok || ra != time.Second {
			t.Errorf("Allow(rps %v) = %v, %v, want false, 1s", rps, ok, ra)
		}
	}
	if l.Len() != 0 {
		t.Errorf("Len() = %d after refused rates, want 0", l.Len())
	}
	for i := range 10_000 {
		if ok, _ := l.Allow("inf", math.Inf(1), 1, t0.Add(time.Duration(i%3))); !ok {
			t.Fatalf("Allow(rps +Inf) call %d refused", i)
		}
	}
	// burst below 1 counts as 1.
	for _, burst := range []int{0, -5} {
		key := "b" + strconv.Itoa(burst)
		if got := drain(t, &l, key, 1, burst, t0); got != 1 {
			t.Errorf("burst %d allowed %d, want 1", burst, got)
		}
	}
	// A rate so low it never refills in practice gives a large, valid wait.
	drain(t, &l, "slow", 1e-300, 1, t0)
	if ok, ra := l.Allow("slow", 1e-300, 1, t0); ok || ra <= 0 {
		t.Errorf("Allow(rps 1e-300) = %v, %v, want false and a positive wait", ok, ra)
	}
}

func TestLimitersEviction(t *testing.T) {
	l := NewLimiters(time.Minute)
	l.Allow("idle", 10, 10, t0)
	drain(t, l, "drained", 1, 100, t0) // needs 100 s to refill
	if got := l.Sweep(t0.Add(59 * time.Second)); got != 0 || l.Len() != 2 {
		t.Fatalf("Sweep(+59s) = %d, Len %d, want 0, 2", got, l.Len())
	}
	// At a minute "idle" is idle and full; "drained" is idle but not yet full.
	if got := l.Sweep(t0.Add(time.Minute)); got != 1 || l.Len() != 1 {
		t.Fatalf("Sweep(+1m) = %d, Len %d, want 1, 1", got, l.Len())
	}
	if got := l.Sweep(t0.Add(100 * time.Second)); got != 1 || l.Len() != 0 {
		t.Fatalf("Sweep(+100s) = %d, Len %d, want 1, 0", got, l.Len())
	}
	// A key used again after eviction starts with a full bucket.
	if got := drain(t, l, "drained", 1, 100, t0.Add(101*time.Second)); got != 100 {
		t.Fatalf("after eviction, allowed %d, want 100", got)
	}
}

func TestLimitersKeepsUsedBuckets(t *testing.T) {
	l := NewLimiters(time.Minute)
	for i := range 10 {
		l.Allow("busy", 10, 10, t0.Add(time.Duration(i)*30*time.Second))
	}
	// Last used at +4m30s: not idle at +5m.
	if got := l.Sweep(t0.Add(5 * time.Minute)); got != 0 || l.Len() != 1 {
		t.Fatalf("Sweep() = %d, Len %d, want the busy bucket kept", got, l.Len())
	}
}

func TestLimitersSweepFromAllow(t *testing.T) {
	l := NewLimiters(time.Minute)
	for i := range 100 {
		l.Allow("k"+strconv.Itoa(i), 10, 10, t0)
	}
	if l.Len() != 100 {
		t.Fatalf("Len() = %d, want 100", l.Len())
	}
	// Not due yet: the first Allow swept (an empty set) and set the next sweep
	// a minute on.
	l.Allow("k0", 10, 10, t0.Add(59*time.Second))
	if l.Len() != 100 {
		t.Fatalf("Len() = %d before the sweep is due, want 100", l.Len())
	}
	// Due: one Allow evicts the 99 idle, full buckets (k0 was used at +59s).
	l.Allow("fresh", 10, 10, t0.Add(61*time.Second))
	if l.Len() != 2 {
		t.Fatalf("Len() = %d after Allow swept, want 2 (k0 and fresh)", l.Len())
	}
	// An explicit Sweep postpones Allow's own.
	for i := range 10 {
		l.Allow("j"+strconv.Itoa(i), 10, 10, t0.Add(62*time.Second))
	}
	l.Sweep(t0.Add(100 * time.Second))
	l.Allow("k0", 10, 10, t0.Add(150*time.Second)) // the j are idle, but no sweep is due until +160s
	if l.Len() != 12 {
		t.Fatalf("Len() = %d, want 12", l.Len())
	}
	l.Allow("k0", 10, 10, t0.Add(160*time.Second))
	if l.Len() != 1 {
		t.Fatalf("Len() = %d after Allow swept at +160s, want 1 (k0)", l.Len())
	}
}

func TestLimitersConcurrent(t *testing.T) {
	// Under the race detector: many goroutines, shared and own keys, quota
	// changes and sweeps at once. The shared key must never grant more than
	// its burst plus what the elapsed (injected) time refilled.
	l := NewLimiters(time.Millisecond)
	var granted atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := fmt.Sprintf("own-%d", g)
			for i := range 2000 {
				if ok, _ := l.Allow("shared", 1, 100, t0); ok {
					granted.Add(1)
				}
				burst := 10 + i%2 // flapping quota
				l.Allow(own, 1000, burst, t0.Add(time.Duration(i)*time.Millisecond))
				if i%500 == 0 {
					l.Sweep(t0.Add(time.Duration(i) * time.Millisecond))
				}
			}
		}()
	}
	wg.Wait()
	if got := granted.Load(); got != 100 {
		t.Fatalf("shared key granted %d at one instant, want its burst of 100", got)
	}
}

// BenchmarkAllow measures Allow from parallel goroutines:
//   - own-keys: each goroutine on its own 16 tenants (tenants do not share a
//     bucket: this shows whether anything global is contended);
//   - shared-keys: every goroutine cycles through the same 1024 tenants (each
//     bucket's cache lines move between cores, as when a tenant's requests
//     land on any core);
//   - one-key: every goroutine on one tenant (its bucket's lock is contended);
//   - refused: an over-rate tenant per goroutine (the refusal path computes
//     retryAfter).
func BenchmarkAllow(b *testing.B) {
	const tenants = 1024
	keys := make([]string, tenants)
	for i := range keys {
		keys[i] = fmt.Sprintf("tenant-%d", i)
	}
	run := func(b *testing.B, rps float64, burst int, key func(g, i int) string) {
		var l Limiters
		var next atomic.Int64
		now := time.Now()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			g := int(next.Add(1))
			for i := 0; pb.Next(); i++ {
				l.Allow(key(g, i), rps, burst, now)
			}
		})
	}
	b.Run("own-keys", func(b *testing.B) {
		run(b, 1e9, 1e9, func(g, i int) string { return keys[(g*16+i%16)%tenants] })
	})
	b.Run("shared-keys", func(b *testing.B) {
		run(b, 1e9, 1e9, func(g, i int) string { return keys[(g*97+i)%tenants] })
	})
	b.Run("one-key", func(b *testing.B) {
		run(b, 1e9, 1e9, func(int, int) string { return keys[0] })
	})
	b.Run("refused", func(b *testing.B) {
		run(b, 1, 1, func(g, i int) string { return keys[(g*16+i%16)%tenants] })
	})
}

// TestCappedLimiters: a capped set holds at most its cap of buckets of
// their own; keys past it share one, which limits them together.
func TestCappedLimiters(t *testing.T) {
	l := NewCappedLimiters(0, 100)
	now := time.Unix(1000, 0)
	for i := range 1000 {
		if ok, _ := l.Allow(fmt.Sprintf("ip:%d", i), 1, 1, now); !ok && i < 100 {
			t.Fatalf("key %d, within the cap, refused its first request", i)
		}
	}
	if n := l.Len(); n > 101 {
		t.Fatalf("%d buckets held, want at most the cap of 100 and the shared one", n)
	}
	if ok, _ := l.Allow("ip:999999", 1, 1, now); ok {
		t.Fatal("a key past the cap had a full bucket of its own: the shared one is spent")
	}
}
