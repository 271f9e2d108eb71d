package sdk

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/election"
	"github.com/rafting/rafting/sdk/internal/transport"
)

// testClient is a Client that talks to no server, for member and cache
// logic.
func testClient() *Client {
	cfg := defaults()
	cfg.conn.tenant = "t"
	return &Client{cfg: cfg, log: slog.New(slog.DiscardHandler), services: map[string]*Service{},
		members: map[*Member]struct{}{}, floors: map[string]uint64{}, done: make(chan struct{})}
}

// TestRoleTimer: a master is demoted by a timer at the exact lapse of its
// promise (its Term's Ctx cancelled, OnRoleChange told), becomes Master
// again with the same token on the next keepalive, and stops acting the
// moment a revocation is seen.
func TestRoleTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, last := roleLoopMember(t)
		s := m.sess
		held := []api.HeldMastership{{Service: "s", Instance: "i", FencingToken: 42}}
		start := time.Now()
		m.renewed(s, start, &api.KeepaliveResponse{LeaseMs: 1000, Index: 10, Masters: held}, "leader")
		if c := last(); c.Role != Master || c.Token != 42 || c.Previous != Standby {
			t.Fatalf("after a keepalive naming us: %+v, want master(42) from standby", c)
		}
		term, ok := m.Mastership()
		if !ok || term.Token != 42 {
			t.Fatalf("Mastership() = %+v, %v", term, ok)
		}
		lapse := start.Add(time.Second - election.Margin(time.Second))
		time.Sleep(time.Until(lapse) - time.Millisecond)
		if c := last(); c.Role != Master || term.Ctx.Err() != nil {
			t.Fatalf("1 ms before the lapse: %+v, ctx %v", c, term.Ctx.Err())
		}
		time.Sleep(3 * time.Millisecond)
		c := last()
		if c.Role != Suspended || c.Token != 42 || c.At.Before(lapse) || c.At.After(lapse.Add(2*time.Millisecond)) {
			t.Fatalf("at the lapse: %+v, want suspended(42) at %v", c, lapse)
		}
		if term.Ctx.Err() == nil || m.IsMaster() {
			t.Fatal("the term outlived its promise")
		}
		// The next keepalive: master again, same token, a new Ctx.
		m.renewed(s, time.Now(), &api.KeepaliveResponse{LeaseMs: 1000, Index: 11, Masters: held}, "leader")
		if c := last(); c.Role != Master || c.Token != 42 {
			t.Fatalf("after keepalives resumed: %+v", c)
		}
		term2, _ := m.Mastership()
		// An older source naming someone else changes nothing.
		m.observe(9, &api.Master{Instance: "other", FencingToken: 99})
		if !m.IsMaster() {
			t.Fatal("an older record demoted the master")
		}
		// An operator's revocation: demoted at once, and a resign queued.
		m.observe(12, &api.Master{Instance: "i", SessionTag: s.tag, FencingToken: 42, Releasing: true})
		if c := last(); c.Role != Standby || term2.Ctx.Err() == nil {
			t.Fatalf("after a releasing record: %+v, ctx %v", c, term2.Ctx.Err())
		}
		m.mu.Lock()
		pending := m.pendingResign
		m.mu.Unlock()
		if pending != 42 {
			t.Fatalf("pendingResign = %d, want 42", pending)
		}
		m.finish(nil)
		if c := last(); c.Role != Left {
			t.Fatalf("after finish: %+v", c)
		}
	})
}

// roleLoopMember returns a ready master-standby member that talks to no
// server, with its role loop and notifier running until the test ends
// (inside a synctest bubble), and a func that returns the last role
// change reported once the bubble is idle.
func roleLoopMember(t *testing.T) (*Member, func() RoleChange) {
	m := newMember(testClient(), Instance{Service: "s", ID: "i", Address: "a", Mode: MasterStandby},
		memberConfig{ttl: 5 * time.Second, lease: -1, leaveTimeout: time.Second}, false)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.notes.Run()
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.roleLoop(ctx) }()
	t.Cleanup(func() {
		m.finish(nil)
		m.wg.Wait()
		<-m.notes.Quiet()
	})
	var mu sync.Mutex
	var got []RoleChange
	m.OnRoleChange(func(c RoleChange) { mu.Lock(); got = append(got, c); mu.Unlock() })
	m.mu.Lock()
	m.st.Phase = election.PhaseReady
	m.reconcileLocked(time.Now())
	m.mu.Unlock()
	return m, func() RoleChange {
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		return got[len(got)-1]
	}
}

// TestTermEndsOnWallClockJump: after a host suspension — the wall clock
// jumped while the monotonic clock, which timers follow, stood still — the
// Term's Ctx ends no later than IsMaster turns false, though no one reads
// the role: its Err at once, its Done within 10 ms (the period at which a
// master's role loop looks at the wall clock).
func TestTermEndsOnWallClockJump(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, last := roleLoopMember(t)
		s := m.sess
		held := []api.HeldMastership{{Service: "s", Instance: "i", FencingToken: 42}}
		index := uint64(10)
		master := func() Term {
			t.Helper()
			index++
			time.Sleep(time.Millisecond) // a keepalive sent later than the last
			m.renewed(s, time.Now(), &api.KeepaliveResponse{LeaseMs: 1000, Index: index, Masters: held}, "leader")
			term, ok := m.Mastership()
			if !ok {
				t.Fatalf("not master after a keepalive naming us: %s", Debug(m))
			}
			return term
		}
		// suspend makes the wall clock run d ahead of the monotonic clock
		// since the keepalive was sent, as a suspension of d does.
		suspend := func(d time.Duration) {
			m.mu.Lock()
			m.st.Promise.Wall = m.st.Promise.Wall.Add(-d)
			m.mu.Unlock()
		}

		// A goroutine waiting on Done is released within the period.
		term := master()
		time.Sleep(100 * time.Millisecond)
		released := make(chan struct{})
		done := term.Ctx.Done()
		go func() { <-done; close(released) }()
		suspend(2 * time.Second)
		jumped := time.Now()
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		select {
		case <-released:
		default:
			t.Fatalf("the term's Done still open %v after a 2 s wall-clock jump (its lease is 1 s)", time.Since(jumped))
		}
		if c := last(); c.Role != Suspended || c.Token != 42 || c.At.After(jumped.Add(10*time.Millisecond)) {
			t.Fatalf("after the jump: %+v, want suspended(42) by %v", c, jumped.Add(10*time.Millisecond))
		}

		// Err tells at once, as IsMaster would.
		term = master()
		suspend(2 * time.Second)
		if term.Ctx.Err() == nil {
			t.Fatal("the term's Err is nil after a 2 s wall-clock jump (its lease is 1 s)")
		}
		select {
		case <-term.Ctx.Done():
		default:
			t.Fatal("the term's Err is set, its Done not closed")
		}
		if m.IsMaster() {
			t.Fatal("IsMaster() after the jump")
		}

		// A jump within the promise ends nothing.
		term = master()
		suspend(100 * time.Millisecond)
		time.Sleep(50 * time.Millisecond)
		if term.Ctx.Err() != nil || !m.IsMaster() {
			t.Fatalf("a 100 ms jump ended a 1 s lease 50 ms in: %s", Debug(m))
		}
	})
}

// TestAdoptState: a keepalive answer's state for the member's instance is
// adopted only when it was read after the member's last registration
// applied, with none of its own in flight, and not while it leaves.
func TestAdoptState(t *testing.T) {
	m := newMember(testClient(), Instance{Service: "s", ID: "i", Address: "a"},
		memberConfig{ttl: 5 * time.Second, leaveTimeout: time.Second}, false)
	m.mu.Lock()
	m.st.Phase, m.regIndex, m.regSess = election.PhaseReady, 10, m.sess
	s := m.sess
	m.mu.Unlock()
	answer := func(index uint64, st State) {
		m.renewed(s, time.Now(), &api.KeepaliveResponse{Index: index, Instances: []api.HeldInstance{
			{Service: "s", Instance: "other", State: StateStarting}, {Service: "s", Instance: "i", State: st}}}, "leader")
	}
	check := func(what string, want State, role Role) {
		t.Helper()
		m.mu.Lock()
		got := m.reg.State
		m.mu.Unlock()
		if got != want || m.Role() != role {
			t.Fatalf("%s: state %q role %v, want %q %v", what, got, m.Role(), want, role)
		}
	}
	answer(9, StateDraining)
	check("an answer older than the registration", StateReady, Standby)
	answer(10, StateDraining)
	check("an operator's drain", StateDraining, Draining)
	m.mu.Lock()
	m.writes = 1
	m.mu.Unlock()
	answer(11, StateReady)
	check("a registration of ours in flight", StateDraining, Draining)
	m.mu.Lock()
	m.writes = 0
	m.mu.Unlock()
	answer(12, State("bogus"))
	check("a state that is none", StateDraining, Draining)
	answer(12, StateReady)
	check("the drain undone", StateReady, Standby)
	reregister := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		r := m.reregister
		m.reregister = false
		return r
	}
	m.renewed(s, time.Now(), &api.KeepaliveResponse{Index: 13}, "leader")
	if reregister() {
		t.Fatal("an answer without the instances field (an older server) asked to register again")
	}
	m.renewed(s, time.Now(), &api.KeepaliveResponse{Index: 13, Instances: []api.HeldInstance{}}, "leader")
	if !reregister() {
		t.Fatal("an instance missing from the answer was not registered again")
	}
	m.mu.Lock()
	m.regSess = newSession()
	m.mu.Unlock()
	m.renewed(s, time.Now(), &api.KeepaliveResponse{Index: 14, Instances: []api.HeldInstance{}}, "leader")
	if reregister() {
		t.Fatal("a session not yet registered under asked to register again")
	}
	m.mu.Lock()
	m.regSess, m.leaving = m.sess, true
	m.mu.Unlock()
	answer(15, StateStarting)
	check("while leaving", StateReady, Standby)
}

// FuzzKeepaliveAnswer: any keepalive answer body decodes or fails cleanly,
// and taking it in leaves the member in a valid state and role.
func FuzzKeepaliveAnswer(f *testing.F) {
	f.Add([]byte(`{"lease_ms":1000,"ttl_ms":5000,"term":2,"index":12,"masters":[{"service":"s","instance":"i","fencing_token":42,"releasing":false}],"instances":[{"service":"s","instance":"i","state":"draining"}]}`))
	f.Add([]byte(`{"index":3,"instances":[{"service":"s","instance":"i","state":""}]}`))
	f.Add([]byte(`{"instances":null,"masters":null}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var ka api.KeepaliveResponse
		if err := jsonUnmarshal(body, &ka); err != nil {
			return
		}
		m := newMember(testClient(), Instance{Service: "s", ID: "i", Address: "a", Mode: MasterStandby},
			memberConfig{ttl: 5 * time.Second, leaveTimeout: time.Second}, false)
		m.mu.Lock()
		m.st.Phase, m.regSess = election.PhaseReady, m.sess
		m.mu.Unlock()
		m.renewed(m.sess, time.Now(), &ka, "leader")
		m.mu.Lock()
		state := m.reg.State
		m.mu.Unlock()
		if !state.Valid() || m.Role() < Starting || m.Role() > Left {
			t.Fatalf("after %s: state %q role %v", body, state, m.Role())
		}
	})
}

// FuzzStreamLines: any session stream, line by line, is read to its end or
// to a bad line without a panic, and leaves the member in a valid state and
// role.
func FuzzStreamLines(f *testing.F) {
	f.Add([]byte(`{"type":"heartbeat","term":2,"index":9}` + "\n" + `{"type":"instance","service":"s","index":10,"instance":{"service":"s","instance":"i","state":"draining"}}` + "\n"))
	f.Add([]byte(`{"type":"master","service":"s","index":11,"master":{"instance":"i","fencing_token":42}}` + "\n" + `{"type":"moved","leader":"x:1"}` + "\n"))
	f.Add([]byte(`{"type":"instance","service":"s","index":3,"instance":{"service":"s","instance":"i"}}` + "\n" + `{"type":"expired"}` + "\n"))
	f.Add([]byte(`{"type":"instance","instance":null}` + "\n" + `not json` + "\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		m := newMember(testClient(), Instance{Service: "s", ID: "i", Address: "a", Mode: MasterStandby},
			memberConfig{ttl: 5 * time.Second, leaveTimeout: time.Second}, false)
		m.mu.Lock()
		m.st.Phase, m.regSess = election.PhaseReady, m.sess
		s := m.sess
		m.mu.Unlock()
		resp := &http.Response{Header: http.Header{api.HeaderEpoch: {"1"}}, Body: io.NopCloser(bytes.NewReader(body))}
		m.readStream(func() {}, s, resp, "x:1", transport.NewJitter(time.Millisecond, time.Millisecond))
		m.mu.Lock()
		state := m.reg.State
		m.mu.Unlock()
		if !state.Valid() || m.Role() < Starting || m.Role() > Left {
			t.Fatalf("after %q: state %q role %v", body, state, m.Role())
		}
	})
}
