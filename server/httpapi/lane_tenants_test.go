package httpapi_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/httpapi"
	"github.com/rafting/rafting/server/servertest"
)

// TestLaneOverflowIsPerTenant proves that one tenant's sessions cannot take
// another tenant's keepalive lane: with a tenant's lane buckets charged for
// 262,144 sessions on a node (its real sessions last, opened and kept alive
// through the API), every new session of another tenant still gets a bucket
// of its own, and its keepalives all pass. Before, the node held 262,144
// lane buckets in all, past them every new session of every tenant shared
// one overflow bucket of 25 a second (burst 50), and buckets stayed 10
// minutes after their sessions ended: an attacker opening sessions at its
// write rate filled the table in 7 minutes, and about a tenth of the
// victim's keepalives below were refused (34 of 300).
func TestLaneOverflowIsPerTenant(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	mal := c.CreateTenant("mallory", api.Quotas{})
	vic := c.CreateTenant("victim", api.Quotas{})
	c.WaitTenantLeader("mallory")
	c.WaitTenantLeader("victim")
	s := c.Server(1).API()

	const oldCap, byAPI = 262144, 10
	httpapi.FillLane(s, "mallory", oldCap-byAPI)
	for i := range byAPI {
		id := fmt.Sprintf("mallorysession%06d", i)
		if r := c.Do(1, mal, http.MethodPut, "/v1/tenants/mallory/sessions/"+id, api.SessionRequest{TTLMs: 3000}); r.Status/100 != 2 {
			t.Fatalf("open: %d %s", r.Status, r.Body)
		}
		c.Do(1, mal, http.MethodPut, "/v1/tenants/mallory/sessions/"+id+"/keepalive", nil) // its own bucket, or its overflow: either will do
	}

	const sessions, rounds = 30, 10 // 10 keepalives each, within a bucket's burst of 50
	for i := range sessions {
		id := fmt.Sprintf("victimsession%06d", i)
		if r := c.Do(1, vic, http.MethodPut, "/v1/tenants/victim/sessions/"+id, api.SessionRequest{TTLMs: 5000, LeaseMs: 1000}); r.Status/100 != 2 {
			t.Fatalf("victim open: %d %s", r.Status, r.Body)
		}
	}
	refused := 0
	for range rounds {
		for i := range sessions {
			id := fmt.Sprintf("victimsession%06d", i)
			if r := c.Do(1, vic, http.MethodPut, "/v1/tenants/victim/sessions/"+id+"/keepalive", nil); r.Status != http.StatusOK {
				refused++
			}
		}
	}
	if refused > 0 {
		t.Errorf("%d of the victim's %d keepalives refused: another tenant's sessions took its lane", refused, sessions*rounds)
	}
}

// TestLaneBucketOfEndedSessionIsDropped proves that a node's sweep drops
// the lane bucket of a session that ended, and keeps a live one's: an
// ended session holds no room of its tenant's lane buckets. Before, a
// bucket stayed 10 minutes after its last use, whether or not its session
// still existed.
func TestLaneBucketOfEndedSessionIsDropped(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("acme", api.Quotas{})
	c.WaitTenantLeader("acme")
	s := c.Server(1).API()

	for _, id := range []string{"endingsession0000", "livesession000000"} {
		if r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+id, api.SessionRequest{TTLMs: 60000}); r.Status/100 != 2 {
			t.Fatalf("open %s: %d %s", id, r.Status, r.Body)
		}
		if r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+id+"/keepalive", nil); r.Status != http.StatusOK {
			t.Fatalf("keepalive %s: %d %s", id, r.Status, r.Body)
		}
	}
	if n := httpapi.LaneBuckets(s, "acme"); n != 2 {
		t.Fatalf("LaneBuckets() = %d after two sessions' keepalives, want 2", n)
	}
	if r := c.Do(1, tok, http.MethodDelete, "/v1/tenants/acme/sessions/endingsession0000", nil); r.Status/100 != 2 {
		t.Fatalf("close: %d %s", r.Status, r.Body)
	}
	s.Sweep(time.Now())
	if n := httpapi.LaneBuckets(s, "acme"); n != 1 {
		t.Errorf("LaneBuckets() = %d after one session closed and a sweep, want 1 (the live one's)", n)
	}
}
