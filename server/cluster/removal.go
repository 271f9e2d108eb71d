package cluster

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

// A node taken out of the cluster (RemoveNode, from another node) is not
// told: its meta replica leaves the membership first, so it never applies
// the entry that forgets it, and its replicas simply stop hearing from
// their leaders. It learns it on its own, as etcd's removed member does,
// and then stops serving (Ready is false, tenant requests are refused) and
// its process ends (Removed is closed).
//
//   - From its meta replica: once the node has caught up with the meta
//     shard, a local membership without it (or the meta replica unloaded
//     by Dragonboat, which does so when it applies its own removal) means
//     it was removed.
//   - From its peers: while its meta replica cannot confirm it is current
//     (a removed replica never can), the server asks the other nodes
//     (MetaUnconfirmedFor, then MarkRemoved); their meta shard remembers
//     every removed ID for ever.

// removal is the node's removed state; the zero value is "a member".
type removal struct {
	once   sync.Once
	done   chan struct{} // closed by MarkRemoved
	reason atomic.Pointer[string]

	metaOK atomic.Int64 // unix nanos of the last meta ReadIndex that succeeded (0: none)
	since  time.Time    // when the watch started
}

// removedCheckEvery is how often the node checks its meta replica.
const removedCheckEvery = time.Second

// Removed is closed once this node learned that it was removed from the
// cluster; RemovedReason says how. The server then stops.
func (n *Node) Removed() <-chan struct{} { return n.removal.done }

// RemovedReason is why the node knows it was removed ("" while a member).
func (n *Node) RemovedReason() string {
	if r := n.removal.reason.Load(); r != nil {
		return *r
	}
	return ""
}

// RemovedError is the answer to a tenant request on a removed node, nil
// while it is a member: 503 unavailable (a client tries another node).
func (n *Node) RemovedError() *api.Error {
	if n.RemovedReason() == "" {
		return nil
	}
	return &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
		Message: fmt.Sprintf("node %d was removed from the cluster: it serves nothing and is shutting down; ask another node", n.cfg.NodeID)}
}

// MarkRemoved records that this node was removed from the cluster (how it
// learned it: reason), logs it and closes Removed. Only the first call
// counts.
func (n *Node) MarkRemoved(reason string) {
	n.removal.once.Do(func() {
		n.removal.reason.Store(&reason)
		n.log.Error("this node was removed from the cluster: it stops serving and exits; "+
			"to bring the machine back, join it under a new --id with an empty data dir", "how", reason)
		close(n.removal.done)
	})
}

// MetaUnconfirmedFor is how long the meta replica has not confirmed that
// it is current (the watch's ReadIndex kept failing), 0 when it did within
// the last check.
func (n *Node) MetaUnconfirmedFor() time.Duration {
	last := n.removal.metaOK.Load()
	if last == 0 {
		return time.Since(n.removal.since)
	}
	return time.Since(time.Unix(0, last))
}

// watchRemoval checks, every removedCheckEvery, that the meta replica is
// current (a ReadIndex) and that its membership still holds this node.
func (n *Node) watchRemoval() {
	defer n.wg.Done()
	t := time.NewTicker(removedCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-n.removal.done:
			return
		case <-t.C:
		}
		if n.closing.Load() {
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, removedCheckEvery)
		err := n.SyncMeta(ctx)
		cancel()
		if err == nil {
			n.removal.metaOK.Store(time.Now().UnixNano())
		}
		if reason := n.removedLocally(); reason != "" {
			n.MarkRemoved(reason)
			return
		}
	}
}

// removedLocally reports how the local meta replica shows this node
// removed, or "".
func (n *Node) removedLocally() string {
	if n.meta.Removed(n.cfg.NodeID) {
		return "the meta shard records this node as removed"
	}
	if !n.metaSynced.Load() || n.closing.Load() {
		// Before it caught up once, a replica replaying its log may show
		// a membership from before it joined.
		return ""
	}
	if _, _, _, err := n.nh.GetLeaderID(fsm.MetaShardID); err == dragonboat.ErrShardNotFound {
		return "the meta replica was unloaded: it applied its own removal"
	}
	info := n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true})
	if info == nil {
		return ""
	}
	for _, s := range info.ShardInfoList {
		if s.ShardID != fsm.MetaShardID || s.Pending || len(s.Replicas) == 0 {
			continue
		}
		// Replicas are the voters; a joined node not promoted yet is a
		// non-voting member (join.go).
		if _, ok := s.Replicas[n.cfg.NodeID]; !ok && !s.IsNonVoting {
			return "the meta shard's membership no longer holds this node"
		}
	}
	return ""
}
