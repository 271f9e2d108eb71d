package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/httpapi"
	"github.com/rafting/rafting/server/servertest"
)

// TestRestorePlacesOnRofN: a restore into five nodes places each tenant on
// three of them, as a tenant creation does: every tenant has exactly three
// replicas from the restore's entry on (no move recorded for it, no node
// running a replica it was not given), and its state is the backup's —
// the tenants the answering node holds no replica of were written through
// a node that does. Sent again it changes nothing; over a tenant written
// since, held elsewhere, it is refused 409 naming it, and ?force=true
// writes the backup's over it; a restore cut short and sent again
// finishes the tenants it had not written and leaves the ones it had, and
// their clients' writes, alone.
func TestRestorePlacesOnRofN(t *testing.T) {
	const n = 12
	old := servertest.Start(t, servertest.Options{})
	tokens := map[string]string{}
	var names []string
	for i := range n {
		name := fmt.Sprintf("t%02d", i)
		names = append(names, name)
		tokens[name] = old.CreateTenant(name, api.Quotas{})
		if r := old.Do(1, tokens[name], http.MethodPut, "/v1/tenants/"+name+"/services/web/instances/p1",
			api.RegisterRequest{Address: fmt.Sprintf("10.0.0.%d:80", i+1)}); r.Status >= 300 {
			t.Fatalf("register %s/p1 = %d %s", name, r.Status, r.Body)
		}
		if i%2 == 0 {
			if r := old.Do(1, tokens[name], http.MethodPut, "/v1/tenants/"+name+"/kv/conf/a", "v-"+name); r.Status >= 300 {
				t.Fatalf("put %s's key = %d %s", name, r.Status, r.Body)
			}
		}
		if i%3 == 0 {
			if r := old.Do(1, tokens[name], http.MethodPut, "/v1/tenants/"+name+"/services/db/policy",
				api.PolicyRequest{ColdStart: &api.ColdStart{MinReady: 2, SettleMs: 1000}}); r.Status >= 300 {
				t.Fatalf("policy %s = %d %s", name, r.Status, r.Body)
			}
		}
	}
	r := old.Do(1, servertest.AdminToken, http.MethodGet, "/v1/backup", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("backup = %d %s", r.Status, r.Body)
	}
	backup := r.Body
	var want api.Backup
	r.JSON(t, &want)
	old.Stop()

	c := servertest.Start(t, servertest.Options{Nodes: 5, RTT: 25 * time.Millisecond})
	// The restore is cut once every tenant but the last one held away
	// from node 1 has ended: that one is written by nobody.
	meta := c.Server(1).Node().Meta()
	ctx, cut := context.WithCancel(context.Background())
	defer cut()
	hooked := make(chan string, n)
	httpapi.SetRestoreHook(c.Server(1).API(), func(tenant string) {
		if c.Server(1).Node().HostsTenant(tenant) || tenant != awayFrom(c, names)[len(awayFrom(c, names))-1] {
			return
		}
		defer close(hooked)
		servertest.Eventually(t, 60*time.Second, "the other tenants' restores end", func() bool {
			for _, name := range names {
				if mark, _ := meta.RestoreMark(name); name != tenant && mark.Pending {
					return false
				}
			}
			return true
		})
		hooked <- tenant
		cut()
		time.Sleep(500 * time.Millisecond) // the server sees the request end
	})
	if r, err := c.DoErr(ctx, 1, servertest.AdminToken, http.MethodPost, "/v1/restore", backup, nil); err == nil {
		placedOnThree(t, c, names) // the placement first, if it is what went wrong
		t.Fatalf("the cut restore answered %d %s", r.Status, r.Body)
	}
	var last string
	select {
	case last = <-hooked:
	case <-time.After(60 * time.Second):
		t.Fatal("the restore never came to the last tenant held away from node 1")
	}
	httpapi.SetRestoreHook(c.Server(1).API(), func(string) {})
	away := awayFrom(c, names)
	if len(away) < 2 {
		t.Fatalf("tenants without a replica on node 1: %v, want at least 2 (the test's setup failed)", away)
	}
	if mark, _ := meta.RestoreMark(last); !mark.Pending {
		t.Fatalf("%s after the cut restore: %+v, want it still pending (the test's setup failed)", last, mark)
	}
	// A finished tenant held away from node 1 takes a client's write
	// meanwhile (through node 1, proxied); the retry must leave it alone.
	written := away[0]
	servertest.Eventually(t, 10*time.Second, written+"'s client writes", func() bool {
		r := c.Do(1, tokens[written], http.MethodPut, "/v1/tenants/"+written+"/services/web/instances/p1",
			api.RegisterRequest{Address: "10.9.9.9:80"})
		if r.Status == http.StatusServiceUnavailable {
			return false
		}
		if r.Status >= 300 {
			t.Fatalf("re-register %s's p1 = %d %s", written, r.Status, r.Body)
		}
		return true
	})
	var res api.RestoreResponse
	r = c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/restore", backup)
	r.JSON(t, &res)
	if r.Status != http.StatusOK || res.Tenants != n || res.Instances != 1 || res.Unchanged != n-2 {
		t.Fatalf("the cut restore sent again = %d %s, want %s alone written, %s left alone and the rest unchanged",
			r.Status, r.Body, last, written)
	}
	placedOnThree(t, c, names)
	if got := webAddress(t, c, tokens, written); got != "10.9.9.9:80" {
		t.Fatalf("%s after the retry: p1 at %s, want its client's write kept", written, got)
	}

	// The state is the backup's, read back through node 1.
	var got api.Backup
	r = c.Do(1, servertest.AdminToken, http.MethodGet, "/v1/backup", nil)
	r.JSON(t, &got)
	if r.Status != http.StatusOK || len(got.Tenants) != n {
		t.Fatalf("backup of the restored cluster = %d %s", r.Status, r.Body)
	}
	for i, bt := range got.Tenants {
		if bt.Name == written {
			continue
		}
		if !sameState(bt, want.Tenants[i]) {
			t.Errorf("tenant %s after the restore:\n got %s\nwant %s", bt.Name, stateJSON(bt), stateJSON(want.Tenants[i]))
		}
	}

	// Sent again over the client's write: refused, naming the tenant;
	// forced, the backup's state is written over it through its nodes.
	r = c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/restore", backup)
	if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "tenant "+written) {
		t.Fatalf("a restore over %s, changed since = %d %s, want 409 naming it", written, r.Status, r.Body)
	}
	if got := webAddress(t, c, tokens, written); got != "10.9.9.9:80" {
		t.Fatalf("the refused restore changed %s: p1 at %s", written, got)
	}
	res = api.RestoreResponse{}
	r = c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/restore?force=true", backup)
	r.JSON(t, &res)
	if r.Status != http.StatusOK || res.Instances != 1 || res.Unchanged != n-1 {
		t.Fatalf("a forced restore = %d %s, want %s alone written", r.Status, r.Body, written)
	}
	if got := webAddress(t, c, tokens, written); got != want.Tenants[slices.Index(names, written)].Services[0].Instances[0].Address {
		t.Fatalf("%s after the forced restore: p1 at %s, want the backup's", written, got)
	}
	res = api.RestoreResponse{}
	r = c.Do(3, servertest.AdminToken, http.MethodPost, "/v1/restore", backup)
	r.JSON(t, &res)
	if r.Status != http.StatusOK || res != (api.RestoreResponse{Tenants: n, Unchanged: n}) {
		t.Fatalf("the same restore once more = %d %s, want nothing written", r.Status, r.Body)
	}
	// A part of a restore sent on its own (POST /v1/restore?tenant=)
	// writes only a tenant still restoring, unless forced.
	part, _ := json.Marshal(api.Backup{Version: api.BackupVersion, Tenants: []api.BackupTenant{want.Tenants[0]}})
	if r := c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/restore?tenant="+names[0], part); r.Status != http.StatusConflict {
		t.Fatalf("a part of a restore over a restored tenant = %d %s, want 409", r.Status, r.Body)
	}
	if r := c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/restore?tenant="+names[1], part); r.Status != http.StatusBadRequest {
		t.Fatalf("a part of a restore naming another tenant = %d %s, want 400", r.Status, r.Body)
	}
	if r := c.Do(1, tokens[names[0]], http.MethodPost, "/v1/restore?tenant="+names[0]+"&force=true", part); r.Status != http.StatusUnauthorized && r.Status != http.StatusForbidden {
		t.Fatalf("a part of a restore with a tenant's token = %d %s, want refused", r.Status, r.Body)
	}
	// Nothing moved meanwhile either.
	time.Sleep(time.Second) // two placement passes
	placedOnThree(t, c, names)
}

// awayFrom is the tenants of names node 1 holds no replica of.
func awayFrom(c *servertest.Cluster, names []string) []string {
	var out []string
	for _, name := range names {
		if rec, ok := c.Server(1).Node().Meta().Tenant(name); ok {
			if _, _, on := rec.ReplicaOn(1); !on {
				out = append(out, name)
			}
		}
	}
	return out
}

// placedOnThree fails unless every tenant of names has exactly three
// voting replicas, on three nodes, none ever moved (no move under way,
// none retired), and every node runs exactly the replicas placed on it.
func placedOnThree(t *testing.T, c *servertest.Cluster, names []string) {
	t.Helper()
	runs := map[uint64][]string{}
	for _, name := range names {
		rec, ok := c.Server(1).Node().Meta().Tenant(name)
		if !ok {
			t.Fatalf("tenant %s not in the meta shard", name)
		}
		if on := rec.VotingOn(); len(rec.Replicas) != fsm.DefaultReplicas || len(on) != fsm.DefaultReplicas || rec.Move != nil || len(rec.Retired) != 0 {
			t.Fatalf("tenant %s: replicas %v on nodes %v, move %+v, retired %v; want %d from the restore on, never moved",
				name, rec.Replicas, on, rec.Move, rec.Retired, fsm.DefaultReplicas)
		}
		for _, node := range rec.VotingOn() {
			runs[node] = append(runs[node], name)
		}
	}
	for node := uint64(1); node <= 5; node++ {
		servertest.Eventually(t, 30*time.Second, fmt.Sprintf("node %d to run exactly its replicas %v", node, runs[node]), func() bool {
			var have []string
			for _, tn := range c.Server(int(node)).Node().Tenants() {
				if slices.Contains(names, tn.Name) {
					have = append(have, tn.Name)
				}
			}
			slices.Sort(have)
			if len(have) > len(runs[node]) {
				t.Fatalf("node %d runs %v, more than its replicas %v", node, have, runs[node])
			}
			return slices.Equal(have, runs[node])
		})
	}
}

// webAddress is the address of p1 of a tenant's web service, read
// consistently through node 2.
func webAddress(t *testing.T, c *servertest.Cluster, tokens map[string]string, name string) string {
	t.Helper()
	var sr api.ServiceResponse
	r := c.Do(2, tokens[name], http.MethodGet, "/v1/tenants/"+name+"/services/web?consistent=true", nil)
	r.JSON(t, &sr)
	if r.Status != http.StatusOK || len(sr.Instances) != 1 {
		t.Fatalf("%s's web = %d %s", name, r.Status, r.Body)
	}
	return sr.Instances[0].Address
}

// sameState reports whether two backups' tenants hold the same durable
// state: services, policies and instances whole, keys by name and value.
func sameState(a, b api.BackupTenant) bool {
	return a.Name == b.Name && bytes.Equal(stateJSON(a), stateJSON(b))
}

func stateJSON(bt api.BackupTenant) []byte {
	type kv struct{ Key, Value string }
	var kvs []kv
	for _, x := range bt.KV {
		kvs = append(kvs, kv{x.Key, string(x.Value)})
	}
	b, _ := json.Marshal(struct {
		Services []api.BackupService
		KV       []kv
	}{bt.Services, kvs})
	return b
}
