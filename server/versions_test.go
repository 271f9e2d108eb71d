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
