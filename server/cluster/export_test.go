package cluster

import (
	"context"

	"github.com/lni/dragonboat/v4/client"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

// ProposeAgain proposes cmd on the shard under one pooled session, runs
// between, then sends cmd again with the same series, as propose does
// after an attempt whose deadline passed.
func (t *Tenant) ProposeAgain(ctx context.Context, cmd []byte, between func()) (first, second sm.Result, err error) {
	n, p := t.node, t.node.pool(t.ShardID)
	cs, err := p.take(ctx)
	if err != nil {
		return first, second, err
	}
	defer p.give(cs)
	if first, err = n.nh.SyncPropose(ctx, cs, cmd); err != nil {
		return first, second, err
	}
	between()
	second, err = n.nh.SyncPropose(ctx, cs, cmd)
	return first, second, err
}

// ProposeScripted runs propose's loop on the shard with attempts that
// answer errs in turn (nil: applied), and reports the client session and
// series each attempt was sent under.
func (t *Tenant) ProposeScripted(ctx context.Context, errs ...error) (sent [][2]uint64, err error) {
	_, err = t.node.proposeWith(ctx, t.ShardID, func(_ context.Context, cs *client.Session) (sm.Result, error) {
		sent = append(sent, [2]uint64{cs.ClientID, cs.SeriesID})
		e := errs[min(len(sent), len(errs))-1]
		return sm.Result{}, e
	})
	return sent, err
}

// KeepRetiredData makes the reconciler keep (true) the data of the
// replicas moves retired from this node, or delete it again (false): a
// test holds it over a move back onto the node, as a pass that could not
// delete it (the replica still unloading) would.
func (n *Node) KeepRetiredData(keep bool) { n.keepRetired.Store(keep) }

// MetaTransferTargets is who TransferLeaderships would hand the meta
// shard's leadership to (replica ID -> node ID).
func (n *Node) MetaTransferTargets() map[uint64]uint64 { return n.metaTransferTargets() }

// KeepStaleReplicas makes the reconciler leave running the replicas no
// longer placed on this node, as a pass that has not come yet does.
func (n *Node) KeepStaleReplicas(keep bool) { n.keepStale.Store(keep) }

// ShardMembership is a shard's Raft membership as this node's NodeHost
// reads it through a quorum: its voters and its non-voting members
// (replica ID -> NodeHost ID).
func (n *Node) ShardMembership(ctx context.Context, shard uint64) (voters, nonVoting map[uint64]string, err error) {
	m, err := n.nh.SyncGetShardMembership(ctx, shard)
	if err != nil {
		return nil, nil, err
	}
	return m.Nodes, m.NonVotings, nil
}

// ConfigChangeID is a shard's membership version as this node reads it.
func (n *Node) ConfigChangeID(ctx context.Context, shard uint64) (uint64, error) {
	m, err := n.nh.SyncGetShardMembership(ctx, shard)
	if err != nil {
		return 0, err
	}
	return m.ConfigChangeID, nil
}

// DeleteReplicaAt takes replica out of shard's membership at version
// ccid through this node, as a removal and the sweep do.
func (n *Node) DeleteReplicaAt(ctx context.Context, shard, replica, ccid uint64) error {
	return n.deleteReplica(ctx, shard, replica, ccid)
}
