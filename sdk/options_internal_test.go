package sdk

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
)

func TestEnvDefaults(t *testing.T) {
	clearTLSEnv(t)
	t.Setenv(EnvServers, " http://127.0.0.1:1, localhost:2/ ,,")
	t.Setenv(EnvTenant, "acme")
	t.Setenv(EnvToken, "rft_acme_secret")
	c := defaults()
	if !slices.Equal(c.conn.servers, []string{"http://127.0.0.1:1", "localhost:2"}) || c.conn.tenant != "acme" || c.conn.token != "rft_acme_secret" {
		t.Fatalf("defaults() = %+v", c.conn)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("validate() = %v", err)
	}
	if !slices.Equal(c.conn.ep.addrs, []string{"127.0.0.1:1", "localhost:2"}) || c.conn.ep.tls != nil {
		t.Fatalf("validate() resolved %+v, want plain HTTP to both", c.conn.ep)
	}
	for _, o := range []Option{WithServers("x:1", "y:2"), WithTenant("other"), WithToken("t2")} {
		o(&c)
	}
	if !slices.Equal(c.conn.servers, []string{"x:1", "y:2"}) || c.conn.tenant != "other" || c.conn.token != "t2" || !c.connSet {
		t.Fatalf("options did not override the environment: %+v", c.conn)
	}
}

func clearTLSEnv(t *testing.T) {
	for _, v := range []string{EnvCA, EnvCert, EnvKey, EnvInsecure} {
		t.Setenv(v, "")
	}
}

func TestValidate(t *testing.T) {
	t.Setenv(EnvServers, "")
	t.Setenv(EnvTenant, "")
	t.Setenv(EnvToken, "")
	clearTLSEnv(t)
	tests := []struct {
		opts []Option
		want string
	}{
		{nil, "no servers"},
		{[]Option{WithServers("a:1")}, "no token"},
		{[]Option{WithServers("a:1"), WithToken("t")}, "tenant"},
		{[]Option{WithServers("a:1"), WithToken("t"), WithTenant("Bad Name")}, "tenant"},
		{[]Option{WithServers("127.0.0.1:1"), WithToken("t"), WithTenant("t"), WithTTL(3 * time.Second), WithLease(4 * time.Second)}, "WithLease"},
		{[]Option{WithServers("127.0.0.1:1"), WithToken("t"), WithTenant("t"), WithTTL(time.Millisecond)}, "WithTTL"},
		{[]Option{WithServers("127.0.0.1:1"), WithToken("t"), WithTenant("t"), WithColdStart(-1, 0)}, "WithColdStart"},
		{[]Option{WithServers("a:1"), WithToken("t"), WithTenant("t")}, "WithInsecure"},
		{[]Option{WithServers("a:1"), WithToken("t"), WithTenant("t"), WithInsecure()}, ""},
		{[]Option{WithServers("127.0.0.1:1"), WithToken("t"), WithTenant("t")}, ""},
	}
	for _, tt := range tests {
		c := defaults()
		for _, o := range tt.opts {
			o(&c)
		}
		err := c.validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("validate() = %v, want an error naming %q", err, tt.want)
		}
	}
	c := defaults()
	if err := c.validate(); !errors.Is(err, ErrNoServers) {
		t.Errorf("validate() with no servers = %v, want ErrNoServers", err)
	}
}

func TestNames(t *testing.T) {
	for range 100 {
		id := newSessionID()
		if len(id) != 22 || api.ValidateSessionID("id", id) != nil {
			t.Fatalf("session ID %q is not 22 characters of base64url", id)
		}
		inst := newInstanceID()
		if err := api.ValidateName("id", inst); err != nil {
			t.Fatalf("instance ID %q: %v", inst, err)
		}
	}
	if newSessionID() == newSessionID() || newInstanceID() == newInstanceID() {
		t.Fatal("IDs repeat")
	}
}

func TestDecodeServiceWeight(t *testing.T) {
	r, err := decodeService([]byte(`{"index":3,"instances":[{"id":"a","state":"ready"},{"id":"b","state":"ready","weight":0},{"id":"c","weight":7}]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Instances[0].Weight != api.DefaultWeight || r.Instances[1].Weight != 0 || r.Instances[2].Weight != 7 {
		t.Fatalf("weights %d %d %d, want 100 (missing), 0, 7", r.Instances[0].Weight, r.Instances[1].Weight, r.Instances[2].Weight)
	}
}
