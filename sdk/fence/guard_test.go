package fence_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/sdk/fence"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		highest, token uint64
		want           error
	}{
		{0, 1, nil},
		{5, 5, nil}, // the same term writing again
		{5, 6, nil},
		{5, 4, fence.ErrStaleToken},
		{0, 0, fence.ErrNoToken},
		{5, 0, fence.ErrNoToken},
		{^uint64(0), ^uint64(0), nil},
		{^uint64(0), ^uint64(0) - 1, fence.ErrStaleToken},
	}
	for _, tt := range tests {
		err := fence.Check(tt.highest, tt.token)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("Check(%d, %d) = %v, want %v", tt.highest, tt.token, err, tt.want)
		}
	}
}

func TestStaleTokenError(t *testing.T) {
	err := fence.Check(7, 5)
	var stale *fence.StaleTokenError
	if !errors.As(err, &stale) || stale.Token != 5 || stale.Highest != 7 {
		t.Fatalf("Check(7, 5) = %#v, want *StaleTokenError{5, 7}", err)
	}
	if want := "fence: stale fencing token 5: a newer master has written with 7"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	if errors.Is(err, fence.ErrNoToken) || errors.Is(fence.ErrNoToken, fence.ErrStaleToken) {
		t.Error("ErrNoToken and ErrStaleToken match each other")
	}
}

func TestAdmit(t *testing.T) {
	var g fence.Guard // the zero Guard is ready
	steps := []struct {
		token   uint64
		want    error
		highest uint64
	}{
		{0, fence.ErrNoToken, 0},
		{5, nil, 5},
		{5, nil, 5}, // equal: admitted
		{4, fence.ErrStaleToken, 5},
		{1 << 40, nil, 1 << 40},
		{5, fence.ErrStaleToken, 1 << 40},
		{0, fence.ErrNoToken, 1 << 40},
	}
	for _, s := range steps {
		err := g.Admit(s.token)
		if !errors.Is(err, s.want) || (s.want == nil) != (err == nil) {
			t.Errorf("Admit(%d) = %v, want %v", s.token, err, s.want)
		}
		if h := g.Highest(); h != s.highest {
			t.Errorf("after Admit(%d): Highest() = %d, want %d", s.token, h, s.highest)
		}
	}
}

func TestNewGuard(t *testing.T) {
	g := fence.NewGuard(9)
	if err := g.Admit(8); !errors.Is(err, fence.ErrStaleToken) {
		t.Errorf("NewGuard(9).Admit(8) = %v, want ErrStaleToken", err)
	}
	if err := g.Admit(9); err != nil {
		t.Errorf("NewGuard(9).Admit(9) = %v, want nil", err)
	}
	if err := fence.NewGuard(0).Admit(1); err != nil {
		t.Errorf("NewGuard(0).Admit(1) = %v, want nil", err)
	}
}

// TestAdmitConcurrent: many goroutines admit random tokens at once, each
// near the current highest (a little lower, equal or a little higher), so
// that admits, equal tokens and refusals all race. An admitted token is
// never lower than one whose Admit had returned before its own began; a
// refusal names a higher token someone offered; and the highest ends as the
// largest token offered.
func TestAdmitConcurrent(t *testing.T) {
	const workers, each = 16, 4000
	var g fence.Guard
	var offered sync.Map    // every token offered, stored before its Admit
	var top atomic.Uint64   // the largest token offered
	var floor atomic.Uint64 // the largest token whose Admit has returned nil
	var admitted, equalled, refused atomic.Int64
	raise := func(a *atomic.Uint64, v uint64) {
		for f := a.Load(); v > f && !a.CompareAndSwap(f, v); f = a.Load() {
		}
	}
	start := make(chan struct{})
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			var last uint64 // this goroutine's last admitted token
			<-start
			for range each {
				tok := max(4, g.Highest()+r.Uint64N(7)) - 3 // from 3 below the highest to 3 above
				offered.Store(tok, true)
				raise(&top, tok)
				before := floor.Load()
				err := g.Admit(tok)
				var stale *fence.StaleTokenError
				switch {
				case err == nil:
					if tok < before || tok < last {
						errs <- fmt.Errorf("Admit(%d) = nil after %d (here %d) was admitted", tok, before, last)
						return
					}
					if tok == before {
						equalled.Add(1)
					}
					last = tok
					raise(&floor, tok)
					admitted.Add(1)
				case errors.As(err, &stale):
					if _, ok := offered.Load(stale.Highest); stale.Token != tok || stale.Highest <= tok || !ok {
						errs <- fmt.Errorf("Admit(%d) = %v: not a token offered, or not higher", tok, err)
						return
					}
					refused.Add(1)
				default:
					errs <- fmt.Errorf("Admit(%d) = %v", tok, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if h := g.Highest(); h != top.Load() {
		t.Errorf("Highest() = %d, want %d, the largest token offered", h, top.Load())
	}
	t.Logf("%d admitted (%d equal to the highest), %d refused", admitted.Load(), equalled.Load(), refused.Load())
	if admitted.Load() == 0 || equalled.Load() == 0 || refused.Load() == 0 {
		t.Errorf("%d admitted, %d equal, %d refused: the test did not exercise all three", admitted.Load(), equalled.Load(), refused.Load())
	}
}

// TestDoWaitsForTheWriteBefore: a newer master's Do waits while an older
// master's write is under way, then writes after it; the older master's
// next write is refused and does not run.
func TestDoWaitsForTheWriteBefore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var g fence.Guard
		var log []uint64 // the resource: written only inside Do
		started, release := make(chan struct{}), make(chan struct{})
		aDone := make(chan error)
		go func() {
			aDone <- g.Do(ctx, 5, func() error {
				close(started)
				<-release // a slow write
				log = append(log, 5)
				return nil
			})
		}()
		<-started
		bDone := make(chan error)
		go func() { bDone <- g.Do(ctx, 7, func() error { log = append(log, 7); return nil }) }()
		synctest.Wait() // b is blocked in Do
		if g.Highest() != 5 || len(log) != 0 {
			t.Fatalf("while 5's write is under way: Highest() = %d, log %v; want 5 and nothing written (7 waits)", g.Highest(), log)
		}
		close(release)
		if err := <-aDone; err != nil {
			t.Fatalf("Do(5) = %v", err)
		}
		if err := <-bDone; err != nil {
			t.Fatalf("Do(7) = %v", err)
		}
		ran := false
		err := g.Do(ctx, 5, func() error { ran = true; return nil })
		var stale *fence.StaleTokenError
		if !errors.As(err, &stale) || stale.Highest != 7 || ran {
			t.Fatalf("Do(5) after 7 = %v (ran %v), want *StaleTokenError{5, 7} and not run", err, ran)
		}
		if want := []uint64{5, 7}; !slices.Equal(log, want) {
			t.Errorf("log = %v, want %v", log, want)
		}
	})
}

// TestDoOrdersWrites: goroutines write random tokens through Do to a shared,
// unsynchronized log. Under -race, two acts at once is a reported race; and
// the log never goes down, which Admit-then-write would not give.
func TestDoOrdersWrites(t *testing.T) {
	var g fence.Guard
	var log []uint64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for range 500 {
				tok := max(4, g.Highest()+r.Uint64N(7)) - 3 // near the highest: some stale
				_ = g.Do(context.Background(), tok, func() error {
					log = append(log, tok)
					return nil
				})
			}
		})
	}
	wg.Wait()
	for i := 1; i < len(log); i++ {
		if log[i] < log[i-1] {
			t.Fatalf("log[%d] = %d after %d: a stale write landed after a newer one", i, log[i], log[i-1])
		}
	}
	if len(log) == 0 || log[len(log)-1] != g.Highest() {
		t.Errorf("log ends %v, Highest() = %d", log[max(0, len(log)-1):], g.Highest())
	}
}

func TestDoContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var g fence.Guard
		release := make(chan struct{})
		started := make(chan struct{})
		done := make(chan error)
		go func() {
			done <- g.Do(context.Background(), 5, func() error { close(started); <-release; return nil })
		}()
		<-started
		// A stale token is refused at once, without waiting for the running Do.
		if err := g.Do(context.Background(), 4, func() error { return nil }); !errors.Is(err, fence.ErrStaleToken) {
			t.Errorf("Do(4) while 5 runs = %v, want ErrStaleToken at once", err)
		}
		if err := g.Do(context.Background(), 0, func() error { return nil }); !errors.Is(err, fence.ErrNoToken) {
			t.Errorf("Do(0) = %v, want ErrNoToken", err)
		}
		// A term that ends while it waits never acts, and its token is not admitted.
		ctx, cancel := context.WithCancel(context.Background())
		waiting := make(chan error)
		go func() {
			waiting <- g.Do(ctx, 9, func() error { t.Error("Do(9) acted after its ctx ended"); return nil })
		}()
		synctest.Wait()
		cancel()
		if err := <-waiting; !errors.Is(err, context.Canceled) {
			t.Errorf("Do(9) with its ctx cancelled while it waited = %v, want context.Canceled", err)
		}
		if h := g.Highest(); h != 5 {
			t.Errorf("Highest() = %d, want 5: a Do that gave up admits nothing", h)
		}
		close(release)
		if err := <-done; err != nil {
			t.Errorf("Do(5) = %v", err)
		}
	})
	// A ctx already ended never acts, even when the guard is free.
	var g fence.Guard
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 100 {
		if err := g.Do(ctx, 5, func() error { t.Fatal("acted with an ended ctx"); return nil }); !errors.Is(err, context.Canceled) {
			t.Fatalf("Do with an ended ctx = %v, want context.Canceled", err)
		}
	}
}

func TestDoActError(t *testing.T) {
	var g fence.Guard
	boom := errors.New("disk full")
	if err := g.Do(context.Background(), 5, func() error { return boom }); err != boom {
		t.Errorf("Do = %v, want act's error", err)
	}
	if h := g.Highest(); h != 5 {
		t.Errorf("Highest() = %d after a failed act, want 5: the token stays admitted", h)
	}
}

func TestDoPanicReleases(t *testing.T) {
	var g fence.Guard
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic in act did not propagate")
			}
		}()
		_ = g.Do(context.Background(), 5, func() error { panic("act") })
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Do(ctx, 5, func() error { return nil }); err != nil {
		t.Errorf("Do after a panic = %v, want nil (the guard released)", err)
	}
}
