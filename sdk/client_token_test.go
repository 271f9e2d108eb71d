package sdk

import (
	"errors"
	"strings"
	"testing"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/tenants"
)

// TestTokenTenantMatchesTenants: the SDK's own parse of a token (it may
// not import tenants) agrees with tenants.ParseToken, the servers'.
func TestTokenTenantMatchesTenants(t *testing.T) {
	if tokenPrefix != tenants.TokenPrefix || minSecret != tenants.MinSecretLen || maxSecret != tenants.MaxSecretLen {
		t.Fatalf("token format (%q, %d, %d) differs from tenants' (%q, %d, %d)",
			tokenPrefix, minSecret, maxSecret, tenants.TokenPrefix, tenants.MinSecretLen, tenants.MaxSecretLen)
	}
	secret := tenants.NewSecret()
	tests := []string{
		"", "rft_", "rft_acme", "rft_acme_", "rft_acme_" + secret, "rft_acme_" + secret + "_x", "rft_a-b-0_" + secret,
		"rft_Acme_" + secret, "rft_ac.me_" + secret, "rft__" + secret, "rft_acme_" + secret[:21], "rft_acme_" + secret[:22],
		"rft_acme_" + strings.Repeat("a", 128), "rft_acme_" + strings.Repeat("a", 129), "rft_acme_" + secret[:30] + "+",
		"rft_acme_" + secret[:30] + "=", "rfa_acme_" + secret, "RFT_acme_" + secret, servertestAdminLike,
		"rft_" + strings.Repeat("a", 63) + "_" + secret, "rft_" + strings.Repeat("a", 64) + "_" + secret,
	}
	for _, tok := range tests {
		got, ok := tokenTenant(tok)
		want, wantOK := tenants.ParseToken(tok)
		if got != want || ok != wantOK {
			t.Errorf("tokenTenant(%.20q…) = %q, %v; tenants.ParseToken = %q, %v", tok, got, ok, want, wantOK)
		}
	}
}

const servertestAdminLike = "rfa_test-admin-token-0123456789abcdef"

// TestTenantFromToken: without a tenant the token's is taken; a tenant
// the token contradicts is refused, naming both and where each came from;
// a token that names none needs a tenant.
func TestTenantFromToken(t *testing.T) {
	clearTLSEnv(t)
	t.Setenv(EnvServers, "127.0.0.1:1")
	t.Setenv(EnvTenant, "")
	t.Setenv(EnvToken, "")
	acme := "rft_acme_" + tenants.NewSecret()
	tests := []struct {
		name   string
		env    map[string]string
		opts   []Option
		tenant string   // want, when no error
		errHas []string // want an error with all of these
	}{
		{"env token alone", map[string]string{EnvToken: acme}, nil, "acme", nil},
		{"option token alone", nil, []Option{WithToken(acme)}, "acme", nil},
		{"same tenant", map[string]string{EnvToken: acme, EnvTenant: "acme"}, nil, "acme", nil},
		{"env mismatch", map[string]string{EnvToken: acme, EnvTenant: "beta"}, nil, "",
			[]string{`tenant "beta" from RAFTING_TENANT`, `token in RAFTING_TOKEN is tenant "acme"'s`}},
		{"option mismatch", map[string]string{EnvToken: acme}, []Option{WithTenant("beta")}, "",
			[]string{`tenant "beta" from WithTenant`, `token in RAFTING_TOKEN is tenant "acme"'s`}},
		{"option token mismatch", map[string]string{EnvTenant: "beta"}, []Option{WithToken(acme)}, "",
			[]string{`tenant "beta" from RAFTING_TENANT`, `token in WithToken is tenant "acme"'s`}},
		{"admin token names none", nil, []Option{WithToken(servertestAdminLike)}, "",
			[]string{"no tenant", "RAFTING_TENANT", "WithTenant", "token in WithToken names none"}},
		{"admin token with a tenant", nil, []Option{WithToken(servertestAdminLike), WithTenant("beta")}, "beta", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c := defaults()
			for _, o := range tt.opts {
				o(&c)
			}
			err := c.validate()
			if tt.errHas == nil {
				if err != nil || c.conn.tenant != tt.tenant {
					t.Fatalf("validate() = %v, tenant %q; want tenant %q", err, c.conn.tenant, tt.tenant)
				}
				return
			}
			if err == nil {
				t.Fatalf("validate() = nil, tenant %q; want an error naming %q", c.conn.tenant, tt.errHas)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("validate() = %v; want it to say %q", err, s)
				}
			}
			if strings.Contains(tt.name, "mismatch") && !errors.Is(err, ErrNotFound) {
				t.Errorf("a tenant mismatch = %v, want ErrNotFound (as the servers would answer)", err)
			}
		})
	}
}

// TestUnauthorizedNamesTheSetting: a 401 names the setting the token came
// from and the tenant, and still matches ErrUnauthorized.
func TestUnauthorizedNamesTheSetting(t *testing.T) {
	e := &api.Error{Code: api.CodeUnauthorized, Message: "a valid token is required"}
	for _, from := range []string{EnvToken, "WithToken"} {
		c := connConfig{tenant: "acme", tokenFrom: from}
		err := c.unauthorized(e)
		var ae *api.Error
		if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &ae) || ae != e {
			t.Errorf("unauthorized(401) from %s = %v, want it to match ErrUnauthorized and unwrap to the answer", from, err)
		}
		if msg := err.Error(); !strings.Contains(msg, from) || !strings.Contains(msg, "tenant acme") {
			t.Errorf("unauthorized(401) = %q, want it to name %s and tenant acme", msg, from)
		}
	}
}
