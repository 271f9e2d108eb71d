package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/servertest"
)

// TestRetiredDataRemovedUnderNewReplica: a move takes a tenant's replica
// off a node and another puts the tenant back on it, under a new replica
// ID, while the old replica's data is still there (the node kept it over
// the moves, as a pass that found the old replica still unloading does).
// The node must then delete the old data while the new replica runs.
// Before, SyncRemoveData refused while the shard ran any replica on the
// node: the data stayed for good, with a warning every pass.
func TestRetiredDataRemovedUnderNewReplica(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 4, RTT: 25 * time.Millisecond})
	c.CreateTenant("acme", api.Quotas{})
	meta := c.Server(1).Node().Meta()
	settled := func() (*fsm.TenantRecord, bool) {
		rec, ok := meta.Tenant("acme")
		if !ok || rec.Move != nil || len(rec.Replicas) != 3 {
			return rec, false
		}
		for _, rep := range rec.Replicas {
			if rep.NonVoting {
				return rec, false
			}
		}
		return rec, true
	}
	servertest.Eventually(t, 30*time.Second, "acme on three voters", func() bool { _, ok := settled(); return ok })
	rec, _ := settled()
	var back, free uint64 // the node acme leaves and comes back to; the one it visits
	for id := uint64(4); id >= 1; id-- {
		if _, _, on := rec.ReplicaOn(id); !on {
			free = id
		} else if back == 0 {
			back = id
		}
	}
	old, _, _ := rec.ReplicaOn(back)
	node := c.Server(int(back)).Node()
	node.KeepRetiredData(true)

	move := func(to, remove uint64) {
		t.Helper()
		nr, _ := meta.Node(to)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := c.Server(1).Node().ProposeMeta(ctx, fsm.Encode(fsm.OpMoveStart, fsm.MoveStart{Name: "acme", Node: to, Remove: remove,
			RaftAddress: nr.RaftAddress, Reason: "test", NowMs: time.Now().UnixMilli()})); err != nil {
			t.Fatal(err)
		}
		servertest.Eventually(t, 30*time.Second, "the move done", func() bool {
			rec, ok := settled()
			_, _, on := rec.ReplicaOn(to)
			return ok && on
		})
	}
	move(free, old)
	rec, _ = settled()
	visit, _, _ := rec.ReplicaOn(free)
	move(back, visit)
	rec, _ = settled()
	again, _, _ := rec.ReplicaOn(back)
	servertest.Eventually(t, 30*time.Second, "the new replica running on the node", func() bool {
		ten, ok := node.Tenant("acme")
		return ok && ten.ReplicaID == again
	})
	if !node.HasReplicaData(rec.ShardID, old) {
		t.Fatalf("node %d: the data of retired replica %d is gone already: the test kept nothing", back, old)
	}
	node.KeepRetiredData(false)
	servertest.Eventually(t, 10*time.Second, "the old replica's data deleted under the new one", func() bool {
		return !node.HasReplicaData(rec.ShardID, old)
	})
	if !node.HasReplicaData(rec.ShardID, again) {
		t.Fatalf("node %d: the running replica %d lost its data", back, again)
	}
}
