package sdk_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// TestRestoreUnderRunningMembers: a cluster is lost and a new one, started
// at the same addresses, is restored from a backup. The members that were
// running find their sessions unknown there and register again under new
// ones, by themselves: the farm member is listed again, the master-standby
// member is master again with a fencing token above its old one, and a
// caller's cache follows.
func TestRestoreUnderRunningMembers(t *testing.T) {
	old := servertest.Start(t, servertest.Options{})
	tok := old.CreateTenant("acme", api.Quotas{})
	opts := []sdk.Option{sdk.WithServers(old.Addrs()...), sdk.WithTenant("acme"), sdk.WithToken(tok), sdk.WithTTL(3 * time.Second)}
	farm, err := sdk.Join(ctxT(t, 30*time.Second), sdk.Instance{Service: "web", ID: "w1", Address: "10.0.0.1:80"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer farm.Leave(ctxT(t, 10*time.Second))
	ms, err := sdk.Join(ctxT(t, 30*time.Second), msInstance("db", "d1", 0), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Leave(ctxT(t, 10*time.Second))
	eventually(t, 10*time.Second, "d1 master", ms.IsMaster)
	oldToken := fencingToken(ms)
	cl, err := sdk.Connect(ctxT(t, 30*time.Second), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	svc, err := cl.Service(ctxT(t, 10*time.Second), "web")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "w1 in the cache", func() bool { _, ok := svc.Snapshot().Instance("w1"); return ok })

	r := old.Do(1, servertest.AdminToken, http.MethodGet, "/v1/backup", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("backup = %d %s", r.Status, r.Body)
	}
	backup := r.Body
	addrs := old.Addrs()
	old.Stop()

	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) {
		cfg.APIAddress = addrs[cfg.NodeID-1]
	}})
	if r := c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/restore", backup); r.Status != http.StatusOK {
		t.Fatalf("restore = %d %s", r.Status, r.Body)
	}
	restored := time.Now()
	var w1 api.Instance
	eventually(t, 20*time.Second, "w1 registered on the new cluster", func() bool {
		var got api.ServiceResponse
		c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/services/web", nil).JSON(t, &got)
		if len(got.Instances) == 1 && got.Instances[0].ID == "w1" {
			w1 = got.Instances[0]
			return true
		}
		return false
	})
	deadline := time.Now().Add(20 * time.Second)
	for !(ms.IsMaster() && fencingToken(ms) > oldToken) {
		if time.Now().After(deadline) {
			var got api.ServiceResponse
			c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/services/db", nil).JSON(t, &got)
			t.Fatalf("d1 is not master on the new cluster: %s; db there: %+v, master %+v; old token %d", sdk.Debug(ms), got, *got.Master, oldToken)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("members back %v after the restore", time.Since(restored))
	// The caller's cache follows the new cluster, though its indexes are
	// below the old one's.
	eventually(t, 10*time.Second, "the caller's cache to hold w1 of the new cluster", func() bool {
		in, ok := svc.Snapshot().Instance("w1")
		return ok && in.SessionTag == w1.SessionTag && !svc.Stale()
	})
	if farm.Role() != sdk.Standby || ms.Err() != nil || farm.Err() != nil {
		t.Fatalf("after the restore: farm %v (%v), master-standby err %v", farm.Role(), farm.Err(), ms.Err())
	}
}
