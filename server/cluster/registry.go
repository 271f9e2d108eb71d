package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	dbconfig "github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"

	"github.com/rafting/rafting/server/config"
)

// Rafting runs Dragonboat with a node registry of its own. Raft targets are
// NodeHost IDs derived from node IDs (nodeHostID), and the registry maps
// them to Raft addresses learnt from the configuration, the meta shard's
// node records and a file in the data directory.
//
// Why: it names each connection after the peer's *incarnation* (the start
// of its process, registered in the meta shard). When a peer restarts,
// every node sends to it over a fresh connection instead of an idle one
// still pointing at the dead process. A write on such a stale connection
// fails, and Dragonboat's per-address circuit breaker then blocks every
// message to that peer for 0.5–1.5 s: long enough for a new leader to lose
// its quorum in a rolling restart (measured: a master suspended ~1.5 s).
// Stale connections are never written again and close after the
// transport's idle timeout. It also keeps one connection per peer (not
// Dragonboat's four, by shard), so staleness is met by the constant
// heartbeat traffic rather than by the first message of a quiet shard.
type registry struct {
	validate dbconfig.TargetValidator
	file     string   // <data>/peers.json: node ID -> Raft address, for restarts
	targets  sync.Map // raftio.NodeInfo -> target (a NodeHost ID)

	mu    sync.Mutex
	peers map[uint64]peer // by node ID
}

type peer struct {
	Addr        string `json:"raft_address"`
	Incarnation uint64 `json:"incarnation,omitempty"`
}

var errUnknownTarget = errors.New("cluster: replica address unknown")

// nodeHostID is the NodeHost ID of a node: a fixed UUID made of its ID.
func nodeHostID(node uint64) string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012x", node)
}

// nodeOf is the node ID a NodeHost ID names.
func nodeOf(target string) (uint64, bool) {
	const prefix = "00000000-0000-4000-8000-"
	if !strings.HasPrefix(target, prefix) {
		return 0, false
	}
	n, err := strconv.ParseUint(target[len(prefix):], 16, 64)
	return n, err == nil && n > 0
}

// newRegistry loads the registry of a data dir, which it creates if need
// be, adds initial to it and saves it: a node that stops before it learnt
// anything from the meta shard must still find its peers when it restarts
// without --initial-cluster.
func newRegistry(dataDir string, initial map[uint64]string) (*registry, error) {
	r := &registry{file: filepath.Join(dataDir, "peers.json"), peers: map[uint64]peer{}}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: data dir: %w", err)
	}
	switch b, err := os.ReadFile(r.file); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("cluster: %w", err)
	default:
		if err := json.Unmarshal(b, &r.peers); err != nil {
			return nil, fmt.Errorf("cluster: %s: %w (remove it and start with --initial-cluster naming every node)", r.file, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, addr := range initial {
		p := r.peers[id]
		p.Addr = addr
		r.peers[id] = p
	}
	if err := r.save(); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	return r, nil
}

// registryFactory hands Dragonboat the node's registry.
type registryFactory struct{ r *registry }

func (f registryFactory) Create(_ string, _ uint64, v dbconfig.TargetValidator) (raftio.INodeRegistry, error) {
	f.r.validate = v
	return f.r, nil
}

func (r *registry) Close() error { return nil }

func (r *registry) Add(shardID, replicaID uint64, target string) {
	if r.validate != nil && !r.validate(target) {
		panic(fmt.Sprintf("cluster: invalid raft target %q", target)) // as Dragonboat's registry does
	}
	r.targets.Store(raftio.GetNodeInfo(shardID, replicaID), target)
}

func (r *registry) Remove(shardID, replicaID uint64) {
	r.targets.Delete(raftio.GetNodeInfo(shardID, replicaID))
}

func (r *registry) RemoveShard(shardID uint64) {
	r.targets.Range(func(k, _ any) bool {
		if k.(raftio.NodeInfo).ShardID == shardID {
			r.targets.Delete(k)
		}
		return true
	})
}

func (r *registry) Resolve(shardID, replicaID uint64) (string, string, error) {
	v, ok := r.targets.Load(raftio.GetNodeInfo(shardID, replicaID))
	if !ok {
		return "", "", errUnknownTarget
	}
	node, ok := nodeOf(v.(string))
	if !ok {
		return "", "", errUnknownTarget
	}
	r.mu.Lock()
	p, ok := r.peers[node]
	r.mu.Unlock()
	if !ok || p.Addr == "" {
		return "", "", errUnknownTarget
	}
	return p.Addr, p.Addr + "#" + strconv.FormatUint(p.Incarnation, 10), nil
}

// addr is a node's Raft address, if known.
func (r *registry) addr(node uint64) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.peers[node]
	return p.Addr, ok && p.Addr != ""
}

// setAddr records a node's Raft address (from the configuration or a join).
func (r *registry) setAddr(node uint64, addr string) {
	r.update(node, func(p *peer) { p.Addr = addr })
}

// learn records a node's address and incarnation from the meta shard.
func (r *registry) learn(node uint64, addr string, incarnation uint64) {
	r.update(node, func(p *peer) {
		if addr != "" {
			p.Addr = addr
		}
		if incarnation != 0 {
			p.Incarnation = incarnation
		}
	})
}

func (r *registry) update(node uint64, f func(*peer)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.peers[node]
	old := p
	f(&p)
	if p == old {
		return
	}
	r.peers[node] = p
	_ = r.save() // the meta shard tells it again at the next start
}

// save writes the peers to the registry's file; r.mu is held.
func (r *registry) save() error {
	b, err := json.Marshal(r.peers)
	if err != nil {
		return err
	}
	return config.WriteFile(r.file, b)
}

// learnNodes gives the registry every node's address and incarnation from
// the meta shard (called after each applied meta batch).
func (n *Node) learnNodes() {
	for _, rec := range n.meta.Nodes() {
		inc := rec.Incarnation
		if rec.ID == n.cfg.NodeID {
			inc = 0 // never send to ourselves
		}
		n.reg.learn(rec.ID, rec.RaftAddress, inc)
	}
}
