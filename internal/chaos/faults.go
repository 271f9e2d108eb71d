package chaos

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
)

// active is a fault that started, with what its healing needs.
type active struct {
	f       Fault
	servers []int
	proc    *proctest.Proc
	member  *member
	links   [][2]int // Raft links (from, to) it degraded
	client  string   // the client whose links it degraded
	skipped bool
	stopped int    // a server sent SIGTERM, to start again
	what    string // the fault and its targets
	began   int64  // ns since the scenario began
}

// runFaults runs the plan's faults on their timeline, then heals
// whatever is still active when the phase ends (heal does the rest).
func (s *scenario) runFaults() {
	type step struct {
		at    time.Duration
		start bool
		i     int
	}
	var steps []step
	for i, f := range s.plan.Faults {
		steps = append(steps, step{f.At, true, i}, step{f.At + f.Dur, false, i})
	}
	sort.SliceStable(steps, func(a, b int) bool { return steps[a].at < steps[b].at })
	began := time.Now()
	act := map[int]*active{}
	s.act = act
	for _, st := range steps {
		if st.at >= s.plan.Phase {
			break
		}
		time.Sleep(time.Until(began.Add(st.at)))
		if st.start {
			act[st.i] = s.begin(s.plan.Faults[st.i])
		} else if a := act[st.i]; a != nil {
			s.end(a)
			delete(act, st.i)
		}
	}
	time.Sleep(time.Until(began.Add(s.plan.Phase)))
	for _, a := range act {
		s.end(a)
	}
}

// begin starts a fault.
func (s *scenario) begin(f Fault) *active {
	a := &active{f: f}
	ids := s.serverIDs()
	up := s.upIDs()
	tn := s.tenants[f.Tenant%len(s.tenants)]
	target := func() int { // a running server, or 0
		if len(up) == 0 {
			return 0
		}
		return pick(up, f.Server)
	}
	degrade := func(from, to int, r Rule) {
		s.net.raftLink(from, to, r)
		a.links = append(a.links, [2]int{from, to})
	}
	switch f.Kind {
	case KillServer, KillTenantLeader, KillMetaLeader, PauseServer, TransferLeader:
		id := target()
		switch f.Kind {
		case KillTenantLeader, TransferLeader:
			if l := s.leaderOf(tn.name); l != 0 {
				id = l
			}
		case KillMetaLeader:
			if l := s.leaderOf(""); l != 0 {
				id = l
			}
		}
		if id == 0 {
			a.skipped = true
			break
		}
		a.servers = []int{id}
		switch f.Kind {
		case PauseServer:
			signal(s.server(id).Proc, syscall.SIGSTOP)
			s.paused[s.server(id).Proc] = true
		case TransferLeader:
			signal(s.server(id).Proc, syscall.SIGTERM) // hands every led shard over, then stops
		default:
			s.killServer(id)
		}
	case KillAll:
		for _, id := range up {
			s.killServer(id)
		}
		a.servers = up
	case PauseMember:
		m := s.clientTarget(tn, f.Peer)
		if m == nil {
			a.skipped = true
			break
		}
		a.member = m
		signal(m.proc, syscall.SIGSTOP)
		s.paused[m.proc] = true
	case KillMaster, StopMaster, ResignMaster:
		m, ok := s.masterOf(tn, 500*time.Millisecond)
		if !ok {
			a.skipped = true
			break
		}
		a.member = m
		switch f.Kind {
		case KillMaster:
			m.proc.Kill()
		case StopMaster:
			signal(m.proc, syscall.SIGTERM)
		case ResignMaster:
			signal(m.proc, syscall.SIGUSR1)
		}
	case IsolateServer:
		id := pick(ids, f.Server)
		a.servers = []int{id}
		for _, o := range others(ids, id) {
			degrade(id, o, Rule{Cut: true})
			degrade(o, id, Rule{Cut: true})
		}
	case SplitServers:
		// A minority holding server f.Server against the rest.
		first := f.Server % len(ids)
		var minority []int
		for i := range len(ids) / 2 {
			minority = append(minority, ids[(first+i)%len(ids)])
		}
		a.servers = minority
		for _, x := range minority {
			for _, y := range ids {
				if !contains(minority, y) {
					degrade(x, y, Rule{Cut: true})
					degrade(y, x, Rule{Cut: true})
				}
			}
		}
	case OneWayRaft:
		id := pick(ids, f.Server)
		a.servers = []int{id}
		for _, o := range others(ids, id) {
			degrade(id, o, Rule{Cut: true}) // it hears them; they do not hear it
		}
	case LossyRaft:
		id := pick(ids, f.Server)
		a.servers = []int{id}
		for _, o := range others(ids, id) {
			degrade(o, id, Rule{Loss: f.Loss, Delay: f.Delay})
		}
	case SlowRaft:
		for _, x := range ids {
			for _, y := range others(ids, x) {
				degrade(x, y, Rule{Delay: f.Delay})
			}
		}
	case IsolateClient, OneWayClient, LossyClient:
		m := s.clientTarget(tn, f.Peer)
		if m == nil {
			a.skipped = true
			break
		}
		a.member, a.client = m, tn.name+"/"+m.id
		var up, down Rule
		switch f.Kind {
		case IsolateClient:
			up, down = Rule{Cut: true}, Rule{Cut: true}
		case OneWayClient:
			if f.Up {
				up = Rule{Cut: true}
			} else {
				down = Rule{Cut: true}
			}
		case LossyClient:
			up, down = Rule{Loss: f.Loss, Delay: f.Delay}, Rule{Loss: f.Loss, Delay: f.Delay}
		}
		for _, p := range s.net.clientLinks(a.client) {
			p.Set(up, down)
		}
	case ReplaceNode:
		a.servers = s.replaceNode(f)
		a.skipped = a.servers == nil
	case AddNode:
		a.servers = s.addNode(f)
		a.skipped = a.servers == nil
	case RemoveNode:
		a.servers = s.removeNode(f)
		a.skipped = a.servers == nil
	case ClockJump:
		// The skew shows in the stamps of a term a server begins: every
		// server but the tenant's leader jumps, and the leader hands its
		// shards over, so a server whose clock jumped leads next.
		l := s.leaderOf(tn.name)
		if l == 0 || len(up) < 2 {
			a.skipped = true
			break
		}
		skew := "-1h"
		if f.Up {
			skew = "1h"
		}
		a.servers = others(up, l)
		for _, id := range a.servers {
			s.setSkew(id, skew)
		}
		s.note("wall clocks of servers %v: %s; the leader of %s, server %d, hands over", a.servers, skew, tn.name, l)
		signal(s.server(l).Proc, syscall.SIGTERM)
		a.stopped = l
	}
	if a.skipped {
		s.note("fault %v: skipped (no target)", f.Kind)
		return a
	}
	s.mu.Lock()
	s.faults++
	s.injected[f.Kind]++
	s.mu.Unlock()
	what := fmt.Sprint(a.servers)
	if a.member != nil {
		what = a.member.id
	}
	a.what, a.began = fmt.Sprintf("%v %s", f.Kind, what), int64(time.Since(s.start))
	s.note("fault %v %s begins", f, what)
	return a
}

// clientTarget picks the member whose links a client fault degrades:
// the master half the time, else any running member of the tenant.
func (s *scenario) clientTarget(tn *tenant, peer int) *member {
	if peer%2 == 0 {
		if m, ok := s.masterOf(tn, 500*time.Millisecond); ok {
			return m
		}
	}
	var ms []*member
	for _, mode := range []string{"master", "farm", "watch"} {
		ms = append(ms, tn.running(mode)...)
	}
	if len(ms) == 0 {
		return nil
	}
	return ms[peer%len(ms)]
}

// end heals a fault.
func (s *scenario) end(a *active) {
	if a.skipped {
		return
	}
	f := a.f
	switch f.Kind {
	case KillServer, KillTenantLeader, KillMetaLeader, KillAll:
		for _, id := range a.servers {
			s.restartServer(id)
		}
	case PauseServer:
		p := s.server(a.servers[0]).Proc
		signal(p, syscall.SIGCONT)
		delete(s.paused, p)
	case TransferLeader:
		s.restartStopped(a.servers[0])
	case ClockJump:
		tn := s.tenants[f.Tenant%len(s.tenants)]
		s.note("the leader of %s: server %d", tn.name, s.leaderOf(tn.name))
		s.restartStopped(a.stopped) // the clocks stay off until the faults heal
	case PauseMember:
		signal(a.member.proc, syscall.SIGCONT)
		delete(s.paused, a.member.proc)
	case KillMaster, StopMaster:
		s.startMember(a.member.tenant, "master", 1) // a new process takes the old one's place
	case IsolateServer, SplitServers, OneWayRaft, LossyRaft, SlowRaft:
		for _, l := range a.links {
			s.net.raftLink(l[0], l[1], Rule{})
		}
	case IsolateClient, OneWayClient, LossyClient:
		for _, p := range s.net.clientLinks(a.client) {
			p.Heal()
		}
	}
	s.mu.Lock()
	s.marks = append(s.marks, mark{what: a.what, start: a.began, end: int64(time.Since(s.start))})
	s.mu.Unlock()
	s.note("fault %v heals", f.Kind)
}

// restartStopped waits for a server sent SIGTERM to stop (killing it
// after 10 s), and starts it again.
func (s *scenario) restartStopped(id int) {
	p := s.server(id).Proc
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		p.Kill()
	}
	s.mu.Lock()
	s.down[id] = true
	s.mu.Unlock()
	s.restartServer(id)
}

// setSkew sets server id's wall-clock skew (a Go duration), which it
// reads when it begins a term (server/session's wallSkew, -tags chaos).
func (s *scenario) setSkew(id int, skew string) {
	if err := os.WriteFile(s.skewFile(id), []byte(skew), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *scenario) skewFile(id int) string { return filepath.Join(s.skewDir, fmt.Sprint(id)) }

// replaceNode kills a server, removes it from the cluster (`rafting
// cluster remove`, through another server) and joins a new one (--join).
// It returns the removed and the added server, or nil when it could not.
func (s *scenario) replaceNode(f Fault) []int {
	s.removals.Wait() // exclusive: a RemoveNode's removal ends first
	if !s.awaitSettled(20 * time.Second) {
		s.note("replace-node: the placement is not settled")
		return nil
	}
	ids := s.upIDs()
	if len(s.cluster.Servers) >= s.net.maxID || len(ids) < 3 {
		return nil
	}
	victim := pick(ids, f.Server)
	via := pick(others(ids, victim), f.Peer)
	s.killServer(victim)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, b, _, err := s.call(via, proctest.AdminToken, http.MethodDelete, fmt.Sprintf("/v1/cluster/nodes/%d", victim), nil, 10*time.Second)
		if err == nil && code < 300 {
			break
		}
		if time.Now().After(deadline) {
			s.violation("liveness", "", "removing node %d through %d: %d %s %v", victim, via, code, b, err)
			s.restartServer(victim)
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.mu.Lock()
	s.removed[victim] = true
	delete(s.down, victim)
	s.mu.Unlock()
	added := s.cluster.Join(via)
	s.mu.Lock()
	s.servers = slices.Clone(s.cluster.Servers)
	s.mu.Unlock()
	return []int{victim, added.ID}
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// removeWithin bounds a RemoveNode's removal, the faults' healing
// included: a removal that has not succeeded by then is a liveness
// violation.
const removeWithin = 60 * time.Second

// addNode joins a fresh server (--join, a real process, through a server
// the faults under way leave alone) while the other faults go on; it
// stays. The join waits until the new server is ready, and this goroutine
// runs the timeline, so nothing heals meanwhile. The new server joins the
// meta shard non-voting and promotes itself once caught up (server/cluster's
// join.go), so a join needs the quorum of the members without it: it is
// made when the servers no fault under way touches are one (two of three,
// three of five), and after a removal under way (one membership change at
// a time). Before that fix it needed a quorum of the members with it.
// It returns the added server, or nil when it could not.
func (s *scenario) addNode(f Fault) []int {
	if len(s.cluster.Servers) >= s.net.maxID {
		return nil
	}
	if !s.awaitRemoval(10 * time.Second) {
		s.note("add-node: a removal is still under way")
		return nil
	}
	ids, clear := s.serverIDs(), s.clearIDs()
	if len(clear) < len(ids)/2+1 {
		s.note("add-node: only servers %v of %v are clear of faults, no quorum to join through", clear, ids)
		return nil
	}
	added := s.cluster.Join(pick(clear, f.Peer))
	s.mu.Lock()
	s.servers = slices.Clone(s.cluster.Servers)
	s.mu.Unlock()
	return []int{added.ID}
}

// removeNode removes a running server from the cluster (DELETE
// /v1/cluster/nodes/ID through another server, what `rafting cluster
// remove` sends) while the other faults go on: in its own goroutine,
// asking again through the running servers until it succeeds (heal waits
// for it). Three servers stay: it is made on four or more, one at a time.
// The removed server ends by itself (heal checks that it does). It
// returns the server being removed, or nil when it could not.
func (s *scenario) removeNode(f Fault) []int {
	s.mu.Lock()
	busy := s.removing != 0
	s.mu.Unlock()
	ids, up := s.serverIDs(), s.upIDs()
	if busy || len(ids) < 4 || len(up) < 2 {
		return nil
	}
	victim := pick(up, f.Server)
	s.mu.Lock()
	s.removing = victim
	s.mu.Unlock()
	s.removals.Go(func() { s.remove(victim, f.Peer) })
	return []int{victim}
}

// remove asks the running servers other than victim, in turn from peer,
// to remove it, until one answers success or removeWithin passes. It
// first waits until the placement is settled, as an operator checks
// `rafting cluster` first: a removal while shards are still short of a
// replica (a join's or a removal's moves under way) takes some down to
// one voter, and a fault then takes those down.
func (s *scenario) remove(victim, peer int) {
	defer func() {
		s.mu.Lock()
		s.removing = 0
		s.mu.Unlock()
	}()
	deadline := time.Now().Add(removeWithin)
	if !s.awaitSettled(removeWithin) {
		s.violation("liveness", "", "removing node %d: the placement did not settle (every tenant on R voters, no move) within %v", victim, removeWithin)
		return
	}
	var last string
	for i := peer; ; i++ {
		if via := others(s.upIDs(), victim); len(via) > 0 {
			id := pick(via, i)
			code, b, _, err := s.call(id, proctest.AdminToken, http.MethodDelete, fmt.Sprintf("/v1/cluster/nodes/%d", victim), nil, 10*time.Second)
			if err == nil && code < 300 {
				break
			}
			last = fmt.Sprintf("through %d: %d %s %v", id, code, b, err)
		}
		if time.Now().After(deadline) {
			s.violation("liveness", "", "removing node %d: not done within %v: last %s", victim, removeWithin, last)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.mu.Lock()
	s.removed[victim] = true
	delete(s.down, victim)
	s.mu.Unlock()
	s.note("server %d removed", victim)
}

// awaitRemoval waits (at most wait) until no removal is under way.
func (s *scenario) awaitRemoval(wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		s.mu.Lock()
		busy := s.removing != 0
		s.mu.Unlock()
		if !busy {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clearIDs is the running servers no fault under way touches: not
// paused, stopping, isolated, split off, cut one way, lossy, nor being
// removed (SlowRaft slows every link alike, and leaves them all).
func (s *scenario) clearIDs() []int {
	touched := map[int]bool{}
	for _, a := range s.act {
		switch a.f.Kind {
		case SlowRaft, AddNode, PauseMember, KillMaster, StopMaster, ResignMaster, IsolateClient, OneWayClient, LossyClient:
		default:
			for _, id := range a.servers {
				touched[id] = true
			}
		}
	}
	s.mu.Lock()
	touched[s.removing] = true
	s.mu.Unlock()
	var clear []int
	for _, id := range s.upIDs() {
		if !touched[id] && !s.paused[s.server(id).Proc] {
			clear = append(clear, id)
		}
	}
	return clear
}

// waitRemovedEnd checks that every removed server that still ran ends by
// itself, as a removed node does (it serves nothing and exits), within
// wait; one still running then is a liveness violation, and is killed.
func (s *scenario) waitRemovedEnd(wait time.Duration) {
	deadline := time.Now().Add(wait)
	s.mu.Lock()
	procs := map[int]*proctest.Proc{}
	for id := range s.removed {
		procs[id] = s.servers[id-1].Proc
	}
	s.mu.Unlock()
	for id, p := range procs {
		select {
		case <-p.Exited():
		case <-time.After(time.Until(deadline)):
			s.violation("liveness", "", "server %d, removed, still runs %v after the faults healed", id, wait)
			p.Kill()
		}
	}
}

// awaitSettled waits (at most wait) until a running server's view of the
// placement is settled: every tenant shard has R voting replicas, none on
// a removed node, and no move under way.
func (s *scenario) awaitSettled(wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for i := 0; ; i++ {
		if up := s.upIDs(); len(up) > 0 && s.settled(pick(up, i)) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// settled is whether server id answers a settled placement.
func (s *scenario) settled(id int) bool {
	code, b, _, err := s.call(id, proctest.AdminToken, http.MethodGet, "/v1/cluster", nil, time.Second)
	var cl api.Cluster
	if err != nil || code != http.StatusOK || json.Unmarshal(b, &cl) != nil || cl.Replicas == 0 {
		return false
	}
	for _, sh := range cl.Shards {
		if sh.Tenant == "" {
			continue
		}
		if sh.Move != nil || len(sh.Replicas)-len(sh.NonVoting) != cl.Replicas {
			return false
		}
		for _, node := range sh.Replicas {
			if slices.Contains(cl.Removed, node) {
				return false
			}
		}
	}
	return true
}
