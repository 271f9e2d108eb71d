package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
)

// watchOneMaster fails the test if two members ever believe they are
// master at the same moment, until the test ends.
func watchOneMaster(t *testing.T, ms ...*sdk.Member) {
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			if got := masters(ms...); len(got) > 1 {
				t.Errorf("%d members believe they are master at once", len(got))
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	t.Cleanup(func() { stop.Store(true); <-done })
}

func msInstance(svc, id string, prio int) sdk.Instance {
	return sdk.Instance{Service: svc, ID: id, Address: id + ":1", Mode: sdk.MasterStandby, Priority: prio}
}

// testMasterStandby: three members, exactly one master; a graceful Leave
// and a Resign hand over at once, with increasing fencing tokens.
func testMasterStandby(t *testing.T, tn *tenant) {
	obs := tn.connect(t)
	svc, err := obs.Service(ctxT(t, 10*time.Second), "db")
	if err != nil {
		t.Fatal(err)
	}
	var r [3]roles
	ms := make([]*sdk.Member, 3)
	for i := range ms {
		ms[i] = tn.join(t, msInstance("db", fmt.Sprintf("db%d", i), 0), sdk.WithRoleChange(r[i].record))
	}
	watchOneMaster(t, ms...)
	// The first one was granted at its registration, and Join returned
	// once it knew.
	if !ms[0].IsMaster() || ms[1].IsMaster() || ms[2].IsMaster() {
		t.Fatalf("masters: %v %v %v, want db0 only", ms[0].Role(), ms[1].Role(), ms[2].Role())
	}
	term, ok := ms[0].Mastership()
	if !ok || term.Token == 0 || term.Token != fencingToken(ms[0]) || term.Ctx.Err() != nil {
		t.Fatalf("Mastership() = %+v, %v", term, ok)
	}
	eventually(t, 5*time.Second, "the observer to see db0 as master", func() bool {
		m, ok := svc.Master()
		return ok && m.Instance == "db0" && m.FencingToken == term.Token
	})
	// WithRoleChange sees the replay of Starting, then the first
	// promotion (through Standby, or straight to Master when the grant
	// was known before the registration's answer).
	eventually(t, time.Second, "the first promotion delivered", func() bool {
		_, ok := r[0].firstAt(sdk.Master, time.Time{})
		return ok
	})
	if got := r[0].all(); got[0].Role != sdk.Starting || got[0].Previous != sdk.Starting || got[len(got)-1].Role != sdk.Master || got[len(got)-1].Token != term.Token {
		t.Fatalf("WithRoleChange saw%v, want starting, ..., master(%d)", &r[0], term.Token)
	}

	// Graceful Leave: the master stops acting, then hands over in one entry.
	start := time.Now()
	if err := ms[0].Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if term.Ctx.Err() == nil {
		t.Fatal("the old term's Ctx is not cancelled after Leave")
	}
	var next *sdk.Member
	var nextRoles *roles
	eventually(t, 5*time.Second, "a standby to take over", func() bool {
		for i, m := range ms[1:] {
			if m.IsMaster() {
				next, nextRoles = m, &r[i+1]
				return true
			}
		}
		return false
	})
	if fencingToken(next) <= term.Token {
		t.Fatalf("new token %d <= old %d", fencingToken(next), term.Token)
	}
	at, _ := nextRoles.firstAt(sdk.Master, start)
	demoted, _ := r[0].firstAt(sdk.Draining, start)
	t.Logf("graceful handover: the standby was master %v after Leave began", at.Sub(start))
	if at.Sub(start) > time.Second {
		t.Fatalf("handover took %v", at.Sub(start))
	}
	if at.Before(demoted) {
		t.Fatalf("the successor was master at %v, before the old one stopped at %v", at, demoted)
	}

	// Resign: the same, without leaving.
	old := fencingToken(next)
	start = time.Now()
	if err := next.Resign(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if next.IsMaster() {
		t.Fatal("IsMaster() after Resign")
	}
	var other *sdk.Member
	for _, m := range ms[1:] {
		if m != next {
			other = m
		}
	}
	eventually(t, 5*time.Second, "the other standby to take over after Resign", func() bool { return other.IsMaster() })
	if fencingToken(other) <= old {
		t.Fatalf("token after resign %d <= %d", fencingToken(other), old)
	}
	t.Logf("resign handover: %v", time.Since(start))
	if err := next.Resign(ctxT(t, time.Second)); !errors.Is(err, sdk.ErrNotMaster) {
		t.Fatalf("Resign() of a standby = %v, want ErrNotMaster", err)
	}
}

// testResignAlone: a master with no other candidate cannot resign, and
// stays master with its token.
func testResignAlone(t *testing.T, tn *tenant) {
	m := tn.join(t, msInstance("solo", "s1", 0))
	tok := fencingToken(m)
	if tok == 0 {
		t.Fatal("a lone member is not master")
	}
	if err := m.Resign(ctxT(t, 10*time.Second)); !errors.Is(err, sdk.ErrConflict) {
		t.Fatalf("Resign() with no other candidate = %v, want ErrConflict", err)
	}
	if !m.IsMaster() || fencingToken(m) != tok {
		t.Fatalf("after a refused resign: role %v token %d, want master %d", m.Role(), fencingToken(m), tok)
	}
}

// testReleasing: an operator drains the master through the REST API
// (without its session): the SDK demotes it at once and resigns, so the
// standby takes over without waiting for the old master's promise.
func testReleasing(t *testing.T, tn *tenant) {
	var ra, rb roles
	a := tn.join(t, msInstance("rel", "a", 0), sdk.WithRoleChange(ra.record))
	b := tn.join(t, msInstance("rel", "b", 0), sdk.WithRoleChange(rb.record))
	watchOneMaster(t, a, b)
	if !a.IsMaster() {
		t.Fatalf("a is %v, want master", a.Role())
	}
	tok := fencingToken(a)
	start := time.Now()
	r := tn.rest(t, http.MethodPut, "/services/rel/instances/a",
		api.RegisterRequest{Address: "a:1", Mode: api.ModeMasterStandby, State: api.StateDraining})
	if r.Status >= 300 {
		t.Fatalf("operator drain = %d %s", r.Status, r.Body)
	}
	eventually(t, 3*time.Second, "b to take over", func() bool { return b.IsMaster() })
	took := time.Since(start)
	t.Logf("operator drain: b master after %v", took)
	if a.IsMaster() {
		t.Fatal("a still believes it is master")
	}
	// a stops as Standby (the releasing record), or as Draining when the
	// keepalive that shows the operator's drain came first. Callbacks
	// follow the roles on their own goroutines: wait for both.
	var stopped, promoted time.Time
	var ok bool
	eventually(t, 3*time.Second, "a's stop and b's promotion reported", func() bool {
		stopped, ok = ra.firstAt(sdk.Standby, start)
		if d, drained := ra.firstAt(sdk.Draining, start); drained && (!ok || d.Before(stopped)) {
			stopped, ok = d, true
		}
		var promotedOK bool
		promoted, promotedOK = rb.firstAt(sdk.Master, start)
		return ok && promotedOK
	})
	if promoted.Before(stopped) {
		t.Fatalf("a stopped at %v (%v), b promoted at %v: want a first", stopped, ok, promoted)
	}
	// Without the self-resign the successor waits for a's last promise
	// (up to its 1 s lease); with it, one round trip or two.
	if took > 600*time.Millisecond {
		t.Fatalf("handover after an operator drain took %v; the SDK did not resign at once", took)
	}
	if fencingToken(b) <= tok {
		t.Fatalf("token %d <= %d", fencingToken(b), tok)
	}
	eventually(t, 3*time.Second, "a to report the operator's drain", func() bool { return a.Role() == sdk.Draining })
}

// testPausedMaster: a master whose keepalives stop (a paused process)
// sees IsMaster() == false once its promise lapses and reports Suspended;
// no successor is granted while its session lives; when keepalives
// resume it is Master again with the same token.
func testPausedMaster(t *testing.T, tn *tenant) {
	var ra roles
	a := tn.join(t, msInstance("p", "a", 0), sdk.WithRoleChange(ra.record))
	b := tn.join(t, msInstance("p", "b", 0))
	watchOneMaster(t, a, b)
	tok := fencingToken(a)
	term, ok := a.Mastership()
	if !ok {
		t.Fatal("a is not master")
	}
	paused := time.Now()
	sdk.PauseKeepalives(a, true)
	// Every keepalive was sent before paused: at paused + lease − margin
	// the promise has lapsed, whenever the role loop runs.
	time.Sleep(time.Until(paused.Add(time.Second - sdk.Margin(time.Second) + time.Millisecond)))
	if a.IsMaster() {
		t.Fatalf("a believes it is master past its last promise: %s", sdk.Debug(a))
	}
	if a.Role() != sdk.Suspended {
		t.Fatalf("role %v, want suspended", a.Role())
	}
	eventually(t, time.Second, "the term's Ctx to end", func() bool { return term.Ctx.Err() != nil })
	// No successor while a's session lives (its TTL is 5 s).
	throughout(t, time.Until(paused.Add(1500*time.Millisecond)), func() error {
		if b.IsMaster() {
			return errors.New("a successor was granted while the master's session lives")
		}
		return nil
	})
	sdk.PauseKeepalives(a, false)
	resumed := time.Now()
	for !a.IsMaster() {
		if time.Since(resumed) > 3*time.Second {
			t.Fatalf("a is not master 3s after its keepalives resumed: %s", sdk.Debug(a))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if fencingToken(a) != tok {
		t.Fatalf("token after suspension %d, want %d", fencingToken(a), tok)
	}
	// Callbacks follow the roles on their own goroutine.
	reported := func() bool {
		var seq []sdk.Role
		for _, c := range ra.all() {
			if c.Role != c.Previous {
				seq = append(seq, c.Role)
			}
		}
		n := len(seq)
		return n >= 3 && seq[n-3] == sdk.Master && seq[n-2] == sdk.Suspended && seq[n-1] == sdk.Master
	}
	for deadline := time.Now().Add(3 * time.Second); !reported(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("roles%v, want ... master, suspended, master", &ra)
		}
	}
}

// testColdStart: WithColdStart(3, ...) elects no one until three are
// ready, then the highest priority; a two-step member is never elected
// while starting, and is once ready.
func testColdStart(t *testing.T, tn *tenant) {
	cs := sdk.WithColdStart(3, 30*time.Second)
	obs := tn.connect(t)
	svc, err := obs.Service(ctxT(t, 10*time.Second), "cold")
	if err != nil {
		t.Fatal(err)
	}
	late := tn.join(t, msInstance("cold", "c9", 9), cs, sdk.WithTwoStepStartup())
	c1 := tn.join(t, msInstance("cold", "c1", 1), cs)
	c2 := tn.join(t, msInstance("cold", "c2", 2), cs)
	throughout(t, 300*time.Millisecond, func() error {
		if _, ok := svc.Master(); ok || len(masters(late, c1, c2)) > 0 {
			return errors.New("a master was elected with two of three ready")
		}
		return nil
	})
	c3 := tn.join(t, msInstance("cold", "c3", 3), cs)
	watchOneMaster(t, late, c1, c2, c3)
	eventually(t, 5*time.Second, "c3 (the highest priority) elected", func() bool { return c3.IsMaster() })
	if late.Role() != sdk.Starting {
		t.Fatalf("the two-step member is %v, want starting", late.Role())
	}
	if err := late.Ready(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Priority never pre-empts a sitting master.
	if late.Role() != sdk.Standby || !c3.IsMaster() {
		t.Fatalf("after Ready: c9 %v, c3 %v; want standby and master", late.Role(), c3.Role())
	}
	if err := c3.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "c9 elected once ready", func() bool { return late.IsMaster() })
}
