package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/servertest"
)

// TestRestartedNodeFollowsLeaderThatJoinedWhileDown: a node that was down
// while another joined restarts when the joined node leads the meta
// shard. Its meta replica must catch up and the node get ready. It could
// not: its registry had no Raft address for the joined node (peers.json
// and its meta replica predate the join, and a message carries only the
// sender's NodeHost ID), so it answered none of the leader's messages;
// the leader, waiting on its first append to it, sent it heartbeats only,
// which carry no entries, and the node never applied the record with the
// leader's address. Not ready for good, and a removal, which waits until
// every node that answers applied it, never answered
// (docs/RELIABILITY.md, "A server restarted while replicas move can stay
// not ready").
func TestRestartedNodeFollowsLeaderThatJoinedWhileDown(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 3, RTT: 25 * time.Millisecond})
	c.AbortNode(1)
	four := c.JoinNode()
	servertest.Eventually(t, 30*time.Second, "node 4 leads the meta shard", func() bool {
		if c.Server(four).Node().MetaLeaderIsLocal() {
			return true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, _ = c.Server(2).Node().TransferLeader(ctx, fsm.MetaShardID, uint64(four))
		return c.Server(four).Node().MetaLeaderIsLocal()
	})
	c.StartNode(1)
	servertest.Eventually(t, 30*time.Second, "node 1 ready again", func() bool { return c.Server(1).Node().Ready() })
	if !c.Server(four).Node().MetaLeaderIsLocal() {
		t.Log("node 4 no longer leads the meta shard: the case was not met throughout")
	}
}
