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

	got := events(t, base, acme, "?tenant=zeta", "hello", "tenant", "tenants", "service", "sessions")
	var sessions api.SessionList
	if err := json.Unmarshal(got["sessions"], &sessions); err != nil || sessions.Index == 0 {
		t.Errorf("acme's sessions event %s: want GET .../sessions's answer (%v)", got["sessions"], err)
	}
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

// stream opens a feed and returns its events as they come; the test's
// cleanup closes it.
func stream(t *testing.T, base, token, query string) <-chan [2]string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/ui/events"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	out := make(chan [2]string, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name string
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				name = n
			} else if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				select {
				case out <- [2]string{name, d}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return out
}

// TestFeedWatchersQuota: a tenant whose max_watchers the feed's blocking
// queries would pass is still followed live: a service the node refuses a
// blocking query for is read without one, every 500 ms.
func TestFeedWatchersQuota(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	base := "http://" + c.Addr(1)
	tok := c.CreateTenant("acme", api.Quotas{MaxWatchers: 1})
	register(t, c, tok, "s1", "a", api.RegisterRequest{Address: "10.0.0.1:80"})
	register(t, c, tok, "s2", "b", api.RegisterRequest{Address: "10.0.0.2:80"})
	evs := stream(t, base, tok, "")
	// Both services answered once, then one blocking query at most.
	latest := map[string]api.ServiceResponse{}
	seen := func(service, id string) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			for _, i := range latest[service].Instances {
				if i.ID == id {
					return
				}
			}
			select {
			case e := <-evs:
				var s api.ServiceResponse
				if e[0] == "service" && json.Unmarshal([]byte(e[1]), &s) == nil {
					latest[s.Service] = s
				}
			case <-deadline:
				t.Fatalf("no service event for %s with %s within 5 s", service, id)
			}
		}
	}
	seen("s1", "a")
	seen("s2", "b")
	for _, s := range []string{"s1", "s2"} {
		register(t, c, tok, s, s+"-new", api.RegisterRequest{Address: "10.0.0.3:80"})
		seen(s, s+"-new")
	}
}
