package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// TestLostConfigChangeHoldsNoShard: a membership change asked through a
// follower just as its shard's leader dies is lost on its way (the
// follower forwards it to the dead leader), and its caller gives up (a
// removal's client goes away). Dragonboat keeps one pending change per
// replica until it is applied, dropped or past its deadline, and refuses
// any other through that replica meanwhile; the change's deadline is
// ours. The next change through the follower must go through once the
// shard has a new leader, not after the caller's whole deadline (30 s
// for a removal). It did not: in the chaos campaign a removal's lost
// change held a tenant's sweep, and so its moves, for 30 s
// (docs/RELIABILITY.md).
func TestLostConfigChangeHoldsNoShard(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 3, RTT: 25 * time.Millisecond})
	c.CreateTenant("acme", api.Quotas{})
	leader := c.WaitTenantLeader("acme")
	follower := leader%3 + 1
	node := c.Server(follower).Node()
	shard, _ := node.ShardOf("acme")
	rec, _ := node.Meta().Tenant("acme")
	gone, _, _ := rec.ReplicaOn(uint64(leader))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	ccid, err := node.ConfigChangeID(ctx, shard)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	c.AbortNode(leader)
	// At once, while the follower still takes the dead node for the
	// leader; the caller gives up after half a second.
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	stop := time.AfterFunc(500*time.Millisecond, cancel)
	defer stop.Stop()
	first := node.DeleteReplicaAt(ctx, shard, gone, ccid)
	cancel()
	t.Logf("the first change (lost, or not): %v", first)
	start := time.Now()
	var last error
	servertest.Eventually(t, 15*time.Second, "the replica of the dead node taken out through the follower", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		voters, nonVoting, err := node.ShardMembership(ctx, shard)
		if err != nil {
			last = err // no leader yet
			return false
		}
		_, v := voters[gone]
		_, nv := nonVoting[gone]
		if !v && !nv {
			return true
		}
		ccid, err := node.ConfigChangeID(ctx, shard)
		if err != nil {
			last = err
			return false
		}
		last = node.DeleteReplicaAt(ctx, shard, gone, ccid)
		return false
	})
	t.Logf("taken out %v after the first change returned (last refusal: %v)", time.Since(start), last)
}
