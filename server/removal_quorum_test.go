package server_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// TestRemovalKeepsTenantQuorums: a node removed right after another that
// held a replica of the same tenant is refused (409) while the tenant is
// down to two voters, and goes through once the placement has repaired
// it; the tenant answers throughout. Before, both removals answered 200
// and a tenant whose first removed replica was not yet replaced (nor
// swept from its shard's membership) lost its quorum for good (the chaos
// campaign, seed 1000000011).
func TestRemovalKeepsTenantQuorums(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 5, RTT: 25 * time.Millisecond})
	tok := c.CreateTenant("acme", api.Quotas{})
	servertest.Eventually(t, 30*time.Second, "acme on three voters", func() bool {
		shards, moves, _ := placed(c, 1)
		return moves == 0 && len(shards["acme"]) == 3
	})
	if r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/kv/k", "acme"); r.Status != http.StatusCreated {
		t.Fatalf("put = %d %s", r.Status, r.Body)
	}
	// Two of acme's voters, not the meta leader's node; another node asks.
	rec, _ := c.Server(1).Node().Meta().Tenant("acme")
	var two []int
	for _, n := range rec.VotingOn() {
		if !c.Server(int(n)).Node().MetaLeaderIsLocal() && len(two) < 2 {
			two = append(two, int(n))
		}
	}
	asker := 0
	for n := 1; n <= 5; n++ {
		if n != two[0] && n != two[1] {
			asker = n
			break
		}
	}
	remove := func(n int) *servertest.Response {
		return c.Do(asker, servertest.AdminToken, http.MethodDelete, fmt.Sprintf("/v1/cluster/nodes/%d", n), nil)
	}
	c.AbortNode(two[0])
	if r := remove(two[0]); r.Status != http.StatusOK {
		t.Fatalf("remove node %d = %d %s", two[0], r.Status, r.Body)
	}
	if r := remove(two[1]); r.Status != http.StatusConflict {
		t.Fatalf("remove node %d right after node %d = %d %s, want 409 while acme is down to two voters", two[1], two[0], r.Status, r.Body)
	}
	servertest.Eventually(t, 60*time.Second, "the second removal, once acme is repaired", func() bool {
		return remove(two[1]).Status == http.StatusOK
	})
	readKey(t, c, asker, "acme", tok)
}
