package chaos

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// network is a scenario's fault proxies. Every address a server or a
// client dials is a proxy's:
//
//   - raft[id] is server id's Raft address as the others know it (--raft;
//     the server listens on --raft-listen behind it). It tells senders
//     apart, so every Raft link, one direction at a time, has its rule.
//   - api[id] is server id's advertised API address (--advertise-api):
//     what the servers forward to each other (keepalives to the leader)
//     and what they name to clients (X-Rafting-Leader, moved).
//   - client[name][id] is the link from one client (a member process or
//     a workload client of the harness) to server id. Clients dial it
//     whatever address of server id they were told (chaosmember -route).
//
// IDs up to maxID are made at the start, so a node added later has its
// proxies, and clients their routes to it, from the beginning.
type network struct {
	seed  uint64
	maxID int

	mu     sync.Mutex
	raft   map[int]*RaftProxy
	api    map[int]*Proxy
	client map[string]map[int]*Proxy
	real   map[int]string // server ID -> the API address it listens on
}

func newNetwork(seed uint64, maxID int) (*network, error) {
	n := &network{seed: seed, maxID: maxID, raft: map[int]*RaftProxy{}, api: map[int]*Proxy{},
		client: map[string]map[int]*Proxy{}, real: map[int]string{}}
	for id := 1; id <= maxID; id++ {
		r, err := NewRaftProxy("", seed+uint64(id))
		if err != nil {
			n.close()
			return nil, err
		}
		n.raft[id] = r
		a, err := NewProxy("", seed+uint64(100+id))
		if err != nil {
			n.close()
			return nil, err
		}
		n.api[id] = a
	}
	return n, nil
}

// server is proctest's Options.Server: server id listens on api and raft;
// the others reach it through its proxies.
func (n *network) server(id int, api, raft string) (string, []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if id > n.maxID {
		panic(fmt.Sprintf("chaos: server %d beyond the %d the network was made for", id, n.maxID))
	}
	n.raft[id].SetTarget(raft)
	n.api[id].SetTarget(api)
	n.real[id] = api
	for _, c := range n.client {
		c[id].SetTarget(api)
	}
	return n.raft[id].Addr(), []string{"--raft-listen", raft, "--advertise-api", n.api[id].Addr()}
}

// advertised is every server's advertised API address (RAFTING_SERVERS),
// for the IDs that exist so far.
func (n *network) advertised(ids []int) string {
	var a []string
	for _, id := range ids {
		a = append(a, n.api[id].Addr())
	}
	return strings.Join(a, ",")
}

// routes makes (once) the client's proxies and returns its routes:
// advertised address=proxy, for chaosmember's -route.
func (n *network) routes(name string) map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	c, ok := n.client[name]
	if !ok {
		c = map[int]*Proxy{}
		for id := 1; id <= n.maxID; id++ {
			p, err := NewProxy(n.real[id], n.seed+uint64(len(n.client)*16+id)<<8)
			if err != nil {
				panic(err) // out of ports: nothing to test on
			}
			c[id] = p
		}
		n.client[name] = c
	}
	r := map[string]string{}
	for id, p := range c {
		r[n.api[id].Addr()] = p.Addr()
	}
	return r
}

// routeFlag renders routes for -route.
func routeFlag(r map[string]string) string {
	var kv []string
	for a, p := range r {
		kv = append(kv, a+"="+p)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// clientLinks is a client's proxies by server ID.
func (n *network) clientLinks(name string) map[int]*Proxy {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.client[name]
}

// raftLink cuts (or, with rule, degrades) the Raft link from one server
// to another.
func (n *network) raftLink(from, to int, rule Rule) {
	n.raft[to].SetFrom(from, rule)
}

// heal clears every rule of every proxy.
func (n *network) heal() { n.each(proxy.Heal) }

func (n *network) close() { n.each(proxy.Close) }

// proxy is what the network does to each of its proxies alike.
type proxy interface {
	Heal()
	Close()
}

// each calls f on every proxy, Raft, API and client's.
func (n *network) each(f func(proxy)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.raft {
		f(r)
	}
	for _, a := range n.api {
		f(a)
	}
	for _, c := range n.client {
		for _, p := range c {
			f(p)
		}
	}
}
