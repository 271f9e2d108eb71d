package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// TestRemovalOfOnlyReplicaNeedsForce: on a cluster of --replicas 1, the
// removal of the node holding a tenant's only replica answers 409 naming
// the tenant, and goes through with ?force=true. Before, it answered 200
// and the tenant's data was gone.
func TestRemovalOfOnlyReplicaNeedsForce(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 3, RTT: 25 * time.Millisecond, Configure: func(cfg *config.Config) {
		cfg.Replicas = 1
	}})
	servertest.Eventually(t, 10*time.Second, "R = 1 recorded", func() bool { return c.Server(1).Node().Meta().Replicas() == 1 })
	c.CreateTenant("solo", api.Quotas{})
	rec, _ := c.Server(1).Node().Meta().Tenant("solo")
	on := rec.VotingOn()
	if len(on) != 1 {
		t.Fatalf("solo on %v, want one node", on)
	}
	holder := int(on[0])
	asker := holder%3 + 1
	path := fmt.Sprintf("/v1/cluster/nodes/%d", holder)
	r := c.Do(asker, servertest.AdminToken, http.MethodDelete, path, nil)
	if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "solo") {
		t.Fatalf("remove node %d, solo's only replica = %d %s, want 409 naming solo", holder, r.Status, r.Body)
	}
	if r := c.Do(asker, servertest.AdminToken, http.MethodDelete, path+"?force=maybe", nil); r.Status != http.StatusBadRequest {
		t.Fatalf("remove ?force=maybe = %d %s, want 400", r.Status, r.Body)
	}
	servertest.Eventually(t, 30*time.Second, "the forced removal", func() bool {
		return c.Do(asker, servertest.AdminToken, http.MethodDelete, path+"?force=true", nil).Status == http.StatusOK
	})
	if !c.Server(asker).Node().Meta().Removed(uint64(holder)) {
		t.Fatalf("node %d not recorded removed", holder)
	}
}
