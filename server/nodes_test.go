package server_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server"
	"github.com/rafting/rafting/server/servertest"
)

// TestClusterNodes: GET /v1/cluster shows, for every node, its build, its
// health, its lag, when it last answered and how many shards it leads;
// a stopped node shows unreachable, and back, ready again. /metrics has
// the build, the peers' reachability and last contact, the cluster's
// size, each shard's leader, term and leader changes.
func TestClusterNodes(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	c.CreateTenant("acme", api.Quotas{})
	view := func(id int) api.Cluster {
		var cl api.Cluster
		r := c.Do(id, servertest.AdminToken, http.MethodGet, "/v1/cluster", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET /v1/cluster on node %d = %d %s", id, r.Status, r.Body)
		}
		r.JSON(t, &cl)
		return cl
	}
	want := server.Build()
	all := func(id int, health string) func() bool {
		return func() bool {
			cl := view(id)
			if cl.Build == nil || *cl.Build != want || !cl.Ready {
				return false
			}
			leads := 0
			for _, n := range cl.Nodes {
				if n.Health != health && n.ID != uint64(id) || n.Build == nil || *n.Build != want || n.LastContactMs < 0 || n.LastContactMs > 5000 {
					return false
				}
				leads += n.Leaders
			}
			return len(cl.Nodes) == 3 && leads == len(cl.Shards)
		}
	}
	servertest.Eventually(t, 20*time.Second, "every node's build and health in node 1's view", all(1, api.NodeReady))
	if want.StateVersion != server.StateVersion || want.Version == "" || want.GoVersion == "" {
		t.Fatalf("Build() = %+v", want)
	}

	c.StopNode(3)
	servertest.Eventually(t, 20*time.Second, "node 3 unreachable in node 1's view", func() bool {
		for _, n := range view(1).Nodes {
			if n.ID == 3 {
				return n.Health == api.NodeUnreachable && n.LastContactMs >= 0
			}
		}
		return false
	})
	metrics := string(c.Do(1, servertest.AdminToken, http.MethodGet, "/metrics", nil).Body)
	for _, re := range []string{
		`rafting_build_info\{commit="[^"]*",go_version="go[^"]+",state_version="\d+",version="` + regexp.QuoteMeta(want.Version) + `"\} 1`,
		`rafting_peer_reachable\{node="3"\} 0`,
		`rafting_peer_reachable\{node="2"\} 1`,
		`rafting_peer_last_contact_seconds\{node="3"\} [0-9.e+-]+`,
		`rafting_cluster_nodes 3`,
		`rafting_shard_has_leader\{shard="1",tenant=""\} 1`,
		`rafting_shard_has_leader\{shard="\d+",tenant="acme"\} 1`,
		`rafting_shard_term\{shard="\d+",tenant="acme"\} [1-9]\d*`,
		`rafting_shard_leader_changes_total\{shard="1",tenant=""\} [1-9]\d*`,
		`rafting_node_leaderships \d+`,
	} {
		if !regexp.MustCompile(`(?m)^` + re + `$`).MatchString(metrics) {
			t.Errorf("/metrics has no line matching %s; it has:\n%s", re, grep(metrics, "rafting_build|rafting_peer|rafting_cluster|rafting_shard_has|rafting_shard_term|rafting_shard_leader_changes|rafting_node_lead"))
		}
	}
	c.StartNode(3)
	servertest.Eventually(t, 30*time.Second, "node 3 back and ready in node 1's view", all(1, api.NodeReady))
}

// grep is the lines of s that match re.
func grep(s, re string) string {
	var out []string
	rx := regexp.MustCompile(re)
	for _, l := range strings.Split(s, "\n") {
		if rx.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestClusterLocalView: GET /v1/cluster?local=true lists only the shards
// the answering node runs a replica of, and the meta shard — what the
// nodes' looks at each other ask for, so that a look costs what the
// looked-at node holds, not every tenant of the cluster. A bad value is a
// 400 naming it.
func TestClusterLocalView(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 4})
	for _, name := range []string{"a", "b", "c", "d", "e", "f"} {
		c.CreateTenant(name, api.Quotas{})
	}
	for id := 1; id <= 4; id++ {
		var whole, local api.Cluster
		c.Do(id, servertest.AdminToken, http.MethodGet, "/v1/cluster", nil).JSON(t, &whole)
		c.Do(id, servertest.AdminToken, http.MethodGet, "/v1/cluster?local=true", nil).JSON(t, &local)
		held := map[string]bool{}
		tenants := 0
		for _, sh := range whole.Shards {
			if sh.Tenant == "" {
				continue
			}
			tenants++
			for _, node := range sh.Replicas {
				held[sh.Tenant] = held[sh.Tenant] || node == uint64(id)
			}
		}
		if tenants != 6 {
			t.Fatalf("node %d lists %d tenant shards, want 6", id, tenants)
		}
		metaShard := false
		var got []string
		for _, sh := range local.Shards {
			if sh.Tenant == "" {
				metaShard = true
				continue
			}
			got = append(got, sh.Tenant)
			if !held[sh.Tenant] {
				t.Errorf("node %d's local view lists %s, which it holds no replica of", id, sh.Tenant)
			}
		}
		if want := len(held) - countFalse(held); len(got) != want || !metaShard {
			t.Errorf("node %d's local view: %v and the meta shard %v; want its %d tenants and the meta shard", id, got, metaShard, want)
		}
		if len(local.Nodes) != 4 {
			t.Errorf("node %d's local view lists %d nodes, want every node", id, len(local.Nodes))
		}
	}
	if r := c.Do(1, servertest.AdminToken, http.MethodGet, "/v1/cluster?local=maybe", nil); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "local") {
		t.Fatalf("?local=maybe = %d %s, want 400 naming local", r.Status, r.Body)
	}
}

func countFalse(m map[string]bool) int {
	n := 0
	for _, v := range m {
		if !v {
			n++
		}
	}
	return n
}
