package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// localRaft is a one-replica Raft: proposals apply at once, in order, to a
// real fsm.Tenant, and the manager observes them as it would on a leader.
// It lets the manager's timing run on synctest's virtual clock.
type localRaft struct {
	mu     sync.Mutex
	sm     *fsm.Tenant
	m      *Manager
	index  uint64
	term   uint64
	leader bool
	reads  int // ReadIndex calls
}

func (r *localRaft) Leader() (uint64, uint64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leader {
		return 1, r.term, true
	}
	return 2, r.term, true
}

func (r *localRaft) ReplicaID() uint64 { return 1 }
func (r *localRaft) ReadIndex(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	return nil
}

func (r *localRaft) readIndexCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads
}
func (r *localRaft) LeaderAPI() string { return "" }

func (r *localRaft) Propose(ctx context.Context, cmd []byte) (fsm.Outcome, error) {
	r.mu.Lock()
	r.index++
	var ch fsm.Changes
	o := r.sm.Apply(r.index, cmd, &ch)
	m := r.m
	r.mu.Unlock()
	r.sm.Notify(&ch)
	if m != nil {
		m.Applied(&ch)
	}
	return o, nil
}

// setup starts a manager on a leading local raft and waits for its takeover.
func setup(t *testing.T, cfg Config) (*Manager, *localRaft) {
	t.Helper()
	sm := fsm.NewTenant(fsm.TenantInfo{Name: "acme", Epoch: 1, Quotas: api.Quotas{MinTTLMs: 3000, MaxTTLMs: 60000}})
	r := &localRaft{sm: sm, term: 1, leader: true}
	m := New(cfg, sm, r)
	r.mu.Lock()
	r.m = m
	r.mu.Unlock()
	t.Cleanup(m.Close)
	m.LeaderChanged()
	waitFor(t, "takeover", func() bool { return m.Leading() })
	return m, r
}

// waitFor polls on the bubble's clock.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 10000; i++ {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("never: %s", what)
}

func mustPropose(t *testing.T, r *localRaft, op fsm.Op, cmd any) {
	t.Helper()
	o, _ := r.Propose(context.Background(), fsm.Encode(op, cmd))
	if o.Code != "" {
		t.Fatalf("%s: %s %s", op, o.Code, o.Message)
	}
}

func alive(r *localRaft, id string) bool {
	_, st := r.sm.Session(id)
	return st == fsm.SessionLive
}

const (
	sA = "sessA-0000000000"
	sB = "sessB-0000000000"
)

// TestExpiryAfterTTL: on the virtual clock, a session without keepalives
// ends at its TTL (within the loop period), not before.
func TestExpiryAfterTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, r := setup(t, Config{})
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: sA, TTLMs: 3000})
		start := time.Now()
		waitFor(t, "expiry", func() bool { return !alive(r, sA) })
		if d := time.Since(start); d < 3*time.Second || d > 3*time.Second+60*time.Millisecond {
			t.Fatalf("expired after %v, want 3s (+ one loop period)", d)
		}
	})
}

// TestExpiryFromEarliestDeadline: the loop looks at sessions only from the
// earliest deadline on, and a session opened later with a shorter TTL moves
// that point: it still ends at its own TTL.
func TestExpiryFromEarliestDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, r := setup(t, Config{})
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: sA, TTLMs: 60000})
		time.Sleep(time.Second) // loops that saw only sA's deadline, a minute away
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: sB, TTLMs: 3000})
		start := time.Now()
		waitFor(t, "the short session's expiry", func() bool { return !alive(r, sB) })
		if d := time.Since(start); d < 3*time.Second || d > 3*time.Second+60*time.Millisecond {
			t.Fatalf("the 3 s session expired after %v, want 3s (+ one loop period)", d)
		}
		if !alive(r, sA) {
			t.Fatal("the 60 s session expired with the 3 s one")
		}
	})
}

// TestClientCloseAfterScans: a stream closed by its client moves its
// session's deadline forward to drop_grace, after loops that had seen
// only the TTL deadline.
func TestClientCloseAfterScans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, r := setup(t, Config{})
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: sA, TTLMs: 5000})
		st, err := m.Attach(sA)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // loops that saw the deadline 4 s away
		start := time.Now()
		st.ClientClosed()
		waitFor(t, "the closed session's expiry", func() bool { return !alive(r, sA) })
		if d := time.Since(start); d > 600*time.Millisecond {
			t.Fatalf("a session whose client closed its stream ended after %v, want drop_grace (500ms)", d)
		}
	})
}

// TestReattachWithinDropGrace: a session whose stream the client closed,
// and that attaches again within drop_grace, gets back the deadline the
// close cut short: it lives to its TTL, not to the grace (one client
// stream carries every session of an SDK Client, and reopening it for one
// closes it for all).
func TestReattachWithinDropGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, r := setup(t, Config{})
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: sA, TTLMs: 5000})
		st, err := m.Attach(sA)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		st.ClientClosed()
		time.Sleep(100 * time.Millisecond)
		if _, err := m.Attach(sA); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // well past drop_grace (500ms)
		if !alive(r, sA) {
			t.Fatal("a session attached again within drop_grace expired at drop_grace")
		}
		waitFor(t, "expiry at the TTL", func() bool { return !alive(r, sA) })
		if d := time.Since(start); d < 5*time.Second-100*time.Millisecond {
			t.Fatalf("expired %v after the close, want its TTL (5s) from its opening", d)
		}
	})
}

// TestKeepaliveWithoutPromise: a keepalive that asks for no promise (lease
// 0, no mastership held or sought) is answered without a ReadIndex round,
// and restarts the TTL countdown like any other; one with a lease waits for
// its round.
func TestKeepaliveWithoutPromise(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, r := setup(t, Config{})
		ctx := context.Background()
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: sA, TTLMs: 3000})
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: sB, TTLMs: 3000, LeaseMs: 1000})
		reads := r.readIndexCalls()
		for range 6 {
			time.Sleep(time.Second) // TTL/3, as the SDK does
			resp, err := m.Keepalive(ctx, sA)
			if err != nil || resp.TTLMs != 3000 || resp.LeaseMs != 0 {
				t.Fatalf("keepalive without a lease = %+v, %v", resp, err)
			}
		}
		if n := r.readIndexCalls() - reads; n != 0 {
			t.Fatalf("keepalives without a lease made %d ReadIndex calls, want 0", n)
		}
		if !alive(r, sA) {
			t.Fatal("a session kept alive every second with a 3 s TTL expired")
		}
		if alive(r, sB) {
			t.Fatal("the session without keepalives outlived its TTL")
		}
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: "sessC-0000000000", TTLMs: 3000, LeaseMs: 1000})
		if resp, err := m.Keepalive(ctx, "sessC-0000000000"); err != nil || resp.LeaseMs != 1000 {
			t.Fatalf("keepalive with a lease = %+v, %v", resp, err)
		}
		if n := r.readIndexCalls() - reads; n != 1 {
			t.Fatalf("a keepalive with a lease made %d ReadIndex calls, want 1", n)
		}
	})
}

// TestLagCompensation: a loop that runs late (the process was paused)
// moves unexpired deadlines by the lag instead of expiring everyone whose
// keepalives could not be served meanwhile.
func TestLagCompensation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, r := setup(t, Config{SelfPreservationMin: 100})
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: sA, TTLMs: 3000})
		time.Sleep(time.Second)
		// The loop last ran 5 s ago, as after a 5 s stall of the process
		// (a mutex stall cannot be simulated inside a synctest bubble).
		m.mu.Lock()
		m.lastRun = time.Now().Add(-5 * time.Second)
		m.mu.Unlock()
		time.Sleep(2500 * time.Millisecond) // past the 3 s TTL
		if !alive(r, sA) {
			t.Fatal("a 5 s stall of the expiry loop expired a session with 2 s left")
		}
		waitFor(t, "expiry after the moved deadline", func() bool { return !alive(r, sA) })
	})
}

// TestSelfPreservation: most sessions going silent at once, unexplained by
// stream closes, wait one TTL more; explained ones (client closed its
// stream) do not.
func TestSelfPreservation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, r := setup(t, Config{SelfPreservationMin: 3})
		ids := []string{"sess1-0000000000", "sess2-0000000000", "sess3-0000000000", "sess4-0000000000"}
		for _, id := range ids {
			mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: id, TTLMs: 3000})
		}
		st, err := m.Attach(ids[0])
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		st.ClientClosed() // explained: goes after drop_grace
		waitFor(t, "the explained session to end", func() bool { return !alive(r, ids[0]) })
		if d := time.Since(start); d > 600*time.Millisecond {
			t.Fatalf("explained session ended after %v, want drop_grace (500ms)", d)
		}
		time.Sleep(3 * time.Second) // the other three passed their TTL
		for _, id := range ids[1:] {
			if !alive(r, id) {
				t.Fatalf("%s expired at its TTL though 3 of 4 sessions went silent at once", id)
			}
		}
		waitFor(t, "the held-back expiry", func() bool { return !alive(r, ids[3]) })
		if d := time.Since(start); d < 6*time.Second {
			t.Fatalf("held-back sessions ended after %v, want one TTL more (>= 6s)", d)
		}
	})
}

// TestSelfPreservationStaggered: a correlated silence whose deadlines are
// spread (each session's last keepalive at its own phase) expires in many
// small batches; it is still held back, from the first deadline on.
func TestSelfPreservationStaggered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, r := setup(t, Config{SelfPreservationMin: 3})
		var ids []string
		start := time.Now()
		for i := range 6 {
			id := fmt.Sprintf("sess%d-0000000000", i)
			ids = append(ids, id)
			mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: id, TTLMs: 3000})
			time.Sleep(400 * time.Millisecond) // deadlines 400 ms apart
		}
		time.Sleep(start.Add(3500 * time.Millisecond).Sub(time.Now()))
		if !alive(r, ids[0]) {
			t.Fatal("the first of six staggered silent sessions expired at its TTL")
		}
		waitFor(t, "the held-back expiry", func() bool { return !alive(r, ids[0]) })
		if d := time.Since(start); d < 6*time.Second {
			t.Fatalf("held-back session ended after %v, want its TTL plus one TTL (>= 6s)", d)
		}
	})
}

// TestNewLeaderHoldsOff: a new leader expires nothing before its takeover
// plus the largest lease, and resumes recorded countdowns.
func TestNewLeaderHoldsOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, r := setup(t, Config{SelfPreservationMin: 100})
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: sA, TTLMs: 3000, LeaseMs: 2000})
		// The old leader had recorded 100 ms left.
		mustPropose(t, r, fsm.OpRenew, fsm.Renew{Term: 1, Items: []fsm.RenewItem{{ID: sA, RemainingMs: 100}}})
		r.mu.Lock()
		r.leader = false
		r.mu.Unlock()
		m.LeaderChanged()
		waitFor(t, "step down", func() bool { return !m.Leading() })
		r.mu.Lock()
		r.leader, r.term = true, 2
		r.mu.Unlock()
		m.LeaderChanged()
		waitFor(t, "takeover", func() bool { return m.Leading() })
		start := time.Now()
		time.Sleep(1900 * time.Millisecond)
		if !alive(r, sA) {
			t.Fatal("the new leader expired a session before takeover + the largest lease")
		}
		waitFor(t, "expiry", func() bool { return !alive(r, sA) })
		if d := time.Since(start); d > 2100*time.Millisecond {
			t.Fatalf("the session lived %v after takeover: its recorded 100ms countdown was not resumed (hold-off is 2s)", d)
		}
	})
}

// TestReleaseWaitsForCleanPromise: an operator's drain marks the master
// releasing; its successor is granted only after the holder's last clean
// promise lapsed, and promises answered after the mark (which carry the
// releasing notice) do not extend that.
func TestReleaseWaitsForCleanPromise(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, r := setup(t, Config{SelfPreservationMin: 100})
		for _, id := range []string{sA, sB} {
			mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: id, TTLMs: 10000, LeaseMs: 1000})
		}
		mustPropose(t, r, fsm.OpRegister, fsm.Register{Service: "db", ID: "a", Instance: api.RegisterRequest{Address: "a", Mode: api.ModeMasterStandby, Session: sA}})
		mustPropose(t, r, fsm.OpRegister, fsm.Register{Service: "db", ID: "b", Instance: api.RegisterRequest{Address: "b", Mode: api.ModeMasterStandby, Session: sB}})
		for _, id := range []string{sA, sB} {
			if _, err := m.Attach(id); err != nil {
				t.Fatal(err)
			}
		}
		ctx := context.Background()
		ka, err := m.Keepalive(ctx, sA)
		if err != nil || len(ka.Masters) != 1 || ka.Masters[0].Releasing {
			t.Fatalf("holder's keepalive = %+v %v", ka, err)
		}
		promised := time.Now().Add(time.Second)
		// The operator drains a (no session: not the holder).
		mustPropose(t, r, fsm.OpRegister, fsm.Register{Service: "db", ID: "a", Instance: api.RegisterRequest{Address: "a", Mode: api.ModeMasterStandby, State: api.StateDraining}})
		time.Sleep(500 * time.Millisecond)
		ka, err = m.Keepalive(ctx, sA) // answered with the releasing notice
		if err != nil || len(ka.Masters) != 1 || !ka.Masters[0].Releasing {
			t.Fatalf("keepalive after the drain = %+v %v, want the releasing notice", ka, err)
		}
		master := func() string { return r.sm.Service("db").Master.Instance }
		waitFor(t, "the successor", func() bool { return master() == "b" })
		if now := time.Now(); now.Before(promised) {
			t.Fatalf("successor granted %v before the holder's last clean promise", promised.Sub(now))
		}
		if late := time.Since(promised); late > 100*time.Millisecond {
			t.Fatalf("successor granted %v after the clean promise lapsed: the later, releasing answer extended it", late)
		}
	})
}

// TestKeepaliveRules: unknown and ended sessions, a follower, not_attached.
func TestKeepaliveRules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, r := setup(t, Config{})
		ctx := context.Background()
		if _, err := m.Keepalive(ctx, "nobody-000000000"); !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("unknown session: %v", err)
		}
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: sA, TTLMs: 5000, LeaseMs: 1000})
		mustPropose(t, r, fsm.OpRegister, fsm.Register{Service: "db", ID: "a", Instance: api.RegisterRequest{Address: "a", Mode: api.ModeMasterStandby, Session: sA}})
		if _, err := m.Keepalive(ctx, sA); !errors.Is(err, api.ErrNotAttached) {
			t.Fatalf("master-seeking session without a stream: %v, want not_attached", err)
		}
		mustPropose(t, r, fsm.OpCloseSession, fsm.CloseSession{ID: sA})
		if _, err := m.Keepalive(ctx, sA); !errors.Is(err, api.ErrSessionExpired) {
			t.Fatalf("ended session: %v, want session_expired", err)
		}
		r.mu.Lock()
		r.leader = false
		r.mu.Unlock()
		m.LeaderChanged()
		waitFor(t, "step down", func() bool { return !m.Leading() })
		if _, err := m.Keepalive(ctx, sA); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("on a follower: %v, want ErrNotLeader", err)
		}
	})
}

// TestNewLeaderHoldsReleases: a record already releasing when a leader
// takes over is not released before takeover + the largest lease: the
// holder may hold a promise from the previous leader.
func TestNewLeaderHoldsReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, r := setup(t, Config{SelfPreservationMin: 100})
		for _, id := range []string{sA, sB} {
			mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: id, TTLMs: 10000, LeaseMs: 1500})
		}
		mustPropose(t, r, fsm.OpRegister, fsm.Register{Service: "db", ID: "a", Instance: api.RegisterRequest{Address: "a", Mode: api.ModeMasterStandby, Session: sA}})
		mustPropose(t, r, fsm.OpRegister, fsm.Register{Service: "db", ID: "b", Instance: api.RegisterRequest{Address: "b", Mode: api.ModeMasterStandby, Session: sB}})
		r.mu.Lock()
		r.leader = false
		r.mu.Unlock()
		m.LeaderChanged()
		waitFor(t, "step down", func() bool { return !m.Leading() })
		mustPropose(t, r, fsm.OpRegister, fsm.Register{Service: "db", ID: "a", Instance: api.RegisterRequest{Address: "a", Mode: api.ModeMasterStandby, State: api.StateDraining}})
		r.mu.Lock()
		r.leader, r.term = true, 2
		r.mu.Unlock()
		m.LeaderChanged()
		waitFor(t, "takeover", func() bool { return m.Leading() })
		start := time.Now()
		waitFor(t, "the successor", func() bool { return r.sm.Service("db").Master.Instance == "b" })
		if d := time.Since(start); d < 1500*time.Millisecond || d > 1600*time.Millisecond {
			t.Fatalf("successor granted %v after takeover, want the largest lease (1.5s)", d)
		}
	})
}

// TestExpectCatchesMissedEvent: a leadership the manager was never nudged
// about (the event came before GetLeaderID showed it) is taken over once
// the node's periodic Expect reports it.
func TestExpectCatchesMissedEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, r := setup(t, Config{})
		r.mu.Lock()
		r.leader = false
		r.mu.Unlock()
		m.Expect(false, 1)
		waitFor(t, "step down", func() bool { return !m.Leading() })
		r.mu.Lock()
		r.leader, r.term = true, 2 // no LeaderChanged: the event was missed
		r.mu.Unlock()
		time.Sleep(time.Second)
		if m.Leading() {
			t.Fatal("took over without being told")
		}
		m.Expect(true, 2)
		waitFor(t, "takeover after Expect", func() bool { return m.Leading() })
		if term, _ := m.Term(); term != 2 {
			t.Fatalf("term %d, want 2", term)
		}
	})
}

// TestResumeAfterHandoff: a handed-off manager answers nothing, even told
// it leads; one resumed (the transfer did not happen) takes over again, a
// new barrier first, and holds off expiries as a new leader does.
func TestResumeAfterHandoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, _ := setup(t, Config{})
		m.Handoff()
		if m.Leading() {
			t.Fatal("leading after Handoff")
		}
		m.Expect(true, 1)
		time.Sleep(time.Second)
		if m.Leading() {
			t.Fatal("took over after Handoff")
		}
		m.Resume()
		waitFor(t, "takeover after Resume", func() bool { return m.Leading() })
	})
}

// TestTransferThenLeadAgain: a manager that stopped answering for a live
// leadership transfer (placement's Transfer, not a stopping node's
// Handoff) takes over again when the leadership comes back to its node in
// a later term — before, a node that once handed a tenant's leadership
// away never answered its sessions again, and clients bounced between
// nodes. While the transfer is under way (same term) it answers nothing.
func TestTransferThenLeadAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, r := setup(t, Config{})
		m.Transfer()
		if m.Leading() {
			t.Fatal("leading after Transfer")
		}
		m.Expect(true, 1)
		time.Sleep(time.Second)
		if m.Leading() {
			t.Fatal("took over again in the term it was transferring")
		}
		// The transfer happens: another node leads in term 2.
		r.mu.Lock()
		r.leader, r.term = false, 2
		r.mu.Unlock()
		m.Expect(false, 2)
		time.Sleep(time.Second)
		// Later the leadership comes back (spread back, or an election).
		r.mu.Lock()
		r.leader, r.term = true, 3
		r.mu.Unlock()
		m.Expect(true, 3)
		waitFor(t, "a takeover in term 3", func() bool { return m.Leading() })
	})
}

// TestTransferNeverSeenFollower: a leadership that came back in a later
// term before this node was ever seen a follower is taken over too.
func TestTransferNeverSeenFollower(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, r := setup(t, Config{})
		m.Transfer()
		r.mu.Lock()
		r.term = 4 // lost and won back between two looks
		r.mu.Unlock()
		m.Expect(true, 4)
		waitFor(t, "a takeover in term 4", func() bool { return m.Leading() })
	})
}
