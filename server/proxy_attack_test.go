package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/httpapi"
	"github.com/rafting/rafting/server/servertest"
)

// TestProxiedRequestIsAuthenticated: a request a node proxies (its tenant
// has no replica there) marks its connection authenticated as any other
// request does: a blocking query through that node lasts its wait, not
// the unauthenticated connections' 5 s (it was cut at 5 s, EOF).
func TestProxiedRequestIsAuthenticated(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 2, Configure: func(cfg *config.Config) { cfg.Replicas = 1 }})
	tok := c.CreateTenant("acme", api.Quotas{})
	var proxy int
	servertest.Eventually(t, 30*time.Second, "acme on one node", func() bool {
		_, on1 := c.Server(1).Node().Tenant("acme")
		_, on2 := c.Server(2).Node().Tenant("acme")
		switch {
		case on1 && !on2:
			proxy = 2
		case on2 && !on1:
			proxy = 1
		default:
			return false
		}
		return len(c.Server(proxy).Node().TenantNodes("acme")) > 0
	})
	if r := c.Do(proxy, tok, http.MethodPut, "/v1/tenants/acme/kv/k", map[string]string{"text": "v"}); r.Status/100 != 2 {
		t.Fatalf("put through node %d: %d %s", proxy, r.Status, r.Body)
	}
	var idx uint64
	r := c.Do(proxy, tok, http.MethodGet, "/v1/tenants/acme/kv/k", nil)
	fmt.Sscan(r.Header.Get(api.HeaderIndex), &idx)
	// A blocking query on a new connection: nothing changes k, so it
	// should answer 200 after 8 s (+ up to 0.5 s of jitter).
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
		fmt.Sprintf("http://%s/v1/tenants/acme/kv/k?index=%d&wait=8s", c.Addr(proxy), idx), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	start := time.Now()
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		t.Fatalf("a blocking query (wait=8s) through node %d, which proxies it: %v after %v", proxy, err, took)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || took < 8*time.Second {
		t.Errorf("blocking query (wait=8s) through the proxying node: %d after %v: %.100s", resp.StatusCode, took, b)
	}
}

// TestProxiedRequestsOfOneTenant: one tenant's 200 blocking queries through
// a node that proxies them (the tenant has no replica there) do not hold
// the connections that node proxies every tenant's requests over: at most
// MaxProxiedPerTenant of them are proxied at once, the rest refused 429,
// and another tenant's reads through the same node to the same target go
// on. Before, the 200 held all 128 connections of the peer pool, and 5 of
// the victim's 10 reads timed out.
func TestProxiedRequestsOfOneTenant(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 3, Configure: func(cfg *config.Config) { cfg.Replicas = 1 }})
	toks := map[string]string{}
	for i := range 6 {
		name := fmt.Sprintf("t%d", i)
		toks[name] = c.CreateTenant(name, api.Quotas{})
	}
	// Placement settled: every tenant on exactly one node. Then two
	// tenants that a third node proxies to the same node: the attacker
	// and the victim.
	var mallory, victim string
	var proxy, target int
	servertest.Eventually(t, 60*time.Second, "placement settled", func() bool {
		on := map[string]int{}
		for n := 1; n <= 3; n++ {
			for _, tt := range c.Server(n).Node().Tenants() {
				on[tt.Name]++
			}
		}
		for name := range toks {
			if on[name] != 1 {
				return false
			}
		}
		for p := 1; p <= 3; p++ {
			byTarget := map[string][]string{}
			for name := range toks {
				if _, here := c.Server(p).Node().Tenant(name); here {
					continue
				}
				if nodes := c.Server(p).Node().TenantNodes(name); len(nodes) > 0 {
					byTarget[nodes[0]] = append(byTarget[nodes[0]], name)
				}
			}
			for addr, names := range byTarget {
				if len(names) >= 2 {
					mallory, victim, proxy = names[0], names[1], p
					for n := 1; n <= 3; n++ {
						if c.Addr(n) == addr {
							target = n
						}
					}
					return true
				}
			}
		}
		return false
	})
	t.Logf("mallory %s and victim %s on node %d; requests through node %d", mallory, victim, target, proxy)
	c.WaitTenantLeader(mallory)
	c.WaitTenantLeader(victim)
	if r := c.Do(proxy, toks[victim], http.MethodPut, "/v1/tenants/"+victim+"/kv/k", map[string]string{"text": "v"}); r.Status/100 != 2 {
		t.Fatalf("victim's put through node %d: %d %s", proxy, r.Status, r.Body)
	}
	victimGet := func() (int, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		r, err := c.DoErr(ctx, proxy, toks[victim], http.MethodGet, "/v1/tenants/"+victim+"/kv/k", nil, nil)
		if err != nil {
			return -1, time.Since(start)
		}
		return r.Status, time.Since(start)
	}
	st, d := victimGet()
	t.Logf("victim's read alone: %d in %v", st, d)

	// The attack: 200 blocking queries, each its own connection (HTTP/1.1).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var mu sync.Mutex
	outcome := map[string]int{}
	// Each attacker goroutine asks again as soon as its query ends.
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One connection each, authenticated first by a request the
			// node serves itself (GET /v1/servers: any token, never
			// proxied), so that the auth timeout never cuts it.
			cl := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
			auth, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr(proxy)+"/v1/servers", nil)
			auth.Header.Set("Authorization", "Bearer "+toks[mallory])
			if resp, err := cl.Do(auth); err == nil {
				resp.Body.Close()
			}
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
					fmt.Sprintf("http://%s/v1/tenants/%s/kv/w%d?index=1000000&wait=60s", c.Addr(proxy), mallory, i), nil)
				req.Header.Set("Authorization", "Bearer "+toks[mallory])
				resp, err := cl.Do(req)
				mu.Lock()
				if err != nil {
					if len(outcome) < 3 {
						outcome[err.Error()]++
					}
					outcome["error"]++
				} else {
					resp.Body.Close()
					outcome[resp.Status]++
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	fails := 0
	var worst time.Duration
	for range 10 {
		st, d := victimGet()
		worst = max(worst, d)
		if st != http.StatusOK {
			fails++
		}
		time.Sleep(300 * time.Millisecond)
	}
	mu.Lock()
	t.Logf("attacker's queries ended: %v", outcome)
	refused := outcome["429 Too Many Requests"]
	mu.Unlock()
	if refused == 0 {
		t.Errorf("none of the attacker's 200 blocking queries was refused: more than %d proxied at once", httpapi.MaxProxiedPerTenant)
	}
	t.Logf("victim under attack: %d of 10 reads failed (3 s timeout), slowest %v", fails, worst.Round(time.Millisecond))
	if fails > 0 {
		t.Errorf("%d of 10 reads of the victim through node %d failed (3 s timeout) while another tenant held 200 blocking queries there", fails, proxy)
	}
}
