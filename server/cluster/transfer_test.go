package cluster_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server"
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
	join := api.JoinRequest{ID: 4, RaftAddress: servertest.FreePort(t), APIAddress: servertest.FreePort(t)}
	version := http.Header{api.HeaderStateVersion: {fmt.Sprint(server.StateVersion)}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	r, err := c.DoErr(ctx, 1, servertest.AdminToken, http.MethodPost, "/v1/cluster/nodes", join, version)
	cancel()
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("join node 4 = %v %v", r, err)
	}
	node := c.Server(1).Node()
	servertest.Eventually(t, 10*time.Second, "node 4 recorded", func() bool { _, ok := node.Meta().Node(4); return ok })
	got := slices.Sorted(maps.Keys(node.MetaTransferTargets()))
	if !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("node 1's meta leadership targets = %v, want the other voters [2 3], not node 4 (non-voting)", got)
	}
}
