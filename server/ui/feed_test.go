package ui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// events reads a feed's events until want is seen (or 10 s pass) and
// returns them by name, the last of each.
func events(t *testing.T, base, token, query string, want ...string) map[string]json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/ui/events"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /ui/events%s = %d %s", query, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	got := map[string]json.RawMessage{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var name string
	for sc.Scan() {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "event: "); ok {
			name = n
		} else if d, ok := strings.CutPrefix(line, "data: "); ok {
			got[name] = json.RawMessage(d)
			done := true
			for _, w := range want {
				if got[w] == nil {
					done = false
				}
			}
			if done {
				return got
			}
		}
	}
	t.Fatalf("the feed%s ended or timed out before %v; it sent %v", query, want, keys(got))
	return nil
}

func keys(m map[string]json.RawMessage) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

// TestFeedScope: the feed shows a token what the REST API shows it: a
// tenant's token follows its own tenant whatever it asks and sees no
// cluster; the admin follows the tenant it asks for, or the first; the
// read-only token is told it is read-only.
func TestFeedScope(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1, Configure: func(cfg *config.Config) { cfg.ReadToken = readToken }})
	base := "http://" + c.Addr(1)
	acme := c.CreateTenant("acme", api.Quotas{})
	c.CreateTenant("zeta", api.Quotas{})
	register(t, c, acme, "web", "web-1", api.RegisterRequest{Address: "10.0.0.1:80"})

	var hello struct{ Kind, Tenant string }
	var tenant struct{ Name string }
	var list api.TenantList

	got := events(t, base, acme, "?tenant=zeta", "hello", "tenant", "tenants", "service")
	_ = json.Unmarshal(got["hello"], &hello)
	_ = json.Unmarshal(got["tenant"], &tenant)
	_ = json.Unmarshal(got["tenants"], &list)
	if hello.Kind != "tenant" || hello.Tenant != "acme" || tenant.Name != "acme" || len(list.Tenants) != 1 || list.Tenants[0].Name != "acme" {
		t.Errorf("acme's token asking for zeta: hello %+v, follows %q, tenants %+v; want acme's alone", hello, tenant.Name, list.Tenants)
	}
	if got["cluster"] != nil {
		t.Error("a tenant's token was sent the cluster")
	}

	got = events(t, base, servertest.AdminToken, "?tenant=zeta", "hello", "tenant", "cluster", "tenants")
	_ = json.Unmarshal(got["tenant"], &tenant)
	_ = json.Unmarshal(got["tenants"], &list)
	if tenant.Name != "zeta" || len(list.Tenants) != 2 {
		t.Errorf("the admin asking for zeta follows %q and sees %d tenants; want zeta, 2", tenant.Name, len(list.Tenants))
	}
	got = events(t, base, servertest.AdminToken, "", "tenant")
	if _ = json.Unmarshal(got["tenant"], &tenant); tenant.Name != "acme" {
		t.Errorf("the admin asking for no tenant follows %q, want the first, acme", tenant.Name)
	}

	got = events(t, base, readToken, "", "hello", "cluster", "service")
	if _ = json.Unmarshal(got["hello"], &hello); hello.Kind != "read-only" {
		t.Errorf("the read-only token's hello: %+v", hello)
	}

	if r := c.Do(1, acme, http.MethodGet, "/ui/events?tenant=..", nil); r.Status != http.StatusBadRequest {
		t.Errorf("a feed for tenant %q = %d, want 400", "..", r.Status)
	}
}
