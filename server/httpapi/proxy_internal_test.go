package httpapi

import (
	"strings"
	"testing"
)

// FuzzTenantPath: the routing's path split never panics, and what it
// splits puts the path back together: a tenant name without a slash, and
// the rest after it.
func FuzzTenantPath(f *testing.F) {
	for _, p := range []string{"/v1/tenants/acme/services/web", "/v1/tenants/acme", "/v1/tenants/acme/", "/v1/tenants/",
		"/v1/tenants", "/v1/tenants//x", "/v1/tenants/acme/kv:txn", "/v1/cluster", ""} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, rest, ok := tenantPath(p)
		if !ok {
			return
		}
		back := "/v1/tenants/" + name
		if rest != "" {
			back += "/" + rest
		}
		if name == "" || strings.Contains(name, "/") || back != p {
			t.Fatalf("tenantPath(%q) = %q, %q: does not put it back", p, name, rest)
		}
	})
}

func TestTenantPath(t *testing.T) {
	tests := []struct {
		p, name, rest string
		ok            bool
	}{
		{"/v1/tenants/acme/services/web", "acme", "services/web", true},
		{"/v1/tenants/acme", "acme", "", true},
		{"/v1/tenants/acme/kv:txn", "acme", "kv:txn", true},
		{"/v1/tenants/acme/", "", "", false},
		{"/v1/tenants/", "", "", false},
		{"/v1/tenants", "", "", false},
		{"/v1/cluster", "", "", false},
	}
	for _, tt := range tests {
		if name, rest, ok := tenantPath(tt.p); name != tt.name || rest != tt.rest || ok != tt.ok {
			t.Errorf("tenantPath(%q) = %q, %q, %v, want %q, %q, %v", tt.p, name, rest, ok, tt.name, tt.rest, tt.ok)
		}
	}
}
