package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/servertest"
)

// TestPlacementStrayNonVotingReplaced: a move {add X, remove Y} whose Y's
// node is removed before X is promoted ends with Y's removal (remove_node),
// leaving X non-voting outside any move. The placement takes X out and a
// repair adds a voter, so the shard is back to R voters. Before, X stayed
// non-voting for good: two voters, and X's node counted as a holder, so
// no repair could use it.
func TestPlacementStrayNonVotingReplaced(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 4, RTT: 25 * time.Millisecond})
	c.CreateTenant("acme", api.Quotas{})
	servertest.Eventually(t, 30*time.Second, "acme on three voters", func() bool {
		shards, moves, _ := placed(c, 1)
		return moves == 0 && len(shards["acme"]) == 3
	})
	meta := c.Server(1).Node().Meta()
	rec, _ := meta.Tenant("acme")
	var free uint64
	for n := uint64(1); n <= 4; n++ {
		if _, _, ok := rec.ReplicaOn(n); !ok {
			free = n
		}
	}
	// Y: a holder that is neither the meta leader's node nor node 1 (the
	// one the test reads from).
	var y uint64
	for n := uint64(2); n <= 4; n++ {
		if _, _, ok := rec.ReplicaOn(n); ok && !c.Server(int(n)).Node().MetaLeaderIsLocal() {
			y = n
		}
	}
	if free == 0 || y == 0 {
		t.Fatalf("no free node (%d) or node to remove (%d)", free, y)
	}
	yReplica, _, _ := rec.ReplicaOn(y)
	freeRec, _ := meta.Node(free)
	c.AbortNode(int(y))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	n := c.Server(1).Node()
	o, err := n.ProposeMeta(ctx, fsm.Encode(fsm.OpMoveStart, fsm.MoveStart{Name: "acme", Node: free, Remove: yReplica,
		RaftAddress: freeRec.RaftAddress, Reason: "test", NowMs: time.Now().UnixMilli()}))
	if err != nil {
		t.Fatal(err)
	}
	x := o.Replica
	if _, err := n.ProposeMeta(ctx, fsm.Encode(fsm.OpRemoveNode, fsm.RemoveNode{ID: y, NowMs: time.Now().UnixMilli()})); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 10*time.Second, "node 1's meta replica has the removal", func() bool {
		rec, _ := meta.Tenant("acme")
		_, _, onY := rec.ReplicaOn(y)
		return !onY
	})
	if rec, _ := meta.Tenant("acme"); !rec.Replicas[x].NonVoting {
		t.Skipf("the new replica %d was promoted before the removal: not the case under test", x)
	}
	servertest.Eventually(t, 60*time.Second, "acme on three voters again, none on the removed node", func() bool {
		rec, _ := meta.Tenant("acme")
		if rec.Move != nil || len(rec.Replicas) != 3 {
			return false
		}
		for _, rep := range rec.Replicas {
			if rep.NonVoting || rep.Node == y {
				return false
			}
		}
		return true
	})
}
