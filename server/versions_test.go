package server_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// TestStateVersions: a cluster whose every node speaks this build's state
// version agrees on it, in the meta shard and in every tenant shard, a
// tenant created before the agreement included; a node whose build speaks
// an older version (its join request says so, or says nothing) is then
// refused, since it would apply entries differently.
func TestStateVersions(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	c.CreateTenant("early", api.Quotas{})
	deadline := time.Now().Add(30 * time.Second)
	agreed := func() bool {
		for id := 1; id <= 3; id++ {
			n := c.Server(id).Node()
			if n.Meta().Version() != fsm.Version {
				return false
			}
			tn, ok := n.Tenant("early")
			if !ok || tn.SM.Version() != fsm.Version {
				return false
			}
		}
		return true
	}
	for !agreed() {
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not agree on state version %d", fsm.Version)
		}
		time.Sleep(50 * time.Millisecond)
	}
	join := api.JoinRequest{ID: 9, RaftAddress: "127.0.0.1:1", APIAddress: "127.0.0.1:2"}
	for _, speaks := range []string{"", "1"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		h := http.Header{}
		if speaks != "" {
			h.Set(api.HeaderStateVersion, speaks)
		}
		r, err := c.DoErr(ctx, 1, servertest.AdminToken, http.MethodPost, "/v1/cluster/nodes", join, h)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusConflict || !strings.Contains(string(r.Body), "state version") {
			t.Fatalf("join of a node speaking %q = %d %s, want 409 naming the state version", speaks, r.Status, r.Body)
		}
	}
	if r := c.Do(2, "", http.MethodGet, "/healthz", nil); !strings.Contains(string(r.Body), `"state_version":`+strconv.Itoa(fsm.Version)) {
		t.Fatalf("healthz = %s, want the state version", r.Body)
	}
}

// TestTooOldServesNothing: a node whose build is too old for the state
// version the cluster agreed on (its replicas refused the set_version entry
// that raised it) no longer applies entries as its peers do, so it serves no
// tenant: a read with a valid token is 503, never a 200 from a state it no
// longer follows, and a tenant token it does not know is 503 too, never 401
// (it cannot tell a token its build refused from a wrong one, and a client
// takes 401 as final).
func TestTooOldServesNothing(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	token := c.CreateTenant("acme", api.Quotas{})
	if r := c.Do(1, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/w1", api.RegisterRequest{Address: "a:1"}); r.Status != http.StatusCreated {
		t.Fatalf("register = %d %s", r.Status, r.Body)
	}
	// A newer build's version, as a cluster that moved on would agree on:
	// every node here is that old.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := c.Server(1).Node().ProposeMeta(ctx, fsm.Encode(fsm.OpSetMetaVersion, fsm.SetVersion{Version: fsm.Version + 1}))
	cancel()
	if err == nil {
		t.Fatal("a set_version above this build's applied; want it refused")
	}
	servertest.Eventually(t, 10*time.Second, "every node knows its build is too old", func() bool {
		for id := 1; id <= 3; id++ {
			if c.Server(id).Node().TooOld() == "" {
				return false
			}
		}
		return true
	})
	unknown := tenants.FormatToken("acme", tenants.NewSecret()).Reveal()
	for id := 1; id <= 3; id++ {
		if r := c.Do(id, "", http.MethodGet, "/readyz", nil); r.Status != http.StatusServiceUnavailable {
			t.Errorf("node %d: readyz = %d, want 503", id, r.Status)
		}
		for _, path := range []string{"/v1/tenants/acme/services/web", "/v1/tenants/acme/kv?prefix=true"} {
			if r := c.Do(id, token, http.MethodGet, path, nil); r.Status != http.StatusServiceUnavailable {
				t.Errorf("node %d: GET %s with a valid token = %d %s, want 503", id, path, r.Status, r.Body)
			}
		}
		if r := c.Do(id, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/w2", api.RegisterRequest{Address: "a:2"}); r.Status != http.StatusServiceUnavailable {
			t.Errorf("node %d: a write = %d %s, want 503", id, r.Status, r.Body)
		}
		if r := c.Do(id, unknown, http.MethodGet, "/v1/tenants/acme/services/web", nil); r.Status != http.StatusServiceUnavailable {
			t.Errorf("node %d: a tenant token it does not know = %d %s, want 503 (never 401)", id, r.Status, r.Body)
		}
	}
}
