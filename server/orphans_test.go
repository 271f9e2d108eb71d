package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// TestQuiescedShardElectsAfterItsLeaderDies: a tenant shard with nothing
// to do is quiesced, so its followers run no election timer; when the
// node that leads it crashes, the live replicas elect a new leader within
// seconds without any request to the tenant (each node wakes its replicas
// of shards whose leader's node stopped answering) — not at the next
// client request, and not never, which would leave placement unable to
// replace the dead node's replicas.
func TestQuiescedShardElectsAfterItsLeaderDies(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	c.CreateTenant("idle", api.Quotas{})
	dead := c.WaitTenantLeader("idle")
	// Idle for well over Dragonboat's quiesce threshold (ten election
	// timeouts: 2 s at RTT 20 ms).
	time.Sleep(4 * time.Second)
	c.AbortNode(dead)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if l := c.TenantLeader("idle"); l != 0 && l != dead {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no live node leads the idle tenant's shard 15 s after its leader, node %d, crashed", dead)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// And it serves: a write through any live node succeeds.
	for id := 1; id <= 3; id++ {
		if id == dead {
			continue
		}
		if r := c.Do(id, servertest.AdminToken, http.MethodGet, "/v1/tenants/idle/services?consistent=true", nil); r.Status != http.StatusOK {
			t.Fatalf("a linearizable read through node %d after the election: %d %s", id, r.Status, r.Body)
		}
		break
	}
}
