package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

func register(t *testing.T, c *servertest.Cluster, node int, token, tenant, svc, id string, body api.RegisterRequest) api.RegisterResponse {
	t.Helper()
	path := fmt.Sprintf("/v1/tenants/%s/services/%s/instances/%s", tenant, svc, id)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := c.Do(node, token, http.MethodPut, path, body)
		if r.Status == http.StatusCreated || r.Status == http.StatusOK {
			var out api.RegisterResponse
			r.JSON(t, &out)
			if got := r.Header.Get(api.HeaderIndex); got != strconv.FormatUint(out.Index, 10) {
				t.Fatalf("register: %s %q, body index %d", api.HeaderIndex, got, out.Index)
			}
			return out
		}
		if e := r.Err(); e == nil || !e.Code.Retryable() || time.Now().After(deadline) {
			t.Fatalf("register %s on node %d: %d %s", id, node, r.Status, r.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterTenantShardEverywhere: a tenant's shard runs on all three
// nodes; a registration through node 1 wakes a blocking query on node 3;
// with the shard leader's node stopped, writes succeed on the other two;
// restarted, it catches up.
func TestClusterTenantShardEverywhere(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	for id := 1; id <= 3; id++ {
		tr, ok := c.Server(id).Node().Tenant("acme")
		if !ok {
			t.Fatalf("node %d does not run acme's shard", id)
		}
		if tr.ReplicaID == 0 || tr.Epoch != 1 {
			t.Fatalf("node %d: replica %d epoch %d", id, tr.ReplicaID, tr.Epoch)
		}
	}

	// A blocking query on node 3 returns when node 1 registers.
	// (Node 3's replica may still be catching up with the new shard: a
	// consistent read then answers 503, retried.)
	var before api.ServiceResponse
	servertest.Eventually(t, 10*time.Second, "a consistent read on node 3", func() bool {
		first := c.Do(3, tok, http.MethodGet, "/v1/tenants/acme/services/web?consistent=true", nil)
		if first.Status != http.StatusOK {
			return false
		}
		first.JSON(t, &before)
		return before.Index > 0
	})
	got := make(chan *servertest.Response, 1)
	go func() {
		r, err := c.DoErr(context.Background(), 3, tok, http.MethodGet,
			fmt.Sprintf("/v1/tenants/acme/services/web?index=%d&wait=20s", before.Index), nil, nil)
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	time.Sleep(50 * time.Millisecond) // let the query block
	reg := register(t, c, 1, tok, "acme", "web", "w1", api.RegisterRequest{Address: "10.0.0.1:80"})
	select {
	case r := <-got:
		var s api.ServiceResponse
		r.JSON(t, &s)
		if len(s.Instances) != 1 || s.Instances[0].ID != "w1" || s.Index < reg.Index {
			t.Fatalf("blocking query answered %s, want w1 at index >= %d", r.Body, reg.Index)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("blocking query on node 3 did not return after a registration on node 1")
	}

	// Stop the leader's node: writes go on through the other two.
	leader := c.WaitTenantLeader("acme")
	c.StopNode(leader)
	others := []int{}
	for id := 1; id <= 3; id++ {
		if id != leader {
			others = append(others, id)
		}
	}
	for i, id := range others {
		register(t, c, id, tok, "acme", "web", fmt.Sprintf("w%d", i+2), api.RegisterRequest{Address: fmt.Sprintf("10.0.0.%d:80", i+2)})
	}
	last := register(t, c, others[0], tok, "acme", "web", "w1", api.RegisterRequest{Address: "10.0.0.1:81"})

	// Restart: it catches up.
	c.StartNode(leader)
	c.WaitReady()
	servertest.Eventually(t, 20*time.Second, "the restarted node to catch up", func() bool {
		tr, ok := c.Server(leader).Node().Tenant("acme")
		return ok && tr.SM.Applied() >= last.Index && len(tr.SM.Service("web").Instances) == 3
	})
	r := c.Do(leader, tok, http.MethodGet, fmt.Sprintf("/v1/tenants/acme/services/web?index=%d&wait=5s", last.Index-1), nil)
	var s api.ServiceResponse
	r.JSON(t, &s)
	if len(s.Instances) != 3 || s.Instances[0].Address != "10.0.0.1:81" {
		t.Fatalf("restarted node answers %s", r.Body)
	}
}

// TestStaleReplica: a blocking query never answers below the asked index;
// a node that cannot reach it answers 503 stale_replica.
func TestStaleReplica(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	r := c.Do(2, tok, http.MethodGet, "/v1/tenants/acme/services/web?index=999999&wait=300ms", nil)
	if e := r.Err(); e == nil || e.Code != api.CodeStaleReplica || r.Header.Get("Retry-After") == "" {
		t.Fatalf("query above the applied index = %d %s, want 503 stale_replica with Retry-After", r.Status, r.Body)
	}
}

// TestQuiescedTenantFailover: an idle tenant's shard quiesces (stops
// ticking); when its leader's node crashes meanwhile, the next write wakes
// the shard, which elects a new leader and applies it.
func TestQuiescedTenantFailover(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	register(t, c, 1, tok, "acme", "web", "w1", api.RegisterRequest{Address: "a:1"})
	leader := c.WaitTenantLeader("acme")
	// Quiesce after 10 election timeouts (10 × 10 ticks × 20 ms) of silence.
	time.Sleep(2500 * time.Millisecond)
	c.AbortNode(leader)
	start := time.Now()
	reg := register(t, c, leader%3+1, tok, "acme", "web", "w2", api.RegisterRequest{Address: "a:2"})
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a write to a quiesced tenant whose leader crashed took %v", took)
	}
	if reg.Index == 0 {
		t.Fatal("no index")
	}
}

// TestCutOffReplica: a blocking query parked on a replica cut off from the
// others (not behind: it has applied the asked index) is not answered
// "nothing changed" when its wait ends: the replica cannot confirm it is
// current, and answers 503 stale_replica.
func TestCutOffReplica(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	reg := register(t, c, 1, tok, "acme", "web", "w1", api.RegisterRequest{Address: "10.0.0.1:80"})
	servertest.Eventually(t, 10*time.Second, "node 3 to apply the registration", func() bool {
		tr, ok := c.Server(3).Node().Tenant("acme")
		return ok && tr.SM.Applied() >= reg.Index
	})
	path := fmt.Sprintf("/v1/tenants/acme/services/web?index=%d&wait=1s", reg.Index)
	if r := c.Do(3, tok, http.MethodGet, path, nil); r.Status != http.StatusOK {
		t.Fatalf("a wait that ends on a connected replica = %d %s, want 200", r.Status, r.Body)
	}
	c.AbortNode(1)
	c.AbortNode(2)
	r := c.Do(3, tok, http.MethodGet, path, nil)
	if e := r.Err(); e == nil || e.Code != api.CodeStaleReplica {
		t.Fatalf("a wait that ends on a cut-off replica = %d %s, want 503 stale_replica", r.Status, r.Body)
	}
}

// TestRestartedReplicaReadsCaughtUp: a node restarting starts its tenant
// replicas, which recover their snapshot and log in the background; a read
// it answers meanwhile must not show a state older than what it had
// applied before it stopped (an empty service at index 0, say). It answers
// 503 until the replica caught up once.
func TestRestartedReplicaReadsCaughtUp(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	var last api.RegisterResponse
	for i := range 30 {
		last = register(t, c, 1, tok, "acme", "web", fmt.Sprintf("w%d", i), api.RegisterRequest{Address: fmt.Sprintf("10.0.0.%d:80", i)})
	}
	servertest.Eventually(t, 10*time.Second, "node 3 to apply every registration", func() bool {
		tr, ok := c.Server(3).Node().Tenant("acme")
		return ok && tr.SM.Applied() >= last.Index
	})
	c.StopNode(3)
	go c.StartNode(3)
	addr := "http://" + c.Addr(3) + "/v1/tenants/acme/services/web"
	deadline := time.Now().Add(20 * time.Second)
	for answered := false; !answered; {
		if time.Now().After(deadline) {
			t.Fatal("the restarted node never answered")
		}
		req, _ := http.NewRequest(http.MethodGet, addr, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := c.Client.Do(req)
		if err != nil {
			time.Sleep(time.Millisecond)
			continue
		}
		var s api.ServiceResponse
		if resp.StatusCode == http.StatusOK {
			json.NewDecoder(resp.Body).Decode(&s)
			answered = true
			if s.Index < last.Index || len(s.Instances) != 30 {
				t.Fatalf("a restarting replica answered 200 at index %d with %d instances; it had applied %d with 30", s.Index, len(s.Instances), last.Index)
			}
		}
		resp.Body.Close()
	}
}
