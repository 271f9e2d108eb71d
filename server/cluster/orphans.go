package cluster

import (
	"context"
	"sync"
	"time"
)

// Orphaned shards. A tenant shard with nothing to do is quiesced
// (Config.Quiesce): its replicas stop ticking, so no follower's election
// timer runs, and when the node that led it dies nobody notices until a
// request arrives — the first request then waits for its forward to the
// dead leader to time out, and placement, whose moves the shard's leader
// drives, cannot replace the dead node's replicas at all. So each node
// wakes its own replicas of the shards whose leader, as they last knew it,
// is on a peer that did not answer the last look: a ReadIndex through a
// replica ends its quiescence (Dragonboat counts it as activity), its
// election timer runs, and the live replicas elect a leader within an
// election timeout. The ReadIndex itself goes to the dead leader and times
// out; a wake of a shard whose leader was only slow costs one read.

// wakeOrphansBudget bounds the wakes in flight at once.
const wakeOrphansBudget = 16

// wakeOrphans starts a pass that wakes the local replicas of orphaned
// shards, unless one still runs.
func (n *Node) wakeOrphans() {
	peers, looked := n.peerContact()
	if !looked || n.closing.Load() {
		return
	}
	var orphans []*Tenant
	for _, t := range n.Tenants() {
		id, _, ok := t.Leader()
		if !ok || id == t.ReplicaID {
			continue
		}
		node, ok := n.meta.ReplicaNode(t.Name, id)
		if !ok || node == n.cfg.NodeID {
			continue
		}
		if p, ok := peers[node]; ok && p.looked && !p.Answered {
			orphans = append(orphans, t)
		}
	}
	if len(orphans) == 0 || !n.waking.CompareAndSwap(false, true) {
		return
	}
	n.log.Info("waking the replicas of shards whose leader's node does not answer", "shards", len(orphans))
	n.wg.Add(1) // the placement loop's count is held: Close waits for this too
	go func() {
		defer n.wg.Done()
		defer n.waking.Store(false)
		sem := make(chan struct{}, wakeOrphansBudget)
		var wg sync.WaitGroup
		for _, t := range orphans {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(n.ctx, time.Second)
				defer cancel()
				_ = t.ReadIndex(ctx) // the read is not the point: its arrival is
			})
		}
		wg.Wait()
	}()
}
