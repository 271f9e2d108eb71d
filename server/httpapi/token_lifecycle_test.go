package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// TestTokenLifecycle (issue 24, item 6): a rotation's answer and the
// tenant's GET show when the previous token stops working; a retried
// rotation with other parameters is refused (409), not ignored; and the
// previous token alone can be revoked once the clients moved to the new
// one (the new one keeps working on every node).
func TestTokenLifecycle(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	old := c.CreateTenant("acme", api.Quotas{})
	read := func(node int, tok string) int {
		return c.Do(node, tok, http.MethodGet, "/v1/tenants/acme/services", nil).Status
	}
	secret := tenants.NewSecret()
	hour := int64(time.Hour / time.Millisecond)
	before := time.Now()
	var rot api.Tenant
	r := c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/tenants/acme/token", api.RotateTokenRequest{Secret: secret, PreviousValidMs: &hour})
	r.JSON(t, &rot)
	until := rot.PreviousTokenValidUntil
	if r.Status != http.StatusOK || until == nil || until.Before(before.Add(time.Hour-time.Second)) || until.After(time.Now().Add(time.Hour+time.Second)) {
		t.Fatalf("rotate = %d %s, want previous_token_valid_until an hour from now", r.Status, r.Body)
	}
	var shown api.Tenant
	c.Do(2, servertest.AdminToken, http.MethodGet, "/v1/tenants/acme", nil).JSON(t, &shown)
	if shown.PreviousTokenValidUntil == nil || !shown.PreviousTokenValidUntil.Equal(*until) {
		t.Fatalf("GET tenant shows the previous token until %v, want %v", shown.PreviousTokenValidUntil, until)
	}

	// A retry with other parameters: refused, nothing changed.
	zero := int64(0)
	r = c.Do(2, servertest.AdminToken, http.MethodPost, "/v1/tenants/acme/token", api.RotateTokenRequest{Secret: secret, PreviousValidMs: &zero})
	if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "tenant acme") {
		t.Fatalf("a retried rotation with previous_valid_ms 0 = %d %s, want 409 naming acme", r.Status, r.Body)
	}
	if s := read(3, old); s != http.StatusOK {
		t.Fatalf("the refused retry revoked the previous token: %d", s)
	}
	// The same retry: a no-op.
	if r := c.Do(3, servertest.AdminToken, http.MethodPost, "/v1/tenants/acme/token", api.RotateTokenRequest{Secret: secret, PreviousValidMs: &hour}); r.Status != http.StatusOK {
		t.Fatalf("the same retried rotation = %d %s", r.Status, r.Body)
	}

	// Revoke the previous token only.
	r = c.Do(3, servertest.AdminToken, http.MethodDelete, "/v1/tenants/acme/token/previous", nil)
	var revoked api.Tenant
	r.JSON(t, &revoked)
	if r.Status != http.StatusOK || revoked.PreviousTokenValidUntil != nil {
		t.Fatalf("revoke previous = %d %s", r.Status, r.Body)
	}
	for node := 1; node <= 3; node++ {
		if s := read(node, old); s != http.StatusUnauthorized {
			t.Fatalf("node %d accepts the revoked previous token: %d", node, s)
		}
		if s := read(node, rot.Token); s != http.StatusOK {
			t.Fatalf("node %d refuses the current token after revoke-previous: %d", node, s)
		}
	}
	if r := c.Do(1, servertest.AdminToken, http.MethodDelete, "/v1/tenants/acme/token/previous", nil); r.Status != http.StatusOK {
		t.Fatalf("revoke previous again = %d %s", r.Status, r.Body)
	}
	if r := c.Do(1, rot.Token, http.MethodDelete, "/v1/tenants/acme/token/previous", nil); r.Status != http.StatusForbidden {
		t.Fatalf("revoke previous with the tenant's token = %d, want 403", r.Status)
	}
	if r := c.Do(1, servertest.AdminToken, http.MethodDelete, "/v1/tenants/nosuch/token/previous", nil); r.Status != http.StatusNotFound {
		t.Fatalf("revoke previous of a missing tenant = %d, want 404", r.Status)
	}
}
