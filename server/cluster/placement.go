package cluster

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/rafting/rafting/server/fsm"
)

// Placement (DESIGN.md, "Placement: tenant shards on R of N nodes"), from
// state version 5. Three parts, each a loop pass every placeEvery:
//
//   - The meta shard's leader plans (plan): a shard with a replica on a
//     dead node or fewer than R gets one on the least-loaded live node; a
//     shard with more than R loses one; and while the most and least
//     loaded nodes differ by more than max(1, 10 %) a replica moves from
//     the one to the other. A node takes part in one move at a time.
//     Planning only proposes move_start entries.
//   - The node whose replica leads a tenant's shard drives its move
//     (driveMove): add the new replica non-voting, promote it once its node
//     says it caught up, hand the leadership over if it leads from the
//     replica that goes, remove that replica, and record each step in the
//     meta shard. A step is read back from the shard's membership before
//     it is made, so whoever leads next (after a crash of any node) goes on
//     from where the move stopped; a move whose new replica does not catch
//     up (its node dead or removed, or DeadAfter passed) is undone.
//   - The node of a move's new replica reports it caught up (a ReadIndex
//     through it succeeded: it applied what its leader had committed).
//
// A move never changes a tenant's epoch: its shard, log and indexes stay,
// so fencing tokens (epoch<<40 | index) keep increasing through it.

// placeEvery is the period of the placement pass.
const placeEvery = 500 * time.Millisecond

// placement is the node's placement state.
type placement struct {
	mu         sync.Mutex
	driving    map[string]bool // tenants whose move step runs on this node
	lastSet    time.Time       // last set_replicas or zone registration tried
	lastSpread time.Time       // last leadership handed over to spread them
}

// Leadership spreading: a node hands one tenant leadership at a time to
// another, every spreadEvery at most (its peers' reports are 2 s old at
// most), once it has run 20 election timeouts (10 s; the elections of a
// cluster's start settle first).
const spreadEvery = 5 * time.Second

// PlaceOn is what a tenant creation proposes to place the shard with: the
// meta shard's members (node ID -> Raft address) that are not dead, and R
// (0 before state version 5: a replica on every member).
//
// From version 5 only the meta shard's voters: a joined node is placed on
// once it has caught up and promoted itself (join.go), not while it may
// not even run.
func (n *Node) PlaceOn(ctx context.Context) (map[uint64]string, uint64, error) {
	if n.meta.Version() < 5 {
		members, err := n.MetaMembers(ctx)
		return members, 0, err
	}
	members, err := n.MetaVoters(ctx)
	if err != nil {
		return nil, 0, err
	}
	r := n.meta.Replicas()
	dead := n.deadNodes(time.Now())
	live := map[uint64]string{}
	for id, addr := range members {
		if _, ok := n.meta.Node(id); ok && !dead[id] && addr != "" {
			live[id] = addr
		}
	}
	if len(live) >= min(r, len(members)) && len(live) > 0 {
		members = live
	}
	return members, uint64(r), nil
}

// deadNodes is the nodes unreachable for DeadAfter, as this node's looks
// at its peers saw them (none while no looks are made).
func (n *Node) deadNodes(now time.Time) map[uint64]bool {
	dead := map[uint64]bool{}
	peers, looked := n.peerContact()
	if !looked {
		return dead
	}
	after := n.cfg.DeadAfterOr5m()
	for id, p := range peers {
		if !p.looked || p.Answered {
			continue
		}
		last := p.lastContact
		if last.IsZero() {
			// Never answered: unreachable since this node started, or
			// since it was first looked at (a node that joined since:
			// one look before its process listens is not DeadAfter).
			last = n.removal.since
			if p.firstLook.After(last) {
				last = p.firstLook
			}
		}
		if now.Sub(last) > after {
			dead[id] = true
		}
	}
	return dead
}

// placementLoop runs the placement passes.
func (n *Node) placementLoop() {
	defer n.wg.Done()
	t := time.NewTicker(placeEvery)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if n.closing.Load() || !n.metaSynced.Load() || n.RemovedReason() != "" {
			continue
		}
		n.wakeOrphans()
		if n.meta.Version() < 5 {
			continue
		}
		n.recordSettings()
		n.reportCaughtUp()
		n.driveMoves()
		n.spreadLeaders(time.Now())
		if n.MetaLeaderIsLocal() {
			n.plan(time.Now())
		}
	}
}

// recordSettings records --replicas (when the cluster has no R yet) and
// this node's zone (registered before the cluster's version allowed it).
func (n *Node) recordSettings() {
	p := &n.placement
	p.mu.Lock()
	if time.Since(p.lastSet) < 2*time.Second {
		p.mu.Unlock()
		return
	}
	p.lastSet = time.Now()
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
	defer cancel()
	if r := n.cfg.Replicas; r != 0 {
		if !n.meta.ReplicasSet() {
			if _, err := n.ProposeMeta(ctx, fsm.Encode(fsm.OpSetReplicas, fsm.SetReplicas{Replicas: uint64(r)})); err != nil {
				n.log.Warn("record --replicas", "replicas", r, "err", err)
			} else {
				n.log.Info("replicas per tenant shard recorded", "replicas", r)
			}
		} else if have := n.meta.Replicas(); have != r {
			n.log.Warn("--replicas differs from the cluster's, which its first start recorded: ignored", "replicas", r, "cluster", have)
			n.cfg.Replicas = 0 // said once
		}
	}
	if rec, ok := n.meta.Node(n.cfg.NodeID); ok && rec.Zone != n.cfg.Zone && n.Registered() {
		cmd := fsm.Encode(fsm.OpRegisterNode, fsm.RegisterNode{ID: n.cfg.NodeID, RaftAddress: rec.RaftAddress, APIAddress: rec.APIAddress,
			Incarnation: n.incarnation, Zone: n.cfg.Zone})
		if _, err := n.ProposeMeta(ctx, cmd); err != nil {
			n.log.Warn("record this node's zone", "zone", n.cfg.Zone, "err", err)
		}
	}
}

// reportCaughtUp tells the meta shard that a replica a move adds on this
// node caught up: a ReadIndex through it succeeded, so it applied what the
// leader had committed when the read began.
func (n *Node) reportCaughtUp() {
	for _, t := range n.Tenants() {
		rec, ok := n.meta.Tenant(t.Name)
		if !ok || rec.Move == nil || rec.Move.Add != t.ReplicaID || rec.Move.Step != fsm.StepAdding {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, time.Second)
		err := t.ReadIndex(ctx)
		cancel()
		if err != nil {
			continue // not in the membership yet, or still catching up
		}
		t.synced.Store(true)
		ctx, cancel = context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
		_, err = n.ProposeMeta(ctx, fsm.Encode(fsm.OpMoveStep, fsm.MoveStep{Name: t.Name, Add: rec.Move.Add, Remove: rec.Move.Remove, Step: fsm.StepCaughtUp}))
		cancel()
		if err != nil {
			n.log.Warn("report a moved replica caught up", "tenant", t.Name, "err", err)
		}
	}
}

// driveMoves drives, one step at a time, the move of every tenant whose
// shard this node leads, and takes out of its membership the replicas of
// removed nodes and retired replicas (sweep).
func (n *Node) driveMoves() {
	removed := len(n.meta.RemovedIDs())
	for _, t := range n.Tenants() {
		rec, ok := n.meta.Tenant(t.Name)
		if !ok || !t.LeaderIsLocal() {
			continue
		}
		if removed == 0 {
			t.swept.Store(1) // no node was ever removed: nothing to sweep
		}
		if rec.Move == nil && t.swept.Load() == int64(removed)+1 {
			continue
		}
		p := &n.placement
		p.mu.Lock()
		if p.driving == nil {
			p.driving = map[string]bool{}
		}
		busy := p.driving[t.Name]
		p.driving[t.Name] = true
		p.mu.Unlock()
		if busy {
			continue
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			defer func() {
				p.mu.Lock()
				delete(p.driving, t.Name)
				p.mu.Unlock()
			}()
			// One step's bound: a call the shard cannot answer now (its
			// leader lost its quorum under it) is given up and the next
			// pass asks again; under 4 × RequestTimeout it held the tenant's
			// moves for 40 s (docs/RELIABILITY.md).
			ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
			defer cancel()
			if t.swept.Load() != int64(removed)+1 {
				// First, before any move's step: a dead member left in
				// the shard counts against its quorum.
				done, err := n.sweep(ctx, rec)
				if err != nil {
					n.log.Warn("take removed replicas out of a shard", "tenant", t.Name, "err", err)
				}
				if !done {
					return
				}
				t.swept.Store(int64(removed) + 1)
			}
			if rec.Move == nil {
				return
			}
			if err := n.driveMove(ctx, t, rec); err != nil && n.ctx.Err() == nil {
				n.log.Warn("replica move step", "tenant", t.Name, "move", *rec.Move, "err", err)
			}
		}()
	}
}

// driveMove makes the next step of a tenant's move, through its leader.
func (n *Node) driveMove(ctx context.Context, t *Tenant, rec *fsm.TenantRecord) error {
	mv := *rec.Move
	m, err := n.nh.SyncGetShardMembership(ctx, rec.ShardID)
	if err != nil {
		return raftError(err, ctx)
	}
	_, addVotes := m.Nodes[mv.Add]
	_, addNonVoting := m.NonVotings[mv.Add]
	end := fsm.MoveEnd{Name: rec.Name, Add: mv.Add, Remove: mv.Remove}
	step := func(s string) error {
		_, err := n.ProposeMeta(ctx, fsm.Encode(fsm.OpMoveStep, fsm.MoveStep{Name: rec.Name, Add: mv.Add, Remove: mv.Remove, Step: s}))
		return err
	}
	switch mv.Step {
	case fsm.StepAdding, fsm.StepCaughtUp:
		target := rec.Replicas[mv.Add]
		if addVotes {
			// Promoted, the step not recorded (a leader cut short).
			return step(fsm.StepPromoted)
		}
		if n.moveStalled(rec, time.Now()) {
			n.log.Warn("replica move undone: its new replica did not catch up", "tenant", rec.Name, "node", target.Node, "replica", mv.Add)
			if addNonVoting {
				if err := n.deleteReplica(ctx, rec.ShardID, mv.Add, m.ConfigChangeID); err != nil {
					return err
				}
			}
			end.Undo = true
			_, err := n.ProposeMeta(ctx, fsm.Encode(fsm.OpMoveEnd, end))
			return err
		}
		if !addNonVoting {
			if _, removed := m.Removed[mv.Add]; removed {
				end.Undo = true // taken out already (an undo cut short)
				_, err := n.ProposeMeta(ctx, fsm.Encode(fsm.OpMoveEnd, end))
				return err
			}
			n.log.Info("replica move: adding a non-voting replica", "tenant", rec.Name, "node", target.Node, "replica", mv.Add, "reason", mv.Reason)
			if err := n.addNonVoting(ctx, rec.ShardID, mv.Add, nodeHostID(target.Node), m.ConfigChangeID); err != nil {
				return err
			}
			return nil
		}
		if mv.Step == fsm.StepAdding {
			return nil // its node reports it caught up
		}
		if err := n.addVoter(ctx, rec.ShardID, mv.Add, nodeHostID(target.Node), m.ConfigChangeID); err != nil {
			return err
		}
		n.log.Info("replica move: new replica promoted", "tenant", rec.Name, "node", target.Node, "replica", mv.Add)
		return step(fsm.StepPromoted)
	case fsm.StepPromoted:
		if mv.Remove != 0 {
			_, votes := m.Nodes[mv.Remove]
			_, nonVoting := m.NonVotings[mv.Remove]
			if mv.Remove == t.ReplicaID && (votes || nonVoting) {
				// The replica that goes leads: hand over first (a leader
				// that removes itself leaves its shard without one for an
				// election timeout). Sessions stop being answered here.
				return n.handOver(ctx, t, m.Nodes, mv.Add)
			}
			if votes || nonVoting {
				if err := n.deleteReplica(ctx, rec.ShardID, mv.Remove, m.ConfigChangeID); err != nil {
					return err
				}
			}
		}
		if _, err := n.ProposeMeta(ctx, fsm.Encode(fsm.OpMoveEnd, end)); err != nil {
			return err
		}
		n.log.Info("replica move finished", "tenant", rec.Name, "added", mv.Add, "removed", mv.Remove, "reason", mv.Reason)
		return nil
	}
	return nil
}

// sweep takes out of a shard's membership (through its leader, this node)
// every replica the meta shard retired or whose node it records removed:
// a removal (`rafting cluster remove`) through a node that does not hold
// the shard leaves them there. Only those: a member the local meta
// replica does not know yet may be a move's new replica, recorded by an
// entry this replica has not applied.
// It reports whether none is left.
func (n *Node) sweep(ctx context.Context, rec *fsm.TenantRecord) (bool, error) {
	m, err := n.nh.SyncGetShardMembership(ctx, rec.ShardID)
	if err != nil {
		return false, raftError(err, ctx)
	}
	for _, members := range []map[uint64]string{m.Nodes, m.NonVotings} {
		for rid, target := range members {
			if _, placed := rec.Replicas[rid]; placed {
				continue
			}
			node, ok := nodeOf(target)
			if _, retired := rec.Retired[rid]; !retired && !(ok && n.meta.Removed(node)) {
				continue
			}
			if err := n.deleteReplica(ctx, rec.ShardID, rid, m.ConfigChangeID); err != nil {
				return false, err
			}
			n.log.Info("replica of a removed node taken out of its shard", "tenant", rec.Name, "replica", rid, "node", node)
			return false, nil // the next pass reads the membership again
		}
	}
	return true, nil
}

// spreadLeaders hands one tenant shard's leadership this node holds to a
// node that leads at least two fewer (each hand-over makes the counts more
// even, so they settle within one of each other): each node decides for its own
// leaderships, from the leaders it sees (its own shards') and the ones its
// peers report (theirs), so no node needs to hold a shard to spread it.
func (n *Node) spreadLeaders(now time.Time) {
	p := &n.placement
	p.mu.Lock()
	if now.Sub(p.lastSpread) < spreadEvery || now.Sub(n.removal.since) < 20*n.cfg.ElectionTimeout() {
		p.mu.Unlock()
		return
	}
	p.lastSpread = now
	p.mu.Unlock()
	me := n.cfg.NodeID
	dead := n.deadNodes(now)
	counts := map[uint64]int{}
	for _, rec := range n.meta.Nodes() {
		if !dead[rec.ID] {
			counts[rec.ID] = 0
		}
	}
	seen := n.peerLeaders()
	var mine []*Tenant
	for _, rec := range n.meta.Tenants() {
		leader := seen[rec.ShardID]
		if t, ok := n.Tenant(rec.Name); ok {
			if id, _, ok := n.leader(rec.ShardID); ok {
				leader = rec.Replicas[id].Node
			}
			if t.LeaderIsLocal() && rec.Move == nil {
				mine = append(mine, t)
			}
		}
		if _, live := counts[leader]; live {
			counts[leader]++
		}
	}
	if len(counts) < 2 {
		return
	}
	for _, t := range mine {
		rec, ok := n.meta.Tenant(t.Name)
		if !ok || rec.Move != nil {
			continue
		}
		var to, target uint64
		for rid, rep := range rec.Replicas {
			c, live := counts[rep.Node]
			if rep.NonVoting || !live || rep.Node == me || counts[me]-c < 2 {
				continue
			}
			if to == 0 || c < counts[to] || c == counts[to] && rep.Node < to {
				to, target = rep.Node, rid
			}
		}
		if to == 0 {
			continue
		}
		n.log.Info("tenant leadership handed over to spread the leaderships", "tenant", t.Name, "to_node", to,
			"leads_here", counts[me], "leads_there", counts[to])
		t.Sessions.Transfer()
		ctx, cancel := context.WithTimeout(n.ctx, 2*n.cfg.ElectionTimeout())
		err := n.transfer(ctx, t.ShardID, target)
		cancel()
		if err != nil {
			if id, _, ok := n.leader(t.ShardID); ok && id == t.ReplicaID {
				t.Sessions.Resume() // it still leads here
			}
			n.log.Debug("leadership spread: transfer", "tenant", t.Name, "err", err)
		}
		return
	}
}

// handOver moves the leadership of t's shard from this node's replica to
// another voter, prefer first.
func (n *Node) handOver(ctx context.Context, t *Tenant, voters map[uint64]string, prefer uint64) error {
	t.Sessions.Transfer()
	targets := make([]uint64, 0, len(voters))
	for rid := range voters {
		if rid != t.ReplicaID {
			targets = append(targets, rid)
		}
	}
	sort.Slice(targets, func(i, j int) bool {
		if (targets[i] == prefer) != (targets[j] == prefer) {
			return targets[i] == prefer
		}
		return targets[i] < targets[j]
	})
	var err error
	for _, target := range targets {
		tctx, cancel := context.WithTimeout(ctx, 2*n.cfg.ElectionTimeout())
		err = n.transfer(tctx, t.ShardID, target)
		cancel()
		if err == nil {
			return nil
		}
	}
	if err == nil {
		err = errors.New("no other voter to hand the leadership to")
	}
	return err
}

// moveStalled reports whether a move's new replica is given up on: its
// node is dead, removed or gone, or DeadAfter passed since the move began.
func (n *Node) moveStalled(rec *fsm.TenantRecord, now time.Time) bool {
	target, ok := rec.Replicas[rec.Move.Add]
	if !ok {
		return true
	}
	if _, known := n.meta.Node(target.Node); !known || n.meta.Removed(target.Node) || n.deadNodes(now)[target.Node] {
		return true
	}
	return now.Sub(time.UnixMilli(rec.Move.StartedMs)) > n.cfg.DeadAfterOr5m()
}

// plan proposes the moves the placement needs now (the meta leader's).
// A joined node not yet promoted to a meta voter (join.go) gets nothing:
// it may not run yet.
func (n *Node) plan(now time.Time) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
	voters, err := n.MetaVoters(ctx)
	cancel()
	if err != nil {
		return
	}
	r := n.meta.Replicas()
	dead := n.deadNodes(now)
	zones := n.meta.Zones()
	load := n.meta.Load()
	var live []uint64
	for _, rec := range n.meta.Nodes() {
		if _, voter := voters[rec.ID]; voter && !dead[rec.ID] && rec.RaftAddress != "" {
			live = append(live, rec.ID)
			load[rec.ID] += 0 // a node without replicas has load 0
		}
	}
	recs := n.meta.Tenants()
	// A node takes part in one move at a time; a dead node, which does
	// nothing in a move, in any number (its replicas are replaced in
	// parallel, one per live node).
	busy := map[uint64]bool{}
	mark := func(node uint64) {
		if !dead[node] {
			busy[node] = true
		}
	}
	for _, rec := range recs {
		if mv := rec.Move; mv != nil {
			mark(rec.Replicas[mv.Add].Node)
			mark(rec.Replicas[mv.Remove].Node)
		}
	}
	free := func(ids []uint64, holders []uint64) []uint64 {
		var out []uint64
		for _, id := range ids {
			if !busy[id] && !contains(holders, id) {
				out = append(out, id)
			}
		}
		return out
	}
	start := func(rec *fsm.TenantRecord, node, remove uint64, reason string) {
		c := fsm.MoveStart{Name: rec.Name, Node: node, Remove: remove, Reason: reason, NowMs: now.UnixMilli()}
		if node != 0 {
			nr, ok := n.meta.Node(node)
			if !ok {
				return
			}
			c.RaftAddress = nr.RaftAddress
			busy[node] = true
			load[node]++
		}
		if remove != 0 {
			mark(rec.Replicas[remove].Node)
			load[rec.Replicas[remove].Node]--
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
		defer cancel()
		if _, err := n.ProposeMeta(ctx, fsm.Encode(fsm.OpMoveStart, c)); err != nil {
			n.log.Warn("start a replica move", "tenant", rec.Name, "to", node, "remove", remove, "reason", reason, "err", err)
			return
		}
		n.log.Info("replica move started", "tenant", rec.Name, "to_node", node, "from_node", rec.Replicas[remove].Node, "reason", reason)
	}
	want := min(r, len(live))
	for _, rec := range recs {
		if rec.Move != nil || rec.Restore != nil && rec.Restore.Pending {
			continue // a restore writes through the replicas it found
		}
		holders := rec.NodesOf()
		var onDead, stray uint64
		liveVoters := 0
		for rid, rep := range rec.Replicas {
			switch {
			case dead[rep.Node] || n.meta.Removed(rep.Node):
				if onDead == 0 || rid < onDead {
					onDead = rid
				}
			case rep.NonVoting:
				// Outside a move: its move ended unfinished when the node
				// of the replica it was to replace was removed. It would
				// stay non-voting for good, the shard one voter short and
				// its node counted as a holder.
				if stray == 0 || rid < stray {
					stray = rid
				}
			default:
				liveVoters++
			}
		}
		switch {
		case stray != 0 && len(rec.Replicas) > 1:
			start(rec, 0, stray, "non-voting outside a move") // then a repair adds a voter
		case onDead != 0 || liveVoters < want:
			pick := fsm.Place(free(live, holders), holders, 1, load, zones)
			if len(pick) == 0 {
				continue
			}
			reason := "repair"
			if onDead != 0 {
				reason = "dead node"
			}
			start(rec, pick[0], onDead, reason)
		case len(rec.Replicas) > r:
			// More than R (a data dir from before placement, or R lowered):
			// one goes, from the most loaded node.
			var drop uint64
			for rid, rep := range rec.Replicas {
				if busy[rep.Node] {
					continue
				}
				if d := rec.Replicas[drop]; drop == 0 || load[rep.Node] > load[d.Node] || load[rep.Node] == load[d.Node] && rep.Node > d.Node {
					drop = rid
				}
			}
			if drop != 0 {
				start(rec, 0, drop, "above R")
			}
		}
	}
	n.balance(recs, live, load, zones, busy, start)
}

// balance moves replicas from the most to the least loaded nodes while
// they differ by more than max(1, 10 %) of the most, one move per node.
func (n *Node) balance(recs []*fsm.TenantRecord, live []uint64, load map[uint64]int, zones map[uint64]string,
	busy map[uint64]bool, start func(*fsm.TenantRecord, uint64, uint64, string)) {
	for {
		var hi, lo uint64
		for _, id := range live {
			if busy[id] {
				continue
			}
			if hi == 0 || load[id] > load[hi] || load[id] == load[hi] && id < hi {
				hi = id
			}
			if lo == 0 || load[id] < load[lo] || load[id] == load[lo] && id < lo {
				lo = id
			}
		}
		if hi == 0 || lo == 0 || hi == lo || load[hi]-load[lo] <= max(1, load[hi]/10) {
			return
		}
		moved := false
		for _, rec := range recs {
			rid, _, onHi := rec.ReplicaOn(hi)
			if rec.Move != nil || rec.Restore != nil && rec.Restore.Pending || !onHi || contains(rec.NodesOf(), lo) || !zoneKept(rec, hi, lo, zones) {
				continue
			}
			start(rec, lo, rid, "balance")
			rec.Move = &fsm.Move{} // taken this pass
			moved = true
			break
		}
		if !moved {
			busy[hi] = true // nothing of it fits lo: try the next pair
		}
	}
}

// zoneKept reports whether moving rec's replica from node from to node to
// keeps its zones as spread: to's zone is from's, or one the shard has no
// other replica in.
func zoneKept(rec *fsm.TenantRecord, from, to uint64, zones map[uint64]string) bool {
	if zones[from] == zones[to] {
		return true
	}
	for _, rep := range rec.Replicas {
		if rep.Node != from && zones[rep.Node] == zones[to] {
			return false
		}
	}
	return true
}

func contains(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// TenantNodes is the API addresses of the nodes holding a voting replica
// of a tenant's shard: its leader's first when this node knows it (from its
// own replica, or from its looks at the nodes that hold one), then the
// others, those whose API did not answer this node's last look last — a
// proxy or a client sent to the first does not keep knocking at a node
// that is down.
func (n *Node) TenantNodes(name string) []string {
	rec, ok := n.meta.Tenant(name)
	if !ok {
		return nil
	}
	var lead uint64
	if _, ok := n.Tenant(name); ok {
		if id, _, ok := n.leader(rec.ShardID); ok {
			lead = rec.Replicas[id].Node
		}
	} else {
		lead = n.peerLeaders()[rec.ShardID] // as the nodes that hold it see it
	}
	peers, _ := n.peerContact()
	down := func(node uint64) bool {
		p, ok := peers[node]
		return ok && p.looked && !p.Answered
	}
	nodes := rec.VotingOn()
	rank := func(node uint64) int {
		switch {
		case down(node):
			return 2
		case node == lead:
			return 0
		}
		return 1
	}
	sort.SliceStable(nodes, func(i, j int) bool { return rank(nodes[i]) < rank(nodes[j]) })
	var out []string
	for _, node := range nodes {
		if a := n.NodeAPI(node); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// HostsTenant reports whether the meta shard places a replica of the
// tenant on this node.
func (n *Node) HostsTenant(name string) bool {
	rec, ok := n.meta.Tenant(name)
	if !ok {
		return false
	}
	_, _, on := rec.ReplicaOn(n.cfg.NodeID)
	return on
}
