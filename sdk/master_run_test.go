package sdk_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// job is a RunAsMaster fn that records its calls and, unless quick,
// works until its Term's Ctx ends.
type job struct {
	quick bool  // return at once
	err   error // what a quick job returns
	mu    sync.Mutex
	terms []sdk.Term
	at    []time.Time // when each call began
	live  []bool      // whether its Term was live then
	calls chan sdk.Term
}

func newJob() *job { return &job{calls: make(chan sdk.Term, 100)} }

func (j *job) run(t sdk.Term) error {
	j.mu.Lock()
	j.terms = append(j.terms, t)
	j.at = append(j.at, time.Now())
	j.live = append(j.live, t.Ctx.Err() == nil)
	j.mu.Unlock()
	j.calls <- t
	if j.quick {
		return j.err
	}
	<-t.Ctx.Done()
	return t.Ctx.Err()
}

// liveAt reports whether the Term of call i was live when fn was called.
// Only then: a term may end any time after, by a suspension (a host too
// busy to renew the promise within the lease is one, and right).
func (j *job) liveAt(i int) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return i < len(j.live) && j.live[i]
}

func (j *job) count() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.terms)
}

// next waits for the job's next call.
func (j *job) next(t *testing.T, what string) sdk.Term {
	t.Helper()
	select {
	case term := <-j.calls:
		return term
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: fn not called within 5s", what)
		return sdk.Term{}
	}
}

// running is a RunAsMaster call in the background.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

func runAsMaster(t *testing.T, m *sdk.Member, fn func(sdk.Term) error) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.RunAsMaster(ctx, fn) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// wait returns what RunAsMaster returned, failing if it runs on.
func (r *running) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(within):
		t.Fatalf("RunAsMaster still runs after %v", within)
		return nil
	}
}

// ended reports whether ctx ends within a duration (or has ended).
func ended(ctx context.Context, within time.Duration) bool {
	if ctx.Err() != nil {
		return true
	}
	select {
	case <-ctx.Done():
		return true
	case <-time.After(within):
		return false
	}
}

// TestMasterRunAsMaster: RunAsMaster runs its fn only while the member
// is master, once per term, with a Ctx that ends with the term or with
// RunAsMaster's ctx, and returns when that ctx ends or the member leaves.
func TestMasterRunAsMaster(t *testing.T) {
	c := sdktest.Start(t)
	t.Run("EndsWithCtxThenLeaveHandsOver", func(t *testing.T) {
		a := c.Join(t, msInstance("ram1", "a", 0))
		b := c.Join(t, msInstance("ram1", "b", 0))
		watchOneMaster(t, a, b)
		ja, jb := newJob(), newJob()
		ra := runAsMaster(t, a, ja.run)
		runAsMaster(t, b, jb.run)
		term := ja.next(t, "a, the master")
		if mt, ok := a.Mastership(); !ok || term.Token != mt.Token {
			t.Fatalf("fn's Term token %d, Mastership() = %+v, %v", term.Token, mt, ok)
		}
		ra.cancel() // SIGTERM, say
		if err := ra.wait(t, time.Second); !errors.Is(err, context.Canceled) {
			t.Fatalf("RunAsMaster() = %v after its ctx ended, want context.Canceled", err)
		}
		if term.Ctx.Err() == nil {
			t.Fatal("fn's Term.Ctx is live after RunAsMaster's ctx ended")
		}
		if !a.IsMaster() || jb.count() != 0 {
			t.Fatalf("a %v, b's fn called %d times: RunAsMaster must leave the handover to Leave", a.Role(), jb.count())
		}
		start := time.Now()
		if err := a.Leave(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		next := jb.next(t, "b, after a left")
		jb.mu.Lock()
		t.Logf("b's fn runs %v after a's Leave began", jb.at[0].Sub(start))
		jb.mu.Unlock()
		if next.Ctx.Err() != nil {
			// Seen under CI load, not understood: keep what b knew.
			t.Logf("b's Term ended right after fn was called: %s", sdk.Debug(b))
		}
		if next.Token <= term.Token || !jb.liveAt(0) {
			t.Fatalf("b's Term %+v (live when fn was called: %v) after a's token %d", next, jb.liveAt(0), term.Token)
		}
	})

	t.Run("RerunsOnLaterTerm", func(t *testing.T) {
		a := c.Join(t, msInstance("ram2", "a", 0))
		b := c.Join(t, msInstance("ram2", "b", 0))
		watchOneMaster(t, a, b)
		j := newJob()
		runAsMaster(t, a, j.run)
		first := j.next(t, "a, the master")
		if err := a.Resign(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		// Term.Ctx ends at the demotion, before the servers hear of it.
		if first.Ctx.Err() == nil {
			t.Fatal("fn's Term.Ctx is live after Resign returned")
		}
		eventually(t, 5*time.Second, "b to take over", b.IsMaster)
		if err := b.Resign(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		second := j.next(t, "a, master again")
		if second.Token <= first.Token || !j.liveAt(1) {
			t.Fatalf("second term %d (live when fn was called: %v) after %d", second.Token, j.liveAt(1), first.Token)
		}
		if n := j.count(); n != 2 {
			t.Fatalf("fn called %d times over two terms", n)
		}
	})

	t.Run("QuickFnWaitsForNextTerm", func(t *testing.T) {
		a := c.Join(t, msInstance("ram3", "a", 0))
		j := newJob()
		j.quick = true
		runAsMaster(t, a, j.run)
		j.next(t, "a, the master")
		time.Sleep(time.Second)
		if n := j.count(); n > 2 || !a.IsMaster() {
			t.Fatalf("a fn that returns at once was called %d times in a second (a %v), want once per term", n, a.Role())
		}
	})

	t.Run("ErrorEndsIt", func(t *testing.T) {
		a := c.Join(t, msInstance("ram4", "a", 0))
		boom := errors.New("boom")
		j := newJob()
		j.quick, j.err = true, boom
		r := runAsMaster(t, a, j.run)
		term := j.next(t, "a, the master")
		if err := r.wait(t, time.Second); !errors.Is(err, boom) {
			t.Fatalf("RunAsMaster() = %v, want fn's error", err)
		}
		if term.Ctx.Err() == nil {
			t.Fatal("fn's Term.Ctx is live after fn returned")
		}
		if !a.IsMaster() {
			t.Fatalf("a is %v after its fn failed: RunAsMaster must leave the handover to Leave or Resign", a.Role())
		}
	})

	t.Run("EndsWhenTheMemberLeaves", func(t *testing.T) {
		a := c.Join(t, msInstance("ram5", "a", 0))
		b := c.Join(t, msInstance("ram5", "b", 0))
		ja, jb := newJob(), newJob()
		ra := runAsMaster(t, a, ja.run)
		rb := runAsMaster(t, b, jb.run) // a standby: waits
		term := ja.next(t, "a, the master")
		if err := b.Leave(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := rb.wait(t, time.Second); !errors.Is(err, sdk.ErrLeft) || jb.count() != 0 {
			t.Fatalf("a standby's RunAsMaster() = %v after Leave (fn called %d times), want ErrLeft", err, jb.count())
		}
		if err := a.Leave(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		if !ended(term.Ctx, 0) {
			t.Fatal("the master's Term.Ctx is live after Leave")
		}
		if err := ra.wait(t, time.Second); !errors.Is(err, sdk.ErrLeft) {
			t.Fatalf("the master's RunAsMaster() = %v after Leave, want ErrLeft", err)
		}
	})

	t.Run("SuspensionEndsTheTerm", func(t *testing.T) {
		a := c.Join(t, msInstance("ram6", "a", 0))
		b := c.Join(t, msInstance("ram6", "b", 0))
		watchOneMaster(t, a, b)
		j := newJob()
		runAsMaster(t, a, j.run)
		first := j.next(t, "a, the master")
		sdk.PauseKeepalives(a, true)
		if !ended(first.Ctx, 2*time.Second) {
			t.Fatalf("fn's Term.Ctx is live 2s after a's keepalives stopped: %s", sdk.Debug(a))
		}
		if a.Role() != sdk.Suspended {
			t.Fatalf("a is %v, want suspended", a.Role())
		}
		sdk.PauseKeepalives(a, false)
		second := j.next(t, "a, resumed")
		if second.Token != first.Token || !j.liveAt(1) {
			t.Fatalf("after the suspension fn ran with token %d (live: %v), want %d live", second.Token, j.liveAt(1), first.Token)
		}
	})

	t.Run("Farm", func(t *testing.T) {
		f := c.Join(t, sdk.Instance{Service: "ramfarm", ID: "f", Address: "f:1"})
		j := newJob()
		err := f.RunAsMaster(ctxT(t, time.Second), j.run)
		if !errors.Is(err, sdk.ErrNotMaster) || j.count() != 0 {
			t.Fatalf("RunAsMaster() of a farm member = %v, want ErrNotMaster at once", err)
		}
	})
}
