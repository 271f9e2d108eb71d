package httpapi_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// TestIsolation: tenant A's token cannot read, write, watch or even detect
// tenant B: every such request looks exactly like one for a tenant that
// does not exist.
func TestIsolation(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	a := c.CreateTenant("alpha", api.Quotas{})
	b := c.CreateTenant("bravo", api.Quotas{})
	if r := c.Do(1, b, http.MethodPut, "/v1/tenants/bravo/services/secret/instances/s1", api.RegisterRequest{Address: "x"}); r.Status != http.StatusCreated {
		t.Fatalf("register in bravo = %d %s", r.Status, r.Body)
	}
	probes := []struct {
		method, path string
		body         any
	}{
		{http.MethodGet, "/v1/tenants/%s", nil},
		{http.MethodGet, "/v1/tenants/%s/services", nil},
		{http.MethodGet, "/v1/tenants/%s/services/secret", nil},
		{http.MethodGet, "/v1/tenants/%s/services/secret?index=1&wait=5s", nil},
		{http.MethodPut, "/v1/tenants/%s/services/secret/instances/evil", api.RegisterRequest{Address: "x"}},
		{http.MethodDelete, "/v1/tenants/%s/services/secret/instances/s1", nil},
		{http.MethodPut, "/v1/tenants/%s/sessions/sess-0123456789abcdef", api.SessionRequest{}},
		{http.MethodPut, "/v1/tenants/%s/services/secret/policy", api.PolicyRequest{ColdStart: &api.ColdStart{MinReady: 1}}},
	}
	for _, p := range probes {
		for node := 1; node <= 3; node++ {
			got := c.Do(node, a, p.method, strings.Replace(p.path, "%s", "bravo", 1), p.body)
			missing := c.Do(node, a, p.method, strings.Replace(p.path, "%s", "nosuch", 1), p.body)
			if got.Status != http.StatusNotFound || missing.Status != http.StatusNotFound {
				t.Fatalf("%s %s with alpha's token on node %d = %d %s, want 404", p.method, p.path, node, got.Status, got.Body)
			}
			if strings.ReplaceAll(string(got.Body), "bravo", "X") != strings.ReplaceAll(string(missing.Body), "nosuch", "X") {
				t.Fatalf("%s %s: bravo's 404 %s tells it apart from a missing tenant's %s", p.method, p.path, got.Body, missing.Body)
			}
		}
	}
	if r := c.Do(1, a, http.MethodGet, "/v1/tenants", nil); r.Status != http.StatusForbidden {
		t.Fatalf("a tenant listing tenants = %d, want 403", r.Status)
	}
	var s api.ServiceResponse
	c.Do(2, b, http.MethodGet, "/v1/tenants/bravo/services/secret?consistent=true", nil).JSON(t, &s)
	if len(s.Instances) != 1 || s.Instances[0].ID != "s1" {
		t.Fatalf("bravo's service after alpha's attempts: %+v", s.Instances)
	}
}

// TestTokenRotation: a token rotated with previous_valid_ms 0 is refused on
// all three nodes as soon as the rotation answers; rotated with the default
// window, the old token keeps working; a retried rotation is a no-op.
func TestTokenRotation(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	old := c.CreateTenant("acme", api.Quotas{})
	read := func(node int, tok string) int {
		return c.Do(node, tok, http.MethodGet, "/v1/tenants/acme/services", nil).Status
	}
	for node := 1; node <= 3; node++ {
		if s := read(node, old); s != http.StatusOK { // every node knows the token
			t.Fatalf("node %d refuses the tenant's token: %d", node, s)
		}
	}
	secret := tenants.NewSecret()
	var rot api.Tenant
	r := c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/tenants/acme/token", api.RotateTokenRequest{Secret: secret})
	r.JSON(t, &rot)
	if r.Status != http.StatusOK || !strings.HasPrefix(rot.Token, "rft_acme_") {
		t.Fatalf("rotate = %d %s", r.Status, r.Body)
	}
	for node := 1; node <= 3; node++ {
		if read(node, old) != http.StatusOK || read(node, rot.Token) != http.StatusOK {
			t.Fatalf("node %d during the default window: old %d new %d, want both 200", node, read(node, old), read(node, rot.Token))
		}
	}
	// A retry with the same secret changes nothing (the old token stays valid).
	if r := c.Do(2, servertest.AdminToken, http.MethodPost, "/v1/tenants/acme/token", api.RotateTokenRequest{Secret: secret}); r.Status != http.StatusOK {
		t.Fatalf("retried rotation = %d", r.Status)
	}
	if read(3, old) != http.StatusOK {
		t.Fatal("a retried rotation revoked the previous token")
	}
	// Rotate again revoking at once: the previous token fails everywhere now.
	zero := int64(0)
	var rot2 api.Tenant
	c.Do(2, servertest.AdminToken, http.MethodPost, "/v1/tenants/acme/token", api.RotateTokenRequest{PreviousValidMs: &zero}).JSON(t, &rot2)
	for node := 1; node <= 3; node++ {
		if s := read(node, rot.Token); s != http.StatusUnauthorized {
			t.Fatalf("node %d accepts the token revoked with previous_valid_ms 0: %d", node, s)
		}
		if s := read(node, old); s != http.StatusUnauthorized {
			t.Fatalf("node %d accepts the token rotated out two rotations ago: %d", node, s)
		}
		if s := read(node, rot2.Token); s != http.StatusOK {
			t.Fatalf("node %d refuses the new token: %d", node, s)
		}
	}
}

// TestDeletedTenantDataGone: deleting a tenant stops its shard and removes
// its data from every node's disk.
func TestDeletedTenantDataGone(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/w1", api.RegisterRequest{Address: "x"})
	type replica struct{ shard, replica uint64 }
	reps := map[int]replica{}
	for node := 1; node <= 3; node++ {
		tr, _ := c.Server(node).Node().Tenant("acme")
		reps[node] = replica{tr.ShardID, tr.ReplicaID}
	}
	if r := c.Do(2, servertest.AdminToken, http.MethodDelete, "/v1/tenants/acme", nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete = %d %s", r.Status, r.Body)
	}
	for node := 1; node <= 3; node++ {
		n := c.Server(node).Node()
		rep := reps[node]
		servertest.Eventually(t, 10*time.Second, "the shard's data to be removed", func() bool {
			_, running := n.Tenant("acme")
			return !running && !n.HasReplicaData(rep.shard, rep.replica)
		})
		dir := filepath.Join(c.Config(node).DataDir, "raft")
		_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && d.Name() == "snapshot-"+strconv.FormatUint(rep.shard, 10)+"-"+strconv.FormatUint(rep.replica, 10) {
				entries, _ := os.ReadDir(path)
				for _, e := range entries {
					if e.IsDir() {
						t.Errorf("node %d: %s still holds %s", node, path, e.Name())
					}
				}
			}
			return nil
		})
	}
	if r := c.Do(1, servertest.AdminToken, http.MethodGet, "/v1/tenants/acme", nil); r.Status != http.StatusNotFound {
		t.Fatalf("deleted tenant = %d, want 404", r.Status)
	}
}

// TestTokenCheckWithoutQuorum: a node that does not know a token (it missed
// the tenant's creation) and cannot ask a quorum answers 503, not 401: a
// client takes a 401 as final, and the token is valid.
func TestTokenCheckWithoutQuorum(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	c.StopNode(3)
	tok := c.CreateTenant("acme", api.Quotas{})
	c.StopNode(1)
	c.StopNode(2)
	c.StartNode(3) // alone: its meta replica never saw acme
	r := c.Do(3, tok, http.MethodGet, "/v1/tenants/acme/services", nil)
	if e := r.Err(); e == nil || e.Code != api.CodeUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("a valid token on a node without quorum = %d %s, want 503 unavailable", r.Status, r.Body)
	}
	c.StartNode(1)
	// (This took over a minute in one run of four, which was not load: node
	// 3 had stopped before saving its peers, restarted knowing only itself
	// and never reached node 1. TestRegistryKeepsInitialPeers.)
	servertest.Eventually(t, time.Minute, "the token accepted once a quorum answers", func() bool {
		time.Sleep(50 * time.Millisecond)
		return c.Do(3, tok, http.MethodGet, "/v1/tenants/acme/services", nil).Status == http.StatusOK
	})
}

// TestUnknownTokensShareChecks: made-up tokens from many source addresses
// do not each cost a meta ReadIndex: they share rounds, within one budget
// per node, and are refused (401, or 503 past the budget).
func TestUnknownTokensShareChecks(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) { cfg.MaxUnauthenticatedPerAddress = 0 }})
	c.CreateTenant("acme", api.Quotas{})
	node := c.Server(1).Node()
	before := node.MetaCheckRounds()
	const n = 300
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := range n {
		wg.Go(func() {
			local := &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/250), byte(1+i%250))}
			client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: local}).DialContext}}
			req, _ := http.NewRequest(http.MethodGet, "http://"+c.Addr(1)+"/v1/tenants/acme/services", nil)
			req.Header.Set("Authorization", fmt.Sprintf("Bearer rft_acme_%043d", i))
			resp, err := client.Do(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				statuses[0]++
				return
			}
			resp.Body.Close()
			statuses[resp.StatusCode]++
		})
	}
	wg.Wait()
	if statuses[http.StatusOK] > 0 || statuses[0] > 0 {
		t.Fatalf("made-up tokens answered %v", statuses)
	}
	rounds := node.MetaCheckRounds() - before
	t.Logf("%d made-up tokens: %d rounds, answers %v", n, rounds, statuses)
	if rounds > n/5 {
		t.Fatalf("%d made-up tokens from %d addresses cost %d meta ReadIndexes, want them shared", n, n, rounds)
	}
}

// TestReadOnlyToken: the read-only admin token reads what the admin token
// reads — /metrics, the cluster, any tenant's state — but changes nothing
// and takes no backup: a scraper that holds it has no write power.
func TestReadOnlyToken(t *testing.T) {
	read := tenants.NewSecret()
	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) { cfg.ReadToken = read }})
	c.CreateTenant("acme", api.Quotas{})
	for _, p := range []string{"/metrics", "/v1/cluster", "/v1/tenants", "/v1/tenants/acme", "/v1/tenants/acme/services/web"} {
		if r := c.Do(1, read, http.MethodGet, p, nil); r.Status != http.StatusOK {
			t.Fatalf("GET %s with the read-only token = %d %s", p, r.Status, r.Body)
		}
	}
	for _, w := range []struct{ method, path string }{
		{http.MethodDelete, "/v1/tenants/acme"},
		{http.MethodPost, "/v1/tenants"},
		{http.MethodPut, "/v1/tenants/acme/services/web/instances/x"},
		{http.MethodDelete, "/v1/cluster/nodes/3"},
		{http.MethodGet, "/v1/backup"},
	} {
		if r := c.Do(1, read, w.method, w.path, api.RegisterRequest{Address: "a:1"}); r.Status != http.StatusForbidden {
			t.Fatalf("%s %s with the read-only token = %d %s, want 403", w.method, w.path, r.Status, r.Body)
		}
	}
}
