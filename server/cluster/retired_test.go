package cluster_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/servertest"
)

// moves is a four-node cluster with one tenant, acme, on three of the
// nodes, whose replicas a test moves one at a time.
type moves struct {
	t    *testing.T
	c    *servertest.Cluster
	meta *fsm.Meta
	tok  string
}

func newMoves(t *testing.T) *moves {
	c := servertest.Start(t, servertest.Options{Nodes: 4, RTT: 25 * time.Millisecond})
	m := &moves{t: t, c: c, meta: c.Server(1).Node().Meta(), tok: c.CreateTenant("acme", api.Quotas{})}
	servertest.Eventually(t, 30*time.Second, "acme on three voters", func() bool { _, ok := m.settled(); return ok })
	return m
}

// settled is acme's record, and whether it is on three voters with no
// move under way.
func (m *moves) settled() (*fsm.TenantRecord, bool) {
	rec, ok := m.meta.Tenant("acme")
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

// nodes returns a node acme is on (the highest) and the one it is not on.
func (m *moves) nodes() (on, free uint64) {
	rec, _ := m.settled()
	for id := uint64(4); id >= 1; id-- {
		if _, _, here := rec.ReplicaOn(id); !here {
			free = id
		} else if on == 0 {
			on = id
		}
	}
	return on, free
}

// move adds a replica of acme on node to, removes replica remove, and
// waits until the move is done.
func (m *moves) move(to, remove uint64) {
	m.t.Helper()
	nr, _ := m.meta.Node(to)
	ctx, cancel := context.WithTimeout(m.t.Context(), 10*time.Second)
	defer cancel()
	if _, err := m.c.Server(1).Node().ProposeMeta(ctx, fsm.Encode(fsm.OpMoveStart, fsm.MoveStart{Name: "acme", Node: to, Remove: remove,
		RaftAddress: nr.RaftAddress, Reason: "test", NowMs: time.Now().UnixMilli()})); err != nil {
		m.t.Fatal(err)
	}
	servertest.Eventually(m.t, 30*time.Second, "the move done", func() bool {
		rec, ok := m.settled()
		_, _, on := rec.ReplicaOn(to)
		return ok && on
	})
}

// replicaOn is acme's replica on node.
func (m *moves) replicaOn(node uint64) uint64 {
	rec, _ := m.settled()
	id, _, _ := rec.ReplicaOn(node)
	return id
}

// TestRetiredDataRemovedUnderNewReplica: a move takes a tenant's replica
// off a node and another puts the tenant back on it, under a new replica
// ID, while the old replica's data is still there (the node kept it over
// the moves, as a pass that found the old replica still unloading does).
// The node must then delete the old data while the new replica runs.
// Before, SyncRemoveData refused while the shard ran any replica on the
// node: the data stayed for good, with a warning every pass.
func TestRetiredDataRemovedUnderNewReplica(t *testing.T) {
	m := newMoves(t)
	back, free := m.nodes() // the node acme leaves and comes back to; the one it visits
	old := m.replicaOn(back)
	node := m.c.Server(int(back)).Node()
	node.KeepRetiredData(true)

	m.move(free, old)
	m.move(back, m.replicaOn(free))
	again := m.replicaOn(back)
	shard := m.c.Server(1).Node().Meta()
	rec, _ := shard.Tenant("acme")
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

// TestRetiredReplicaServesNothing: a replica a move took out of its shard
// may still run on its node for a while (until the node's reconciler stops
// it: here it is kept running). It hears no more of its shard, so it must
// answer nothing: the node proxies the tenant's requests to a node that
// holds it, as it does for a tenant it never held. It used to answer
// from the retired replica: a read after the move missed what was written
// since, and a blocking query there would wait for changes that never
// come.
func TestRetiredReplicaServesNothing(t *testing.T) {
	m := newMoves(t)
	away, free := m.nodes()
	node := m.c.Server(int(away)).Node()
	node.KeepStaleReplicas(true)
	defer node.KeepStaleReplicas(false)
	write := func(id string) {
		t.Helper()
		if r := m.c.Do(int(free), m.tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/"+id, api.RegisterRequest{Address: "10.0.0.1:80"}); r.Status/100 != 2 {
			t.Fatalf("register %s = %d %s", id, r.Status, r.Body)
		}
	}
	write("before")
	servertest.Eventually(t, 10*time.Second, "the node's replica has the first instance", func() bool {
		ten, ok := node.Tenant("acme")
		return ok && len(ten.SM.Service("web").Instances) == 1
	})
	m.move(free, m.replicaOn(away))
	if _, ok := node.Tenant("acme"); !ok {
		t.Fatal("the retired replica was stopped: the test kept nothing")
	}
	write("after")
	var svc api.ServiceResponse
	r := m.c.Do(int(away), m.tok, http.MethodGet, "/v1/tenants/acme/services/web", nil)
	if r.Status == http.StatusOK {
		r.JSON(t, &svc)
	}
	if len(svc.Instances) != 2 {
		t.Fatalf("a read through node %d after its replica was retired = %d %s, want both instances (from a node that holds acme)", away, r.Status, r.Body)
	}
}
