package cluster

import (
	"sync"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

// What a node knows of the others beyond the meta shard: each one's build,
// health, last contact and how far its replicas are behind. The server
// looks at every other node's API every couple of seconds (server's
// watchPeers) and records what it found here (SawPeers); GET /v1/cluster,
// `rafting cluster` and the peer metrics show it.

// PeerLook is what one look at another node found.
type PeerLook struct {
	// Answered is false when the node's API did not answer.
	Answered bool
	// Health is one of api's Node health values, for an answer.
	Health string
	// Build is what the node runs (nil: it does not say).
	Build *api.Build
	// Applied is the applied index of each shard replica it runs.
	Applied map[uint64]uint64
	// Leaders is, for each shard replica it runs, the node it sees lead
	// the shard (placement: a node learns the leaders of the shards it
	// does not hold from the nodes that do).
	Leaders map[uint64]uint64
	// RaftAddresses is the Raft address of each node its meta replica
	// records (node ID -> address): a node whose own meta replica is
	// behind learns from it the addresses of nodes that joined since.
	RaftAddresses map[uint64]string
}

// peerState is what the node keeps of another.
type peerState struct {
	PeerLook
	looked      bool      // a look was made
	lastContact time.Time // the last answer (zero: never)
	firstLook   time.Time // the round that first looked at it
	lag         uint64
}

// peerViews is the node's record of its peers.
type peerViews struct {
	mu      sync.Mutex
	enabled bool // looks are made (a token to make them with)
	peers   map[uint64]*peerState
	selfLag uint64
}

// SetBuild records this node's build (before Start).
func (n *Node) SetBuild(b api.Build) { n.build = b }

// Build is this node's build.
func (n *Node) Build() api.Build { return n.build }

// SawPeers records one round of looks at the other nodes, made at about
// the same moment: looks[id] for each node looked at. Each node's lag is
// the most, over its shards, that its replica was behind the most
// caught-up replica of the shard in the round (this node's own, read when
// the round ended, included).
func (n *Node) SawPeers(looks map[uint64]PeerLook, at time.Time) {
	best := map[uint64]uint64{}
	self := n.localApplied()
	for shard, a := range self {
		best[shard] = max(best[shard], a)
	}
	for _, l := range looks {
		for shard, a := range l.Applied {
			best[shard] = max(best[shard], a)
		}
	}
	lagOf := func(applied map[uint64]uint64) uint64 {
		var lag uint64
		for shard, a := range applied {
			lag = max(lag, best[shard]-min(a, best[shard]))
		}
		return lag
	}
	for _, l := range looks {
		n.learnAddresses(l.RaftAddresses)
	}
	v := &n.peerViews
	v.mu.Lock()
	defer v.mu.Unlock()
	v.enabled = true
	if v.peers == nil {
		v.peers = map[uint64]*peerState{}
	}
	v.selfLag = lagOf(self)
	for id := range v.peers {
		if _, ok := looks[id]; !ok {
			delete(v.peers, id) // no longer a node of the cluster
		}
	}
	for id, l := range looks {
		p := v.peers[id]
		if p == nil {
			p = &peerState{firstLook: at}
			v.peers[id] = p
		}
		p.looked = true
		if !l.Answered {
			p.Answered, p.Health = false, api.NodeUnreachable
			continue
		}
		p.PeerLook, p.lastContact, p.lag = l, at, lagOf(l.Applied)
	}
}

// learnAddresses gives the registry the Raft address of each node it has
// none for, as a peer's meta replica records it. A node learns its peers'
// addresses from its own meta replica, which learns its entries from the
// meta shard's leader, which it answers through the registry: a node that
// was down while another joined, restarted when the joined node leads the
// meta shard, answered none of its messages (no address for it), and the
// leader, its first append to the node unanswered, sent it only
// heartbeats, which carry no entries: the node's meta replica never caught
// up (TestRestartedNodeFollowsLeaderThatJoinedWhileDown). The meta shard
// stays the authority: an address the registry has is not changed here.
func (n *Node) learnAddresses(addrs map[uint64]string) {
	for id, addr := range addrs {
		if id == n.cfg.NodeID || addr == "" || n.meta.Removed(id) {
			continue
		}
		if _, known := n.reg.addr(id); known {
			continue
		}
		n.reg.setAddr(id, addr)
		n.log.Info("raft address of a node learnt from a peer (this node's meta replica does not record it yet)", "member", id, "raft", addr)
	}
}

// localApplied is the applied index of each replica this node runs.
func (n *Node) localApplied() map[uint64]uint64 {
	out := map[uint64]uint64{fsm.MetaShardID: n.meta.Applied()}
	for _, t := range n.Tenants() {
		out[t.ShardID] = t.SM.Applied()
	}
	return out
}

// health is this node's own health.
func (n *Node) health() string {
	switch {
	case n.RemovedReason() != "":
		return api.NodeRemoved
	case n.Ready():
		return api.NodeReady
	}
	return api.NodeNotReady
}

// describeNodes fills each node's health, build, lag and last contact from
// the node's own state and its last looks at the others.
func (n *Node) describeNodes(nodes []api.Node, now time.Time) {
	v := &n.peerViews
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range nodes {
		nd := &nodes[i]
		if nd.ID == n.cfg.NodeID {
			b := n.build
			nd.Health, nd.Build, nd.Lag, nd.LastContactMs = n.health(), &b, v.selfLag, 0
			continue
		}
		nd.Health, nd.LastContactMs = api.NodeUnknown, -1
		p := v.peers[nd.ID]
		if p == nil || !p.looked {
			continue
		}
		nd.Health = p.Health
		if !p.lastContact.IsZero() {
			nd.LastContactMs = now.Sub(p.lastContact).Milliseconds()
			nd.Build, nd.Lag = p.Build, p.lag
		}
	}
}

// peerLeaders is the leader node of each shard as the last looks at the
// nodes that hold it saw it (the highest node ID when they disagree, for a
// stable answer).
func (n *Node) peerLeaders() map[uint64]uint64 {
	v := &n.peerViews
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[uint64]uint64{}
	for _, p := range v.peers {
		if !p.Answered {
			continue
		}
		for shard, leader := range p.Leaders {
			out[shard] = max(out[shard], leader)
		}
	}
	return out
}

// peerContact is, for each other node looked at, whether its last look
// was answered and when it last answered (zero: never); looked is false
// until looks are made.
func (n *Node) peerContact() (out map[uint64]peerState, looked bool) {
	v := &n.peerViews
	v.mu.Lock()
	defer v.mu.Unlock()
	out = make(map[uint64]peerState, len(v.peers))
	for id, p := range v.peers {
		out[id] = *p
	}
	return out, v.enabled
}
