package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestRedTeamRunAsMasterIdleStates: RunAsMaster on a member that never
// becomes master (two-step, never Ready) does not call fn, and returns at
// once when ctx ends; likewise after Leave and for a suspended master.
func TestRedTeamRunAsMasterIdleStates(t *testing.T) {
	c := sdktest.Start(t)
	t.Run("Starting", func(t *testing.T) {
		m := c.Join(t, msInstance("ridle", "s", 0), sdk.WithTwoStepStartup())
		var calls atomic.Int32
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := m.RunAsMaster(ctx, func(sdk.Term) error { calls.Add(1); return nil })
		if !errors.Is(err, context.DeadlineExceeded) || calls.Load() != 0 || time.Since(start) > time.Second {
			t.Fatalf("RunAsMaster() = %v after %v, fn called %d times", err, time.Since(start), calls.Load())
		}
	})
	t.Run("SuspendedThenLeave", func(t *testing.T) {
		a := c.Join(t, msInstance("ridle2", "a", 0))
		j := newJob()
		r := runAsMaster(t, a, j.run)
		first := j.next(t, "a, the master")
		sdk.PauseKeepalives(a, true)
		if !ended(first.Ctx, 2*time.Second) {
			t.Fatalf("Term live 2s after keepalives stopped: %s", sdk.Debug(a))
		}
		time.Sleep(300 * time.Millisecond)
		if n := j.count(); n != 1 {
			t.Fatalf("fn called %d times while suspended", n)
		}
		if err := a.Leave(ctxT(t, 10*time.Second)); err != nil {
			t.Logf("Leave: %v", err)
		}
		if err := r.wait(t, time.Second); !errors.Is(err, sdk.ErrLeft) {
			t.Fatalf("RunAsMaster() = %v after Leave, want ErrLeft", err)
		}
		if n := j.count(); n != 1 {
			t.Fatalf("fn called %d times", n)
		}
	})
}

// TestRedTeamNoOverlappingTerms: two members hand the mastership back
// and forth through Resign, pauses (suspension and expiry) and Leave/rejoin;
// a monitor looks for an instant where both hold a live Term.Ctx (A live,
// then B live, then A still live: A was live when B was).
func TestRedTeamNoOverlappingTerms(t *testing.T) {
	c := sdktest.Start(t)
	opts := []sdk.Option{sdk.WithTTL(3 * time.Second), sdk.WithLeaveTimeout(3 * time.Second), sdk.WithDrainDelay(0)}
	var mu sync.Mutex
	ms := []*sdk.Member{c.Join(t, msInstance("ovl", "a", 0), opts...), c.Join(t, msInstance("ovl", "b", 0), opts...)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var overlaps atomic.Int32
	var firstOverlap atomic.Pointer[string]
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			a, b := ms[0], ms[1]
			mu.Unlock()
			ta, okA := a.Mastership()
			tb, okB := b.Mastership()
			if okA && okB && ta.Ctx.Err() == nil && tb.Ctx.Err() == nil {
				// tb was live after ta was; is ta still live?
				if ta.Ctx.Err() == nil {
					overlaps.Add(1)
					s := fmt.Sprintf("a token %d, b token %d: %s | %s", ta.Token, tb.Token, sdk.Debug(a), sdk.Debug(b))
					firstOverlap.CompareAndSwap(nil, &s)
				}
			}
			// Also: tokens never go down for one member's successive terms.
			time.Sleep(200 * time.Microsecond)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		mu.Lock()
		a, b := ms[0], ms[1]
		mu.Unlock()
		var master, other *sdk.Member
		switch {
		case a.IsMaster():
			master, other = a, b
		case b.IsMaster():
			master, other = b, a
		default:
			time.Sleep(20 * time.Millisecond)
			continue
		}
		_ = other
		switch i % 3 {
		case 0:
			master.Resign(ctxT(t, 5*time.Second))
		case 1:
			sdk.PauseKeepalives(master, true)
			time.Sleep(1500 * time.Millisecond)
			sdk.PauseKeepalives(master, false)
		case 2:
			sdk.PauseKeepalives(master, true)
			time.Sleep(4 * time.Second) // past the TTL: the session expires, the other takes over
			sdk.PauseKeepalives(master, false)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if n := overlaps.Load(); n > 0 {
		t.Fatalf("%d overlapping observations; first: %s", n, *firstOverlap.Load())
	}
}

// TestRedTeamCallbackActsBeforeJoinReturns: a WithRoleChange callback uses
// RoleChange.Member before Join has returned: it resigns synchronously on
// its first Master, or starts Leave. Join must neither hang nor leak.
func TestRedTeamCallbackActsBeforeJoinReturns(t *testing.T) {
	c := sdktest.Start(t)
	t.Run("ResignInCallback", func(t *testing.T) {
		var once sync.Once
		got := make(chan error, 1)
		fn := func(ch sdk.RoleChange) {
			if ch.Role == sdk.Master {
				once.Do(func() { got <- ch.Member.Resign(ctxT(t, 5*time.Second)) })
			}
		}
		a := c.Join(t, msInstance("cbr", "a", 10), sdk.WithRoleChange(fn))
		select {
		case err := <-got:
			t.Logf("Resign from the callback = %v; a is %v", err, a.Role())
		case <-time.After(10 * time.Second):
			t.Fatal("the callback's Resign still runs after 10s")
		}
	})
	t.Run("LeaveFromCallbackGoroutine", func(t *testing.T) {
		var once sync.Once
		left := make(chan error, 1)
		fn := func(ch sdk.RoleChange) {
			if ch.Role == sdk.Master {
				once.Do(func() { go func() { left <- ch.Member.Leave(ctxT(t, 5*time.Second)) }() })
			}
		}
		start := time.Now()
		m, err := sdk.Join(ctxT(t, 20*time.Second), msInstance("cbl", "a", 0), append(c.Options(), sdk.WithRoleChange(fn))...)
		t.Logf("Join() = %v, %v after %v", m != nil, err, time.Since(start))
		if m != nil {
			m.Leave(context.Background())
		}
		select {
		case err := <-left:
			t.Logf("Leave from the callback's goroutine = %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("Leave started by the callback still runs after 10s")
		}
	})
}
