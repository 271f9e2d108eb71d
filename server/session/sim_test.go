package session

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

// simCluster is a Raft stand-in that can fail the way Dragonboat fails: one
// log shared by several replicas (each a real fsm.Tenant observed by its
// own Manager), in which commits can stall while heartbeats still succeed,
// proposals can time out and commit later, be lost, or be refused, and
// leadership can move between replicas with a new term in the middle of
// anything. It runs on synctest's virtual clock.
//
// A proposal is appended to the log when it is made (forwarded to the
// leader by a follower, as Dragonboat does) and applied, in log order, to
// every replica once committed. Its proposer waits for that within its ctx
// and is answered 504 when the ctx ends first: the entry stays in the log
// and may still commit, exactly the outcome-unknown case.
type simCluster struct {
	applyMu sync.Mutex // held while committed entries are applied, in order

	mu         sync.Mutex
	log        []*simEntry
	committed  int // entries committed (and applied, or being applied)
	stall      bool
	lose       bool          // proposals are lost on the way: never appended, answered 504
	refuse     bool          // proposals are refused before they are appended: 503
	readErr    error         // ReadIndex fails with this
	readDelay  time.Duration // a ReadIndex takes this long (a slow heartbeat round)
	duringRead func()        // called inside every ReadIndex (leadership lost mid-round)
	leader     int           // index into nodes; -1 when there is none
	term       uint64
	nodes      []*simNode
}

type simEntry struct {
	cmd  []byte
	done chan fsm.Outcome // buffered: the outcome for its proposer, if it still waits
}

// simNode is one replica: the session.Raft of its Manager.
type simNode struct {
	c     *simCluster
	index int
	sm    *fsm.Tenant
	m     *Manager
}

// newSim starts n replicas, each with a Manager; node 0 leads in term 1 and
// has taken over when it returns.
func newSim(t *testing.T, n int, cfg Config) *simCluster {
	t.Helper()
	c := &simCluster{leader: 0, term: 1}
	for i := range n {
		nd := &simNode{c: c, index: i,
			sm: fsm.NewTenant(fsm.TenantInfo{Name: "acme", Epoch: 1, Quotas: api.Quotas{MinTTLMs: 3000, MaxTTLMs: 60000}})}
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		m := New(cfg, nd.sm, nd)
		t.Cleanup(m.Close)
		c.mu.Lock()
		nd.m = m
		c.mu.Unlock()
	}
	waitFor(t, "takeover", func() bool { return c.nodes[0].m.Leading() })
	return c
}

func (n *simNode) Leader() (uint64, uint64, bool) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if n.c.leader < 0 {
		return 0, n.c.term, false
	}
	return uint64(n.c.leader + 1), n.c.term, true
}

func (n *simNode) ReplicaID() uint64 { return uint64(n.index + 1) }
func (n *simNode) LeaderAPI() string { return "" }

// ReadIndex succeeds while the replica can reach a leader, stalled commits
// or not: the read index is the committed index, which this replica has
// applied already (commits apply to every replica at once).
func (n *simNode) ReadIndex(ctx context.Context) error {
	n.c.mu.Lock()
	err, delay, during := n.c.readErr, n.c.readDelay, n.c.duringRead
	if err == nil && n.c.leader < 0 {
		err = &api.Error{Code: api.CodeUnavailable, Message: "sim: no leader"}
	}
	n.c.mu.Unlock()
	if during != nil {
		during()
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return &api.Error{Code: api.CodeTimeout, Message: "sim: read index timed out"}
		}
	}
	return err
}

func (n *simNode) Propose(ctx context.Context, cmd []byte) (fsm.Outcome, error) {
	c := n.c
	c.mu.Lock()
	switch {
	case c.refuse || c.leader < 0:
		c.mu.Unlock()
		return fsm.Outcome{}, &api.Error{Code: api.CodeUnavailable, Message: "sim: refused"}
	case c.lose:
		c.mu.Unlock()
		<-ctx.Done()
		return fsm.Outcome{}, &api.Error{Code: api.CodeTimeout, Message: "sim: lost"}
	}
	e := &simEntry{cmd: cmd, done: make(chan fsm.Outcome, 1)}
	c.log = append(c.log, e)
	stalled := c.stall
	c.mu.Unlock()
	if !stalled {
		c.commit()
	}
	select {
	case o := <-e.done:
		return o, nil
	case <-ctx.Done():
		return fsm.Outcome{}, &api.Error{Code: api.CodeTimeout, Message: "sim: no answer before the deadline"}
	}
}

// commit applies every appended entry, in order, to every replica.
func (c *simCluster) commit() {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	for {
		c.mu.Lock()
		if c.committed == len(c.log) {
			c.mu.Unlock()
			return
		}
		e := c.log[c.committed]
		c.committed++
		index := uint64(c.committed)
		managers := make([]*Manager, len(c.nodes))
		for i, nd := range c.nodes {
			managers[i] = nd.m
		}
		c.mu.Unlock()
		var first fsm.Outcome
		for i, nd := range c.nodes {
			var ch fsm.Changes
			o := nd.sm.Apply(index, e.cmd, &ch)
			nd.sm.Notify(&ch)
			if managers[i] != nil {
				managers[i].Applied(&ch)
			}
			if i == 0 {
				first = o
			}
		}
		e.done <- first
	}
}

// setStall holds commits (true) or lets every held entry commit (false).
func (c *simCluster) setStall(v bool) {
	c.mu.Lock()
	c.stall = v
	c.mu.Unlock()
	if !v {
		c.commit()
	}
}

func (c *simCluster) set(f func(c *simCluster)) {
	c.mu.Lock()
	f(c)
	c.mu.Unlock()
}

// elect makes node i the leader in the next term; every manager is told.
func (c *simCluster) elect(i int) {
	c.mu.Lock()
	c.leader, c.term = i, c.term+1
	c.mu.Unlock()
	for _, nd := range c.nodes {
		c.mu.Lock()
		m := nd.m
		c.mu.Unlock()
		m.LeaderChanged()
	}
}

// propose is a client's write through node 0, which must apply.
func (c *simCluster) propose(t *testing.T, op fsm.Op, cmd any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	o, err := c.nodes[0].Propose(ctx, fsm.Encode(op, cmd))
	if err != nil || o.Code != "" {
		t.Fatalf("%s: %v %s %s", op, err, o.Code, o.Message)
	}
}

// live reports whether the session is live on node i's replica.
func (c *simCluster) live(i int, id string) bool {
	_, st := c.nodes[i].sm.Session(id)
	return st == fsm.SessionLive
}

// master is the master instance of a service on node 0's replica.
func (c *simCluster) master(service string) string {
	if m := c.nodes[0].sm.Service(service).Master; m != nil {
		return m.Instance
	}
	return ""
}

// keepaliver sends a session's keepalives through node i, as a client
// would, and remembers the promise of every successful answer, anchored at
// the moment the keepalive was sent.
type keepaliver struct {
	c       *simCluster
	id      string
	ttl     time.Duration
	mu      sync.Mutex
	promise time.Time // latest send + lease_ms of a successful answer
	renewed time.Time // latest send of a successful answer
}

func (k *keepaliver) send(i int) error {
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := k.c.nodes[i].m.Keepalive(ctx, k.id)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.renewed = sent
	if p := sent.Add(ms(resp.LeaseMs)); p.After(k.promise) {
		k.promise = p
	}
	return nil
}

func (k *keepaliver) last() (renewed, promise time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.renewed, k.promise
}

func (m *Manager) expiringNow(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[id]
	return e != nil && e.expiring
}

// TestExpireUnknownOutcomeKeepsSessionRefused is path 1 of the safety
// issue: an Expire that timed out (appended, not committed: commits stall
// while heartbeats still succeed) may still commit in the same term and
// grant the successor in that entry. The session it names must get no
// promise meanwhile: every promise given to the holder ends before the
// successor's grant.
func TestExpireUnknownOutcomeKeepsSessionRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newSim(t, 3, Config{SelfPreservationMin: 100})
		m := c.nodes[0].m
		c.propose(t, fsm.OpOpenSession, fsm.OpenSession{ID: sA, TTLMs: 3000, LeaseMs: 1000})
		c.propose(t, fsm.OpOpenSession, fsm.OpenSession{ID: sB, TTLMs: 20000, LeaseMs: 1000})
		c.propose(t, fsm.OpRegister, fsm.Register{Service: "db", ID: "a", Instance: api.RegisterRequest{Address: "a", Mode: api.ModeMasterStandby, Session: sA}})
		c.propose(t, fsm.OpRegister, fsm.Register{Service: "db", ID: "b", Instance: api.RegisterRequest{Address: "b", Mode: api.ModeMasterStandby, Session: sB}})
		for _, id := range []string{sA, sB} {
			if _, err := m.Attach(id); err != nil {
				t.Fatal(err)
			}
		}
		if c.master("db") != "a" {
			t.Fatalf("master %q, want a", c.master("db"))
		}
		// A goes silent; its Expire is appended but commits stall.
		c.setStall(true)
		waitFor(t, "A's Expire", func() bool { return m.expiringNow(sA) })
		stalled := time.Now()
		// A's process wakes up and keeps alive every 10 ms.
		a := &keepaliver{c: c, id: sA, ttl: 3 * time.Second}
		for time.Since(stalled) < 2500*time.Millisecond {
			a.send(0)
			time.Sleep(10 * time.Millisecond)
		}
		c.setStall(false) // the stalled Expire commits in the same term
		granted := time.Now()
		waitFor(t, "B's grant", func() bool { return c.master("db") == "b" })
		if _, promise := a.last(); promise.After(granted) {
			t.Fatalf("A was promised until %v after an Expire of unknown outcome; B was granted %v before that",
				promise.Sub(stalled), promise.Sub(granted))
		}
		if c.live(0, sA) {
			t.Fatal("A outlived its Expire")
		}
	})
}

// checkKeptAlive fails when the session ended on node i before its last
// successful keepalive's send time + TTL.
func checkKeptAlive(t *testing.T, c *simCluster, k *keepaliver, i int, until time.Time) {
	t.Helper()
	for time.Now().Before(until) {
		renewed, _ := k.last()
		if !c.live(i, k.id) {
			if due := renewed.Add(k.ttl); time.Now().Before(due) {
				t.Fatalf("session ended %v before its TTL since the last successful keepalive ran out", due.Sub(time.Now()))
			}
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRecoveredSessionSurvivesLeaderChange is path 5 of the safety issue:
// a farm session fell behind (its short countdown recorded), then kept
// alive; the leader changes before the recovery is recorded. The new
// leader must not expire it before the TTL since its last keepalive.
func TestRecoveredSessionSurvivesLeaderChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newSim(t, 3, Config{SelfPreservationMin: 100})
		c.propose(t, fsm.OpOpenSession, fsm.OpenSession{ID: sA, TTLMs: 3000})
		c.propose(t, fsm.OpRegister, fsm.Register{Service: "web", ID: "f", Instance: api.RegisterRequest{Address: "f", Session: sA}})
		start := time.Now()
		k := &keepaliver{c: c, id: sA, ttl: 3 * time.Second}
		time.Sleep(2600 * time.Millisecond) // silent: the leader recorded it falling behind
		if err := k.send(0); err != nil {
			t.Fatalf("keepalive within the TTL: %v", err)
		}
		time.Sleep(start.Add(2700 * time.Millisecond).Sub(time.Now()))
		c.elect(1)
		waitFor(t, "takeover", func() bool { return c.nodes[1].m.Leading() })
		checkKeptAlive(t, c, k, 1, start.Add(5500*time.Millisecond))
		if err := k.send(1); err != nil {
			t.Fatalf("keepalive 2.9 s after the last one, TTL 3 s: %v", err)
		}
	})
}

// TestLateRenewDoesNotShortenSession is path 5's other half: a Renew that
// recorded a session falling behind times out (commits stall) and applies
// after the session kept alive again. A new leader must still not expire
// the session before the TTL since its last successful keepalive.
func TestLateRenewDoesNotShortenSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newSim(t, 3, Config{SelfPreservationMin: 100})
		c.propose(t, fsm.OpOpenSession, fsm.OpenSession{ID: sA, TTLMs: 6000})
		c.propose(t, fsm.OpRegister, fsm.Register{Service: "web", ID: "f", Instance: api.RegisterRequest{Address: "f", Session: sA}})
		start := time.Now()
		k := &keepaliver{c: c, id: sA, ttl: 6 * time.Second}
		time.Sleep(3900 * time.Millisecond)
		c.setStall(true) // the Renew at 4 s (2 s left) stalls
		time.Sleep(600 * time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- k.send(0) }() // at 4.5 s
		time.Sleep(start.Add(5100 * time.Millisecond).Sub(time.Now()))
		c.setStall(false) // the Renew applies after the keepalive
		<-done
		time.Sleep(100 * time.Millisecond)
		c.elect(1)
		waitFor(t, "takeover", func() bool { return c.nodes[1].m.Leading() })
		checkKeptAlive(t, c, k, 1, start.Add(12*time.Second))
	})
}

// TestRoundFaults: a keepalive asking for a promise gets none when its
// ReadIndex fails, is slower than its bound, or the node loses leadership
// while it is in flight; and the session then stays as it was.
func TestRoundFaults(t *testing.T) {
	faults := []struct {
		name  string
		fault func(c *simCluster)
	}{
		{"read index fails", func(c *simCluster) {
			c.set(func(c *simCluster) { c.readErr = &api.Error{Code: api.CodeUnavailable, Message: "sim: no quorum"} })
		}},
		{"read index slow", func(c *simCluster) { c.set(func(c *simCluster) { c.readDelay = time.Second }) }},
		{"leadership lost mid-round", func(c *simCluster) {
			c.set(func(c *simCluster) {
				c.duringRead = func() {
					c.mu.Lock()
					c.leader, c.term = 1, c.term+1
					c.mu.Unlock()
				}
			})
		}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newSim(t, 3, Config{SelfPreservationMin: 100})
				m := c.nodes[0].m
				c.propose(t, fsm.OpOpenSession, fsm.OpenSession{ID: sA, TTLMs: 3000, LeaseMs: 1000})
				k := &keepaliver{c: c, id: sA, ttl: 3 * time.Second}
				if err := k.send(0); err != nil {
					t.Fatalf("keepalive before the fault: %v", err)
				}
				_, before := k.last()
				f.fault(c)
				if err := k.send(0); err == nil {
					t.Fatal("a keepalive was answered without a confirmed round")
				}
				if _, after := k.last(); !after.Equal(before) {
					t.Fatalf("the promise moved from %v to %v", before, after)
				}
				if l, _, _ := c.nodes[0].Leader(); l != 1 {
					waitFor(t, "step down after a round found another leader", func() bool { return !m.Leading() })
				}
			})
		})
	}
}
