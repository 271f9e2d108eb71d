package cluster_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/rafting/rafting/server/servertest"
)

// TestMetaTransferSkipsNonVoting: a joined node that has not promoted
// itself to a voter (here: one that never started) cannot take the meta
// shard's leadership, so a node stopping gracefully does not try it. It
// was a target like any recorded node, and with the peers' applied
// indexes it could come first: two election timeouts lost before the
// next target.
func TestMetaTransferSkipsNonVoting(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 3, RTT: 25 * time.Millisecond})
	c.JoinUnstarted(1, 4)
	node := c.Server(1).Node()
	servertest.Eventually(t, 10*time.Second, "node 4 recorded", func() bool { _, ok := node.Meta().Node(4); return ok })
	got := slices.Sorted(maps.Keys(node.MetaTransferTargets()))
	if !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("node 1's meta leadership targets = %v, want the other voters [2 3], not node 4 (non-voting)", got)
	}
}
