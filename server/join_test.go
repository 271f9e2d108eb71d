package server_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// metaVoters is node id's view of the meta shard's voters (those the
// cluster's membership lists as Raft voters, through its NodeHost).
func metaVoters(t *testing.T, c *servertest.Cluster, id int) map[uint64]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := c.Server(id).Node().MetaVoters(ctx)
	if err != nil {
		t.Fatalf("meta voters on node %d: %v", id, err)
	}
	return m
}

// TestJoinWithServerDown: a node joins a three-node cluster while one of
// the three is down. It joins the meta shard non-voting and promotes
// itself once caught up, so the meta shard keeps its quorum throughout:
// the join answers, the new node gets ready as a voter, and the meta
// shard takes writes (a tenant created) with three of its four voters.
// Before, the join added the node as a voter before it ran: four voters,
// two answering, and the join never answered (RELIABILITY.md, "A join
// takes a quorum that counts the new node before the new node runs").
func TestJoinWithServerDown(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 3, RTT: 25 * time.Millisecond})
	c.AbortNode(3)
	four := c.JoinNode()
	if !c.Server(four).Node().MetaVoting() {
		t.Fatalf("node %d ready and not a meta voter", four)
	}
	if v := metaVoters(t, c, 1); len(v) != 4 {
		t.Fatalf("meta voters = %v, want 4", v)
	}
	tok := c.CreateTenant("acme", api.Quotas{})
	if r := c.Do(four, tok, http.MethodPut, "/v1/tenants/acme/kv/k", "acme"); r.Status != http.StatusCreated {
		t.Fatalf("put through node %d = %d %s", four, r.Status, r.Body)
	}
	c.StartNode(3)
	c.WaitReady()
}

// TestJoinedNodeNotStartedCountsInNoQuorum: a join answered for a node
// that then never starts (its process crashed between the join and its
// start) leaves the meta shard's quorum as it was: with one of the three
// voters down, the meta shard still takes writes, and the node is removed
// like any member. Before, it was a voter from the join on: two of four
// answering, no quorum.
func TestJoinedNodeNotStartedCountsInNoQuorum(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 3, RTT: 25 * time.Millisecond})
	c.JoinUnstarted(1, 4) // twice: the second adds no second member
	if v := metaVoters(t, c, 1); len(v) != 3 {
		t.Fatalf("meta voters after the join = %v, want the 3 running nodes", v)
	}
	c.AbortNode(3)
	// A read through the meta shard's leader: it needs a quorum of voters.
	// Node 3 may have led it: a ReadIndex during the election that follows
	// times out, one after it passes (with four voters, never).
	servertest.Eventually(t, 10*time.Second, "a meta read index with node 3 down and node 4 joined, not started", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return c.Server(1).Node().SyncMeta(ctx) == nil
	})
	tok := c.CreateTenant("acme", api.Quotas{})
	if rec, _ := c.Server(1).Node().Meta().Tenant("acme"); slices.Contains(rec.VotingOn(), 4) {
		t.Fatalf("acme placed on %v: on node 4, which never ran", rec.VotingOn())
	}
	if r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/kv/k", "acme"); r.Status != http.StatusCreated {
		t.Fatalf("put = %d %s", r.Status, r.Body)
	}
	servertest.Eventually(t, 30*time.Second, "node 4 removed", func() bool {
		return c.Do(2, servertest.AdminToken, http.MethodDelete, fmt.Sprintf("/v1/cluster/nodes/%d", 4), nil).Status == http.StatusOK
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	members, err := c.Server(1).Node().MetaMembers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := members[4]; ok {
		t.Fatalf("meta members after node 4's removal = %v", members)
	}
}
