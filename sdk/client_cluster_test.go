package sdk_test

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestClientSettings runs the connection settings against a real cluster:
// the tenant taken from the token, and a 401 that names what to fix.
func TestClientSettings(t *testing.T) {
	c := sdktest.Start(t)
	servers := sdk.WithServers(c.Servers.Addrs()...)
	var b [32]byte
	rand.Read(b[:])
	wrong := "rft_" + c.Tenant + "_" + base64.RawURLEncoding.EncodeToString(b[:]) // a real tenant, a wrong secret
	clearEnv := func(t *testing.T) {
		for _, v := range []string{sdk.EnvServers, sdk.EnvTenant, sdk.EnvToken, sdk.EnvCA, sdk.EnvCert, sdk.EnvKey, sdk.EnvInsecure} {
			t.Setenv(v, "")
		}
	}

	t.Run("TenantFromToken", func(t *testing.T) {
		clearEnv(t)
		t.Setenv(sdk.EnvToken, c.Token)
		cl, err := sdk.Connect(ctxT(t, 30*time.Second), servers)
		if err != nil {
			t.Fatalf("Connect with RAFTING_TOKEN alone = %v", err)
		}
		defer cl.Close()
		if cl.Tenant() != c.Tenant {
			t.Fatalf("Tenant() = %q, want %q (the token's)", cl.Tenant(), c.Tenant)
		}
		if _, err := cl.Service(ctxT(t, 10*time.Second), "web"); err != nil {
			t.Fatalf("Service() = %v", err)
		}
	})

	tests := []struct {
		name    string
		env     map[string]string
		opts    []sdk.Option
		setting string
	}{
		{"UnauthorizedEnv", map[string]string{sdk.EnvToken: wrong}, []sdk.Option{servers}, sdk.EnvToken},
		{"UnauthorizedEnvWithTenant", map[string]string{sdk.EnvToken: wrong, sdk.EnvTenant: c.Tenant}, []sdk.Option{servers}, sdk.EnvToken},
		{"UnauthorizedOption", nil, c.TenantOptions(c.Tenant, wrong), "WithToken"},
		{"UnauthorizedOptionNoTenant", nil, []sdk.Option{servers, sdk.WithToken(wrong)}, "WithToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cl, err := sdk.Connect(ctxT(t, 30*time.Second), tt.opts...)
			if err == nil {
				cl.Close()
				t.Fatal("Connect with a wrong secret succeeded")
			}
			if !errors.Is(err, sdk.ErrUnauthorized) {
				t.Fatalf("Connect with a wrong secret = %v, want ErrUnauthorized", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.setting) || !strings.Contains(msg, "tenant "+c.Tenant) {
				t.Fatalf("Connect with a wrong secret = %q, want it to name %s and tenant %s", msg, tt.setting, c.Tenant)
			}
			if strings.Contains(err.Error(), wrong[len(wrong)-20:]) {
				t.Fatalf("the error %q shows the token's secret", err)
			}
			t.Log(err)
		})
	}

	// Sync: what was committed before it is in the cache when it returns,
	// every time, whatever the watch has told so far.
	t.Run("Sync", func(t *testing.T) {
		cl := c.Connect(t)
		svc, err := cl.Service(ctxT(t, 10*time.Second), "sync")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 30 {
			m := c.Join(t, sdk.Instance{Service: "sync", ID: fmt.Sprintf("s%d", i), Address: "127.0.0.1:1"}, sdk.WithDrainDelay(0))
			if err := svc.Sync(ctxT(t, 10*time.Second)); err != nil {
				t.Fatalf("Sync() = %v", err)
			}
			if !slices.ContainsFunc(svc.Snapshot().Ready(), func(in api.Instance) bool { return in.ID == m.ID() }) {
				t.Fatalf("after Sync the cache lacks %s, whose Join returned before", m.ID())
			}
		}
	})
}
