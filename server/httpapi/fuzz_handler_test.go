package httpapi_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// FuzzHandler drives the whole API of a real node with a valid tenant
// token and random methods, paths, headers and bodies: the node never
// panics (a connection cut without an answer), never answers 500, and a
// request it refuses (4xx) commits nothing — the tenant's applied index
// stays where it was.
func FuzzHandler(f *testing.F) {
	// Blocking queries wait at most 100 ms: a fuzzed wait must not take
	// an input for longer than the fuzzer allows one.
	c := servertest.Start(f, servertest.Options{Nodes: 1, Configure: func(cfg *config.Config) { cfg.MaxWait = 100 * time.Millisecond }})
	tok := c.CreateTenant("acme", api.Quotas{RequestsPerSecond: 1_000_000, Burst: 1_000_000, WritesPerSecond: 1_000_000})
	client := &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	f.Add("PUT", "services/web/instances/w1", `{"address":"10.0.0.1:80","weight":5}`, "")
	f.Add("PUT", "services/web/instances/w1", `{"address":"a\u001b[2J"}`, "")
	f.Add("PUT", "services/web/instances/..", `{"address":"a:1"}`, "")
	f.Add("PUT", "services/db/instances/d1", `{"address":"a","mode":"master-standby","session":"sess-fuzz-0000000000"}`, "sess-fuzz-0000000000")
	f.Add("PUT", "sessions/sess-fuzz-0000000000", `{"ttl_ms":5000,"lease_ms":1000}`, "")
	f.Add("PUT", "sessions/sess-fuzz-0000000000/keepalive", ``, "")
	f.Add("DELETE", "sessions/sess-fuzz-0000000000", ``, "")
	f.Add("POST", "services/db/master/resign", `{"instance":"d1","fencing_token":1}`, "sess-fuzz-0000000000")
	f.Add("PUT", "services/db/policy", `{"cold_start":{"min_ready":2,"settle_ms":-1}}`, "")
	f.Add("GET", "services/web?index=3&wait=10ms", ``, "")
	f.Add("GET", "sessions?limit=2&start=0123456789abcdef&consistent=true", ``, "")
	f.Add("DELETE", "services/web/instances/w1", ``, "7")
	f.Add("PATCH", "services/%2e%2e/instances/x", `{`, "")
	f.Add("PUT", "kv/app/flag?if_index=0", `on`, "")
	f.Add("PUT", "kv/app/flag?session=sess-fuzz-0000000000", `{"text":"on"}`, "")
	f.Add("GET", "kv/app?prefix=true&limit=2&start=app/b&index=2&wait=10ms", ``, "")
	f.Add("GET", "kv/app/flag?raw=true", ``, "")
	f.Add("DELETE", "kv/app?prefix=true", ``, "")
	f.Add("POST", "kv:txn", `{"compare":[{"key":"app/flag","mod_index":0}],"put":[{"key":"app/flag","text":"x"}],"delete":[{"key":"b"}]}`, "")
	f.Fuzz(func(t *testing.T, method, path, body, header string) {
		ten, ok := c.Server(1).Node().Tenant("acme")
		if !ok {
			t.Skip("the tenant is not running")
		}
		// Quiet the tenant first: live sessions make the leader write
		// entries of its own (renewals, expiries) at any time.
		for _, s := range ten.SM.Sessions() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c.DoErr(ctx, 1, servertest.AdminToken, http.MethodDelete, "/v1/tenants/acme/sessions/"+s.ID, nil, nil) // (c.Do is the F's)
			cancel()
		}
		before := ten.SM.Applied()
		req, err := http.NewRequest(method, "http://"+c.Addr(1)+"/v1/tenants/acme/"+path, bytes.NewReader([]byte(body)))
		if err != nil {
			return // not a request a client can send
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set(api.HeaderSession, header)
		req.Header.Set(api.HeaderSequence, header)
		resp, err := client.Do(req)
		if err != nil {
			if strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset") {
				t.Fatalf("%s %s: the connection ended without an answer (a panic?): %v", method, path, err)
			}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusGatewayTimeout:
			t.Fatalf("%s %s %q: %d %s", method, path, body, resp.StatusCode, b)
		case resp.StatusCode >= 400 && resp.StatusCode < 500:
			if after := ten.SM.Applied(); after != before {
				t.Fatalf("%s %s %q: refused %d %s, yet the applied index moved from %d to %d", method, path, body, resp.StatusCode, b, before, after)
			}
		}
	})
}
