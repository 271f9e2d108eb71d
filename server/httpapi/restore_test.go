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
	"github.com/rafting/rafting/server/httpapi"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// TestRestoreHoldsClientsOff: while a restore writes a tenant, every node
// answers its clients 503 restoring with a Retry-After — never 401 (which
// a client takes as final), never the tenant empty or half written — and
// a token the cluster does not know yet gets the same; once the restore
// answers, every node serves the whole tenant.
func TestRestoreHoldsClientsOff(t *testing.T) {
	old := servertest.Start(t, servertest.Options{})
	acme := old.CreateTenant("acme", api.Quotas{})
	for _, id := range []string{"p1", "p2"} {
		if r := old.Do(1, acme, http.MethodPut, "/v1/tenants/acme/services/web/instances/"+id,
			api.RegisterRequest{Address: "10.0.0.1:80"}); r.Status >= 300 {
			t.Fatalf("register %s = %d %s", id, r.Status, r.Body)
		}
	}
	r := old.Do(1, servertest.AdminToken, http.MethodGet, "/v1/backup", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("backup = %d %s", r.Status, r.Body)
	}
	backup := r.Body

	// Started to be restored into: the tenants' tokens are answered 503
	// restoring before the restore has begun too.
	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) { cfg.AwaitRestore = true }})
	for node := 1; node <= 3; node++ {
		r := c.Do(node, acme, http.MethodGet, "/v1/tenants/acme/services/web", nil)
		if r.Status != http.StatusServiceUnavailable || r.Err().Code != api.CodeRestoring || r.Header.Get("Retry-After") == "" {
			t.Fatalf("node %d before the restore = %d %s, want 503 restoring with Retry-After", node, r.Status, r.Body)
		}
	}
	unknown := tenants.FormatToken("zeta", strings.Repeat("A", 43)).Reveal()
	seen := make(chan string, 16)
	httpapi.SetRestoreHook(c.Server(2).API(), func(tenant string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for node := 1; node <= 3; node++ {
			for _, q := range []struct{ tok, path string }{
				{acme, "/v1/tenants/acme/services/web"},
				{acme, "/v1/tenants/acme/services/web?consistent=true"},
				{unknown, "/v1/tenants/zeta/services/web"},
			} {
				r, err := c.DoErr(ctx, node, q.tok, http.MethodGet, q.path, nil, nil)
				switch {
				case err != nil:
					seen <- fmt.Sprintf("node %d %s: %v", node, q.path, err)
				case r.Status != http.StatusServiceUnavailable || r.Err().Code != api.CodeRestoring || r.Header.Get("Retry-After") == "":
					seen <- fmt.Sprintf("node %d %s mid-restore = %d %s (Retry-After %q), want 503 restoring with Retry-After",
						node, q.path, r.Status, r.Body, r.Header.Get("Retry-After"))
				}
			}
		}
		seen <- "checked " + tenant
	})
	var res api.RestoreResponse
	r = c.Do(2, servertest.AdminToken, http.MethodPost, "/v1/restore", backup)
	r.JSON(t, &res)
	if r.Status != http.StatusOK || res.Instances != 2 {
		t.Fatalf("restore = %d %s", r.Status, r.Body)
	}
	close(seen)
	checked := false
	for s := range seen {
		if s == "checked acme" {
			checked = true
			continue
		}
		t.Error(s)
	}
	if !checked {
		t.Fatal("the restore wrote acme without calling the hook")
	}
	// Each node now serves the whole tenant, or 503 restoring while its
	// replica applies what the restore wrote: never fewer instances.
	for node := 1; node <= 3; node++ {
		servertest.Eventually(t, 10*time.Second, fmt.Sprintf("node %d serves acme", node), func() bool {
			r := c.Do(node, acme, http.MethodGet, "/v1/tenants/acme/services/web", nil)
			if r.Status == http.StatusServiceUnavailable && r.Err().Code == api.CodeRestoring {
				return false
			}
			var got api.ServiceResponse
			r.JSON(t, &got)
			if r.Status != http.StatusOK || len(got.Instances) != 2 {
				t.Fatalf("node %d after the restore = %d %s, want both instances", node, r.Status, r.Body)
			}
			return true
		})
	}
	if r := c.Do(1, unknown, http.MethodGet, "/v1/tenants/zeta/services/web", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("an unknown token after the restore = %d %s, want 401", r.Status, r.Body)
	}
}

// TestRestoreAgain: a restore sent again over a tenant it wrote and that
// nobody changed since changes nothing; over a tenant whose state moved
// on (an address changed, an instance deleted) it is refused with 409
// naming the tenant and its index, and changes nothing; ?force=true writes
// the backup's state over it.
func TestRestoreAgain(t *testing.T) {
	old := servertest.Start(t, servertest.Options{})
	acme := old.CreateTenant("acme", api.Quotas{})
	for _, id := range []string{"p1", "p2"} {
		if r := old.Do(1, acme, http.MethodPut, "/v1/tenants/acme/services/web/instances/"+id,
			api.RegisterRequest{Address: "10.0.0.1:80"}); r.Status >= 300 {
			t.Fatalf("register %s = %d %s", id, r.Status, r.Body)
		}
	}
	backup := old.Do(1, servertest.AdminToken, http.MethodGet, "/v1/backup", nil).Body

	c := servertest.Start(t, servertest.Options{})
	if r := c.Do(1, acme, http.MethodGet, "/v1/tenants/acme/services/web", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("a cluster started without AwaitRestore, before the restore = %d %s, want 401", r.Status, r.Body)
	}
	if r := c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/restore", backup); r.Status != http.StatusOK {
		t.Fatalf("restore = %d %s", r.Status, r.Body)
	}
	var res api.RestoreResponse
	r := c.Do(2, servertest.AdminToken, http.MethodPost, "/v1/restore", backup)
	r.JSON(t, &res)
	if r.Status != http.StatusOK || res != (api.RestoreResponse{Tenants: 1, Unchanged: 1}) {
		t.Fatalf("the same restore again = %d %s, want 200 and nothing written", r.Status, r.Body)
	}

	if r := c.Do(1, acme, http.MethodPut, "/v1/tenants/acme/services/web/instances/p1",
		api.RegisterRequest{Address: "10.0.0.9:80"}); r.Status >= 300 {
		t.Fatalf("re-register p1 = %d %s", r.Status, r.Body)
	}
	if r := c.Do(1, acme, http.MethodDelete, "/v1/tenants/acme/services/web/instances/p2", nil); r.Status >= 300 {
		t.Fatalf("deregister p2 = %d %s", r.Status, r.Body)
	}
	web := func() api.ServiceResponse {
		var got api.ServiceResponse
		c.Do(3, acme, http.MethodGet, "/v1/tenants/acme/services/web?consistent=true", nil).JSON(t, &got)
		return got
	}
	r = c.Do(3, servertest.AdminToken, http.MethodPost, "/v1/restore", backup)
	if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "tenant acme") || !strings.Contains(string(r.Body), "index") {
		t.Fatalf("a restore over a changed tenant = %d %s, want 409 naming acme and its index", r.Status, r.Body)
	}
	if got := web(); len(got.Instances) != 1 || got.Instances[0].Address != "10.0.0.9:80" {
		t.Fatalf("the refused restore changed acme: %+v", got.Instances)
	}
	if r := c.Do(3, servertest.AdminToken, http.MethodPost, "/v1/restore?force=true", backup); r.Status != http.StatusOK {
		t.Fatalf("a forced restore = %d %s", r.Status, r.Body)
	}
	if got := web(); len(got.Instances) != 2 || got.Instances[0].Address != "10.0.0.1:80" {
		t.Fatalf("after a forced restore: %+v, want the backup's instances", got.Instances)
	}
	// Forced, it is the backup's again: a retry changes nothing.
	r = c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/restore", backup)
	res = api.RestoreResponse{}
	r.JSON(t, &res)
	if r.Status != http.StatusOK || res.Unchanged != 1 {
		t.Fatalf("a restore after the forced one = %d %s", r.Status, r.Body)
	}
}

// TestRestoreRetryFinishesWhatWasCut: a restore cut short after it
// finished one tenant (acme) and before another (beta), and sent again
// once acme's clients wrote to it, finishes beta — which no client could
// reach meanwhile (503 restoring) — and leaves acme's writes alone: the
// retry neither reverts them nor refuses to finish beta for them (which
// would leave --force, and the revert, as the only way out).
func TestRestoreRetryFinishesWhatWasCut(t *testing.T) {
	old := servertest.Start(t, servertest.Options{})
	tokens := map[string]string{}
	for _, name := range []string{"acme", "beta"} {
		tokens[name] = old.CreateTenant(name, api.Quotas{})
		if r := old.Do(1, tokens[name], http.MethodPut, "/v1/tenants/"+name+"/services/web/instances/p1",
			api.RegisterRequest{Address: "10.0.0.1:80"}); r.Status >= 300 {
			t.Fatalf("register = %d %s", r.Status, r.Body)
		}
	}
	backup := old.Do(1, servertest.AdminToken, http.MethodGet, "/v1/backup", nil).Body
	old.Stop()

	c := servertest.Start(t, servertest.Options{})
	ctx, cut := context.WithCancel(context.Background())
	defer cut()
	hooked := make(chan struct{})
	defer func() { // the cut restore's goroutine is done with the hook
		select {
		case <-hooked:
		case <-time.After(10 * time.Second):
		}
	}()
	httpapi.SetRestoreHook(c.Server(1).API(), func(tenant string) {
		if tenant != "beta" {
			return
		}
		defer close(hooked)
		// acme's restore ends first; then the operator's restore is cut.
		servertest.Eventually(t, 20*time.Second, "acme's restore ends", func() bool {
			mark, ok := c.Server(1).Node().Meta().RestoreMark("acme")
			return ok && !mark.Pending
		})
		cut()
		time.Sleep(500 * time.Millisecond) // the server sees the request end
	})
	if r, err := c.DoErr(ctx, 1, servertest.AdminToken, http.MethodPost, "/v1/restore", backup, nil); err == nil {
		t.Fatalf("the cut restore answered %d %s", r.Status, r.Body)
	}
	httpapi.SetRestoreHook(c.Server(1).API(), func(string) {})
	if mark, ok := c.Server(1).Node().Meta().RestoreMark("beta"); !ok || !mark.Pending {
		t.Fatalf("beta after the cut restore: %+v %v, want it still pending (the test's setup failed)", mark, ok)
	}
	// acme's clients write (node 2 answers 503 restoring until its meta
	// replica has applied acme's end, as a client retries); beta's cannot.
	var last *servertest.Response
	servertest.Eventually(t, 10*time.Second, "acme's clients to write on node 2", func() bool {
		last = c.Do(2, tokens["acme"], http.MethodPut, "/v1/tenants/acme/services/web/instances/p1",
			api.RegisterRequest{Address: "10.0.0.9:80"})
		if last.Status == http.StatusServiceUnavailable && strings.Contains(string(last.Body), string(api.CodeRestoring)) {
			return false
		}
		if last.Status >= 300 {
			t.Fatalf("re-register acme's p1 = %d %s", last.Status, last.Body)
		}
		return true
	})
	if r := c.Do(2, tokens["beta"], http.MethodGet, "/v1/tenants/beta/services/web", nil); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("beta mid-restore = %d %s, want 503 restoring", r.Status, r.Body)
	}
	r := c.Do(2, servertest.AdminToken, http.MethodPost, "/v1/restore", backup)
	if r.Status != http.StatusOK {
		t.Fatalf("the restore sent again = %d %s, want 200: beta finished, acme left alone", r.Status, r.Body)
	}
	web := func(name string) []api.Instance {
		var got api.ServiceResponse
		r := c.Do(3, tokens[name], http.MethodGet, "/v1/tenants/"+name+"/services/web?consistent=true", nil)
		r.JSON(t, &got)
		if r.Status != http.StatusOK {
			t.Fatalf("%s after the retry = %d %s", name, r.Status, r.Body)
		}
		return got.Instances
	}
	if got := web("beta"); len(got) != 1 || got[0].Address != "10.0.0.1:80" {
		t.Fatalf("beta after the retry: %+v, want the backup's instance", got)
	}
	if got := web("acme"); len(got) != 1 || got[0].Address != "10.0.0.9:80" {
		t.Fatalf("acme after the retry: %+v, want its clients' write kept", got)
	}
}
