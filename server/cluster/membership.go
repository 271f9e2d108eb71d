package cluster

import (
	"context"
	"time"
)

// Membership changes go through these, each bounded by
// configChangeTimeout, whatever the caller's deadline. Dragonboat keeps
// one membership change pending per shard replica and refuses any other
// through that replica (ErrSystemBusy) until it is applied, dropped, or
// its deadline passes, however the caller's ctx ended: a change whose
// proposal is lost (forwarded to a leader that died, say) holds the slot
// for the caller's whole deadline. A removal's (30 s, its HTTP
// request's) held the sweep, and so every move, of a tenant's shard for
// 30 s on the node that led it, after the removal's client had given up
// (docs/RELIABILITY.md; TestLostConfigChangeHoldsNoShard). A change not
// made in time is asked again by its caller, which reads the membership
// first.

// configChangeTimeout is the most one membership change request may
// wait: five election timeouts (at least a second), enough for a commit
// through a leader elected meanwhile.
func (n *Node) configChangeTimeout() time.Duration {
	return max(5*n.cfg.ElectionTimeout(), time.Second)
}

func (n *Node) addNonVoting(ctx context.Context, shard, replica uint64, target string, ccid uint64) error {
	ctx, cancel := context.WithTimeout(ctx, n.configChangeTimeout())
	defer cancel()
	if err := n.nh.SyncRequestAddNonVoting(ctx, shard, replica, target, ccid); err != nil {
		return raftError(err, ctx)
	}
	return nil
}

func (n *Node) addVoter(ctx context.Context, shard, replica uint64, target string, ccid uint64) error {
	ctx, cancel := context.WithTimeout(ctx, n.configChangeTimeout())
	defer cancel()
	if err := n.nh.SyncRequestAddReplica(ctx, shard, replica, target, ccid); err != nil {
		return raftError(err, ctx)
	}
	return nil
}

func (n *Node) deleteReplica(ctx context.Context, shard, replica, ccid uint64) error {
	ctx, cancel := context.WithTimeout(ctx, n.configChangeTimeout())
	defer cancel()
	if err := n.nh.SyncRequestDeleteReplica(ctx, shard, replica, ccid); err != nil {
		return raftError(err, ctx)
	}
	return nil
}
