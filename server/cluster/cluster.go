// Package cluster wires Rafting's state machines to Dragonboat: one
// NodeHost per server, the meta shard (1) and one shard per tenant, the
// reconciler that starts and stops tenant shards to match the meta shard,
// proposals with retries, linearizable reads, leadership and graceful
// hand-off. It is the only package that imports Dragonboat.
//
// Threading: every exported method of Node and Tenant is safe for
// concurrent use. Close must be called once.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	dbconfig "github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	sm "github.com/lni/dragonboat/v4/statemachine"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/session"
)

// Node is one Rafting server's Raft side.
type Node struct {
	cfg     config.Config
	log     *slog.Logger
	nh      *dragonboat.NodeHost
	meta    *fsm.Meta
	metrics *nodeMetrics

	metaSynced  atomic.Bool // the meta replica caught up with a quorum once
	metaLearner atomic.Bool // the meta replica joined non-voting and is not promoted yet (join.go)
	reconciled  atomic.Bool // every tenant shard this node hosts was started and synced once
	keepRetired atomic.Bool // tests: removeRetired keeps the data (export_test.go)
	keepStale   atomic.Bool // tests: reconcile leaves replicas no longer placed here running (export_test.go)
	closing     atomic.Bool

	mu      sync.RWMutex
	tenants map[uint64]*Tenant // running tenant replicas by shard ID
	byName  map[string]*Tenant

	pools       sync.Map // shard ID -> *sessionPool (proposals.go)
	reg         *registry
	incarnation uint64 // this process's start, registered in the meta shard
	// freshDir: this start found no Raft data in the data dir (a first
	// start, a join, or a wiped dir under a used ID: register tells).
	freshDir bool

	build     api.Build // this node's (SetBuild)
	peerViews peerViews // peers.go

	leaderLog chan leaderEvent // logLeaders' queue

	kick      chan struct{}
	checks    metaChecks // SyncMetaSince's rounds
	removal   removal    // removal.go
	placement placement  // placement.go
	stop      chan struct{}
	ctx       context.Context // cancelled when the node stops: background work
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// Tenant is a tenant shard's replica running on this node.
type Tenant struct {
	Name      string
	ShardID   uint64
	ReplicaID uint64
	Epoch     uint64
	SM        *fsm.Tenant
	Sessions  *session.Manager

	node   *Node
	synced atomic.Bool  // a ReadIndex through this replica succeeded since start
	swept  atomic.Int64 // removed nodes' count + 1 at its last sweep (placement.go)
	woke   atomic.Int64 // when Wake last read through it, in Unix ns (orphans.go)

	freshMu sync.Mutex
	freshAt time.Time   // start of the last ReadIndex that succeeded
	freshIn *freshCheck // the ReadIndex in flight, shared by every caller
}

// CaughtUp returns once this replica has caught up with its shard once
// since it started: a ReadIndex through it succeeded (Dragonboat completes
// one only once the replica applied up to the read index). Before that a
// replica may still be recovering its snapshot and log, and shows a state
// older than the one it showed before it stopped.
func (t *Tenant) CaughtUp(ctx context.Context) error {
	if t.synced.Load() {
		return nil
	}
	if err := t.Fresh(ctx, freshBound); err != nil {
		return err
	}
	t.synced.Store(true)
	return nil
}

// freshCheck is one ReadIndex that callers of Fresh share.
type freshCheck struct {
	done chan struct{}
	err  error
}

// freshBound bounds the ReadIndex that Fresh makes.
const freshBound = time.Second

// Fresh confirms that this replica is current with a quorum: a ReadIndex
// that started at most maxAge ago succeeded. Concurrent callers share one
// ReadIndex, and a success serves every caller for maxAge, so a replica
// cut off in a minority is noticed (the ReadIndex fails) at the cost of
// one heartbeat round per shard per maxAge, however many watchers wait.
func (t *Tenant) Fresh(ctx context.Context, maxAge time.Duration) error {
	t.freshMu.Lock()
	if !t.freshAt.IsZero() && time.Since(t.freshAt) < maxAge {
		t.freshMu.Unlock()
		return nil
	}
	call, mine := t.freshIn, false
	if call == nil {
		call, mine = &freshCheck{done: make(chan struct{})}, true
		t.freshIn = call
	}
	t.freshMu.Unlock()
	if mine {
		// Not bound by the caller's ctx: others wait on this ReadIndex.
		start := time.Now()
		rctx, cancel := context.WithTimeout(context.Background(), freshBound)
		err := t.ReadIndex(rctx)
		cancel()
		t.freshMu.Lock()
		call.err, t.freshIn = err, nil
		if err == nil {
			t.freshAt = start
		}
		t.freshMu.Unlock()
		close(call.done)
	}
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// New starts the NodeHost and the meta replica; Start begins reconciling.
// reg receives the node's metrics; nil records none.
func New(cfg config.Config, reg prometheus.Registerer) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	setLogger(log)
	n := &Node{
		cfg: cfg, log: log.With("node", cfg.NodeID), meta: fsm.NewMeta(),
		tenants: map[uint64]*Tenant{}, byName: map[string]*Tenant{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), leaderLog: make(chan leaderEvent, 1024),
	}
	n.removal.done = make(chan struct{})
	n.ctx, n.cancel = context.WithCancel(context.Background())
	known := map[uint64]string{}
	for id, addr := range cfg.Peers {
		known[id] = addr
	}
	for id, addr := range cfg.InitialCluster {
		known[id] = addr
	}
	peers, err := newRegistry(cfg.DataDir, known)
	if err != nil {
		return nil, err
	}
	n.reg = peers
	n.incarnation = uint64(time.Now().UnixNano())
	n.metrics = newNodeMetrics(reg, n)
	nhDir := filepath.Join(cfg.DataDir, "raft")
	if _, err := os.Stat(nhDir); errors.Is(err, os.ErrNotExist) {
		n.freshDir = true // checked against the meta shard before registering (register)
	}
	logdb := logDBPreset(cfg.LogDB)
	logdb.Shards = logDBShards(nhDir)
	nhc := dbconfig.NodeHostConfig{
		DeploymentID:      cfg.DeploymentID,
		NodeHostID:        nodeHostID(cfg.NodeID),
		NodeHostDir:       nhDir,
		WALDir:            nhDir,
		RTTMillisecond:    uint64(cfg.RTT / time.Millisecond),
		RaftAddress:       cfg.RaftAddress,
		ListenAddress:     cfg.RaftListen,
		RaftEventListener: listener{n},
		MutualTLS:         cfg.PeerCA != "",
		CAFile:            cfg.PeerCA,
		CertFile:          cfg.PeerCert,
		KeyFile:           cfg.PeerKey,
		Expert:            dbconfig.ExpertConfig{LogDB: logdb, NodeRegistryFactory: registryFactory{n.reg}},
	}
	if err := checkLostLog(cfg.DataDir, cfg.NodeID); err != nil {
		return nil, err
	}
	trackNode(cfg.DataDir, cfg.NodeID)
	nh, err := dragonboat.NewNodeHost(nhc)
	if err != nil {
		untrackNode(cfg.DataDir)
		return nil, fmt.Errorf("start raft node host: %w", err)
	}
	n.nh = nh
	if err := n.startMeta(); err != nil {
		nh.Close()
		untrackNode(cfg.DataDir)
		return nil, err
	}
	return n, nil
}

// startMeta starts the meta replica: bootstrapping with --initial-cluster
// on a first start, as a joiner with --join, from the data dir otherwise.
func (n *Node) startMeta() error {
	create := func(uint64, uint64) sm.IConcurrentStateMachine { return &metaSM{n: n} }
	id := n.cfg.NodeID
	var members map[uint64]dragonboat.Target
	join := false
	switch {
	case n.nh.HasNodeInfo(fsm.MetaShardID, id):
		// restart: the data dir knows the members
	case n.cfg.Join != "":
		join = true
		if err := markMetaNonVoting(n.cfg.DataDir); err != nil {
			return fmt.Errorf("start meta replica: %w", err)
		}
	case len(n.cfg.InitialCluster) > 0:
		members = map[uint64]dragonboat.Target{}
		for nid := range n.cfg.InitialCluster {
			members[nid] = nodeHostID(nid)
		}
	default:
		return fmt.Errorf("data dir %s holds no cluster: give --initial-cluster for a new cluster or --join to join one", n.cfg.DataDir)
	}
	cfg := n.shardConfig(fsm.MetaShardID, id, false)
	cfg.IsNonVoting = metaJoinedNonVoting(n.cfg.DataDir) // promoted or not (join.go)
	n.metaLearner.Store(cfg.IsNonVoting)                 // until promoteMeta sees it voting
	if err := n.nh.StartConcurrentReplica(members, join, create, cfg); err != nil {
		return fmt.Errorf("start meta replica: %w", err)
	}
	return nil
}

func (n *Node) shardConfig(shard, replica uint64, quiesce bool) dbconfig.Config {
	return dbconfig.Config{
		ShardID: shard, ReplicaID: replica,
		ElectionRTT: n.cfg.ElectionRTT, HeartbeatRTT: n.cfg.HeartbeatRTT,
		CheckQuorum: true, PreVote: true,
		SnapshotEntries: n.cfg.SnapshotEntries, CompactionOverhead: n.cfg.CompactionOverhead,
		OrderedConfigChange: true, MaxInMemLogSize: 64 << 20,
		Quiesce: quiesce,
	}
}

// Start registers this node in the meta shard and starts the reconciler
// and the leadership watch.
func (n *Node) Start() {
	n.checks.kick = make(chan struct{}, 1)
	n.removal.since = time.Now()
	n.wg.Add(8)
	go n.promoteMeta()
	go n.placementLoop()
	go n.logLeaders()
	go n.watchRemoval()
	go n.register()
	go n.reconcileLoop()
	go n.watchLeaders()
	go n.metaRounds()
}

// metaChecks queues the callers of SyncMetaSince for the next round.
type metaChecks struct {
	mu     sync.Mutex
	queue  []chan error
	kick   chan struct{}
	rounds atomic.Uint64
}

// MetaCheckRounds is how many ReadIndex rounds SyncMetaSince has made.
func (n *Node) MetaCheckRounds() uint64 { return n.checks.rounds.Load() }

// SyncMetaSince makes the local meta replica current with a quorum as of
// a moment after the call: it joins the next round of ReadIndexes on the
// meta shard, which starts after every caller in it arrived (so a token
// created before the call is seen). However many callers there are, the
// node makes one ReadIndex a round: a flood of unknown tokens costs one
// heartbeat round at a time, not one each.
func (n *Node) SyncMetaSince(ctx context.Context) error {
	ch := make(chan error, 1)
	n.checks.mu.Lock()
	n.checks.queue = append(n.checks.queue, ch)
	n.checks.mu.Unlock()
	select {
	case n.checks.kick <- struct{}{}:
	default:
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return &api.Error{Code: api.CodeUnavailable, Message: "meta read index: " + ctx.Err().Error(), RetryAfter: 100 * time.Millisecond}
	}
}

// metaRounds runs SyncMetaSince's rounds, one ReadIndex each.
func (n *Node) metaRounds() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case <-n.checks.kick:
		}
		n.checks.mu.Lock()
		batch := n.checks.queue
		n.checks.queue = nil
		n.checks.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		n.checks.rounds.Add(1)
		ctx, cancel := context.WithTimeout(n.ctx, time.Second)
		err := n.SyncMeta(ctx)
		cancel()
		for _, ch := range batch {
			ch <- err
		}
	}
}

// watchLeaders checks, every 100 ms, every tenant shard's leadership against
// its session manager's view. Dragonboat's leader events nudge managers at
// once; this catches an event that came before the leader was visible
// through GetLeaderID (a missed nudge would leave a new leader answering no
// keepalive). It costs one local lookup per shard per period.
func (n *Node) watchLeaders() {
	defer n.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		for _, tr := range n.Tenants() {
			id, term, ok := n.leader(tr.ShardID)
			tr.Sessions.Expect(ok && id == tr.ReplicaID, term)
		}
	}
}

// register records this node's addresses in the meta shard, until it sticks.
func (n *Node) register() {
	defer n.wg.Done()
	api := n.cfg.AdvertiseAPI
	if api == "" {
		api = n.cfg.APIAddress
	}
	if n.freshDir && !n.checkNotWiped() {
		return
	}
	for attempt := 0; ; attempt++ {
		if n.Registered() {
			return
		}
		c := fsm.RegisterNode{ID: n.cfg.NodeID, RaftAddress: n.cfg.RaftAddress, APIAddress: api, Incarnation: n.incarnation}
		if n.meta.Version() >= 5 {
			c.Zone = n.cfg.Zone // before 5 recordSettings does, later
		}
		cmd := fsm.Encode(fsm.OpRegisterNode, c)
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
		_, err := n.ProposeMeta(ctx, cmd)
		cancel()
		if err == nil {
			return
		}
		if !n.sleep(backoff(attempt)) {
			return
		}
	}
}

// sleep waits d or until the node stops; it reports whether to go on.
func (n *Node) sleep(d time.Duration) bool {
	select {
	case <-n.stop:
		return false
	case <-time.After(d):
		return true
	}
}

func backoff(attempt int) time.Duration {
	d := min(10*time.Millisecond<<min(attempt, 6), 500*time.Millisecond)
	return d/2 + rand.N(d/2+1)
}

// Meta is the local meta replica's state machine.
func (n *Node) Meta() *fsm.Meta { return n.meta }

// ID is this node's ID.
func (n *Node) ID() uint64 { return n.cfg.NodeID }

// Config is the node's configuration.
func (n *Node) Config() config.Config { return n.cfg }

// Ready reports whether the meta replica caught up once and every tenant
// shard this node hosts was started and reached its leader once (a
// ReadIndex: the leader reaches this node too) — and that this build still
// speaks every state version the cluster agreed on. A node removed from
// the cluster is never ready, nor is a joined node until its meta replica
// votes (join.go).
func (n *Node) Ready() bool {
	return n.metaSynced.Load() && n.reconciled.Load() && n.TooOld() == "" && n.RemovedReason() == "" && n.Registered() && n.MetaVoting()
}

// Registered reports whether the meta shard records this node as it runs
// now (its addresses, this incarnation): until then the cluster's lists
// (GET /v1/cluster, /v1/servers, a Client's server sync) miss it.
func (n *Node) Registered() bool {
	api := n.cfg.AdvertiseAPI
	if api == "" {
		api = n.cfg.APIAddress
	}
	rec, ok := n.meta.Node(n.cfg.NodeID)
	return ok && rec.APIAddress == api && rec.RaftAddress == n.cfg.RaftAddress && rec.Incarnation == n.incarnation
}

// TooOld names a state (meta, or a tenant) whose agreed version this build
// does not speak, or is "": such a replica refused an entry that its peers
// applied, and can no longer answer as they do.
func (n *Node) TooOld() string {
	if n.meta.TooOld() {
		return "meta"
	}
	for _, t := range n.Tenants() {
		if t.SM.TooOld() {
			return "tenant " + t.Name
		}
	}
	return ""
}

// TooOldError is the answer to a request for tenant name on a node whose
// build is too old for the state version the cluster agreed on (its meta
// replica, or that tenant's, refused the entry that raised it), nil
// otherwise: 503 unavailable, so a client asks another node. Such a
// replica applies the entries after that one as an older build does, not as
// its peers do, and its meta replica may lack what newer commands wrote (a
// token among them): it answers no tenant, and never 401.
func (n *Node) TooOldError(name string) *api.Error {
	what := ""
	if n.meta.TooOld() {
		what = "the meta shard's"
	} else if t, ok := n.Tenant(name); ok && t.SM.TooOld() {
		what = "tenant " + name + "'s"
	}
	if what == "" {
		return nil
	}
	return &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
		Message: fmt.Sprintf("node %d runs a build too old for %s state version (this build knows up to %d): it serves no tenant until it is upgraded; ask another node",
			n.cfg.NodeID, what, fsm.Version)}
}

// Tenant returns a running tenant replica by tenant name.
func (n *Node) Tenant(name string) (*Tenant, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	t, ok := n.byName[name]
	return t, ok
}

// Serving returns the tenant's running replica on this node when the meta
// shard places it here, under its replica ID: the one that answers the
// tenant's requests. A replica a move took out of its shard (or that the
// tenant's placement put back here under a new ID) may run until the
// reconciler stops it, hearing nothing more of its shard: it answers
// nothing, and the tenant is served as one this node does not hold.
func (n *Node) Serving(name string) (*Tenant, bool) {
	t, ok := n.Tenant(name)
	if !ok {
		return nil, false
	}
	if brief, ok := n.meta.Brief(name); !ok || brief.ShardID != t.ShardID {
		return nil, false
	}
	if node, ok := n.meta.ReplicaNode(name, t.ReplicaID); !ok || node != n.cfg.NodeID {
		return nil, false
	}
	return t, true
}

// Tenants returns the running tenant replicas, sorted by name.
func (n *Node) Tenants() []*Tenant {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]*Tenant, 0, len(n.byName))
	for _, t := range n.byName {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ProposeMeta proposes a meta command, retrying within ctx.
func (n *Node) ProposeMeta(ctx context.Context, cmd []byte) (fsm.MetaOutcome, error) {
	r, err := n.propose(ctx, fsm.MetaShardID, cmd)
	if err != nil {
		return fsm.MetaOutcome{}, err
	}
	var o fsm.MetaOutcome
	if err := json.Unmarshal(r.Data, &o); err != nil {
		return o, fmt.Errorf("decode meta outcome: %w", err)
	}
	if e := o.Err(); e != nil {
		return o, e
	}
	n.logMeta(ctx, cmd, o)
	return o, nil
}

// raftError maps a Dragonboat error to the API's: 504 when a proposal may
// have been applied, 503 when it surely was not. A nil err is a request
// that ran out of time before anything was sent: 503.
func raftError(err error, ctx context.Context) *api.Error {
	retry := 200 * time.Millisecond
	switch {
	case errors.Is(err, dragonboat.ErrTimeout):
		return &api.Error{Code: api.CodeTimeout, Message: "raft: no answer before the deadline; the outcome is unknown, retry with the same body", RetryAfter: retry}
	case errors.Is(err, dragonboat.ErrSystemBusy):
		return &api.Error{Code: api.CodeUnavailable, Message: "raft: busy (back-pressure)", RetryAfter: 500 * time.Millisecond}
	case errors.Is(err, dragonboat.ErrShardNotFound), errors.Is(err, dragonboat.ErrShardClosed):
		return &api.Error{Code: api.CodeUnavailable, Message: "raft: the shard is not running on this node", RetryAfter: time.Second}
	case errors.Is(err, dragonboat.ErrClosed):
		return &api.Error{Code: api.CodeUnavailable, Message: "raft: this node is shutting down", RetryAfter: retry}
	case errors.Is(err, dragonboat.ErrPayloadTooBig):
		return &api.Error{Code: api.CodeTooLarge, Message: "raft: command too large"}
	case errors.Is(err, dragonboat.ErrCanceled), errors.Is(err, context.Canceled):
		return &api.Error{Code: api.CodeUnavailable, Message: "raft: canceled", RetryAfter: retry}
	case err == nil:
		return &api.Error{Code: api.CodeUnavailable, Message: "raft: no time left to propose", RetryAfter: retry}
	}
	return &api.Error{Code: api.CodeUnavailable, Message: "raft: " + err.Error(), RetryAfter: retry}
}

// readIndex waits for a ReadIndex on a shard: on success the local replica
// has applied everything committed before the call. A ReadIndex that
// Dragonboat drops (a leader elected a moment ago has not committed an
// entry of its term yet, or the replica does not know its leader) is tried
// again, every RTT, within the same bound: a read right after an election
// waits for it instead of failing.
func (n *Node) readIndex(ctx context.Context, shard uint64) error {
	timeout := n.cfg.ProposalTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout < n.cfg.RTT {
		return &api.Error{Code: api.CodeUnavailable, Message: "raft: no time left to read", RetryAfter: 100 * time.Millisecond}
	}
	deadline := time.Now().Add(timeout)
	for {
		dropped, err := n.readIndexOnce(ctx, shard, time.Until(deadline))
		if !dropped {
			return err
		}
		if time.Until(deadline) < 2*n.cfg.RTT {
			return err
		}
		select {
		case <-time.After(n.cfg.RTT):
		case <-ctx.Done():
			return &api.Error{Code: api.CodeUnavailable, Message: "raft: read index: " + ctx.Err().Error(), RetryAfter: 100 * time.Millisecond}
		}
	}
}

// readIndexOnce is one ReadIndex; dropped reports a request Dragonboat
// dropped or could not take because the shard is not ready, which a retry
// may pass.
func (n *Node) readIndexOnce(ctx context.Context, shard uint64, timeout time.Duration) (dropped bool, err error) {
	rs, err := n.nh.ReadIndex(shard, timeout)
	if err != nil {
		return errors.Is(err, dragonboat.ErrShardNotReady), raftError(err, ctx)
	}
	defer rs.Release()
	select {
	case r := <-rs.ResultC():
		if r.Completed() {
			return false, nil
		}
		if r.Timeout() {
			return false, &api.Error{Code: api.CodeUnavailable, Message: "raft: read index timed out (no quorum?)", RetryAfter: 200 * time.Millisecond}
		}
		return r.Dropped(), &api.Error{Code: api.CodeUnavailable, Message: "raft: read index dropped or aborted", RetryAfter: 100 * time.Millisecond}
	case <-ctx.Done():
		return false, &api.Error{Code: api.CodeUnavailable, Message: "raft: read index: " + ctx.Err().Error(), RetryAfter: 100 * time.Millisecond}
	}
}

// SyncMeta makes the local meta replica current with a quorum.
func (n *Node) SyncMeta(ctx context.Context) error {
	return n.readIndex(ctx, fsm.MetaShardID)
}

// MetaMembers is the meta shard's membership, its non-voting members (a
// joined node not promoted yet) included: node ID -> Raft address.
func (n *Node) MetaMembers(ctx context.Context) (map[uint64]string, error) {
	m, err := n.nh.SyncGetShardMembership(ctx, fsm.MetaShardID)
	if err != nil {
		return nil, raftError(err, ctx)
	}
	out := map[uint64]string{}
	for _, ids := range []map[uint64]string{m.Nodes, m.NonVotings} {
		for id := range ids { // a meta replica's ID is its node's
			addr, _ := n.reg.addr(id)
			out[id] = addr
		}
	}
	return out, nil
}

// leader is the local view of a shard's leader.
func (n *Node) leader(shard uint64) (replica, term uint64, ok bool) {
	id, term, valid, err := n.nh.GetLeaderID(shard)
	if err != nil || !valid || id == 0 {
		return 0, term, false
	}
	return id, term, true
}

// HasReplicaData reports whether this node holds Raft data (a bootstrap
// record and log) for a shard's replica.
func (n *Node) HasReplicaData(shard, replica uint64) bool {
	return n.nh.HasNodeInfo(shard, replica)
}

// NodeAPI is a node's advertised API address ("" when unknown).
func (n *Node) NodeAPI(node uint64) string {
	if rec, ok := n.meta.Node(node); ok {
		return rec.APIAddress
	}
	return ""
}

// MetaLeaderAPI is the API address of the meta shard's leader.
func (n *Node) MetaLeaderAPI() string {
	if id, _, ok := n.leader(fsm.MetaShardID); ok {
		return n.NodeAPI(id)
	}
	return ""
}

// Cluster describes nodes and shards as this node sees them.
func (n *Node) Cluster() api.Cluster { return n.ClusterView(false) }

// ClusterView is Cluster, with local only the shards this node runs a
// replica of (and the meta shard): what a peer's look needs, at a cost
// that grows with this node's replicas, not with every tenant of the
// cluster. The nodes' Leaders then count those shards only.
func (n *Node) ClusterView(local bool) api.Cluster {
	b := n.build
	c := api.Cluster{NodeID: n.cfg.NodeID, Build: &b, StateVersion: n.meta.Version(), Ready: n.Ready(),
		Nodes: []api.Node{}, Shards: []api.Shard{}, Removed: n.meta.RemovedIDs()}
	if c.StateVersion >= 5 {
		c.Replicas = n.meta.Replicas()
	}
	load := n.meta.Load()
	for _, rec := range n.meta.Nodes() {
		c.Nodes = append(c.Nodes, api.Node{ID: rec.ID, RaftAddress: rec.RaftAddress, APIAddress: rec.APIAddress,
			Zone: rec.Zone, Replicas: load[rec.ID]})
	}
	seen := n.peerLeaders()
	meta := api.Shard{ShardID: fsm.MetaShardID, Replicas: map[uint64]uint64{}, Applied: n.meta.Applied()}
	for _, rec := range n.meta.Nodes() {
		meta.Replicas[rec.ID] = rec.ID
	}
	if id, term, ok := n.leader(fsm.MetaShardID); ok {
		meta.Leader, meta.Term = id, term
	}
	c.Shards = append(c.Shards, meta)
	for _, rec := range n.meta.Tenants() {
		t, here := n.Tenant(rec.Name)
		if local && !here {
			continue
		}
		s := api.Shard{ShardID: rec.ShardID, Tenant: rec.Name, Replicas: map[uint64]uint64{}}
		for rid, rep := range rec.Replicas {
			s.Replicas[rid] = rep.Node
			if rep.NonVoting {
				s.NonVoting = append(s.NonVoting, rid)
			}
		}
		sort.Slice(s.NonVoting, func(i, j int) bool { return s.NonVoting[i] < s.NonVoting[j] })
		if mv := rec.Move; mv != nil {
			s.Move = &api.ShardMove{To: rec.Replicas[mv.Add].Node, Step: mv.Step, Reason: mv.Reason,
				StartedAt: time.UnixMilli(mv.StartedMs).UTC()}
			if mv.Remove != 0 {
				s.Move.From = rec.Replicas[mv.Remove].Node
			}
		}
		if id, term, ok := n.leader(rec.ShardID); ok && here {
			s.Leader, s.Term = rec.Replicas[id].Node, term
		} else if l := seen[rec.ShardID]; l != 0 {
			s.Leader = l // as the nodes that hold it see it
		}
		if here {
			s.Applied = t.SM.Applied()
		}
		c.Shards = append(c.Shards, s)
	}
	leads := map[uint64]int{}
	for _, s := range c.Shards {
		if s.Leader != 0 {
			leads[s.Leader]++
		}
	}
	for i := range c.Nodes {
		c.Nodes[i].Leaders = leads[c.Nodes[i].ID]
	}
	n.describeNodes(c.Nodes, time.Now())
	return c
}

// Close stops the node gracefully: it hands every leadership it holds to
// another replica (a rolling restart must not look like a crash), then
// closes the NodeHost.
func (n *Node) Close() {
	if !n.closing.CompareAndSwap(false, true) {
		return
	}
	n.TransferLeaderships(3*time.Second, nil)
	close(n.stop)
	n.cancel()
	n.wg.Wait()
	n.mu.Lock()
	running := make([]*Tenant, 0, len(n.tenants))
	for _, t := range n.tenants {
		running = append(running, t)
	}
	n.mu.Unlock()
	for _, t := range running {
		t.Sessions.Close()
	}
	n.nh.Close()
	untrackNode(n.cfg.DataDir)
}

// Abort closes the node without handing anything over (a crash, for tests).
func (n *Node) Abort() {
	if !n.closing.CompareAndSwap(false, true) {
		return
	}
	close(n.stop)
	n.cancel()
	n.wg.Wait()
	n.nh.Close()
	untrackNode(n.cfg.DataDir)
	for _, t := range n.Tenants() {
		t.Sessions.Close()
	}
}

// PeerApplied is, per peer node, the applied index of each shard replica it
// runs (from the peers' own view of the cluster); nil when unknown.
type PeerApplied map[uint64]map[uint64]uint64

// TransferLeaderships moves every shard this node leads to another replica
// (tenant sessions stop being answered here first) and waits, up to max,
// until none is led here. Targets are tried most caught-up first (by
// peers' applied indexes, when known), each for two election timeouts: a
// transfer to a peer that is behind or unreachable (say, just restarted,
// its connection still backing off) would stall the shard until it failed.
func (n *Node) TransferLeaderships(max time.Duration, peers PeerApplied) {
	me := n.cfg.NodeID
	type led struct {
		shard, self uint64
		targets     []uint64 // replica IDs, best first
		t           *Tenant
	}
	order := func(shard uint64, replicas map[uint64]uint64) []uint64 { // replica -> node
		var ids []uint64
		for rid := range replicas {
			ids = append(ids, rid)
		}
		applied := func(rid uint64) int64 {
			if v, ok := peers[replicas[rid]][shard]; ok {
				return int64(v)
			}
			return -1
		}
		sort.Slice(ids, func(i, j int) bool {
			if a, b := applied(ids[i]), applied(ids[j]); a != b {
				return a > b
			}
			return ids[i] < ids[j]
		})
		return ids
	}
	var shards []*led
	if id, _, ok := n.leader(fsm.MetaShardID); ok && id == me {
		shards = append(shards, &led{shard: fsm.MetaShardID, self: me, targets: order(fsm.MetaShardID, n.metaTransferTargets())})
	}
	for _, t := range n.Tenants() {
		if id, _, ok := n.leader(t.ShardID); !ok || id != t.ReplicaID {
			continue
		}
		rec, ok := n.meta.Tenant(t.Name)
		if !ok {
			continue
		}
		reps := map[uint64]uint64{}
		for rid, rep := range rec.Replicas {
			if rid != t.ReplicaID && !rep.NonVoting {
				reps[rid] = rep.Node
			}
		}
		t.Sessions.Handoff()
		shards = append(shards, &led{shard: t.ShardID, self: t.ReplicaID, targets: order(t.ShardID, reps), t: t})
	}
	deadline := time.Now().Add(max)
	per := 2 * n.cfg.ElectionTimeout()
	var wg sync.WaitGroup
	var left atomic.Int64
	for _, s := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, target := range s.targets {
				if err := n.nh.RequestLeaderTransfer(s.shard, target); err != nil {
					n.log.Debug("leader transfer", "shard", s.shard, "target", target, "err", err)
				}
				try := time.Now().Add(per)
				for time.Now().Before(try) && time.Now().Before(deadline) {
					if id, _, ok := n.leader(s.shard); !ok || id != s.self {
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			if id, _, ok := n.leader(s.shard); ok && id == s.self {
				left.Add(1)
			}
		}()
	}
	wg.Wait()
	if left.Load() > 0 {
		n.log.Warn("some leaderships were not transferred before shutdown", "shards", left.Load())
	}
}

// metaTransferTargets is who may take the meta shard's leadership from
// this node (replica ID -> node ID, the same for the meta shard): the
// other voters — a joined node not promoted yet (join.go) cannot take it,
// and a transfer to it costs two election timeouts — or, when the
// membership cannot be read, every other node recorded.
func (n *Node) metaTransferTargets() map[uint64]uint64 {
	ctx, cancel := context.WithTimeout(n.ctx, time.Second)
	voters, err := n.MetaVoters(ctx)
	cancel()
	reps := map[uint64]uint64{}
	for _, rec := range n.meta.Nodes() {
		if _, votes := voters[rec.ID]; rec.ID != n.cfg.NodeID && (votes || err != nil) {
			reps[rec.ID] = rec.ID
		}
	}
	return reps
}

// listener receives Dragonboat's leader changes; it must never block.
type listener struct{ n *Node }

func (l listener) LeaderUpdated(info raftio.LeaderInfo) {
	n := l.n
	tenant := ""
	if info.ShardID != fsm.MetaShardID {
		n.mu.RLock()
		t := n.tenants[info.ShardID]
		n.mu.RUnlock()
		if t != nil {
			t.Sessions.LeaderChanged()
			tenant = t.Name
		} else if rec, ok := n.meta.TenantByShard(info.ShardID); ok {
			tenant = rec.Name
		}
	}
	if info.LeaderID == 0 {
		return // an election under way: the next event names its winner
	}
	n.metrics.leaderChanged(info.ShardID, tenant)
	select {
	case n.leaderLog <- leaderEvent{info: info, tenant: tenant}:
	default: // the log is behind: this change is counted, not logged
	}
}

// leaderEvent is a shard's new leader, for logLeaders.
type leaderEvent struct {
	info   raftio.LeaderInfo
	tenant string
}

// logLeaders writes an INFO line for each shard's new leader, off
// Dragonboat's event path (which must not block on a log write).
func (n *Node) logLeaders() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case e := <-n.leaderLog:
			node := e.info.LeaderID // a meta replica's ID is its node's
			if e.info.ShardID != fsm.MetaShardID {
				node, _ = n.meta.ReplicaNode(e.tenant, e.info.LeaderID)
			}
			args := []any{"shard", e.info.ShardID, "term", e.info.Term, "leader_node", node, "leader_replica", e.info.LeaderID}
			if e.tenant != "" {
				args = append(args, "tenant", e.tenant)
			} else if e.info.ShardID == fsm.MetaShardID {
				args = append(args, "tenant", "(meta)")
			}
			if node == n.cfg.NodeID {
				n.log.Info("shard leader: this node", args...)
			} else {
				n.log.Info("shard leader: another node", args...)
			}
		}
	}
}

// Tenant replica: the session manager's view of Raft.

// Leader is the local view of the tenant shard's leader and term.
func (t *Tenant) Leader() (uint64, uint64, bool) { return t.node.leader(t.ShardID) }

// ReadIndex confirms the local replica is current with a quorum.
func (t *Tenant) ReadIndex(ctx context.Context) error { return t.node.readIndex(ctx, t.ShardID) }

// Propose proposes a command on the tenant shard and returns its outcome;
// the error is an *api.Error for both Raft failures and rejected commands.
func (t *Tenant) Propose(ctx context.Context, cmd []byte) (fsm.Outcome, error) {
	r, err := t.node.propose(ctx, t.ShardID, cmd)
	if err != nil {
		return fsm.Outcome{}, err
	}
	var o fsm.Outcome
	if err := json.Unmarshal(r.Data, &o); err != nil {
		return o, fmt.Errorf("decode outcome: %w", err)
	}
	return o, nil
}

// LeaderAPI is the API address of the tenant shard's leader ("" unknown).
func (t *Tenant) LeaderAPI() string {
	id, _, ok := t.Leader()
	if !ok {
		return ""
	}
	node, ok := t.node.meta.ReplicaNode(t.Name, id)
	if !ok {
		return ""
	}
	return t.node.NodeAPI(node)
}

// LeaderIsLocal reports whether this node's replica leads the shard.
func (t *Tenant) LeaderIsLocal() bool {
	id, _, ok := t.Leader()
	return ok && id == t.ReplicaID
}

// raftView adapts a Tenant to session.Raft (ReplicaID is a field there).
type raftView struct{ *Tenant }

func (r raftView) ReplicaID() uint64 { return r.Tenant.ReplicaID }

// MetaLeaderIsLocal reports whether this node's meta replica leads the
// meta shard.
func (n *Node) MetaLeaderIsLocal() bool {
	id, _, ok := n.leader(fsm.MetaShardID)
	return ok && id == n.cfg.NodeID
}
