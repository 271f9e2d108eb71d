package httpapi_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// TestPprof: a node started with Pprof serves Go's profiles to the admin
// token only; a node without it serves none.
func TestPprof(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) {
		cfg.Pprof = cfg.NodeID == 1
	}})
	acme := c.CreateTenant("acme", api.Quotas{})
	admin := servertest.AdminToken

	wantErr(t, c.Do(1, "", http.MethodGet, "/debug/pprof/", nil), 401, api.CodeUnauthorized)
	wantErr(t, c.Do(1, acme, http.MethodGet, "/debug/pprof/heap", nil), 403, api.CodeForbidden)
	wantErr(t, c.Do(1, acme, http.MethodGet, "/debug/pprof/profile?seconds=1", nil), 403, api.CodeForbidden)

	if r := c.Do(1, admin, http.MethodGet, "/debug/pprof/", nil); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "goroutine") {
		t.Fatalf("GET /debug/pprof/ = %d %.200s", r.Status, r.Body)
	}
	if r := c.Do(1, admin, http.MethodGet, "/debug/pprof/goroutine?debug=1", nil); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "goroutine profile:") {
		t.Fatalf("GET /debug/pprof/goroutine?debug=1 = %d %.200s", r.Status, r.Body)
	}
	// A CPU profile is gzipped protobuf.
	if r := c.Do(1, admin, http.MethodGet, "/debug/pprof/profile?seconds=1", nil); r.Status != http.StatusOK || !bytes.HasPrefix(r.Body, []byte{0x1f, 0x8b}) {
		t.Fatalf("GET /debug/pprof/profile = %d %.200q", r.Status, r.Body)
	}
	wantErr(t, c.Do(1, admin, http.MethodGet, "/debug/pprof/nosuch", nil), 404, api.CodeNotFound)

	wantErr(t, c.Do(2, admin, http.MethodGet, "/debug/pprof/", nil), 404, api.CodeNotFound)
	wantErr(t, c.Do(2, admin, http.MethodGet, "/debug/pprof/profile?seconds=1", nil), 404, api.CodeNotFound)
}
