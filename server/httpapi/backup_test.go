package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/httpapi"
	"github.com/rafting/rafting/server/servertest"
)

const sessID = "sess-backup-0123456789"

// TestBackupRestore: a backup of one cluster restored into a new one
// brings back every tenant with its tokens (a rotated tenant's previous
// token too) and quotas, each service's policy and permanent instances,
// but nothing that belonged to a session; epochs, fencing tokens and shard
// IDs on the new cluster are above every one the old one issued. Restoring
// again is a retry; restoring into a cluster with other tenants, or a
// malformed backup, is refused.
func TestBackupRestore(t *testing.T) {
	old := servertest.Start(t, servertest.Options{})
	acme := old.CreateTenant("acme", api.Quotas{MaxInstances: 50})
	beta := old.CreateTenant("beta", api.Quotas{})
	old.CreateTenant("gone", api.Quotas{})
	if r := old.Do(1, servertest.AdminToken, http.MethodDelete, "/v1/tenants/gone", nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete tenant = %d %s", r.Status, r.Body)
	}
	var rot api.Tenant
	old.Do(2, servertest.AdminToken, http.MethodPost, "/v1/tenants/beta/token", api.RotateTokenRequest{}).JSON(t, &rot)
	w30 := 30
	if r := old.Do(1, acme, http.MethodPut, "/v1/tenants/acme/services/web/instances/p1", api.RegisterRequest{
		Address: "10.0.0.1:80", Weight: &w30, Zone: "z1", Meta: map[string]string{"v": "1"},
		ColdStart: &api.ColdStart{MinReady: 3, SettleMs: 5000}}); r.Status >= 300 {
		t.Fatalf("register p1 = %d %s", r.Status, r.Body)
	}
	if r := old.Do(1, acme, http.MethodPut, "/v1/tenants/acme/services/db/policy",
		api.PolicyRequest{ColdStart: &api.ColdStart{MinReady: 2, SettleMs: 60000}}); r.Status >= 300 {
		t.Fatalf("policy = %d %s", r.Status, r.Body)
	}
	// A master under a session: the session, its instance and the
	// mastership stay behind.
	if r := old.Do(1, acme, http.MethodPut, "/v1/tenants/acme/sessions/"+sessID, api.SessionRequest{TTLMs: 10000}); r.Status >= 300 {
		t.Fatalf("open session = %d %s", r.Status, r.Body)
	}
	oldToken := master(t, old, acme, "ms", "m1", sessID)

	r := old.Do(3, servertest.AdminToken, http.MethodGet, "/v1/backup", nil)
	backup := r.Body
	var b api.Backup
	r.JSON(t, &b)
	if r.Status != http.StatusOK || len(b.Tenants) != 2 || b.Epochs["gone"] == 0 {
		t.Fatalf("backup = %d %s", r.Status, r.Body)
	}
	if r := old.Do(1, acme, http.MethodGet, "/v1/backup", nil); r.Status != http.StatusUnauthorized && r.Status != http.StatusForbidden {
		t.Fatalf("backup with a tenant's token = %d, want refused", r.Status)
	}
	var oldAcme api.Tenant
	old.Do(1, servertest.AdminToken, http.MethodGet, "/v1/tenants/acme", nil).JSON(t, &oldAcme)

	// Every answer a backed-up service gave, whole, to compare with the
	// restored cluster's (its indexes apart: a new log).
	answers := map[string]api.ServiceResponse{}
	for _, svc := range []string{"web", "db"} {
		var a api.ServiceResponse
		old.Do(1, acme, http.MethodGet, "/v1/tenants/acme/services/"+svc+"?consistent=true", nil).JSON(t, &a)
		a.Index, a.ModifyIndex = 0, 0
		answers[svc] = a
	}
	time.Sleep(20 * time.Millisecond) // registered_at of the restored instances, if not kept, would differ

	c := servertest.Start(t, servertest.Options{})
	var res api.RestoreResponse
	r = c.Do(2, servertest.AdminToken, http.MethodPost, "/v1/restore", backup)
	r.JSON(t, &res)
	if r.Status != http.StatusOK || res != (api.RestoreResponse{Tenants: 2, Policies: 1, Instances: 1}) {
		t.Fatalf("restore = %d %s", r.Status, r.Body)
	}
	for node := 1; node <= 3; node++ {
		for _, tok := range []string{acme, beta, rot.Token} {
			tenant := strings.Split(tok, "_")[1]
			// 503 restoring until the node's replica applied the restore.
			var r *servertest.Response
			servertest.Eventually(t, 10*time.Second, "the restored tenant served", func() bool {
				r = c.Do(node, tok, http.MethodGet, "/v1/tenants/"+tenant+"/services", nil)
				return r.Status != http.StatusServiceUnavailable || r.Err().Code != api.CodeRestoring
			})
			if r.Status != http.StatusOK {
				t.Fatalf("node %d refuses %s's token after the restore: %d %s", node, tenant, r.Status, r.Body)
			}
		}
	}
	var web, db api.ServiceResponse
	c.Do(2, acme, http.MethodGet, "/v1/tenants/acme/services/web?consistent=true", nil).JSON(t, &web)
	if len(web.Instances) != 1 || web.Instances[0].ID != "p1" || web.Instances[0].Weight != 30 ||
		web.Instances[0].Zone != "z1" || web.Instances[0].Meta["v"] != "1" {
		t.Fatalf("web after the restore: %+v", web)
	}
	c.Do(2, acme, http.MethodGet, "/v1/tenants/acme/services/db?consistent=true", nil).JSON(t, &db)
	if db.Policy.ColdStart != (api.ColdStart{MinReady: 2, SettleMs: 60000}) {
		t.Fatalf("db's policy after the restore: %+v", db.Policy)
	}
	for svc, want := range answers {
		var got api.ServiceResponse
		c.Do(3, acme, http.MethodGet, "/v1/tenants/acme/services/"+svc+"?consistent=true", nil).JSON(t, &got)
		got.Index, got.ModifyIndex = 0, 0
		wj, _ := json.Marshal(want)
		gj, _ := json.Marshal(got)
		if string(wj) != string(gj) {
			t.Fatalf("service %s after the restore:\n got %s\nwant %s", svc, gj, wj)
		}
	}
	var ms api.ServiceResponse
	c.Do(2, acme, http.MethodGet, "/v1/tenants/acme/services/ms?consistent=true", nil).JSON(t, &ms)
	if len(ms.Instances) != 0 || ms.Master != nil {
		t.Fatalf("a session's instance came back: %+v", ms)
	}
	var newAcme api.Tenant
	c.Do(2, servertest.AdminToken, http.MethodGet, "/v1/tenants/acme", nil).JSON(t, &newAcme)
	if newAcme.Epoch != oldAcme.Epoch+1+httpapi.DefaultEpochGap || newAcme.Quotas.MaxInstances != 50 {
		t.Fatalf("restored acme: epoch %d (was %d), quotas %+v", newAcme.Epoch, oldAcme.Epoch, newAcme.Quotas)
	}
	// Every answer names the new epoch; a blocking query at an index of
	// the old one (above every index of the new log) answers at once.
	asked := time.Now()
	r = c.Do(2, acme, http.MethodGet, "/v1/tenants/acme/services/web?wait=5s&index=1000000&epoch="+strconv.FormatUint(oldAcme.Epoch, 10), nil)
	if r.Status != http.StatusOK || r.Header.Get(api.HeaderEpoch) != strconv.FormatUint(newAcme.Epoch, 10) || time.Since(asked) > 2*time.Second {
		t.Fatalf("a watch from the old epoch: %d after %v, epoch %q (want %d)", r.Status, time.Since(asked), r.Header.Get(api.HeaderEpoch), newAcme.Epoch)
	}
	if r := c.Do(1, acme, http.MethodPut, "/v1/tenants/acme/sessions/"+sessID, api.SessionRequest{TTLMs: 10000}); r.Status >= 300 {
		t.Fatalf("open session on the new cluster = %d %s", r.Status, r.Body)
	}
	if tok := master(t, c, acme, "ms", "m1", sessID); tok <= oldToken {
		t.Fatalf("fencing token %d on the restored cluster, want above %d", tok, oldToken)
	}
	var gone api.Tenant
	c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/tenants", api.CreateTenantRequest{Name: "gone"}).JSON(t, &gone)
	if gone.Epoch <= b.Epochs["gone"] || gone.ShardID < b.NextShardID {
		t.Fatalf("a tenant created after the restore: epoch %d shard %d, want above %d and at least %d",
			gone.Epoch, gone.ShardID, b.Epochs["gone"], b.NextShardID)
	}

	// Again: a retry, whatever else the cluster holds now.
	if r := c.Do(3, servertest.AdminToken, http.MethodPost, "/v1/restore", backup); r.Status != http.StatusOK {
		t.Fatalf("restore again = %d %s", r.Status, r.Body)
	}
	other := b
	other.Tenants = []api.BackupTenant{b.Tenants[0]}
	other.Tenants[0].Name = "delta"
	if r := c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/restore", other); r.Status != http.StatusConflict {
		t.Fatalf("restore into a cluster with tenants = %d %s, want 409", r.Status, r.Body)
	}
	bad, _ := json.Marshal(b)
	for _, body := range []string{
		strings.Replace(string(bad), `"version":1`, `"version":7`, 1),
		strings.Replace(string(bad), b.Tenants[0].TokenHash, "nothex", 1),
		`{"version":1,"tenants":[{"name":"acme","token_hash":"` + b.Tenants[0].TokenHash + `","services":[{"name":"s","instances":[{"id":"x","session_tag":"abc"}]}]}]}`,
		`not json`,
	} {
		if r := c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/restore", body); r.Status != http.StatusBadRequest {
			t.Fatalf("restore of a bad backup = %d %s, want 400", r.Status, r.Body)
		}
	}
	for _, q := range []string{"?epoch_gap=x", "?epoch_gap=-1", "?epoch_gap=8191"} {
		if r := c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/restore"+q, backup); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "epoch_gap") {
			t.Fatalf("restore%s = %d %s, want 400 naming epoch_gap", q, r.Status, r.Body)
		}
	}
}

// master registers a master-standby instance under session and returns the
// fencing token it is granted.
func master(t *testing.T, c *servertest.Cluster, tok, svc, id, session string) uint64 {
	t.Helper()
	path := "/v1/tenants/" + strings.Split(tok, "_")[1] + "/services/" + svc
	if r := c.Do(1, tok, http.MethodPut, path+"/instances/"+id, api.RegisterRequest{
		Address: "a:1", Mode: api.ModeMasterStandby, Session: session}); r.Status >= 300 {
		t.Fatalf("register %s = %d %s", id, r.Status, r.Body)
	}
	var got api.ServiceResponse
	servertest.Eventually(t, 10*time.Second, "a master", func() bool {
		c.Do(1, tok, http.MethodGet, path, nil).JSON(t, &got)
		return got.Master != nil
	})
	return got.Master.FencingToken
}
