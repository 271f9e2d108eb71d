package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// blocker is a role callback that blocks on the first change it is given
// (Master when onMaster, else the first call) until the test ends.
type blocker struct {
	onMaster bool
	release  chan struct{}
	blocked  chan struct{}
	once     sync.Once
	returned chan struct{}
}

func newBlocker(t *testing.T, onMaster bool) *blocker {
	b := &blocker{onMaster: onMaster, release: make(chan struct{}), blocked: make(chan struct{}), returned: make(chan struct{})}
	t.Cleanup(func() {
		close(b.release)
		select {
		case <-b.returned:
		case <-time.After(5 * time.Second):
			t.Error("the released callback did not return")
		}
	})
	return b
}

func (b *blocker) fn(c sdk.RoleChange) {
	if b.onMaster && c.Role != sdk.Master {
		return
	}
	b.once.Do(func() {
		close(b.blocked)
		<-b.release
		close(b.returned)
	})
}

// TestRoleCallbackBlockedLeave: a role callback that never returns does
// not hold Leave past its ctx: Leave returns once the ctx ends (here 2 s),
// the member has left and handed over by then, and the callback finishes
// later.
func TestRoleCallbackBlockedLeave(t *testing.T) {
	c := sdktest.Start(t)
	b := newBlocker(t, true)
	opts := append(c.Options(), sdk.WithRoleChange(b.fn))
	m, err := sdk.Join(ctxT(t, 30*time.Second), msInstance("blk", "a", 0), opts...)
	if err != nil {
		t.Fatal(err)
	}
	standby := c.Join(t, msInstance("blk", "b", 0))
	select {
	case <-b.blocked:
	case <-time.After(5 * time.Second):
		t.Fatalf("the callback was not told master: role %v", m.Role())
	}
	start := time.Now()
	left := make(chan error, 1)
	go func() { left <- m.Leave(ctxT(t, 2*time.Second)) }()
	select {
	case err := <-left:
		t.Logf("Leave() = %v after %v", err, time.Since(start))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Leave() = %v, want the ctx's end (a callback still runs)", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("Leave with a 2s ctx still waits after 3s on a blocked callback")
	}
	if m.Role() != sdk.Left {
		t.Fatalf("role after Leave %v, want left", m.Role())
	}
	select {
	case <-m.Done():
	default:
		t.Fatal("Done not closed after Leave")
	}
	if !standby.IsMaster() {
		t.Fatalf("the standby is %v after Leave returned, want master (the drain hands over)", standby.Role())
	}
}

// TestRoleCallbackBlockedClose: Client.Close does not hang on a member's
// blocked role callback either: it is bounded by the leave timeout.
func TestRoleCallbackBlockedClose(t *testing.T) {
	c := sdktest.Start(t)
	b := newBlocker(t, false)
	cl, err := sdk.Connect(ctxT(t, 30*time.Second), append(c.Options(), sdk.WithLeaveTimeout(2*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := cl.Join(ctxT(t, 30*time.Second), sdk.Instance{Service: "blkfarm", ID: "f", Address: "f:1"}, sdk.WithRoleChange(b.fn))
	if err != nil {
		t.Fatal(err)
	}
	<-b.blocked
	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- cl.Close() }()
	select {
	case err := <-closed:
		t.Logf("Close() = %v after %v", err, time.Since(start))
	case <-time.After(3 * time.Second):
		t.Fatal("Close with a 2s leave timeout still waits after 3s on a blocked callback")
	}
	if m.Role() != sdk.Left {
		t.Fatalf("role after Close %v, want left", m.Role())
	}
}

// TestRoleChangeMember: a WithRoleChange callback is called from the first
// role on, while Join is still under way, so a variable that Join's result
// is assigned to is not set yet (reading it there is a data race and a nil
// dereference). RoleChange carries the Member instead, and the Term of a
// Master change: the callback can ask the member anything from the first
// call on.
func TestRoleChangeMember(t *testing.T) {
	c := sdktest.Start(t)
	for i := range 10 {
		svc := fmt.Sprintf("rcm%d", i)
		var mu sync.Mutex
		var seen []sdk.RoleChange
		var nilMember, badTerm int
		fn := func(ch sdk.RoleChange) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, ch)
			if ch.Member == nil {
				nilMember++
				return
			}
			_ = ch.Member.Role()
			_, _ = ch.Member.Mastership()
			switch {
			case ch.Role == sdk.Master && (ch.Term.Ctx == nil || ch.Term.Token != ch.Token || ch.Token == 0):
				badTerm++
			case ch.Role != sdk.Master && (ch.Term != sdk.Term{}):
				badTerm++
			}
		}
		m := c.Join(t, msInstance(svc, "a", 0), sdk.WithRoleChange(fn))
		// The callback was told Master (the lone member is granted during
		// Join) with the member and its Term.
		eventually(t, 5*time.Second, "the promotion reported", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(seen) > 0 && seen[len(seen)-1].Role == sdk.Master
		})
		term, ok := m.Mastership()
		mu.Lock()
		last := seen[len(seen)-1]
		if nilMember > 0 || badTerm > 0 || seen[0].Role != sdk.Starting || last.Member != m || !ok || last.Term.Token != term.Token {
			t.Fatalf("join %d: %d calls without the member, %d with a bad Term; first %v, last %+v; Mastership() = %+v, %v",
				i, nilMember, badTerm, seen[0].Role, last, term, ok)
		}
		mu.Unlock()
		if err := m.Leave(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		if last.Term.Ctx.Err() == nil {
			t.Fatal("the Term a callback was given is live after Leave")
		}
	}
	// OnRoleChange on a member that has left replays Left at once, with
	// the member too.
	m := c.Join(t, sdk.Instance{Service: "rcmfarm", ID: "f", Address: "f:1"})
	m.Leave(ctxT(t, 10*time.Second))
	var got sdk.RoleChange
	m.OnRoleChange(func(ch sdk.RoleChange) { got = ch })
	if got.Role != sdk.Left || got.Member != m {
		t.Fatalf("OnRoleChange after Leave replayed %+v, want left with the member", got)
	}
}
