package httpapi_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// TestRedTeam4PeerSourceAddressMarked: red team 4, finding 1. The nodes
// exempt from marks are the hosts of the cluster's advertised API and
// Raft addresses (peerAddrs), but a node's requests to another come from
// the source address its kernel picks for the route, which is another
// one whenever the node is multi-homed, listens on one address and
// advertises another (AdvertiseAPI, RaftListen: NAT, a proxy), or its
// advertised address is a load balancer's or a Service's. Here the nodes
// listen and advertise on 127.0.0.21 and 127.0.0.22 (loopback, as a
// second interface would be), and a node's connections to the other come
// from 127.0.0.1, as `ip route get 127.0.0.22` says.
//
// A tenant over its rate through the node that proxies it (its shard is
// on the other) gets its proxied requests refused 429 by the node that
// serves them (its rate is charged there too): that refusal marks the
// proxying node's source address as the attacker's. From then on every
// new connection the proxying node opens to its peer — for any tenant's
// proxied request, or a forwarded keepalive — waits for the attacker's
// turn, which the attacker keeps an auth timeout ahead with its own new
// connections: another tenant's proxied reads fail (503 after 5 s).
//
// Measured: another tenant's 32 blocking reads (wait=1s) through the
// proxying node, at once, while the attacker is refused.
func TestRedTeam4PeerSourceAddressMarked(t *testing.T) {
	x := rt4ProxyCluster(t, func(cfg *config.Config) {
		cfg.Replicas = 1
		host := fmt.Sprintf("127.0.0.%d", 20+cfg.NodeID)
		_, apiPort, _ := net.SplitHostPort(cfg.APIAddress)
		cfg.APIAddress = net.JoinHostPort(host, apiPort)
		_, raftPort, _ := net.SplitHostPort(cfg.RaftAddress)
		cfg.RaftAddress = net.JoinHostPort(host, raftPort)
		cfg.InitialCluster[cfg.NodeID] = cfg.RaftAddress // the map all nodes share
	})
	x.attack(t, true)
}

// rt4Proxy is a two-node cluster where an attacker (mallory, 5 requests
// a second) and a victim are on the same node (target), proxied by the
// other (proxy).
type rt4Proxy struct {
	c               *servertest.Cluster
	toks            map[string]string
	mallory, victim string
	proxy, target   int
	index           uint64
	vclient         *http.Client
}

func rt4ProxyCluster(t *testing.T, configure func(*config.Config)) *rt4Proxy {
	c := servertest.Start(t, servertest.Options{Nodes: 2, Configure: configure})
	names := []string{"mallory", "victim", "t2", "t3"}
	toks := map[string]string{}
	for _, n := range names {
		q := api.Quotas{}
		if n == "mallory" {
			q = api.Quotas{RequestsPerSecond: 5, Burst: 5}
		}
		toks[n] = c.CreateTenant(n, q)
	}
	// Two of them on the same node: the attacker and the victim.
	var mallory, victim string
	var proxy, target int
	servertest.Eventually(t, 60*time.Second, "two tenants on one node", func() bool {
		on := map[int][]string{}
		for _, n := range names {
			var where []int
			for id := 1; id <= 2; id++ {
				if _, here := c.Server(id).Node().Tenant(n); here {
					where = append(where, id)
				}
			}
			if len(where) != 1 || len(c.Server(3-where[0]).Node().TenantNodes(n)) == 0 {
				return false
			}
			on[where[0]] = append(on[where[0]], n)
		}
		for id, ns := range on {
			if len(ns) >= 2 && (ns[0] == "mallory" || ns[1] == "mallory") {
				mallory, victim, target, proxy = "mallory", ns[0], id, 3-id
				if victim == "mallory" {
					victim = ns[1]
				}
				return true
			}
		}
		return false
	})
	t.Logf("%s and %s on node %d (%s); their requests through node %d (%s)", mallory, victim, target, c.Addr(target), proxy, c.Addr(proxy))
	c.WaitTenantLeader(mallory)
	c.WaitTenantLeader(victim)
	url := func(node int, tenant, rest string) string {
		return "http://" + c.Addr(node) + "/v1/tenants/" + tenant + "/" + rest
	}
	vclient, vtr := rt4Client(net.IPv4(127, 0, 0, 4), false, 15*time.Second)
	t.Cleanup(vtr.CloseIdleConnections)
	if st, _ := rt4Do(context.Background(), vclient, http.MethodPut, url(proxy, victim, "kv/k?text=v"), toks[victim]); st[0] != '2' {
		t.Logf("victim's put through node %d: %s", proxy, st)
	}
	req, _ := http.NewRequest(http.MethodGet, url(proxy, victim, "kv/k"), nil)
	req.Header.Set("Authorization", "Bearer "+toks[victim])
	resp, err := vclient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	index, _ := strconv.ParseUint(resp.Header.Get(api.HeaderIndex), 10, 64)

	return &rt4Proxy{c: c, toks: toks, mallory: mallory, victim: victim, proxy: proxy, target: target, index: index, vclient: vclient}
}

func (x *rt4Proxy) url(node int, tenant, rest string) string {
	return "http://" + x.c.Addr(node) + "/v1/tenants/" + tenant + "/" + rest
}

// attack: the attacker's refusals, then the victim's 32 blocking reads
// (wait=1s) through the proxying node, at once: each holds a connection
// from the proxying node to the serving one. viaProxy: the attacker goes
// on sending through the proxying node as well.
func (x *rt4Proxy) attack(t *testing.T, viaProxy bool) {
	toks, mallory, victim, proxy, target, index, vclient := x.toks, x.mallory, x.victim, x.proxy, x.target, x.index, x.vclient
	url := x.url
	// The attack, from 127.0.0.3: its rate through the proxying node
	// (passes there, refused where it is served, as that node's bucket
	// is drained directly), and new connections to the serving node.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	mip := net.IPv4(127, 0, 0, 3)
	counts := map[string]int{}
	var mu sync.Mutex
	count := func(k, st string) {
		if len(st) > 5 {
			st = "error"
		}
		mu.Lock()
		counts[k+" "+st]++
		mu.Unlock()
	}
	for range 4 * btoi(viaProxy) {
		client, tr := rt4Client(mip, false, 0)
		defer tr.CloseIdleConnections()
		wg.Go(func() {
			for ctx.Err() == nil {
				st, _ := rt4Do(ctx, client, http.MethodGet, url(proxy, mallory, "services"), toks[mallory])
				count("proxied", st)
			}
		})
	}
	for range 64 {
		client, tr := rt4Client(mip, true, 0)
		defer tr.CloseIdleConnections()
		wg.Go(func() {
			for ctx.Err() == nil {
				st, _ := rt4Do(ctx, client, http.MethodGet, url(target, mallory, "services"), toks[mallory])
				count("direct", st)
			}
		})
	}
	time.Sleep(2 * time.Second)

	// The victim's blocking reads through the proxying node, 32 at once:
	// each holds a connection from the proxying node to the serving one.
	var vwg sync.WaitGroup
	results := make([]string, 32)
	took := make([]time.Duration, 32)
	for i := range results {
		vwg.Go(func() {
			results[i], took[i] = rt4Do(context.Background(), vclient, http.MethodGet,
				url(proxy, victim, fmt.Sprintf("kv/k?index=%d&wait=1s", index)), toks[victim])
		})
	}
	vwg.Wait()
	cancel()
	wg.Wait()
	mu.Lock()
	t.Logf("the attacker's requests: %v", counts)
	mu.Unlock()
	var failed, slow []string
	for i, st := range results {
		switch {
		case st != "200":
			failed = append(failed, fmt.Sprintf("%s after %v", st, took[i].Round(time.Millisecond)))
		case took[i] > 2500*time.Millisecond:
			slow = append(slow, took[i].Round(time.Millisecond).String())
		}
	}
	t.Logf("the victim's 32 blocking reads (wait=1s) through node %d: %d failed, %d slow", proxy, len(failed), len(slow))
	if len(failed) > 0 {
		t.Errorf("another tenant's proxied reads failed: %d of 32: %s", len(failed), strings.Join(failed[:min(3, len(failed))], "; "))
	}
	if len(slow) > 0 {
		t.Errorf("another tenant's proxied reads (wait=1s) slow: %v", slow)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRedTeam4PeerNamesMarkedBeforeResolved: red team 4, finding 1b.
// With the nodes' addresses as host names (deploy/compose.yaml's
// --advertise-api=rafting-1:7070 --raft=rafting-1:7071), setPeers starts
// resolving them on the listener's first refusal of a tenant and returns
// at once, with only the literal addresses: that first refusal's mark is
// made with no node's address known. When it is a proxied request's —
// the attacker drains its bucket on the serving node directly, within
// its burst (no 429), then sends one request through the other node —
// the proxying node's address is marked as the attacker's for PaceMark,
// and the next marks, refused as a peer's once the names resolved, do not
// lift it: the other tenants' proxied requests fail for 10 s, as in
// finding 1. (Also: a resolution that fails — the 1 s lookup timeout —
// replaces the names by nothing until the next refresh, 10 s on.)
func TestRedTeam4PeerNamesMarkedBeforeResolved(t *testing.T) {
	x := rt4ProxyCluster(t, func(cfg *config.Config) {
		cfg.Replicas = 1
		_, apiPort, _ := net.SplitHostPort(cfg.APIAddress)
		cfg.AdvertiseAPI = net.JoinHostPort("localhost", apiPort)
		_, raftPort, _ := net.SplitHostPort(cfg.RaftAddress)
		cfg.RaftListen = cfg.RaftAddress
		cfg.RaftAddress = net.JoinHostPort("localhost", raftPort)
		cfg.InitialCluster[cfg.NodeID] = cfg.RaftAddress // the map all nodes share
	})
	// The serving node's first refusal of a tenant: a proxied request,
	// its bucket drained directly (burst 5, all answered 200).
	client, tr := rt4Client(net.IPv4(127, 0, 0, 3), false, 10*time.Second)
	defer tr.CloseIdleConnections()
	var sts []string
	for range 5 {
		st, _ := rt4Do(context.Background(), client, http.MethodGet, x.url(x.target, x.mallory, "services"), x.toks[x.mallory])
		sts = append(sts, st)
	}
	st, _ := rt4Do(context.Background(), client, http.MethodGet, x.url(x.proxy, x.mallory, "services"), x.toks[x.mallory])
	t.Logf("the attacker's burst on node %d: %v; then through node %d: %s", x.target, sts, x.proxy, st)
	x.attack(t, false)
}
