package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/httpapi"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// placed is where node id's meta replica places each tenant: tenant ->
// the nodes of its voting replicas, with the moves under way and each
// node's replica count.
func placed(c *servertest.Cluster, id int) (map[string][]uint64, int, map[uint64]int) {
	shards := map[string][]uint64{}
	moves := 0
	for _, rec := range c.Server(id).Node().Meta().Tenants() {
		shards[rec.Name] = rec.VotingOn()
		if rec.Move != nil || len(rec.VotingOn()) != len(rec.Replicas) {
			moves++
		}
	}
	return shards, moves, c.Server(id).Node().Meta().Load()
}

// settled reports whether node id sees every tenant on exactly r voting
// replicas, no move under way, the nodes' loads within one of each other
// (over nodes), and every running node running exactly the replicas
// placed on it.
func settled(c *servertest.Cluster, id, r int, nodes []uint64) bool {
	shards, moves, load := placed(c, id)
	if moves > 0 {
		return false
	}
	for _, on := range shards {
		if len(on) != r {
			return false
		}
	}
	lo, hi := 1<<30, 0
	for _, n := range nodes {
		lo, hi = min(lo, load[n]), max(hi, load[n])
	}
	if hi-lo > 1 {
		return false
	}
	for _, n := range nodes {
		s := c.Server(int(n))
		if s == nil {
			continue
		}
		var runs []string
		for _, t := range s.Node().Tenants() {
			runs = append(runs, t.Name)
		}
		var want []string
		for name, on := range shards {
			if slices.Contains(on, n) {
				want = append(want, name)
			}
		}
		slices.Sort(want)
		if !slices.Equal(runs, want) {
			return false
		}
	}
	return true
}

// readKey checks that tenant name's key k, written with its name, reads
// back through node n (a replica just moved there answers 503 until it
// caught up: waited for).
func readKey(t *testing.T, c *servertest.Cluster, n int, name, tok string) {
	t.Helper()
	var r *servertest.Response
	servertest.Eventually(t, 10*time.Second, name+"'s key on node "+fmt.Sprint(n), func() bool {
		r = c.Do(n, tok, http.MethodGet, "/v1/tenants/"+name+"/kv/k?consistent=true", nil)
		return r.Status != http.StatusServiceUnavailable
	})
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"text":"`+name+`"`) {
		t.Fatalf("%s's key on node %d = %d %s", name, n, r.Status, r.Body)
	}
}

func ids(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

// TestPlacementFiveNodes: on five nodes every tenant is on exactly three,
// spread within one replica; each node runs only what is placed on it. A
// REST request on a node without the tenant succeeds through the proxy,
// one hop (a proxied request is never proxied again); the client stream
// there answers `moved` with the tenant's nodes; GET /v1/servers with the
// tenant's token lists them; GET /v1/cluster on any node shows every
// shard's leader and each node's replica and leader counts.
func TestPlacementFiveNodes(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 5, RTT: 25 * time.Millisecond})
	tokens := map[string]string{}
	for i := range 10 {
		name := fmt.Sprintf("t%d", i)
		tokens[name] = c.CreateTenant(name, api.Quotas{})
	}
	servertest.Eventually(t, 30*time.Second, "every tenant on 3 of 5 nodes, within one", func() bool { return settled(c, 1, 3, ids(5)) })
	if r := c.Server(1).Node().Meta().Replicas(); r != fsm.DefaultReplicas {
		t.Fatalf("R = %d", r)
	}

	rec, _ := c.Server(1).Node().Meta().Tenant("t0")
	var without int
	for n := 1; n <= 5; n++ {
		if !slices.Contains(rec.VotingOn(), uint64(n)) {
			without = n
		}
	}
	tok := tokens["t0"]
	r := c.Do(without, tok, http.MethodPut, "/v1/tenants/t0/services/web/instances/w1", map[string]any{"address": "10.0.0.1:80"})
	if r.Status != http.StatusOK && r.Status != http.StatusCreated {
		t.Fatalf("register through node %d (no replica) = %d %s", without, r.Status, r.Body)
	}
	var svc api.ServiceResponse
	r = c.Do(without, tok, http.MethodGet, "/v1/tenants/t0/services/web?consistent=true", nil)
	r.JSON(t, &svc)
	if r.Status != http.StatusOK || len(svc.Instances) != 1 || svc.Instances[0].Address != "10.0.0.1:80" {
		t.Fatalf("read through node %d = %d %s", without, r.Status, r.Body)
	}
	// The tenant's usage through that node is its replica's.
	var shown api.Tenant
	r = c.Do(without, tok, http.MethodGet, "/v1/tenants/t0", nil)
	r.JSON(t, &shown)
	if r.Status != http.StatusOK || shown.Usage == nil || shown.Usage.Instances != 1 {
		t.Fatalf("GET /v1/tenants/t0 through node %d = %d %s", without, r.Status, r.Body)
	}
	// A second hop is refused.
	r2, err := c.DoErr(t.Context(), without, tok, http.MethodGet, "/v1/tenants/t0/services/web", nil, http.Header{httpapi.HeaderProxied: {"9"}})
	if err != nil || r2.Status != http.StatusServiceUnavailable || !strings.Contains(string(r2.Body), "no replica") {
		t.Fatalf("a proxied request on a node without the tenant = %v %+v", err, r2)
	}
	// A bad token is refused there, not proxied.
	if r := c.Do(without, "rft_t0_nope", http.MethodGet, "/v1/tenants/t0/services/web", nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("a bad token on node %d = %d %s", without, r.Status, r.Body)
	}

	// A backup through that node holds the tenant, read where it is.
	var b api.Backup
	r = c.Do(without, servertest.AdminToken, http.MethodGet, "/v1/backup", nil)
	r.JSON(t, &b)
	if r.Status != http.StatusOK || len(b.Tenants) != 10 || b.Tenants[0].Name != "t0" || len(b.Tenants[0].Services) != 1 ||
		len(b.Tenants[0].Services[0].Instances) != 1 || b.Tenants[0].Services[0].Instances[0].ID != "w1" {
		t.Fatalf("backup through node %d = %d %s", without, r.Status, r.Body)
	}

	var holders []string
	for _, n := range rec.VotingOn() {
		holders = append(holders, c.Addr(int(n)))
	}
	var sl api.ServerList
	c.Do(without, tok, http.MethodGet, "/v1/servers", nil).JSON(t, &sl)
	got := slices.Clone(sl.Servers)
	slices.Sort(got)
	slices.Sort(holders)
	if !slices.Equal(got, holders) {
		t.Fatalf("GET /v1/servers with the tenant's token = %v, want %v", sl.Servers, holders)
	}

	// The client stream on a node without the tenant: moved, to its nodes.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+c.Addr(without)+"/v1/tenants/t0/stream", strings.NewReader(""))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	resp.Body.Close()
	if !strings.Contains(line, `"moved"`) || !strings.Contains(line, holders[0]) {
		t.Fatalf("client stream on node %d: %q", without, line)
	}

	metrics := string(c.Do(without, servertest.AdminToken, http.MethodGet, "/metrics", nil).Body)
	for n := 1; n <= 5; n++ {
		if !strings.Contains(metrics, fmt.Sprintf("rafting_placement_replicas{node=\"%d\"} 6\n", n)) {
			t.Errorf("/metrics: no rafting_placement_replicas of 6 for node %d:\n%s", n, grep(metrics, "rafting_placement"))
		}
	}
	if !strings.Contains(metrics, "rafting_placement_moves 0\n") {
		t.Errorf("/metrics: no rafting_placement_moves 0:\n%s", grep(metrics, "rafting_placement"))
	}

	servertest.Eventually(t, 30*time.Second, "node "+fmt.Sprint(without)+"'s view: every shard's leader, per-node counts", func() bool {
		var cl api.Cluster
		c.Do(without, servertest.AdminToken, http.MethodGet, "/v1/cluster", nil).JSON(t, &cl)
		replicas, leaders := 0, 0
		for _, n := range cl.Nodes {
			replicas += n.Replicas
			leaders += n.Leaders
		}
		for _, sh := range cl.Shards {
			if sh.Leader == 0 || sh.Tenant != "" && len(sh.Replicas) != 3 {
				return false
			}
		}
		return cl.Replicas == 3 && replicas == 30 && leaders == len(cl.Shards)
	})

	// A node holding t0 crashes (long before --dead-after): the proxy on
	// the node without t0 turns to the others once its looks miss it.
	down := int(rec.VotingOn()[0])
	if c.Server(down).Node().MetaLeaderIsLocal() {
		down = int(rec.VotingOn()[1])
	}
	c.AbortNode(down)
	for i := range 20 {
		servertest.Eventually(t, 10*time.Second, fmt.Sprintf("write %d through node %d with node %d down", i, without, down), func() bool {
			r := c.Do(without, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/t0/kv/d%d", i), "x")
			return r.Status == http.StatusCreated
		})
	}
}

// TestPlacementSixthNodeJoins: a sixth node joins five: replicas move onto
// it, one move at a time per node, until the nodes are within one
// replica; every tenant keeps exactly three, what was written stays, and
// each node deletes the data of the replicas it gave away.
func TestPlacementSixthNodeJoins(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 5, RTT: 25 * time.Millisecond})
	tokens := map[string]string{}
	for i := range 10 {
		name := fmt.Sprintf("t%d", i)
		tokens[name] = c.CreateTenant(name, api.Quotas{})
		r := c.Do(1, tokens[name], http.MethodPut, "/v1/tenants/"+name+"/kv/k", name)
		if r.Status != http.StatusCreated {
			t.Fatalf("put on %s = %d %s", name, r.Status, r.Body)
		}
	}
	servertest.Eventually(t, 30*time.Second, "five nodes settled", func() bool { return settled(c, 1, 3, ids(5)) })
	six := c.JoinNode()
	servertest.Eventually(t, 90*time.Second, "six nodes balanced", func() bool { return settled(c, 1, 3, ids(6)) })
	if _, _, load := placed(c, 1); load[uint64(six)] != 5 {
		t.Fatalf("loads %v: node 6 has %d", load, load[uint64(six)])
	}
	for name, tok := range tokens {
		for n := 1; n <= six; n++ {
			readKey(t, c, n, name, tok)
		}
	}
	servertest.Eventually(t, 30*time.Second, "the retired replicas' data deleted", func() bool {
		for _, rec := range c.Server(1).Node().Meta().Tenants() {
			for rid, node := range rec.Retired {
				if c.Server(int(node)).Node().HasReplicaData(rec.ShardID, rid) {
					return false
				}
			}
		}
		return true
	})
}

// TestPlacementDeadNodeReplaced: a node unreachable for --dead-after has
// its replicas placed on the others, every tenant back to three with what
// was written; when it returns it deletes the replicas it no longer holds,
// and takes replicas again as the placement balances.
func TestPlacementDeadNodeReplaced(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 5, RTT: 25 * time.Millisecond, Configure: func(cfg *config.Config) {
		cfg.DeadAfter = 2 * time.Second
	}})
	tokens := map[string]string{}
	for i := range 5 {
		name := fmt.Sprintf("t%d", i)
		tokens[name] = c.CreateTenant(name, api.Quotas{})
	}
	servertest.Eventually(t, 30*time.Second, "five nodes settled", func() bool { return settled(c, 1, 3, ids(5)) })
	victim := 5
	if c.Server(victim).Node().MetaLeaderIsLocal() {
		victim = 4
	}
	for name, tok := range tokens {
		if r := c.Do(1, tok, http.MethodPut, "/v1/tenants/"+name+"/kv/k", name); r.Status != http.StatusCreated {
			t.Fatalf("put on %s = %d %s", name, r.Status, r.Body)
		}
	}
	before, _, _ := placed(c, 1)
	c.AbortNode(victim)
	var alive []uint64
	for n := 1; n <= 5; n++ {
		if n != victim {
			alive = append(alive, uint64(n))
		}
	}
	servertest.Eventually(t, 60*time.Second, "every tenant back on 3 live nodes", func() bool {
		shards, moves, _ := placed(c, 1)
		if moves > 0 {
			return false
		}
		for _, on := range shards {
			if len(on) != 3 || slices.Contains(on, uint64(victim)) {
				return false
			}
		}
		return true
	})
	for name, tok := range tokens {
		readKey(t, c, 1, name, tok)
	}
	c.StartNode(victim)
	servertest.Eventually(t, 60*time.Second, "the returned node deleted what it no longer holds", func() bool {
		for _, rec := range c.Server(1).Node().Meta().Tenants() {
			for rid, node := range rec.Retired {
				if int(node) == victim && c.Server(victim).Node().HasReplicaData(rec.ShardID, rid) {
					return false
				}
			}
		}
		return len(before) > 0
	})
	servertest.Eventually(t, 90*time.Second, "balanced again with the node back", func() bool { return settled(c, 1, 3, ids(5)) })
}

// TestPlacementAboveR: a tenant with a replica on every node (a data dir
// from before placement) is brought down to R by recorded moves, the
// leadership moved off a replica that goes first.
func TestPlacementAboveR(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 5, RTT: 25 * time.Millisecond})
	n := c.Server(1).Node()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	members, err := n.MetaMembers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// As a build before placement created it: on every member.
	if _, err := n.ProposeMeta(ctx, fsm.Encode(fsm.OpCreateTenant, fsm.CreateTenant{Name: "old", TokenHash: tenants.HashToken("rft_old_x"), Members: members})); err != nil {
		t.Fatal(err)
	}
	servertest.Eventually(t, 60*time.Second, "the old tenant down to 3", func() bool { return settled(c, 1, 3, ids(5)) })
}

// TestPlacementSpreadsLeaders: with every tenant's leadership on one node,
// the nodes hand leaderships over until none leads more than one above
// the average.
func TestPlacementSpreadsLeaders(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 3, RTT: 25 * time.Millisecond})
	for i := range 6 {
		name := fmt.Sprintf("t%d", i)
		c.CreateTenant(name, api.Quotas{})
		if r := c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/cluster/leaders", api.LeaderTransferRequest{Tenant: name, To: 1}); r.Status != http.StatusOK {
			t.Fatalf("move %s's leadership to node 1 = %d %s", name, r.Status, r.Body)
		}
	}
	servertest.Eventually(t, 60*time.Second, "two tenant leaderships on each node", func() bool {
		leads := map[uint64]int{}
		var cl api.Cluster
		c.Do(2, servertest.AdminToken, http.MethodGet, "/v1/cluster", nil).JSON(t, &cl)
		for _, sh := range cl.Shards {
			if sh.Tenant != "" {
				leads[sh.Leader]++
			}
		}
		return leads[1] == 2 && leads[2] == 2 && leads[3] == 2
	})
}

// TestPlacementMoveEndsBlockingQueries: a blocking query on a replica that
// a move takes off its node answers 503 at once (the client asks again,
// elsewhere), not when its wait runs out.
func TestPlacementMoveEndsBlockingQueries(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 4, RTT: 25 * time.Millisecond})
	tok := c.CreateTenant("acme", api.Quotas{})
	rec, _ := c.Server(1).Node().Meta().Tenant("acme")
	var from, to uint64
	for n := uint64(1); n <= 4; n++ {
		if _, _, on := rec.ReplicaOn(n); on && from == 0 {
			from = n
		} else if !on {
			to = n
		}
	}
	rid, _, _ := rec.ReplicaOn(from)
	r := c.Do(int(from), tok, http.MethodPut, "/v1/tenants/acme/kv/k", "v")
	if r.Status != http.StatusCreated {
		t.Fatalf("put = %d %s", r.Status, r.Body)
	}
	var put api.KVResponse
	r.JSON(t, &put)
	type answer struct {
		r   *servertest.Response
		err error
		in  time.Duration
	}
	got := make(chan answer, 2)
	for _, path := range []string{"/v1/tenants/acme/kv/k", "/v1/tenants/acme/services/web"} {
		go func() {
			start := time.Now()
			r, err := c.DoErr(t.Context(), int(from), tok, http.MethodGet, fmt.Sprintf("%s?index=%d&wait=60s", path, put.Index+1000), nil, nil)
			got <- answer{r, err, time.Since(start)}
		}()
	}
	servertest.Eventually(t, 10*time.Second, "both queries waiting", func() bool {
		s := string(c.Do(int(from), servertest.AdminToken, http.MethodGet, "/metrics", nil).Body)
		return strings.Contains(s, `rafting_tenant_watchers{tenant="acme"} 2`)
	})
	nr, _ := c.Server(1).Node().Meta().Node(to)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := c.Server(1).Node().ProposeMeta(ctx, fsm.Encode(fsm.OpMoveStart, fsm.MoveStart{Name: "acme", Node: to, RaftAddress: nr.RaftAddress,
		Remove: rid, Reason: "test", NowMs: time.Now().UnixMilli()})); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		a := <-got
		if a.err != nil || a.r.Status != http.StatusServiceUnavailable || a.in > 30*time.Second {
			t.Fatalf("a blocking query on the replica that moved = %v %+v after %v", a.err, a.r, a.in)
		}
	}
	if _, _, on := mustTenant(t, c, "acme").ReplicaOn(from); on {
		t.Fatal("the replica did not move")
	}
}

func mustTenant(t *testing.T, c *servertest.Cluster, name string) *fsm.TenantRecord {
	t.Helper()
	rec, ok := c.Server(1).Node().Meta().Tenant(name)
	if !ok {
		t.Fatalf("no tenant %s", name)
	}
	return rec
}
