package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
)

// These tests run real processes: three `rafting server`s (production RTT,
// 50 ms) and three member processes of this example, and kill, pause and
// stop them by PID.

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.Cleanup()
	os.Exit(code)
}

type memberProc struct {
	id string
	p  *proctest.Proc
}

// group is one tenant's members and what they reported.
type group struct {
	t       *testing.T
	c       *proctest.Cluster
	tenant  string
	token   string
	ledger  fencedFile
	members map[string]*memberProc
	events  chan Event
	mu      sync.Mutex
	all     []Event
}

func newGroup(t *testing.T, c *proctest.Cluster, tenant string, args ...string) *group {
	t.Helper()
	g := &group{t: t, c: c, tenant: tenant, token: c.CreateTenant(tenant), members: map[string]*memberProc{},
		events: make(chan Event, 4096), ledger: fencedFile{path: filepath.Join(t.TempDir(), "ledger")}}
	bin := proctest.Build(t, "github.com/rafting/rafting/examples/masterstandby")
	env := []string{"RAFTING_SERVERS=" + c.Addrs(), "RAFTING_TENANT=" + tenant, "RAFTING_TOKEN=" + g.token}
	for i, prio := range []int{3, 2, 1} {
		id := fmt.Sprintf("%s-%d", tenant, i+1)
		a := append([]string{"-role", "member", "-id", id, "-priority", fmt.Sprint(prio), "-ledger", g.ledger.path,
			"-cold-start-min", "3", "-cold-start-settle", "5s"}, args...)
		p := proctest.Start(t, id, bin, env, a...)
		g.members[id] = &memberProc{id: id, p: p}
		lines := p.Subscribe()
		go func() {
			for l := range lines {
				var e Event
				if json.Unmarshal([]byte(l), &e) == nil {
					g.mu.Lock()
					g.all = append(g.all, e)
					g.mu.Unlock()
					g.events <- e
				}
			}
		}()
	}
	t.Cleanup(g.check)
	return g
}

// master waits for a member other than `not` to report Master after `since`.
func (g *group) master(not string, since time.Time, timeout time.Duration) Event {
	g.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e := <-g.events:
			if e.Ev == "role" && e.Role == "master" && e.ID != not && e.At >= since.UnixNano() {
				return e
			}
		case <-deadline:
			g.t.Fatalf("no new master within %v; events:\n%s", timeout, g.dump())
		}
	}
}

func (g *group) dump() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var b strings.Builder
	for _, e := range g.all {
		if e.Ev != "write" {
			fmt.Fprintf(&b, "%s %s %s %d %s\n", time.Unix(0, e.At).Format("15:04:05.000"), e.ID, e.Ev+":"+e.Role, e.Token, e.Err)
		}
	}
	return b.String()
}

func (g *group) events_() []Event {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Event(nil), g.all...)
}

// check is the observer: no member ever wrote under a stale token (a write
// refused by the ledger means two members acted as master at once), the
// tokens of successive grants only increase, and the ledger's tokens never
// decrease.
func (g *group) check() {
	evs := g.events_()
	sort.Slice(evs, func(i, j int) bool { return evs[i].At < evs[j].At })
	var last uint64
	for _, e := range evs {
		switch {
		case e.Ev == "fenced":
			g.t.Errorf("%s wrote under a stale token %d while it believed it was master: %s", e.ID, e.Token, e.Err)
		case e.Ev == "role" && e.Role == "master":
			if e.Token < last {
				g.t.Errorf("%s became master with token %d after token %d was granted", e.ID, e.Token, last)
			}
			last = max(last, e.Token)
		}
	}
	if b, err := os.ReadFile(g.ledger.path); err == nil && !increasing(b) {
		g.t.Errorf("the ledger's tokens decrease")
	}
	// No two members believe at once: mastership intervals, from a
	// member's master event to its next role event (or its death),
	// must not overlap by more than the tolerance.
	const tolerance = 5 * time.Millisecond
	type span struct {
		id       string
		from, to int64
	}
	var spans []span
	open := map[string]int64{}
	for _, e := range evs {
		if e.Ev != "role" && e.Ev != "left" {
			continue
		}
		if from, ok := open[e.ID]; ok {
			spans = append(spans, span{e.ID, from, e.At})
			delete(open, e.ID)
		}
		if e.Ev == "role" && e.Role == "master" {
			open[e.ID] = e.At
		}
	}
	for i := range spans {
		for j := range spans {
			a, b := spans[i], spans[j]
			if a.id != b.id && a.from < b.from && b.from < a.to-int64(tolerance) {
				g.t.Errorf("%s and %s both believed they were master from %s to %s",
					a.id, b.id, time.Unix(0, b.from).Format("15:04:05.000"), time.Unix(0, a.to).Format("15:04:05.000"))
			}
		}
	}
}

// roleEvents returns a member's role events after t.
func (g *group) roleEvents(id string, after int64) []Event {
	var out []Event
	for _, e := range g.events_() {
		if e.ID == id && e.At > after && e.Ev == "role" {
			out = append(out, e)
		}
	}
	return out
}

func TestMasterStandbyProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := proctest.StartCluster(t, 3, 50*time.Millisecond)

	t.Run("graceful", func(t *testing.T) {
		g := newGroup(t, c, "graceful")
		m := g.master("", time.Time{}, 30*time.Second)
		if m.ID != "graceful-1" {
			t.Fatalf("cold start elected %s, want the highest priority graceful-1", m.ID)
		}
		stop := time.Now()
		g.members[m.ID].p.Signal(syscall.SIGTERM) // Leave
		next := g.master(m.ID, stop, 10*time.Second)
		took := time.Duration(next.At - stop.UnixNano())
		t.Logf("graceful handover to %s in %v (token %d -> %d)", next.ID, took, m.Token, next.Token)
		if took > 2*time.Second || next.Token <= m.Token {
			t.Fatalf("graceful handover took %v, token %d -> %d", took, m.Token, next.Token)
		}
		// SIGTERM ended the old master's job and the process: it wrote
		// nothing once it stopped being master, and exited.
		select {
		case <-g.members[m.ID].p.Exited():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still runs 5s after SIGTERM", m.ID)
		}
		var stopped int64
		for _, e := range g.roleEvents(m.ID, stop.UnixNano()) {
			if e.Role != "master" {
				stopped = e.At
				break
			}
		}
		if stopped == 0 {
			t.Fatalf("%s reported no demotion after SIGTERM; events:\n%s", m.ID, g.dump())
		}
		for _, e := range g.events_() {
			if e.ID == m.ID && e.Ev == "write" && e.At > stopped {
				t.Fatalf("%s wrote at %s, after it stopped being master at %s", m.ID,
					time.Unix(0, e.At).Format("15:04:05.000"), time.Unix(0, stopped).Format("15:04:05.000"))
			}
		}
	})

	t.Run("kill -9", func(t *testing.T) {
		g := newGroup(t, c, "crash")
		m := g.master("", time.Time{}, 30*time.Second)
		killed := time.Now()
		g.members[m.ID].p.Kill()
		g.mu.Lock()
		g.all = append(g.all, Event{Ev: "left", ID: m.ID, At: killed.UnixNano()}) // a dead process believes nothing
		g.mu.Unlock()
		next := g.master(m.ID, killed, 10*time.Second)
		took := time.Duration(next.At - killed.UnixNano())
		t.Logf("crash failover to %s in %v", next.ID, took)
		if took > 3*time.Second {
			t.Fatalf("crash failover took %v", took)
		}
	})

	t.Run("pause", func(t *testing.T) {
		g := newGroup(t, c, "pause", "-ttl", "3s")
		m := g.master("", time.Time{}, 30*time.Second)
		old := g.members[m.ID]
		paused := time.Now()
		old.p.Signal(syscall.SIGSTOP)
		next := g.master(m.ID, paused, 15*time.Second)
		took := time.Duration(next.At - paused.UnixNano())
		t.Logf("paused master replaced by %s after %v", next.ID, took)
		if took < 2*time.Second || took > 6*time.Second {
			t.Fatalf("a paused master (TTL 3s) was replaced after %v", took)
		}
		// Wait for the new master to write, then resume the old one.
		deadline := time.Now().Add(5 * time.Second)
		for h, _ := g.ledger.highest(); h < next.Token && time.Now().Before(deadline); h, _ = g.ledger.highest() {
			time.Sleep(10 * time.Millisecond)
		}
		resumed := time.Now()
		old.p.Signal(syscall.SIGCONT)
		deadline = time.Now().Add(10 * time.Second)
		for len(g.roleEvents(m.ID, resumed.UnixNano())) == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		evs := g.roleEvents(m.ID, paused.UnixNano())
		if len(evs) == 0 || evs[0].Role == "master" {
			t.Fatalf("the resumed master's first role after the pause = %+v, want a demotion", evs)
		}
		for _, e := range g.events_() {
			if e.ID == m.ID && e.Ev == "write" && e.At > resumed.UnixNano() {
				t.Fatalf("the resumed old master wrote at %s", time.Unix(0, e.At).Format("15:04:05.000"))
			}
		}
		// A write with its old token is refused by the fenced ledger.
		if err := g.ledger.write(m.Token, "zombie"); !errors.Is(err, errFenced) {
			t.Fatalf("a write with the old master's token: %v, want it fenced", err)
		}
	})

	t.Run("drain while paused", func(t *testing.T) {
		g := newGroup(t, c, "drain")
		m := g.master("", time.Time{}, 30*time.Second)
		old := g.members[m.ID]
		paused := time.Now()
		old.p.Signal(syscall.SIGSTOP)
		// The operator drains the master (no session: not the holder).
		g.c.Must(1, g.token, http.MethodPut, "/v1/tenants/drain/services/ledger/instances/"+m.ID,
			api.RegisterRequest{Address: "127.0.0.1:0", Mode: api.ModeMasterStandby, State: api.StateDraining, Priority: 3})
		next := g.master(m.ID, paused, 10*time.Second)
		took := time.Duration(next.At - paused.UnixNano())
		t.Logf("drained paused master replaced after %v", took)
		// Its last promise was given at most one keepalive interval (250 ms)
		// before the pause and lasts the lease (1 s): no grant before that.
		if took < 1000*time.Millisecond-250*time.Millisecond-60*time.Millisecond {
			t.Fatalf("a standby was granted %v after the master paused: before its last promise lapsed", took)
		}
		old.p.Signal(syscall.SIGCONT)
	})

	t.Run("raft leader crash", func(t *testing.T) {
		g := newGroup(t, c, "raftfault")
		m := g.master("", time.Time{}, 30*time.Second)
		leader := c.TenantLeader("raftfault")
		crashed := time.Now()
		c.Servers[leader-1].Proc.Kill()
		time.Sleep(4 * time.Second) // the election and then some
		for _, e := range g.events_() {
			if e.At > crashed.UnixNano() && e.Ev == "role" && e.Role == "master" && e.ID != m.ID {
				t.Fatalf("%s was granted the mastership when only the Raft leader crashed", e.ID)
			}
			if e.At > crashed.UnixNano() && e.Ev == "role" && e.ID == m.ID && e.Token != 0 && e.Token != m.Token {
				t.Fatalf("the master's token changed from %d to %d", m.Token, e.Token)
			}
		}
		var suspended time.Duration
		var from int64
		for _, e := range g.roleEvents(m.ID, crashed.UnixNano()) {
			switch e.Role {
			case "suspended":
				from = e.At
			case "master":
				if from != 0 {
					suspended += time.Duration(e.At - from)
					from = 0
				}
			}
		}
		if from != 0 {
			t.Fatalf("the master is still suspended 4s after the Raft leader crashed; events:\n%s", g.dump())
		}
		t.Logf("master suspended for %v during the Raft election", suspended)
		c.Restart(leader)
		c.WaitServerReady(leader)
	})

	t.Run("rolling restart", func(t *testing.T) {
		g := newGroup(t, c, "rolling")
		m := g.master("", time.Time{}, 30*time.Second)
		time.Sleep(500 * time.Millisecond) // the standbys report their first roles
		start := time.Now()
		for i := 1; i <= 3; i++ {
			if !c.Servers[i-1].Proc.Stop(20 * time.Second) {
				t.Fatalf("server %d did not stop gracefully", i)
			}
			c.Restart(i)
			c.WaitServerReady(i)
		}
		time.Sleep(2 * time.Second)
		for _, e := range g.events_() {
			if e.At > start.UnixNano() && e.Ev == "role" && (e.ID != m.ID || e.Role != "master" || e.Token != m.Token) {
				t.Fatalf("the rolling restart changed a role: %s %s %d; events:\n%s", e.ID, e.Role, e.Token, g.dump())
			}
		}
	})
}
