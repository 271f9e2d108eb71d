package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// tenantApplied is a tenant shard's applied index on node id.
func tenantApplied(c *servertest.Cluster, id int, name string) uint64 {
	ten, ok := c.Server(id).Node().Tenant(name)
	if !ok {
		return 0
	}
	return ten.SM.Applied()
}

// settled waits until get stops moving for quiet, and returns its value.
func settled(t *testing.T, quiet time.Duration, get func() uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	v := get()
	since := time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if n := get(); n != v {
			v, since = n, time.Now()
			continue
		}
		if time.Since(since) >= quiet {
			return v
		}
	}
	t.Fatalf("index did not settle (still moving at %d)", v)
	return 0
}

// TestAttackPolicyOverMaxServicesIsProposed: fsm.Precheck has no case for
// SetPolicy, yet the state machine refuses a policy for a new service
// when the tenant is at max_services (409 quota_exceeded). The refusal
// is therefore committed to the tenant's Raft log — and charged to
// writes_per_second — which DESIGN.md and DECISIONS.md say never happens
// ("a refused write never enters the Raft log and costs no write quota").
func TestAttackPolicyOverMaxServicesIsProposed(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{MaxServices: 1})
	if r := c.Do(2, tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/w1", api.RegisterRequest{Address: "a:1"}); r.Status >= 300 {
		t.Fatalf("register = %d %s", r.Status, r.Body)
	}
	before := settled(t, 500*time.Millisecond, func() uint64 { return tenantApplied(c, 2, "acme") })
	const n = 10
	for i := range n {
		r := c.Do(2, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/acme/services/extra%d/policy", i),
			api.PolicyRequest{ColdStart: &api.ColdStart{MinReady: 1}})
		if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "max_services") {
			t.Fatalf("a policy for a service over max_services = %d %s, want 409 max_services", r.Status, r.Body)
		}
	}
	after := settled(t, 500*time.Millisecond, func() uint64 { return tenantApplied(c, 2, "acme") })
	if after != before {
		t.Fatalf("%d policy writes refused 409 max_services moved tenant acme's applied index from %d to %d: "+
			"each was proposed and committed before it was refused", n, before, after)
	}
}

// TestAttackRefusedAdminWritesAreProposed: the admin endpoints that write
// the meta shard check nothing on the receiving node that the meta state
// machine checks: a rotation of a tenant that does not exist (404), and
// the creation of a tenant that exists (409), are proposed, committed to
// the meta shard's log, then refused.
func TestAttackRefusedAdminWritesAreProposed(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	c.CreateTenant("acme", api.Quotas{})
	admin := servertest.AdminToken
	meta := func() uint64 { return c.Server(1).Node().Meta().Applied() }
	before := settled(t, time.Second, meta)
	for i := range 5 {
		r := c.Do(1, admin, http.MethodPost, fmt.Sprintf("/v1/tenants/nosuch%d/token", i), map[string]any{})
		wantErr(t, r, http.StatusNotFound, api.CodeNotFound)
		r = c.Do(1, admin, http.MethodPost, "/v1/tenants", api.CreateTenantRequest{Name: "acme", Secret: tenants.NewSecret()})
		wantErr(t, r, http.StatusConflict, api.CodeConflict)
	}
	after := settled(t, time.Second, meta)
	if after != before {
		t.Fatalf("10 refused admin writes (404 rotate of a missing tenant, 409 create of an existing one) moved the "+
			"meta shard's applied index from %d to %d: they were proposed before they were refused", before, after)
	}
}

// TestAttackRestoreCommitsThenRefuses: checkBackup validates names and
// the size of meta, but not what fsm.Check refuses (an address with
// control characters, a master-standby instance without a session, meta
// over the tenant's max_meta_bytes). A restore of such a backup creates
// its tenants in the meta shard, proposes the bad instance to the
// tenant's shard, and answers 4xx: a refused request left the cluster
// changed, and a backup that can never be restored leaves half of itself
// behind.
func TestAttackRestoreCommitsThenRefuses(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	admin := servertest.AdminToken
	b := api.Backup{Version: api.BackupVersion, CreatedAt: time.Now().UTC(), Epochs: map[string]uint64{"evil": 1},
		Tenants: []api.BackupTenant{{
			Name: "evil", Epoch: 1, TokenHash: tenants.HashToken("rft_evil_" + tenants.NewSecret()).String(),
			CreatedAt: time.Now().UTC(),
			Services: []api.BackupService{{Name: "web", Instances: []api.Instance{
				{ID: "ok", Address: "10.0.0.1:80", Mode: api.ModeFarm, State: api.StateReady, Weight: 100},
				{ID: "bad", Address: "\x1b]0;pwned\x07\x1b[2J10.0.0.2:80", Mode: api.ModeFarm, State: api.StateReady, Weight: 100},
			}}},
		}},
	}
	r := c.Do(1, admin, http.MethodPost, "/v1/restore", b)
	if r.Status < 400 || r.Status >= 500 {
		t.Fatalf("a restore of a backup with an address holding terminal escapes = %d %s, want a 4xx", r.Status, r.Body)
	}
	t.Logf("restore answered %d %s", r.Status, strings.TrimSpace(string(r.Body)))
	if got := c.Do(1, admin, http.MethodGet, "/v1/tenants/evil", nil); got.Status != http.StatusNotFound {
		t.Fatalf("the restore was refused (%d), yet tenant evil exists: GET /v1/tenants/evil = %d %s", r.Status, got.Status, got.Body)
	}
}

// TestAttackReadOnlyTokenTakesTenantWatchers: the read-only token (for a
// Prometheus scraper: "reads ... and changes nothing") is not rate
// limited, and its blocking queries count against the tenant's
// max_watchers. Whoever holds it — a compromised scraper, the very case
// it was made for — can park max_watchers blocking queries on a tenant
// and every watch of the tenant's own SDK clients is refused 409
// quota_exceeded: service discovery of that tenant stops.
func TestAttackReadOnlyTokenTakesTenantWatchers(t *testing.T) {
	read := tenants.NewSecret()
	c := servertest.Start(t, servertest.Options{Nodes: 1, Configure: func(cfg *config.Config) { cfg.ReadToken = read }})
	tok := c.CreateTenant("acme", api.Quotas{MaxWatchers: 5})
	r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/w1", api.RegisterRequest{Address: "a:1"})
	if r.Status >= 300 {
		t.Fatalf("register = %d %s", r.Status, r.Body)
	}
	var reg api.RegisterResponse
	r.JSON(t, &reg)
	watch := fmt.Sprintf("/v1/tenants/acme/services/web?index=%d&wait=4s", reg.Index)
	var wg sync.WaitGroup
	defer wg.Wait()
	for range 5 {
		wg.Go(func() { c.Do(1, read, http.MethodGet, watch, nil) })
	}
	time.Sleep(500 * time.Millisecond)
	own := c.Do(1, tok, http.MethodGet, watch, nil)
	if own.Status == http.StatusConflict {
		t.Fatalf("the tenant's own blocking query while the read-only token holds 5 = %d %s: "+
			"the read-only token used up the tenant's max_watchers", own.Status, own.Body)
	}
}

// TestAttackRevokedTokenStillReads: a rotation with previous_valid_ms 0
// "revokes it at once": "A revoked or rotated-out token fails on every
// node as soon as the change commits" (SECURITY.md, which excepts only
// session streams). A blocking query parked before the revocation is
// not ended by it: it answers the service's next change — instances,
// addresses, meta — to the revoked token, up to MaxWait (5 min) later.
func TestAttackRevokedTokenStillReads(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	old := c.CreateTenant("acme", api.Quotas{})
	admin := servertest.AdminToken
	r := c.Do(1, old, http.MethodPut, "/v1/tenants/acme/services/web/instances/w1", api.RegisterRequest{Address: "10.0.0.1:80"})
	var reg api.RegisterResponse
	r.JSON(t, &reg)
	got := make(chan *servertest.Response, 1)
	go func() {
		got <- c.Do(1, old, http.MethodGet, fmt.Sprintf("/v1/tenants/acme/services/web?index=%d&wait=20s", reg.Index), nil)
	}()
	time.Sleep(500 * time.Millisecond)
	zero := int64(0)
	if r := c.Do(1, admin, http.MethodPost, "/v1/tenants/acme/token", api.RotateTokenRequest{PreviousValidMs: &zero}); r.Status != http.StatusOK {
		t.Fatalf("rotate = %d %s", r.Status, r.Body)
	}
	wantErr(t, c.Do(1, old, http.MethodGet, "/v1/tenants/acme/services/web", nil), http.StatusUnauthorized, api.CodeUnauthorized)
	c.Do(1, admin, http.MethodPut, "/v1/tenants/acme/services/web/instances/w2", api.RegisterRequest{Address: "10.9.9.9:443", Meta: map[string]string{"db_password": "hunter2"}})
	select {
	case r := <-got:
		if r.Status == http.StatusOK && strings.Contains(string(r.Body), "hunter2") {
			t.Fatalf("after the token was revoked (a new request with it: 401), its parked blocking query answered %d with the change made after: %s", r.Status, r.Body)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("the blocking query did not answer")
	}
}

// TestAttackSessionHeaderBypassesWriteBytes: X-Rafting-Session names the
// caller's session on a write ("a secret no read ever returns"), but no
// node checks it is a session ID: any header value up to MaxHeaderBytes
// (64 KiB) goes into the command as Caller and into the Raft log. Since
// 22b2233 write bytes are charged on the request's Content-Length before
// the body is read — and no longer on the encoded command — so the header
// is not charged at all: a DELETE of an instance that does not exist
// (204, committed) with a 48 KB header puts 48 KB into every replica's
// log for 1 byte of the tenant's write-bytes budget. At the default write
// rate (200 a second a node) that is ~10 MB a second a node, through
// every node, where the budget says 8 MiB.
func TestAttackSessionHeaderBypassesWriteBytes(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1, Configure: func(cfg *config.Config) { cfg.WriteBytesPerSecond = 100_000 }})
	tok := c.CreateTenant("acme", api.Quotas{})
	junk := strings.Repeat("A", 48<<10)
	h := http.Header{api.HeaderSession: []string{junk}}
	before := tenantApplied(c, 1, "acme")
	statuses := map[int]int{}
	start := time.Now()
	for i := range 20 {
		r, err := c.DoErr(t.Context(), 1, tok, http.MethodDelete, fmt.Sprintf("/v1/tenants/acme/services/web/instances/none%d", i), nil, h)
		if err != nil {
			t.Fatal(err)
		}
		statuses[r.Status]++
	}
	took := time.Since(start)
	after := tenantApplied(c, 1, "acme")
	t.Logf("20 DELETEs with a 48 KB %s header in %v: %v; %d entries committed (~%d KB) within a write-bytes budget of 100 KB/s",
		api.HeaderSession, took.Round(time.Millisecond), statuses, after-before, (after-before)*48)
	if statuses[http.StatusBadRequest] == 0 && statuses[http.StatusTooManyRequests] == 0 {
		t.Fatalf("%d writes carrying %d KB of %s each were committed in %v with a write-bytes budget of 100 KB/s: "+
			"the header is neither validated as a session ID nor charged", after-before, len(junk)>>10, api.HeaderSession, took.Round(time.Millisecond))
	}
}
