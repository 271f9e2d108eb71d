package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/httpapi"
	"github.com/rafting/rafting/server/servertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func wantErr(t *testing.T, r *servertest.Response, status int, code api.Code) {
	t.Helper()
	e := r.Err()
	if r.Status != status || e == nil || e.Code != code {
		t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, status, code)
	}
}

// TestAPI runs the REST contract against one real cluster: authentication
// before rate limiting before authorization, statuses and error bodies as
// DESIGN.md lists them, and /metrics behind the admin token.
func TestAPI(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	acme := c.CreateTenant("acme", api.Quotas{})
	other := c.CreateTenant("other", api.Quotas{})
	admin := servertest.AdminToken

	t.Run("public", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz"} {
			if r := c.Do(2, "", http.MethodGet, p, nil); r.Status != http.StatusOK {
				t.Errorf("GET %s without a token = %d %s", p, r.Status, r.Body)
			}
		}
	})
	t.Run("authenticate", func(t *testing.T) {
		wantErr(t, c.Do(1, "", http.MethodGet, "/v1/tenants/acme/services", nil), 401, api.CodeUnauthorized)
		wantErr(t, c.Do(1, "rft_acme_"+strings.Repeat("A", 43), http.MethodGet, "/v1/tenants/acme/services", nil), 401, api.CodeUnauthorized)
		wantErr(t, c.Do(1, "", http.MethodGet, "/metrics", nil), 401, api.CodeUnauthorized)
	})
	t.Run("authorize", func(t *testing.T) {
		wantErr(t, c.Do(1, acme, http.MethodGet, "/v1/cluster", nil), 403, api.CodeForbidden)
		wantErr(t, c.Do(1, acme, http.MethodGet, "/metrics", nil), 403, api.CodeForbidden)
		wantErr(t, c.Do(1, acme, http.MethodPost, "/v1/tenants", api.CreateTenantRequest{Name: "x"}), 403, api.CodeForbidden)
		// Another tenant's path looks exactly like a tenant that does not exist.
		a := c.Do(1, acme, http.MethodGet, "/v1/tenants/other/services", nil)
		b := c.Do(1, acme, http.MethodGet, "/v1/tenants/nosuch/services", nil)
		wantErr(t, a, 404, api.CodeNotFound)
		wantErr(t, b, 404, api.CodeNotFound)
		if strings.ReplaceAll(string(a.Body), "other", "X") != strings.ReplaceAll(string(b.Body), "nosuch", "X") {
			t.Errorf("another tenant's 404 %s differs from a missing tenant's %s", a.Body, b.Body)
		}
		wantErr(t, c.Do(1, other, http.MethodGet, "/v1/tenants/acme", nil), 404, api.CodeNotFound)
		if r := c.Do(1, acme, http.MethodGet, "/v1/tenants/acme", nil); r.Status != http.StatusOK {
			t.Errorf("own tenant = %d %s", r.Status, r.Body)
		}
		if r := c.Do(1, admin, http.MethodGet, "/v1/tenants/acme/services", nil); r.Status != http.StatusOK {
			t.Errorf("admin on a tenant path = %d %s", r.Status, r.Body)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		path := "/v1/tenants/acme/services/web/instances/w1"
		wantErr(t, c.Do(1, acme, http.MethodPut, path, `{"address":"a","colour":"red"}`), 400, api.CodeBadRequest)
		r := c.Do(1, acme, http.MethodPut, "/v1/tenants/acme/services/bad%20name/instances/w1", `{"address":"a"}`)
		wantErr(t, r, 400, api.CodeBadRequest)
		if !strings.Contains(string(r.Body), `"service: `) {
			t.Errorf("bad service name answer %s does not name the field", r.Body)
		}
		big := `{"address":"` + strings.Repeat("x", api.MaxBodyBytes) + `"}`
		wantErr(t, c.Do(1, acme, http.MethodPut, path, big), 413, api.CodeTooLarge)
		wantErr(t, c.Do(1, acme, http.MethodGet, "/v1/nothing-here", nil), 404, api.CodeNotFound)
		r = c.Do(1, acme, http.MethodPost, "/v1/tenants/acme/services/web", nil)
		if r.Status != http.StatusMethodNotAllowed || r.Err() == nil {
			t.Errorf("wrong method = %d %s, want 405 with an error body", r.Status, r.Body)
		}
		wantErr(t, c.Do(1, acme, http.MethodGet, "/v1/tenants/acme/services/web?index=x", nil), 400, api.CodeBadRequest)
		wantErr(t, c.Do(1, acme, http.MethodGet, "/v1/tenants/acme/services/web?wait=forever", nil), 400, api.CodeBadRequest)
		// Nothing was applied by any of those.
		var s api.ServiceResponse
		c.Do(1, acme, http.MethodGet, "/v1/tenants/acme/services/web", nil).JSON(t, &s)
		if len(s.Instances) != 0 {
			t.Errorf("a rejected request registered %v", s.Instances)
		}
	})
	t.Run("writes and reads", func(t *testing.T) {
		r := c.Do(2, acme, http.MethodPut, "/v1/tenants/acme/services/web/instances/w1", api.RegisterRequest{Address: "a:1"})
		if r.Status != http.StatusCreated || r.Header.Get(api.HeaderIndex) == "" || r.Header.Get(api.HeaderLeader) == "" {
			t.Fatalf("register = %d %s %v", r.Status, r.Body, r.Header)
		}
		r = c.Do(3, acme, http.MethodPut, "/v1/tenants/acme/services/web/instances/w1", api.RegisterRequest{Address: "a:1"})
		if r.Status != http.StatusOK {
			t.Fatalf("same registration again = %d, want 200", r.Status)
		}
		r = c.Do(3, acme, http.MethodGet, "/v1/tenants/acme/services/web?consistent=true", nil)
		var s api.ServiceResponse
		r.JSON(t, &s)
		if len(s.Instances) != 1 {
			t.Fatalf("consistent read = %s", r.Body)
		}
		if r := c.Do(1, acme, http.MethodDelete, "/v1/tenants/acme/services/web/instances/nope", nil); r.Status != http.StatusNoContent {
			t.Fatalf("delete of a missing instance = %d, want 204", r.Status)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		r := c.Do(1, admin, http.MethodGet, "/metrics", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("metrics = %d", r.Status)
		}
		for _, want := range []string{
			`rafting_http_requests_total{code="400",route="PUT /v1/tenants/{t}/services/{s}/instances/{id}"}`,
			"rafting_http_request_seconds_bucket",
			`rafting_raft_proposals_total{kind="tenant",result="ok"}`,
			`rafting_shard_applied_index{shard="1",tenant=""}`,
			`rafting_shard_leader_node{shard="`,
			`rafting_tenant_sessions{tenant="acme"}`,
			`rafting_tenant_instances{tenant="acme"}`,
		} {
			if !strings.Contains(string(r.Body), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
	t.Run("servers", func(t *testing.T) {
		// Any valid token lists every node's API address; none is refused.
		wantErr(t, c.Do(1, "", http.MethodGet, "/v1/servers", nil), 401, api.CodeUnauthorized)
		want := slices.Clone(c.Addrs())
		slices.Sort(want)
		servertest.Eventually(t, 10*time.Second, "every node listed", func() bool {
			var l api.ServerList
			c.Do(2, other, http.MethodGet, "/v1/servers", nil).JSON(t, &l)
			slices.Sort(l.Servers)
			return slices.Equal(l.Servers, want)
		})
	})
	t.Run("unauthenticated flood", func(t *testing.T) {
		// One small bucket per address for requests without a valid token:
		// a flood gets 429 before it can cost a meta ReadIndex each.
		limited := false
		for i := 0; i < 40 && !limited; i++ {
			r := c.Do(3, "rft_acme_"+strings.Repeat("B", 43), http.MethodGet, "/v1/tenants/acme/services", nil)
			limited = r.Status == http.StatusTooManyRequests && r.Header.Get("Retry-After") != ""
		}
		if !limited {
			t.Fatal("40 requests with a bad token were never answered 429")
		}
		// A valid token is not affected.
		if r := c.Do(3, acme, http.MethodGet, "/v1/tenants/acme/services", nil); r.Status != http.StatusOK {
			t.Fatalf("valid token after a bad-token flood = %d", r.Status)
		}
	})
}

// TestTenantRateLimit: a tenant over its requests_per_second gets 429 with
// Retry-After; its keepalives have their own lane and still pass.
func TestTenantRateLimit(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{RequestsPerSecond: 2, Burst: 3, WritesPerSecond: 2})
	sid := "sess-0123456789abcdef"
	var r *servertest.Response
	servertest.Eventually(t, 10*time.Second, "the session to open", func() bool {
		r = c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+sid, api.SessionRequest{})
		return r.Status == http.StatusCreated || r.Status == http.StatusOK
	})
	limited := false
	var took time.Duration
	for i := 0; i < 10; i++ {
		start := time.Now()
		r = c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/services", nil)
		if r.Status == http.StatusTooManyRequests {
			limited, took = true, time.Since(start)
			break
		}
	}
	if !limited {
		t.Fatal("10 requests at 2/s with burst 3 were never limited")
	}
	wantErr(t, r, 429, api.CodeRateLimited)
	// The refusal is held, so a flooding connection slows to its pace.
	if took < httpapi.RateLimitHold/2 {
		t.Fatalf("429 answered after %v, want held at least %v", took, httpapi.RateLimitHold/2)
	}
	if r.Header.Get("Retry-After") == "" || r.Err().RetryAfter <= 0 {
		t.Fatalf("429 without Retry-After: %v %s", r.Header, r.Body)
	}
	for i := 0; i < 5; i++ {
		ka := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+sid+"/keepalive", nil)
		if ka.Status == http.StatusTooManyRequests {
			t.Fatalf("keepalive %d rate-limited by the tenant's request rate: %s", i, ka.Body)
		}
	}
	// Refusals made together are let go apart, not as one burst.
	var mu sync.Mutex
	var ends []time.Time
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if r := c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/services", nil); r.Status == http.StatusTooManyRequests {
				mu.Lock()
				ends = append(ends, time.Now())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(ends) < 4 {
		t.Fatalf("%d of 8 concurrent requests over the rate were refused, want most", len(ends))
	}
	slices.SortFunc(ends, time.Time.Compare)
	if spread := ends[len(ends)-1].Sub(ends[0]); spread < 20*time.Millisecond {
		t.Fatalf("%d held refusals were let go within %v of each other, want spread over the hold", len(ends), spread)
	}
}

// TestLaneForUnknownSessions: keepalives and stream attaches have a lane of
// their own only for sessions the node knows: for random session IDs they
// are the tenant's ordinary requests, limited by its request rate. A lane
// body is small, and a session has at most two streams attached.
func TestLaneForUnknownSessions(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{RequestsPerSecond: 2, Burst: 3})
	limited := 0
	for i := range 20 {
		r := c.Do(1, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/acme/sessions/rand-%016d/keepalive", i), nil)
		if r.Status == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("20 keepalives for unknown sessions at a tenant limited to 2 requests a second: none refused")
	}
	time.Sleep(2 * time.Second) // the bucket refills
	sid := "sess-lane-0123456789"
	if r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+sid, api.SessionRequest{LeaseMs: 1000}); r.Status >= 300 {
		t.Fatalf("open session = %d %s", r.Status, r.Body)
	}
	if r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+sid+"/keepalive", strings.Repeat(" ", 8<<10)); r.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("a keepalive with an 8 KiB body = %d %s, want 413", r.Status, r.Body)
	}
	leader := c.WaitTenantLeader("acme")
	var bodies []io.Closer
	defer func() {
		for _, b := range bodies {
			b.Close()
		}
	}()
	for i := range 3 {
		req, _ := http.NewRequest(http.MethodGet, "http://"+c.Addr(leader)+"/v1/tenants/acme/sessions/"+sid+"/stream", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := c.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, resp.Body)
		if i < 2 && resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d = %d, want 200", i+1, resp.StatusCode)
		}
		if i == 2 && resp.StatusCode != http.StatusConflict {
			t.Fatalf("a third stream of one session = %d, want 409", resp.StatusCode)
		}
	}
}

// TestHoldsSharedOut: refusals over a rate are held, but one tenant takes
// at most its share of the holds; past it its connections are parked
// (answered in turn, with no goroutine: conns_park.go), neither answered
// at once nor ended, and another tenant's refusals are still held.
func TestHoldsSharedOut(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) { cfg.MaxUnauthenticatedPerAddress = 0 }})
	httpapi.SetHeldPerKey(c.Server(1).API(), 10)
	a := c.CreateTenant("flood", api.Quotas{RequestsPerSecond: 1, Burst: 1})
	b := c.CreateTenant("quiet", api.Quotas{RequestsPerSecond: 1, Burst: 1})
	get := func(tok, tenant string) (status int, took time.Duration, err error) {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		req, _ := http.NewRequest(http.MethodGet, "http://"+c.Addr(1)+"/v1/tenants/"+tenant+"/services", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, time.Since(start), err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, time.Since(start), nil
	}
	get(a, "flood")
	get(b, "quiet") // both buckets spent
	var mu sync.Mutex
	held, ended, fast := 0, 0, 0
	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() {
			status, took, err := get(a, "flood")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				ended++
			case status == http.StatusTooManyRequests && took >= httpapi.RateLimitHold/2:
				held++
			case status == http.StatusTooManyRequests:
				fast++
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // the flood holds its share now
	status, took, err := get(b, "quiet")
	wg.Wait()
	if err != nil || status != http.StatusTooManyRequests || took < httpapi.RateLimitHold/2 {
		t.Fatalf("another tenant's refusal during the flood = %d after %v (%v), want a held 429", status, took, err)
	}
	if held != 30 || ended > 0 || fast > 0 {
		t.Fatalf("30 refusals of one tenant with 10 holds: %d held or parked, %d connections ended, %d answered at once", held, ended, fast)
	}
}

// TestPathsNeverRedirected: a path with "." or ".." segments is refused
// (400), never redirected to the cleaned path, which a client follows with
// its method and token; "." and ".." are not names.
func TestPathsNeverRedirected(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range []string{
		"/v1/tenants/../cluster/nodes/999",
		"/v1/tenants/acme/services/../../../cluster",
		"/v1/tenants/acme/services/./instances/x",
		"/v1//tenants/acme/services",
	} {
		req, _ := http.NewRequest(http.MethodDelete, "http://"+c.Addr(1)+p, nil)
		req.URL.Opaque = p // sent as written, not cleaned by the client
		req.Header.Set("Authorization", "Bearer "+servertest.AdminToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("DELETE %s = %d (Location %q), want 400", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	for _, name := range []string{".", ".."} {
		r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/"+url.PathEscape(name), api.RegisterRequest{Address: "a:1"})
		if r.Status != http.StatusBadRequest {
			t.Fatalf("an instance named %q = %d %s, want 400", name, r.Status, r.Body)
		}
	}
	r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/x", api.RegisterRequest{Address: "a\x1b]0;pwned\x07:1"})
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "control character") {
		t.Fatalf("an address with a terminal escape = %d %s, want 400", r.Status, r.Body)
	}
}
