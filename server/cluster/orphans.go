package cluster

import (
	"context"
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

// wakeEvery is the least time between two wakes of one replica.
const wakeEvery = time.Second

// Wake reads through the local replica in the background (at most once a
// second), so that a quiesced replica behind a leader that is gone elects
// another. A node calls it for the replicas of the shards whose leader's
// node does not answer, or which name a leader the meta shard no longer
// places (wakeOrphans), and whenever it tells a client to take session
// work elsewhere (`moved`): a client that finds no leader wakes the shard
// it asks for.
func (t *Tenant) Wake() {
	now := time.Now().UnixNano()
	last := t.woke.Load()
	if now-last < int64(wakeEvery) || t.node.closing.Load() || !t.woke.CompareAndSwap(last, now) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(t.node.ctx, wakeEvery)
		defer cancel()
		_ = t.ReadIndex(ctx) // the read is not the point: its arrival is
	}()
}

// wakeOrphans wakes this node's replicas of the shards whose leader, as
// they know it, is on a peer that did not answer the last look, or is a
// replica the meta shard no longer places (a leader moved away while the
// shard was quiesced).
func (n *Node) wakeOrphans() {
	peers, looked := n.peerContact()
	if n.closing.Load() {
		return
	}
	woken := 0
	for _, t := range n.Tenants() {
		id, _, ok := t.Leader()
		if !ok || id == t.ReplicaID {
			continue
		}
		node, placed := n.meta.ReplicaNode(t.Name, id)
		if node == n.cfg.NodeID {
			continue
		}
		p, known := peers[node]
		if !placed || looked && known && p.looked && !p.Answered {
			t.Wake()
			woken++
		}
	}
	if woken > 0 {
		n.log.Debug("woke the replicas of shards whose leader is gone or does not answer", "shards", woken)
	}
}
