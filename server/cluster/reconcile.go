package cluster

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/session"
)

// The reconciler makes the tenant replicas running on this node match the
// meta shard, like a controller: it starts the shards placed here, stops
// the ones that are not, removes the data of tombstoned shards (and only
// those), and brings each tenant shard's quotas to the meta shard's
// version. It first syncs the meta replica with a quorum, so a node coming
// back after a tenant was deleted and re-created never restarts the old
// shard: its ID is tombstoned, the new tenant has a new ID.

func (n *Node) kickReconcile() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *Node) reconcileLoop() {
	defer n.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	n.kickReconcile()
	for {
		select {
		case <-n.stop:
			return
		case <-n.kick:
		case <-t.C:
		}
		if n.closing.Load() {
			return
		}
		if !n.metaSynced.Load() {
			ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
			err := n.SyncMeta(ctx)
			cancel()
			if err != nil {
				n.log.Debug("meta not synced yet", "err", err)
				continue
			}
			n.metaSynced.Store(true)
		}
		if n.reconcile() && !n.reconciled.Load() && n.syncReplicas() {
			n.reconciled.Store(true)
		}
	}
}

// syncReplicas does one ReadIndex through each local tenant replica not yet
// synced since this node started. A ReadIndex from a follower travels to the
// leader and back, so its success proves the leader reaches this node: after
// a restart, peers' transports back off before reconnecting, and a node is
// not ready (a rolling restart must not stop the next node) until they do.
// It reports whether every replica is synced.
func (n *Node) syncReplicas() bool {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var failed atomic.Bool
	for _, t := range n.Tenants() {
		if t.synced.Load() {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
			defer cancel()
			if err := t.ReadIndex(ctx); err != nil {
				failed.Store(true)
				return
			}
			t.synced.Store(true)
		}()
	}
	wg.Wait()
	return !failed.Load()
}

// reconcile runs one pass and reports whether every desired shard runs.
func (n *Node) reconcile() bool {
	me := n.cfg.NodeID
	desired := map[uint64]*fsm.TenantRecord{}
	for _, rec := range n.meta.Tenants() {
		if _, _, ok := rec.ReplicaOn(me); ok {
			desired[rec.ShardID] = rec
		}
	}
	n.mu.RLock()
	var stale []*Tenant
	for shard, t := range n.tenants {
		rec, ok := desired[shard]
		if !ok {
			stale = append(stale, t) // not placed here
			continue
		}
		if rid, _, _ := rec.ReplicaOn(me); rid != t.ReplicaID {
			stale = append(stale, t) // placed here anew
		}
	}
	n.mu.RUnlock()
	if n.keepStale.Load() {
		stale = nil
	}
	for _, t := range stale {
		n.stopTenant(t)
	}
	n.removeRetired(desired)
	all := true
	for shard, rec := range desired {
		n.mu.RLock()
		t := n.tenants[shard]
		n.mu.RUnlock()
		if t == nil {
			if err := n.startTenant(rec); err != nil {
				n.log.Warn("start tenant shard", "tenant", rec.Name, "shard", shard, "err", err)
				all = false
			}
			continue
		}
		n.syncQuotas(t, rec)
	}
	for _, tomb := range n.meta.Tombstones() {
		for rid, rep := range tomb.Replicas {
			if rep.Node == me && n.nh.HasNodeInfo(tomb.ShardID, rid) {
				n.removeData(tomb.ShardID, rid)
			}
		}
	}
	return all
}

func (n *Node) startTenant(rec *fsm.TenantRecord) error {
	rid, rep, _ := rec.ReplicaOn(n.cfg.NodeID)
	t := &Tenant{Name: rec.Name, ShardID: rec.ShardID, ReplicaID: rid, Epoch: rec.Epoch,
		SM: fsm.NewTenant(rec.Info()), node: n}
	t.Sessions = session.New(session.Config{
		RenewInterval:       n.cfg.RenewInterval,
		ExpiryInterval:      n.cfg.ExpiryInterval,
		ProposalTimeout:     n.cfg.ProposalTimeout,
		SelfPreservationMin: n.cfg.SelfPreservationMin,
		Logger:              n.log.With("tenant", rec.Name, "shard", rec.ShardID),
	}, t.SM, raftView{t})
	var members map[uint64]dragonboat.Target
	join := false
	switch {
	case n.nh.HasNodeInfo(rec.ShardID, rid):
		// restart from the data dir
	case rep.Join:
		join = true
	default:
		members = map[uint64]dragonboat.Target{}
		for id := range rec.Initial() {
			members[id] = nodeHostID(rec.Replicas[id].Node)
		}
	}
	cfg := n.shardConfig(rec.ShardID, rid, n.cfg.Quiesce)
	cfg.IsNonVoting = rep.Staged // always (fsm.Replica says why)
	// Register before starting: Dragonboat may apply entries (and call
	// the state machine, which reaches the session manager) at once.
	n.mu.Lock()
	n.tenants[t.ShardID] = t
	n.byName[t.Name] = t
	n.mu.Unlock()
	create := func(uint64, uint64) sm.IConcurrentStateMachine { return &tenantSM{t: t} }
	if err := n.nh.StartConcurrentReplica(members, join, create, cfg); err != nil {
		n.mu.Lock()
		delete(n.tenants, t.ShardID)
		if n.byName[t.Name] == t {
			delete(n.byName, t.Name)
		}
		n.mu.Unlock()
		t.Sessions.Close()
		return err
	}
	n.log.Debug("started tenant shard", "tenant", rec.Name, "shard", rec.ShardID, "replica", rid, "join", join, "staged", rep.Staged)
	return nil
}

func (n *Node) stopTenant(t *Tenant) {
	t.Sessions.Close()
	defer t.SM.Retire() // its blocking queries answer 503 and are asked elsewhere
	if err := n.nh.StopShard(t.ShardID); errors.Is(err, dragonboat.ErrShardNotFound) {
		n.log.Debug("stop tenant shard: unloaded already (it applied its own removal)", "tenant", t.Name, "shard", t.ShardID)
	} else if err != nil {
		n.log.Warn("stop tenant shard", "tenant", t.Name, "shard", t.ShardID, "err", err)
	}
	n.mu.Lock()
	delete(n.tenants, t.ShardID)
	if n.byName[t.Name] == t {
		delete(n.byName, t.Name)
	}
	n.mu.Unlock()
	n.forget(t.ShardID)
	n.metrics.forget(t)
	n.log.Debug("stopped tenant shard", "tenant", t.Name, "shard", t.ShardID)
}

// removeRetired deletes the local data of the replicas this node held that
// moves retired (their shard lives on elsewhere; a node that was down
// during the move deletes it when it returns), unless the replica runs.
func (n *Node) removeRetired(desired map[uint64]*fsm.TenantRecord) {
	if n.keepRetired.Load() {
		return
	}
	me := n.cfg.NodeID
	for _, rec := range n.meta.Tenants() {
		for rid, node := range rec.Retired {
			if node != me || !n.nh.HasNodeInfo(rec.ShardID, rid) {
				continue
			}
			n.mu.RLock()
			t := n.tenants[rec.ShardID]
			n.mu.RUnlock()
			if t != nil && t.ReplicaID == rid {
				continue // stopped at the next pass first
			}
			n.removeData(rec.ShardID, rid)
		}
	}
}

// removeData deletes the local data of a replica that no longer runs here
// (tombstoned, or retired by a move). Not SyncRemoveData: it refuses while
// the shard runs any replica on this node, so a node that a move placed
// the shard on again, under a new replica ID, would keep the old one's
// data for good (and warn every pass). RemoveData refuses only while that
// very replica is loaded; one still being unloaded is deleted at a later
// pass.
func (n *Node) removeData(shard, replica uint64) {
	if err := n.nh.RemoveData(shard, replica); errors.Is(err, dragonboat.ErrShardNotStopped) {
		n.log.Debug("remove replica data: the replica is still being unloaded; at a later pass", "shard", shard, "replica", replica)
		return
	} else if err != nil {
		n.log.Warn("remove replica data", "shard", shard, "replica", replica, "err", err)
		return
	}
	n.log.Debug("removed replica data", "shard", shard, "replica", replica)
}

// syncQuotas proposes the meta shard's quotas into the tenant shard, from
// its leader only, when the tenant's copy is older.
func (n *Node) syncQuotas(t *Tenant, rec *fsm.TenantRecord) {
	if _, v := t.SM.Quotas(); v >= rec.QuotasVersion || !t.LeaderIsLocal() {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
		defer cancel()
		if _, err := t.Propose(ctx, fsm.Encode(fsm.OpSetQuotas, fsm.SetQuotas{Version: rec.QuotasVersion, Quotas: rec.Quotas})); err != nil {
			n.log.Warn("sync quotas", "tenant", t.Name, "err", err)
		}
	}()
}

// AddNode adds a node started with --join: first to the meta shard, then
// (before state version 5) a replica of every tenant shard, IDs from the
// meta counter, never reused, which the joining node starts as joiners.
// From version 5 (placement) the node gets tenants as the meta leader
// moves replicas onto it, and each shard below R that has no move under
// way gets a move that adds a replica on it now (repairBelowR).
//
// A node that has run (its process registered an incarnation) is refused:
// it asks to join only when it has no data dir, and a replica whose log
// was lost cannot take its old place (its peers would send it a commit
// index past its empty log, and Dragonboat panics). Only a retried join of
// a node that never started passes.
func (n *Node) AddNode(ctx context.Context, id uint64, raftAddr, apiAddr string) (err error) {
	n.log.Info("node join requested", "member", id, "raft", raftAddr, "api", apiAddr, "by", requester(ctx))
	defer func() {
		if err != nil {
			n.log.Warn("node join refused or cut short", "member", id, "by", requester(ctx), "err", err)
			return
		}
		n.log.Info("node joined: a member of the meta shard, and of the tenant shards placed on it", "member", id, "raft", raftAddr, "api", apiAddr, "by", requester(ctx))
	}()
	if err := n.SyncMeta(ctx); err != nil {
		return err
	}
	if n.meta.Removed(id) {
		return api.Errorf(api.CodeConflict, "node %d was removed from the cluster; join with a new --id and an empty data dir", id)
	}
	if rec, ok := n.meta.Node(id); ok && rec.Incarnation != 0 {
		return api.Errorf(api.CodeConflict, "node %d is a member that has run, and a join comes from an empty data dir: "+
			"restart it with its data dir, or, if that is lost, remove it (rafting cluster remove %d) and join under a new --id with an empty data dir", id, id)
	}
	mm, err := n.nh.SyncGetShardMembership(ctx, fsm.MetaShardID)
	if err != nil {
		return raftError(err, ctx)
	}
	_, voter := mm.Nodes[id]
	_, nonVoting := mm.NonVotings[id]
	if addr, ok := n.reg.addr(id); ok && addr != raftAddr && (voter || nonVoting) {
		return api.Errorf(api.CodeConflict, "node %d is a member with raft address %s", id, addr)
	}
	n.reg.setAddr(id, raftAddr)
	if !voter && !nonVoting {
		// Non-voting: it counts in no quorum until it has caught up and
		// promoted itself (join.go). A voter added before it runs would
		// make four members of which two answer when one of three is down.
		if err := n.addNonVoting(ctx, fsm.MetaShardID, id, nodeHostID(id), mm.ConfigChangeID); err != nil {
			return err
		}
	}
	if _, err := n.ProposeMeta(ctx, fsm.Encode(fsm.OpRegisterNode, fsm.RegisterNode{ID: id, RaftAddress: raftAddr, APIAddress: apiAddr})); err != nil {
		return err
	}
	if n.meta.Version() >= 5 {
		return n.repairBelowR(ctx, id, raftAddr)
	}
	for _, rec := range n.meta.Tenants() {
		o, err := n.ProposeMeta(ctx, fsm.Encode(fsm.OpAddReplica, fsm.AddReplica{Name: rec.Name, Node: id, RaftAddress: raftAddr}))
		if err != nil {
			return err
		}
		m, err := n.nh.SyncGetShardMembership(ctx, rec.ShardID)
		if err != nil {
			return raftError(err, ctx)
		}
		if _, ok := m.Nodes[o.Replica]; ok {
			continue
		}
		if err := n.addVoter(ctx, rec.ShardID, o.Replica, nodeHostID(id), m.ConfigChangeID); err != nil {
			return err
		}
	}
	return nil
}

// repairBelowR starts, for each tenant shard below R voters with no move
// under way, a move that adds a replica on the joined node id. The
// planner places only on meta voters, which the joiner is once it runs
// and has promoted itself; a shard this starts on at its join gets its
// replica first. A move like any other (placement.go): the shard's leader
// adds the replica non-voting, promotes it once the joiner reports it
// caught up, each step recorded, and undoes it if the joiner never runs.
// Before, the join added a voter at once, before the joiner ran: a shard
// down to one voter then had two, one of them not running, and committed
// nothing until the joiner ran (nor answered a join asked again, whose
// membership read needs that quorum).
//
// The node is registered first: a move to a node the meta shard does not
// know is undone by its shard's leader. A move refused (another is under
// way, or the node holds a replica already) is left to the planner.
func (n *Node) repairBelowR(ctx context.Context, id uint64, raftAddr string) error {
	now := time.Now().UnixMilli()
	for _, rec := range n.meta.Tenants() {
		if rec.Move != nil || len(rec.VotingOn()) >= n.meta.Replicas() || rec.Restore != nil && rec.Restore.Pending {
			continue
		}
		if _, _, on := rec.ReplicaOn(id); on {
			continue
		}
		_, err := n.ProposeMeta(ctx, fsm.Encode(fsm.OpMoveStart, fsm.MoveStart{Name: rec.Name, Node: id, RaftAddress: raftAddr,
			Reason: "repair", NowMs: now}))
		var ae *api.Error
		if errors.As(err, &ae) && (ae.Code == api.CodeConflict || ae.Code == api.CodeNotFound) {
			n.log.Debug("join: no repair move on the new node", "tenant", rec.Name, "member", id, "err", err)
			continue
		}
		if err != nil {
			return err
		}
		n.log.Info("replica move started", "tenant", rec.Name, "to_node", id, "reason", "repair", "by", "join")
	}
	return nil
}

// removalLeavesQuorums refuses the removal of node id when it would take
// a voter from a tenant short of its R voters, whose voters answering now
// are a majority of those it has, and would not be one after: a tenant
// down to two voters (a first removal's replica not yet replaced, and
// perhaps not yet swept out of its shard's membership) loses its quorum
// with either. Two removals 200 ms apart in the chaos campaign both
// answered success and left a tenant without a quorum for good. Asked
// again once the placement has repaired the tenant, the removal goes on.
// A tenant whose answering voters are no majority already (a second node
// down) gains nothing from a refusal, nor does a tenant's only voter.
func (n *Node) removalLeavesQuorums(id uint64) error {
	if n.meta.Version() < 5 {
		return nil // every node holds every tenant: nothing is repaired
	}
	down := map[uint64]bool{} // its last look went unanswered
	if peers, looked := n.peerContact(); looked {
		for pid, p := range peers {
			down[pid] = p.looked && !p.Answered
		}
	}
	r, others := n.meta.Replicas(), len(n.meta.Nodes())-1
	for _, rec := range n.meta.Tenants() {
		voters := rec.VotingOn()
		if !slices.Contains(voters, id) || len(voters) < 2 || len(voters) >= r || others < len(voters) {
			continue // at R, or on every node there is: a voter goes with the quorum kept
		}
		before := 0 // voters answering now
		for _, v := range voters {
			if !down[v] {
				before++
			}
		}
		after := before
		if !down[id] {
			after--
		}
		if majority := len(voters)/2 + 1; before >= majority && after < majority {
			return &api.Error{Code: api.CodeConflict, RetryAfter: 5 * time.Second,
				Message: "node " + strconv.FormatUint(id, 10) + " holds one of the " + strconv.Itoa(len(voters)) + " voters of tenant " + rec.Name +
					": removing it now would leave the shard without a quorum; ask again once its placement has replaced the replica it lacks (rafting cluster shows moves under way)"}
		}
	}
	return nil
}

// removalLosesTenants names the tenants whose every voting replica is on
// node id (a cluster started with --replicas 1): its removal would leave
// them no replica, their data gone for good.
func (n *Node) removalLosesTenants(id uint64) []string {
	var lost []string
	for _, rec := range n.meta.Tenants() {
		voters := rec.VotingOn()
		if len(voters) > 0 && !slices.ContainsFunc(voters, func(v uint64) bool { return v != id }) {
			lost = append(lost, rec.Name)
		}
	}
	return lost
}

// RemoveOptions are a removal's options; the zero value is the safe one.
type RemoveOptions struct {
	// Force removes a node that holds a tenant's only replica (R = 1),
	// whose data goes with it; without it such a removal is refused.
	Force bool
}

// RemoveNode takes a node out of the cluster for good, as when its machine
// is lost: its replica leaves the meta shard first (so no tenant created
// from then on is placed on it), then every tenant shard, and finally the
// meta state forgets it (the node's own reconciler, if it still runs,
// stops its tenant replicas). Every step is skipped when done, so a
// removal cut short is finished by asking again. Its ID is never taken
// back: the machine returns with a new ID and an empty data dir, through
// --join. A node does not remove itself: ask another.
// A node that holds a tenant's only replica is refused unless opts.Force.
func (n *Node) RemoveNode(ctx context.Context, id uint64, opts RemoveOptions) (err error) {
	if id == n.cfg.NodeID {
		return api.Errorf(api.CodeConflict, "node %d does not remove itself: ask another node", id)
	}
	mm, err := n.nh.SyncGetShardMembership(ctx, fsm.MetaShardID)
	if err != nil {
		return raftError(err, ctx)
	}
	_, voter := mm.Nodes[id]
	_, nonVoting := mm.NonVotings[id] // joined, not promoted yet
	member := voter || nonVoting
	_, known := n.meta.Node(id)
	if !member && !known && !n.meta.Removed(id) {
		return api.Errorf(api.CodeNotFound, "node %d is not a member of the cluster", id)
	}
	if err := n.removalLeavesQuorums(id); err != nil {
		return err
	}
	if lost := n.removalLosesTenants(id); len(lost) > 0 {
		if !opts.Force {
			return &api.Error{Code: api.CodeConflict,
				Message: "node " + strconv.FormatUint(id, 10) + " holds the only replica of tenant(s) " + strings.Join(lost, ", ") +
					": removing it loses their data for good; bring the node back, or remove it with --force (?force=true) and recreate them"}
		}
		n.log.Warn("node removal forced: tenants lose their only replica", "member", id, "tenants", lost, "by", requester(ctx))
	}
	n.log.Info("node removal requested", "member", id, "by", requester(ctx))
	defer func() {
		if err != nil {
			n.log.Warn("node removal cut short: ask again to finish it", "member", id, "by", requester(ctx), "err", err)
			return
		}
		n.log.Info("node removed: it left the meta shard and every tenant shard, and its ID is never taken back", "member", id, "by", requester(ctx))
	}()
	// A leader that removes itself steps down and leaves its shard without
	// one for an election timeout: a node still running hands its
	// leaderships over first (a lost one leads nothing).
	if member && len(mm.Nodes) > 1 {
		moved, err := n.MoveLeadersOff(ctx, id)
		if err != nil {
			return err
		}
		if moved > 0 {
			n.log.Info("leaderships moved off the node before its removal", "member", id, "shards", moved)
		}
	}
	if member {
		if voter && len(mm.Nodes) < 2 {
			return api.Errorf(api.CodeConflict, "node %d is the cluster's last member", id)
		}
		if err := n.deleteReplica(ctx, fsm.MetaShardID, id, mm.ConfigChangeID); err != nil {
			return err
		}
	}
	for _, rec := range n.meta.Tenants() {
		rid, _, ok := rec.ReplicaOn(id)
		if !ok {
			continue
		}
		if _, local := n.Tenant(rec.Name); !local {
			// Placement: a shard this node does not hold; its leader's
			// node takes the replica out once the meta shard records the
			// removal (placement.go's sweep).
			continue
		}
		m, err := n.nh.SyncGetShardMembership(ctx, rec.ShardID)
		if err != nil {
			return raftError(err, ctx)
		}
		_, voter := m.Nodes[rid]
		if _, nonVoting := m.NonVotings[rid]; !voter && !nonVoting {
			continue
		}
		if err := n.deleteReplica(ctx, rec.ShardID, rid, m.ConfigChangeID); err != nil {
			return err
		}
	}
	_, err = n.ProposeMeta(ctx, fsm.Encode(fsm.OpRemoveNode, fsm.RemoveNode{ID: id, NowMs: time.Now().UnixMilli()}))
	return err
}
