package httpapi_test

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// TestMetaQuotaBoundsCost (found by a red team): max_meta_bytes counted
// len(key)+len(value) and nothing per entry, so a meta of 2,048 two-byte
// keys with empty values was 4,096 bytes by that count — the default
// limit — but cost a node about 20 times what one 4 KB value costs (166 KB
// of heap per instance). Now an entry costs fsm.MetaEntryCost bytes of the
// quota beside its key and value, and there are at most
// fsm.MaxMetaEntries: such a meta is refused, and the most entries the
// quota admits cost about what one value does.
func TestMetaQuotaBoundsCost(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("acme", api.Quotas{})
	const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	many := map[string]string{}
	for _, a := range alpha {
		for _, b := range alpha {
			if len(many) < 2048 {
				many[string(a)+string(b)] = ""
			}
		}
	}
	if r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/services/x/instances/x", api.RegisterRequest{Address: "a:1", Meta: many}); r.Status != http.StatusBadRequest && r.Status != http.StatusConflict {
		t.Fatalf("a meta of 2,048 two-byte keys = %d %s, want refused", r.Status, r.Body)
	}
	one := map[string]string{"m": strings.Repeat("x", tenants.DefaultMaxMetaBytes-1-fsm.MetaEntryCost)}
	// The most entries the quota admits, values filling it.
	many = map[string]string{}
	per := tenants.DefaultMaxMetaBytes/fsm.MaxMetaEntries - fsm.MetaEntryCost - 2
	for i := range fsm.MaxMetaEntries {
		many[alpha[i/62:i/62+1]+alpha[i%62:i%62+1]] = strings.Repeat("v", per)
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	const n = 300
	register := func(svc string, meta map[string]string) {
		var wg sync.WaitGroup
		var next atomic.Int64
		for range 4 {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= n {
						return
					}
					for {
						r := c.Do(1, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/acme/services/%s/instances/i%05d", svc, i), api.RegisterRequest{Address: "a:1", Meta: meta})
						if r.Status < 300 {
							break
						}
						if r.Status != http.StatusTooManyRequests && r.Status != http.StatusServiceUnavailable {
							t.Errorf("register = %d %s", r.Status, r.Body)
							return
						}
					}
				}
			})
		}
		wg.Wait()
	}
	h0 := heap()
	register("one", one)
	h1 := heap()
	register("many", many)
	h2 := heap()
	perOne, perMany := float64(h1-h0)/n, float64(h2-h1)/n
	t.Logf("heap per instance: %.1f KB with one 4 KB meta value, %.1f KB with the most entries admitted (both within %d bytes of max_meta_bytes); "+
		"at the default max_instances (%d): %.0f MB vs %.0f MB per node",
		perOne/1024, perMany/1024, tenants.DefaultMaxMetaBytes, tenants.DefaultMaxInstances,
		perOne*tenants.DefaultMaxInstances/1e6, perMany*tenants.DefaultMaxInstances/1e6)
	if perMany > 3*perOne {
		t.Fatalf("an instance whose meta is %d bytes by max_meta_bytes costs %.1f KB of heap, %.0fx an instance with the same "+
			"max_meta_bytes in one value: the quota does not bound what a tenant's instances cost the node",
			tenants.DefaultMaxMetaBytes, perMany/1024, perMany/perOne)
	}
}
