package cluster_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/servertest"
)

// membership is acme's shard membership as node id reads it.
func membership(t *testing.T, c *servertest.Cluster, id int, name string) (voters, nonVoting map[uint64]string) {
	t.Helper()
	node := c.Server(id).Node()
	shard, ok := node.ShardOf(name)
	if !ok {
		t.Fatalf("node %d knows no tenant %s", id, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	voters, nonVoting, err := node.ShardMembership(ctx, shard)
	if err != nil {
		t.Fatalf("%s's membership on node %d: %v", name, id, err)
	}
	return voters, nonVoting
}

// TestJoinRepairNeverWedgesShard: a tenant shard short of R voters (here
// its only voter, on the one node of a cluster) gets a replica on a
// joining node by a recorded move, as every move: added non-voting, and
// promoted only once its node reports it caught up. A join answered for
// a node that then never starts (it crashed between its join and its
// start) leaves the shard taking writes: its new replica counts in no
// quorum. Before, the join added it as a voter at once: two voters, one
// running, and nothing committed until the joiner ran.
func TestJoinRepairNeverWedgesShard(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1, RTT: 25 * time.Millisecond})
	tok := c.CreateTenant("acme", api.Quotas{})
	if r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/kv/k", "v1"); r.Status != http.StatusCreated {
		t.Fatalf("put = %d %s", r.Status, r.Body)
	}
	c.JoinUnstarted(1, 2)
	rec, _ := c.Server(1).Node().Meta().Tenant("acme")
	if mv := rec.Move; mv == nil || rec.Replicas[mv.Add].Node != 2 || !rec.Replicas[mv.Add].Staged {
		t.Fatalf("acme after node 2's join: replicas %v, move %+v; want a move adding a staged replica on node 2", rec.Replicas, rec.Move)
	}
	servertest.Eventually(t, 10*time.Second, "acme's replica on node 2 added non-voting", func() bool {
		_, nonVoting := membership(t, c, 1, "acme")
		return len(nonVoting) == 1
	})
	if voters, _ := membership(t, c, 1, "acme"); len(voters) != 1 {
		t.Fatalf("acme's voters = %v, want node 1's alone", voters)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.DoErr(ctx, 1, tok, http.MethodPut, "/v1/tenants/acme/kv/k", "v2", nil)
	if err != nil || r.Status != http.StatusOK && r.Status != http.StatusCreated {
		t.Fatalf("put with node 2 joined, not started = %v %v, want it written", r, err)
	}
	if rec, _ := c.Server(1).Node().Meta().Tenant("acme"); rec.Move == nil || rec.Move.Step != fsm.StepAdding {
		t.Fatalf("acme's move = %+v, want it still adding (node 2 never caught up)", rec.Move)
	}
}

// TestJoinRepairPromotesCaughtUpReplica: the same repair with a joiner
// that starts: its replica catches up, is promoted, and the move ends,
// each step recorded; the tenant reads through the new node.
func TestJoinRepairPromotesCaughtUpReplica(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1, RTT: 25 * time.Millisecond})
	tok := c.CreateTenant("acme", api.Quotas{})
	if r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/kv/k", "v1"); r.Status != http.StatusCreated {
		t.Fatalf("put = %d %s", r.Status, r.Body)
	}
	two := c.JoinNode()
	servertest.Eventually(t, 30*time.Second, "acme on nodes 1 and 2, the move ended", func() bool {
		rec, _ := c.Server(1).Node().Meta().Tenant("acme")
		return rec.Move == nil && len(rec.VotingOn()) == 2
	})
	rec, _ := c.Server(1).Node().Meta().Tenant("acme")
	rid, rep, ok := rec.ReplicaOn(uint64(two))
	if !ok || !rep.Staged || rep.NonVoting {
		t.Fatalf("acme's replica on node %d = %d %+v, want one a move added (staged) and promoted", two, rid, rep)
	}
	if voters, nonVoting := membership(t, c, 1, "acme"); len(voters) != 2 || len(nonVoting) != 0 {
		t.Fatalf("acme's membership = voters %v, non-voting %v; want 2 voters", voters, nonVoting)
	}
	servertest.Eventually(t, 10*time.Second, "acme's key through node 2", func() bool {
		r := c.Do(two, tok, http.MethodGet, "/v1/tenants/acme/kv/k?consistent=true", nil)
		return r.Status == http.StatusOK
	})
}

// TestJoinRepairOutlivesFirstFailedLook: a node that joined is dead for
// the placement only once unreachable for --dead-after since it was
// first looked at, not since the looking node started. The join's repair
// move onto a joiner not listening yet (here: never) stays under way
// after a first look found it down, on a node up longer than
// --dead-after, and is undone once --dead-after has passed. Before, that
// first look made the joiner dead at once and the move was undone at the
// next pass: a joiner whose process starts a moment after its join lost
// its repair to a race with the looks.
func TestJoinRepairOutlivesFirstFailedLook(t *testing.T) {
	const deadAfter = 4 * time.Second
	started := time.Now()
	c := servertest.Start(t, servertest.Options{Nodes: 1, RTT: 25 * time.Millisecond, Configure: func(cfg *config.Config) {
		cfg.DeadAfter = deadAfter
	}})
	c.CreateTenant("acme", api.Quotas{})
	servertest.Eventually(t, 2*deadAfter, "node 1 up for longer than --dead-after", func() bool { return time.Since(started) > deadAfter })
	c.JoinUnstarted(1, 2)
	node := c.Server(1).Node()
	servertest.Eventually(t, 10*time.Second, "a look at node 2 unanswered", func() bool {
		for _, nd := range node.Cluster().Nodes {
			if nd.ID == 2 {
				return nd.Health == api.NodeUnreachable
			}
		}
		return false
	})
	looked := time.Now()
	for time.Since(looked) < deadAfter/2 {
		if rec, _ := node.Meta().Tenant("acme"); rec.Move == nil {
			t.Fatalf("acme's repair move onto node 2 undone %v after the first look found node 2 down (--dead-after %v)", time.Since(looked), deadAfter)
		}
		time.Sleep(50 * time.Millisecond)
	}
	servertest.Eventually(t, 3*deadAfter, "the move undone once node 2 was down for --dead-after", func() bool {
		rec, _ := node.Meta().Tenant("acme")
		return rec.Move == nil && len(rec.Retired) == 1
	})
}
