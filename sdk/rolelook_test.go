package sdk

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/api"
)

// TestRoleLoopLooksAfterPause: the role loop computes its next
// look as min(remaining+1ms, 10ms) and, when that is not positive, stops
// its timer and waits for the next kick. If the loop is kicked (any
// reconcile: a stream event, a watch answer, an IsMaster call) while the
// member is Master, and the process is paused (SIGSTOP, a long GC, VM
// steal time, a host suspension) before the loop gets to run, the loop
// wakes with m.role still Master and the promise long lapsed: it stops
// looking at the clocks for good. A goroutine already waiting on the
// Term's Done is then released only by the next reconcile — the next
// keepalive answer, which never comes while the member is cut off from
// the servers. Meanwhile the servers expire the session after its TTL and
// grant a successor: two members act on a live Term.Ctx (Done open).
//
// DECISIONS.md: "A Term's Ctx ends no later than IsMaster turns false,
// host suspensions included ... the 10 ms look is still needed to release a
// goroutine already waiting on Done."
func TestRoleLoopLooksAfterPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _ := roleLoopMember(t)
		s := m.sess
		held := []api.HeldMastership{{Service: "s", Instance: "i", FencingToken: 42}}
		m.renewed(s, time.Now(), &api.KeepaliveResponse{LeaseMs: 1000, Index: 10, Masters: held}, "leader")
		term, ok := m.Mastership()
		if !ok {
			t.Fatalf("not master after a keepalive naming us: %s", Debug(m))
		}
		synctest.Wait()
		released := make(chan struct{})
		done := term.Ctx.Done() // the application's job waits on it, as RunAsMaster-style code does
		go func() { <-done; close(released) }()
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()

		// Something reconciles while the member is Master (here: a stream
		// event repeating the record), which kicks the role loop; before
		// the loop runs, the process is paused for 2 s: both clocks move on.
		m.mu.Lock()
		m.reconcileLocked(time.Now())
		m.st.Promise.Sent = m.st.Promise.Sent.Add(-2 * time.Second)
		m.st.Promise.Wall = m.st.Promise.Wall.Add(-2 * time.Second)
		m.mu.Unlock()
		paused := time.Now()

		// From here on no keepalive is answered (the member is cut off).
		for _, after := range []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, 5 * time.Second} {
			time.Sleep(paused.Add(after).Sub(time.Now()))
			synctest.Wait()
			m.mu.Lock()
			role, _ := m.st.Role(time.Now())
			m.mu.Unlock()
			select {
			case <-released:
			default:
				t.Errorf("%v after the pause: the role is %v, yet the Term's Done is still open (lease 1 s, lapsed %v ago)",
					after, role, -m.remainingForTest())
			}
		}
		if m.IsMaster() {
			t.Fatal("IsMaster() after the pause")
		}
		synctest.Wait()
		select {
		case <-released:
			t.Log("Done closed only once IsMaster() was called")
		default:
		}
	})
}

func (m *Member) remainingForTest() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Promise.Remaining(time.Now())
}

// TestDerivedCtxEndsWithinALook: Term.Ctx's Err and Done look at the
// promise (wall clock included), but a context derived from it with
// context.WithCancel/WithTimeout/WithDeadline — what applications pass to
// the writes they guard (a request with a timeout, an errgroup) — is
// registered directly with the term's inner cancelCtx by the context
// package, so its Err and Done never look: after a suspension (or a pause)
// it reads live while IsMaster is already false, until the role loop's
// next look (10 ms, or never with the stall above).
func TestDerivedCtxEndsWithinALook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _ := roleLoopMember(t)
		held := []api.HeldMastership{{Service: "s", Instance: "i", FencingToken: 42}}
		m.renewed(m.sess, time.Now(), &api.KeepaliveResponse{LeaseMs: 1000, Index: 10, Masters: held}, "leader")
		term, ok := m.Mastership()
		if !ok {
			t.Fatalf("not master: %s", Debug(m))
		}
		write, cancel := context.WithTimeout(term.Ctx, 5*time.Second) // the application's guarded write
		defer cancel()
		synctest.Wait()
		// A 2 s suspension: the wall clock jumps, the monotonic clock does not.
		m.mu.Lock()
		m.st.Promise.Wall = m.st.Promise.Wall.Add(-2 * time.Second)
		role, _ := m.st.Role(time.Now())
		m.mu.Unlock()
		if role == Master {
			t.Fatal("still master after the jump")
		}
		// A context derived from the Ctx learns of the end at the member's
		// next look at the clocks (wallCheck, 10 ms), not at once: the Ctx
		// checks the clocks when it is read, a derived one cannot. The
		// bound is well inside the promise's margin (at least 50 ms).
		select {
		case <-write.Done():
		case <-time.After(wallCheck + time.Millisecond):
			t.Errorf("the role is %v (IsMaster false), yet a context derived from Term.Ctx is live %v later", role, wallCheck)
		}
	})
}
