package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/servertest"
)

func usage(t *testing.T, c *servertest.Cluster, node int, tenant string) api.Usage {
	t.Helper()
	var ten api.Tenant
	r := c.Do(node, servertest.AdminToken, http.MethodGet, "/v1/tenants/"+tenant, nil)
	r.JSON(t, &ten)
	if ten.Usage == nil {
		t.Fatalf("tenant %s shows no usage: %d %s", tenant, r.Status, r.Body)
	}
	return *ten.Usage
}

func patchQuotas(t *testing.T, c *servertest.Cluster, tenant string, q api.Quotas) {
	t.Helper()
	r := c.Do(2, servertest.AdminToken, http.MethodPatch, "/v1/tenants/"+tenant, api.UpdateTenantRequest{Quotas: q})
	if r.Status != http.StatusOK {
		t.Fatalf("patch quotas = %d %s", r.Status, r.Body)
	}
}

func wantQuota(t *testing.T, r *servertest.Response, quota string, limit, used int64) {
	t.Helper()
	e := r.Err()
	if r.Status != http.StatusConflict || e == nil || e.Code != api.CodeQuotaExceeded || e.Quota != quota || e.Limit != limit || e.Used != used {
		t.Fatalf("got %d %s, want 409 quota_exceeded {quota %s, limit %d, used %d}", r.Status, r.Body, quota, limit, used)
	}
}

// TestQuotas: for each count quota, the first request over the limit gets
// 409 quota_exceeded with {quota, limit, used}; nothing of it is applied;
// usage is exact; raising the quota lets the same request through.
func TestQuotas(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{MaxServices: 2, MaxInstances: 3, MaxSessions: 2, MaxMetaBytes: 16, MaxWatchers: 1})
	inst := func(svc, id string, req api.RegisterRequest) *servertest.Response {
		return c.Do(1, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/acme/services/%s/instances/%s", svc, id), req)
	}
	ok := func(r *servertest.Response) {
		t.Helper()
		if r.Status >= 300 {
			t.Fatalf("got %d %s", r.Status, r.Body)
		}
	}

	t.Run("max_services", func(t *testing.T) {
		ok(inst("a", "a1", api.RegisterRequest{Address: "x"}))
		ok(inst("b", "b1", api.RegisterRequest{Address: "x"}))
		wantQuota(t, inst("c", "c1", api.RegisterRequest{Address: "x"}), "max_services", 2, 2)
		var s api.ServiceResponse
		c.Do(3, tok, http.MethodGet, "/v1/tenants/acme/services/c?consistent=true", nil).JSON(t, &s)
		if len(s.Instances) != 0 {
			t.Fatal("the refused registration was applied")
		}
		if u := usage(t, c, 3, "acme"); u.Services != 2 || u.Instances != 2 {
			t.Fatalf("usage %+v, want 2 services, 2 instances", u)
		}
		patchQuotas(t, c, "acme", api.Quotas{MaxServices: 3})
		ok(inst("c", "c1", api.RegisterRequest{Address: "x"}))
	})
	t.Run("max_instances", func(t *testing.T) {
		wantQuota(t, inst("a", "a2", api.RegisterRequest{Address: "x"}), "max_instances", 3, 3)
		ok(inst("a", "a1", api.RegisterRequest{Address: "y"})) // updating an existing one is fine
		if u := usage(t, c, 2, "acme"); u.Instances != 3 {
			t.Fatalf("usage %+v, want 3 instances", u)
		}
		patchQuotas(t, c, "acme", api.Quotas{MaxInstances: 4})
		ok(inst("a", "a2", api.RegisterRequest{Address: "x"}))
	})
	t.Run("max_meta_bytes", func(t *testing.T) {
		big := map[string]string{"version": "1.2.3-abcdefg"} // 7 + 13 bytes, and an entry's cost: 52
		wantQuota(t, inst("a", "a1", api.RegisterRequest{Address: "x", Meta: big}), "max_meta_bytes", 16, 20+fsm.MetaEntryCost)
		var s api.ServiceResponse
		c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/services/a?consistent=true", nil).JSON(t, &s)
		for _, in := range s.Instances {
			if in.ID == "a1" && (in.Meta != nil || in.Address != "y") {
				t.Fatalf("the refused update was applied: %+v", in)
			}
		}
		patchQuotas(t, c, "acme", api.Quotas{MaxMetaBytes: 20 + fsm.MetaEntryCost})
		ok(inst("a", "a1", api.RegisterRequest{Address: "x", Meta: big}))
	})
	t.Run("max_sessions", func(t *testing.T) {
		open := func(i int) *servertest.Response {
			return c.Do(1, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/acme/sessions/sess-%016d", i), api.SessionRequest{TTLMs: 5000})
		}
		ok(open(1))
		ok(open(2))
		wantQuota(t, open(3), "max_sessions", 2, 2)
		if u := usage(t, c, 1, "acme"); u.Sessions != 2 {
			t.Fatalf("usage %+v, want 2 sessions", u)
		}
		patchQuotas(t, c, "acme", api.Quotas{MaxSessions: 3})
		ok(open(3))
	})
	t.Run("session ttl bounds", func(t *testing.T) {
		r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/sessions/sess-ttl-0000000000", api.SessionRequest{TTLMs: 7_200_000})
		if e := r.Err(); e == nil || e.Code != api.CodeBadRequest || !strings.HasPrefix(e.Message, "ttl_ms:") {
			t.Fatalf("ttl over max_ttl_ms = %d %s, want 400 naming ttl_ms", r.Status, r.Body)
		}
		patchQuotas(t, c, "acme", api.Quotas{MaxTTLMs: 7_200_000, MaxSessions: 4})
		ok(c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/sessions/sess-ttl-0000000000", api.SessionRequest{TTLMs: 7_200_000}))
	})
	t.Run("max_watchers", func(t *testing.T) {
		var s api.ServiceResponse
		c.Do(2, tok, http.MethodGet, "/v1/tenants/acme/services/a", nil).JSON(t, &s)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = c.DoErr(ctx, 2, tok, http.MethodGet, fmt.Sprintf("/v1/tenants/acme/services/a?index=%d&wait=30s", s.Index), nil, nil)
		}()
		servertest.Eventually(t, 5*time.Second, "the first watcher", func() bool { return usage(t, c, 2, "acme").Watchers == 1 })
		r := c.Do(2, tok, http.MethodGet, fmt.Sprintf("/v1/tenants/acme/services/a?index=%d&wait=30s", s.Index), nil)
		wantQuota(t, r, "max_watchers", 1, 1)
		// Watchers are counted per node: another node still has room.
		r = c.Do(3, tok, http.MethodGet, fmt.Sprintf("/v1/tenants/acme/services/a?index=%d&wait=10ms", s.Index), nil)
		if r.Status != http.StatusOK {
			t.Fatalf("a watcher on another node = %d %s", r.Status, r.Body)
		}
		cancel()
		<-done
		servertest.Eventually(t, 5*time.Second, "the watcher to be released", func() bool { return usage(t, c, 2, "acme").Watchers == 0 })
	})
}

// TestRefusedWritesStayOutOfTheLog: a write refused for its fields or its
// size against the quotas is refused by the node that receives it: nothing
// is proposed (the shard's applied index does not move), and it costs no
// write quota.
func TestRefusedWritesStayOutOfTheLog(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{MaxMetaBytes: 64, WritesPerSecond: 1, Burst: 1000})
	r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/ok", api.RegisterRequest{Address: "a:1"})
	var reg api.RegisterResponse
	r.JSON(t, &reg)
	if r.Status >= 300 {
		t.Fatalf("register = %d %s", r.Status, r.Body)
	}
	applied := func() uint64 {
		ten, _ := c.Server(2).Node().Tenant("acme")
		return ten.SM.Applied()
	}
	servertest.Eventually(t, 10*time.Second, "node 2 to apply the registration", func() bool { return applied() >= reg.Index })
	before := applied()
	bad := -1
	for i := range 20 {
		body := api.RegisterRequest{Address: "a:1", Meta: map[string]string{"k": strings.Repeat("<", 1000)}}
		if i%2 == 1 {
			body = api.RegisterRequest{Address: "a:1", Weight: &bad}
		}
		r := c.Do(2, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/acme/services/web/instances/b%d", i), body)
		if r.Status != http.StatusConflict && r.Status != http.StatusBadRequest {
			t.Fatalf("a bad write = %d %s, want 409 or 400", r.Status, r.Body)
		}
	}
	if r := c.Do(2, tok, http.MethodPut, "/v1/tenants/acme/sessions/sess-edge-000000000", api.SessionRequest{TTLMs: 1}); r.Status != http.StatusBadRequest {
		t.Fatalf("a session with a TTL below the bounds = %d %s, want 400", r.Status, r.Body)
	}
	// Refusals for a reason of the state: confirmed, and not proposed.
	for _, req := range []struct {
		method, path string
		body         any
		want         int
	}{
		{http.MethodPut, "/v1/tenants/acme/services/web/instances/bad", api.RegisterRequest{Address: "a\x1b[2J:1"}, http.StatusBadRequest},
		{http.MethodPut, "/v1/tenants/acme/services/web/instances/s", api.RegisterRequest{Address: "a:1", Session: "sess-none-000000000"}, http.StatusNotFound},
		{http.MethodPost, "/v1/tenants/acme/services/web/master/resign", api.ResignRequest{Instance: "ok", FencingToken: 1}, http.StatusConflict},
	} {
		if r := c.Do(2, tok, req.method, req.path, req.body); r.Status != req.want {
			t.Fatalf("%s %s = %d %s, want %d", req.method, req.path, r.Status, r.Body, req.want)
		}
	}
	if got := applied(); got != before {
		t.Fatalf("refused writes moved the shard's applied index from %d to %d: they were proposed", before, got)
	}
	// One write a second: the refused ones took none of it.
	if r := c.Do(2, tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/ok", api.RegisterRequest{Address: "a:2"}); r.Status >= 300 {
		t.Fatalf("a good write after refused ones = %d %s, want it admitted", r.Status, r.Body)
	}
}

// TestByteBudgets: a tenant's writes and answers are budgeted in bytes on
// each node, beside its request counts: a few large writes or reads a
// second are refused (429) where as many small ones pass.
func TestByteBudgets(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) {
		cfg.WriteBytesPerSecond, cfg.AnswerBytesPerSecond = 10_000, 20_000
	}})
	tok := c.CreateTenant("acme", api.Quotas{MaxMetaBytes: 8000})
	meta := map[string]string{"m": strings.Repeat("x", 4000)}
	statuses := func(n int, do func(i int) *servertest.Response) (ok, limited int) {
		for i := range n {
			switch r := do(i); {
			case r.Status < 300:
				ok++
			case r.Status == http.StatusTooManyRequests && strings.Contains(string(r.Body), "bytes"):
				limited++
			default:
				t.Fatalf("got %d %s", r.Status, r.Body)
			}
		}
		return ok, limited
	}
	// What a budget of rate bytes a second (its burst the same) lets
	// through in d, in items of size bytes: a refusal is held before it
	// is answered, and the bucket refills meanwhile, so the bound is
	// taken from the time the requests took.
	within := func(rate, size int, d time.Duration) int {
		return int((float64(rate) + float64(rate)*d.Seconds()) / float64(size))
	}
	start := time.Now()
	ok, limited := statuses(5, func(i int) *servertest.Response {
		return c.Do(1, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/acme/services/web/instances/w%d", i), api.RegisterRequest{Address: "a:1", Meta: meta})
	})
	took := time.Since(start)
	if most := within(10_000, 4000, took); ok > most || limited == 0 && 5 > most {
		t.Fatalf("5 writes of 4 KB in %v within a 10 KB/s budget: %d accepted (at most %d), %d refused", took, ok, most, limited)
	}
	time.Sleep(time.Second)
	start = time.Now()
	ok, limited = statuses(6, func(int) *servertest.Response {
		return c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/services/web", nil)
	})
	took = time.Since(start)
	if most := within(20_000, 8000, took); ok > most || limited == 0 && 6 > most {
		t.Fatalf("6 reads of an ~8 KB answer in %v within a 20 KB/s budget: %d answered (at most %d), %d refused", took, ok, most, limited)
	}
}
