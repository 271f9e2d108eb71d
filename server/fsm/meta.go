package fsm

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/tenants"
)

// MetaShardID is the Raft shard of the meta state machine. Its replica IDs
// are the node IDs.
const MetaShardID = 1

// First IDs handed out by the meta shard's counters. Shard IDs below
// FirstTenantShardID are reserved for system shards; tenant replica IDs
// start above any plausible node ID, so they are never confused with one.
// MaxEpoch is the last incarnation of a tenant name: fencing tokens are
// epoch<<40 | index, and they stay below 2^53 so that JSON carries them
// exactly. A creation past it is refused, never wrapped.
const MaxEpoch = 1<<13 - 1

const (
	FirstTenantShardID = 100
	FirstReplicaID     = 1000
)

// Meta is the state machine of the meta shard: nodes, tenants with their
// shard, replica map, epoch, quotas and token hashes, the tombstones of
// deleted tenants' shards, and the counters that issue shard and replica
// IDs, never reused.
type Meta struct {
	mu     sync.RWMutex
	st     metaState
	watch  watchHub
	tooOld bool // a SetVersion newer than this build was refused
}

type metaState struct {
	Applied       uint64                   `json:"applied"`
	Version       uint64                   `json:"version,omitempty"` // semantics version (version.go); 0 is 1
	NextShardID   uint64                   `json:"next_shard_id"`
	NextReplicaID uint64                   `json:"next_replica_id"`
	Epochs        map[string]uint64        `json:"epochs"`
	Nodes         map[uint64]*NodeRecord   `json:"nodes"`
	Tenants       map[string]*TenantRecord `json:"tenants"`
	Tombstones    map[uint64]*Tombstone    `json:"tombstones"`
	// Removed is the nodes taken out of the cluster for good (ID -> when):
	// such an ID never registers or gets a replica again.
	Removed map[uint64]int64 `json:"removed,omitempty"`
	// Replicas is R, the voting replicas of each tenant shard (from
	// version 5, set_replicas); 0 is DefaultReplicas.
	Replicas uint64 `json:"replicas,omitempty"`
}

// NodeRecord is a server as it registered itself.
type NodeRecord struct {
	ID          uint64 `json:"id"`
	RaftAddress string `json:"raft_address"`
	APIAddress  string `json:"api_address"`
	// Incarnation identifies the node's current process (its start time):
	// peers open fresh Raft connections to a node that restarted.
	Incarnation uint64 `json:"incarnation,omitempty"`
	// Zone is the node's failure domain (--zone, from version 5): a
	// tenant's replicas are spread over zones first.
	Zone string `json:"zone,omitempty"`
}

// Replica is one replica of a tenant shard. Join is set for replicas added
// after the shard was created: their node starts them as joiners, never
// bootstrapping them. From version 5, a move adds a replica non-voting
// (Staged): NonVoting until the move promotes it. Its node always starts a
// staged replica as a non-voting one, promoted or not: Dragonboat replays
// the replica's log from its adding as non-voting (a replica started as a
// voter there panics) and makes it a voter itself when it meets the
// promotion, in the log or in a snapshot.
type Replica struct {
	Node        uint64 `json:"node"`
	RaftAddress string `json:"raft_address"`
	Join        bool   `json:"join,omitempty"`
	NonVoting   bool   `json:"non_voting,omitempty"`
	Staged      bool   `json:"staged,omitempty"`
}

// TenantRecord is a tenant in the meta shard.
type TenantRecord struct {
	Name          string              `json:"name"`
	ShardID       uint64              `json:"shard_id"`
	Epoch         uint64              `json:"epoch"`
	Replicas      map[uint64]Replica  `json:"replicas"`
	InitialQuotas api.Quotas          `json:"initial_quotas"` // what the shard starts from
	Quotas        api.Quotas          `json:"quotas"`
	QuotasVersion uint64              `json:"quotas_version"`
	Credentials   tenants.Credentials `json:"credentials"`
	CreatedMs     int64               `json:"created_ms"`
	// Version is the meta state's version when the tenant was created: its
	// shard starts at it (0 before versions: 1).
	Version uint64 `json:"version,omitempty"`
	// Restore is set on a tenant a restore created or wrote (from version
	// 4): pending until the restore has written its state.
	Restore *RestoreMark `json:"restore,omitempty"`
	// Rotation is the rotation that set the current token (from version 4).
	Rotation *Rotation `json:"rotation,omitempty"`
	// Move is the replica move under way, if any (from version 5).
	Move *Move `json:"move,omitempty"`
	// Retired is the replicas moves took out of the shard (replica ID ->
	// node, from version 5): a node deletes the data it keeps of them.
	Retired map[uint64]uint64 `json:"retired,omitempty"`
}

// RestoreMark is what a tenant's record keeps of the restore that wrote it.
type RestoreMark struct {
	// Pending: the restore has not written the tenant's state yet, and its
	// clients are answered 503 restoring, never a partial state.
	Pending bool `json:"pending,omitempty"`
	// Index is the tenant shard's applied index once the restore had
	// written its state: a replica behind it answers 503 restoring too.
	Index uint64 `json:"index,omitempty"`
	// BackupIndex is the meta index the backup was read at.
	BackupIndex uint64 `json:"backup_index,omitempty"`
}

// Info is what the tenant's state machine starts from.
func (r *TenantRecord) Info() TenantInfo {
	return TenantInfo{Name: r.Name, Epoch: r.Epoch, Quotas: r.InitialQuotas, Version: r.Version}
}

// Initial returns the replica map a bootstrapping node starts with: the
// replicas fixed at creation (joiners excluded).
func (r *TenantRecord) Initial() map[uint64]string {
	m := map[uint64]string{}
	for id, rep := range r.Replicas {
		if !rep.Join {
			m[id] = rep.RaftAddress
		}
	}
	return m
}

// ReplicaOn returns the replica ID a node hosts, if any.
func (r *TenantRecord) ReplicaOn(node uint64) (uint64, Replica, bool) {
	for id, rep := range r.Replicas {
		if rep.Node == node {
			return id, rep, true
		}
	}
	return 0, Replica{}, false
}

func (r *TenantRecord) clone() *TenantRecord {
	c := *r
	c.Replicas = make(map[uint64]Replica, len(r.Replicas))
	for k, v := range r.Replicas {
		c.Replicas[k] = v
	}
	if r.Credentials.Previous != nil {
		p := *r.Credentials.Previous
		c.Credentials.Previous = &p
	}
	if r.Restore != nil {
		m := *r.Restore
		c.Restore = &m
	}
	if r.Rotation != nil {
		o := *r.Rotation
		c.Rotation = &o
	}
	if r.Move != nil {
		mv := *r.Move
		c.Move = &mv
	}
	if r.Retired != nil {
		c.Retired = make(map[uint64]uint64, len(r.Retired))
		for k, v := range r.Retired {
			c.Retired[k] = v
		}
	}
	return &c
}

// Tombstone is the shard of a deleted tenant: its ID is never reused, and
// every node removes its local data for it.
type Tombstone struct {
	Tenant    string             `json:"tenant"`
	ShardID   uint64             `json:"shard_id"`
	Replicas  map[uint64]Replica `json:"replicas"`
	DeletedMs int64              `json:"deleted_ms"`
}

// Meta commands.

// RegisterNode records (or updates) a node's addresses; nodes send it at
// every start.
type RegisterNode struct {
	ID          uint64 `json:"id"`
	RaftAddress string `json:"raft_address"`
	APIAddress  string `json:"api_address"`
	Incarnation uint64 `json:"incarnation,omitempty"`
	Zone        string `json:"zone,omitempty"` // from version 5
}

// CreateTenant creates a tenant with a replica on each of Members (node ID
// -> Raft address), chosen by the proposer from the meta shard's membership.
// With Replicas (from version 5) the shard gets that many replicas (at most
// one per member), placed on the members with the fewest replicas, zones
// first (placement.go). A retry with the same token hash answers the
// existing tenant.
type CreateTenant struct {
	Name      string            `json:"name"`
	Quotas    api.Quotas        `json:"quotas"`
	TokenHash tenants.Hash      `json:"token_hash"`
	Members   map[uint64]string `json:"members"`
	NowMs     int64             `json:"now_ms"`
	Replicas  uint64            `json:"replicas,omitempty"`
}

// DeleteTenant deletes a tenant and tombstones its shard.
type DeleteTenant struct {
	Name  string `json:"name"`
	NowMs int64  `json:"now_ms"`
}

// UpdateQuotas replaces a tenant's quotas (already merged and validated).
type UpdateQuotas struct {
	Name   string     `json:"name"`
	Quotas api.Quotas `json:"quotas"`
}

// RotateToken makes TokenHash the tenant's token; the previous one stays
// valid for PreviousValidMs. A retry with the same hash changes nothing;
// from version 4, a retry with another PreviousValidMs than the rotation
// that set the token is refused (409), not silently ignored.
type RotateToken struct {
	Name            string       `json:"name"`
	TokenHash       tenants.Hash `json:"token_hash"`
	PreviousValidMs int64        `json:"previous_valid_ms"`
	NowMs           int64        `json:"now_ms"`
}

// RevokePrevious ends the previous token of a tenant (from version 4),
// leaving the current one: what a rotation's previous_valid_ms of 0 would
// have done, after the clients moved to the new token.
type RevokePrevious struct {
	Name string `json:"name"`
}

// Rotation is what a tenant's record keeps of the rotation that set its
// token (from version 4): a retry must ask for the same.
type Rotation struct {
	PreviousValidMs int64 `json:"previous_valid_ms"`
	AtMs            int64 `json:"at_ms"`
}

// AddReplica places a new replica of every tenant shard on a node that
// joined the cluster after the tenants were created.
type AddReplica struct {
	Name        string `json:"name"`
	Node        uint64 `json:"node"`
	RaftAddress string `json:"raft_address"`
}

// Restore creates a backup's tenants in a cluster that has none, in one
// entry: the counters and epochs are raised to at least the backup's
// first, and every epoch counter of the backup by EpochGap more, so every
// restored tenant gets an epoch above the one it had and above the next
// EpochGap ones its name may have had in the cluster the backup came from
// after the backup was taken (its fencing tokens above any issued there),
// and no shard or replica ID is issued twice. A retry (every tenant there,
// with the same token) changes nothing.
type Restore struct {
	NextShardID   uint64            `json:"next_shard_id"`
	NextReplicaID uint64            `json:"next_replica_id"`
	Epochs        map[string]uint64 `json:"epochs"`
	EpochGap      uint64            `json:"epoch_gap,omitempty"`
	Tenants       []RestoreTenant   `json:"tenants"`
	Members       map[uint64]string `json:"members"`
	NowMs         int64             `json:"now_ms"`
	// Mark (from version 4) creates the tenants restoring (RestoreMark),
	// BackupIndex being the meta index the backup was read at.
	Mark        bool   `json:"mark,omitempty"`
	BackupIndex uint64 `json:"backup_index,omitempty"`
	// Replicas (from version 5) places each tenant as CreateTenant's does.
	Replicas uint64 `json:"replicas,omitempty"`
}

// RestoreDone ends a tenant's restore (from version 4): its state is
// written, its shard's applied index then was Index.
type RestoreDone struct {
	Name  string `json:"name"`
	Index uint64 `json:"index"`
}

// RestoreTenant is one tenant of a Restore.
type RestoreTenant struct {
	Name        string              `json:"name"`
	Quotas      api.Quotas          `json:"quotas"`
	Credentials tenants.Credentials `json:"credentials"`
	CreatedMs   int64               `json:"created_ms"`
}

// RemoveNode takes a node out of the cluster for good: its record and its
// replica in every tenant record go, and its ID is never taken back. The
// proposer has removed its replicas from the shards' Raft memberships.
type RemoveNode struct {
	ID    uint64 `json:"id"`
	NowMs int64  `json:"now_ms"`
}

// MetaOutcome is the result of a meta command.
type MetaOutcome struct {
	Code    api.Code      `json:"code,omitempty"`
	Message string        `json:"message,omitempty"`
	Index   uint64        `json:"index"`
	Created bool          `json:"created,omitempty"`
	Tenant  *TenantRecord `json:"tenant,omitempty"`
	Replica uint64        `json:"replica,omitempty"`
}

// Err returns the outcome as an *api.Error, or nil when it succeeded.
func (o *MetaOutcome) Err() *api.Error {
	if o.Code == "" {
		return nil
	}
	return &api.Error{Code: o.Code, Message: o.Message}
}

func metaReject(code api.Code, format string, args ...any) MetaOutcome {
	return MetaOutcome{Code: code, Message: fmt.Sprintf(format, args...)}
}

// metaRejectErr is the outcome of a meta command refused with err.
func metaRejectErr(err *api.Error) MetaOutcome {
	return MetaOutcome{Code: err.Code, Message: err.Message}
}

func (MetaOutcome) rejected(err *api.Error) MetaOutcome { return metaRejectErr(err) }

func tenantNotFound(name string) MetaOutcome {
	return metaReject(api.CodeNotFound, "tenant %s not found", name)
}

// NewMeta returns an empty meta state machine.
func NewMeta() *Meta {
	return &Meta{st: metaState{
		NextShardID: FirstTenantShardID, NextReplicaID: FirstReplicaID,
		Epochs: map[string]uint64{}, Nodes: map[uint64]*NodeRecord{},
		Tenants: map[string]*TenantRecord{}, Tombstones: map[uint64]*Tombstone{},
	}}
}

// Apply applies one committed meta entry. Like Tenant.Apply it is total.
func (m *Meta) Apply(index uint64, cmd []byte) (o MetaOutcome) {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			o = metaReject(api.CodeInternal, "meta command at %d: %v", index, r)
		}
		if index > m.st.Applied {
			m.st.Applied = index
		}
		o.Index = index
	}()
	op, body, err := Decode(cmd)
	if err != nil {
		return metaReject(api.CodeBadRequest, "undecodable command: %v", err)
	}
	if h := metaOps[op]; h != nil {
		return h(m, index, op, body, nil)
	}
	return unknownMetaOp(op)
}

// metaOp applies one meta command from its encoded body.
type metaOp = command[*Meta, MetaOutcome]

// metaOps are the meta shard's commands, each decoded strictly into its
// type first (decoded), as the tenant's are; since hides a command from a
// state before the version that added it.
var metaOps = map[Op]metaOp{
	OpSetMetaVersion: decoded((*Meta).applySetVersion),
	OpRegisterNode:   decoded((*Meta).applyRegisterNode),
	OpCreateTenant:   decoded((*Meta).applyCreateTenant),
	OpDeleteTenant:   decoded((*Meta).applyDeleteTenant),
	OpUpdateQuotas:   decoded((*Meta).applyUpdateQuotas),
	OpRotateToken:    decoded((*Meta).applyRotateToken),
	OpRevokePrevious: since(4, decoded((*Meta).applyRevokePrevious)),
	OpRemoveNode:     decoded((*Meta).applyRemoveNode),
	OpRestore:        decoded((*Meta).applyRestore),
	OpRestoreDone:    since(4, decoded((*Meta).applyRestoreDone)),
	OpAddReplica:     decoded((*Meta).applyAddReplica),
	OpSetReplicas:    since(5, decoded((*Meta).applySetReplicas)), // placement.go
	OpMoveStart:      since(5, decoded((*Meta).applyMoveStart)),
	OpMoveStep:       since(5, decoded((*Meta).applyMoveStep)),
	OpMoveEnd:        since(5, decoded((*Meta).applyMoveEnd)),
}

// since makes a command added at version v unknown to a state before v,
// as it was to the builds before it: refused before its body is read.
func since(v uint64, h metaOp) metaOp {
	return func(m *Meta, index uint64, op Op, body []byte, ch *Changes) MetaOutcome {
		if versionOf(m.st.Version) < v {
			return unknownMetaOp(op)
		}
		return h(m, index, op, body, ch)
	}
}

func unknownMetaOp(op Op) MetaOutcome {
	return metaReject(api.CodeBadRequest, "unknown meta command %s", op)
}

func (m *Meta) applySetVersion(_ uint64, _ Op, c SetVersion, _ *Changes) MetaOutcome {
	if err := setVersion(&m.st.Version, c, &m.tooOld); err != nil {
		return metaRejectErr(err)
	}
	return MetaOutcome{}
}

func (m *Meta) applyRegisterNode(_ uint64, op Op, c RegisterNode, _ *Changes) MetaOutcome {
	if c.ID == 0 || c.RaftAddress == "" {
		return metaReject(api.CodeBadRequest, "register_node: id and raft_address are required")
	}
	if c.Zone != "" && versionOf(m.st.Version) < 5 {
		return metaRejectErr(unknownField(op, "zone"))
	}
	if _, gone := m.st.Removed[c.ID]; gone {
		return metaReject(api.CodeConflict, "node %d was removed from the cluster; start it with a new --id and an empty data dir", c.ID)
	}
	inc := c.Incarnation
	if old := m.st.Nodes[c.ID]; old != nil && inc == 0 {
		inc = old.Incarnation // an operator's re-registration keeps it
	}
	m.st.Nodes[c.ID] = &NodeRecord{ID: c.ID, RaftAddress: c.RaftAddress, APIAddress: c.APIAddress, Incarnation: inc, Zone: c.Zone}
	return MetaOutcome{}
}

func (m *Meta) applyCreateTenant(_ uint64, _ Op, c CreateTenant, _ *Changes) MetaOutcome {
	return m.createTenant(c)
}

func (m *Meta) applyDeleteTenant(_ uint64, _ Op, c DeleteTenant, _ *Changes) MetaOutcome {
	t := m.st.Tenants[c.Name]
	if t == nil {
		return MetaOutcome{} // deleting a missing tenant succeeds
	}
	tomb := &Tombstone{Tenant: t.Name, ShardID: t.ShardID, Replicas: t.clone().Replicas, DeletedMs: c.NowMs}
	for rid, node := range t.Retired { // from version 5 only: a node still keeping one deletes it too
		tomb.Replicas[rid] = Replica{Node: node}
	}
	m.st.Tombstones[t.ShardID] = tomb
	delete(m.st.Tenants, c.Name)
	return MetaOutcome{Tenant: t.clone()}
}

func (m *Meta) applyUpdateQuotas(_ uint64, _ Op, c UpdateQuotas, _ *Changes) MetaOutcome {
	t := m.st.Tenants[c.Name]
	if t == nil {
		return tenantNotFound(c.Name)
	}
	if t.Quotas != c.Quotas {
		t.Quotas = c.Quotas
		t.QuotasVersion++
	}
	return MetaOutcome{Tenant: t.clone()}
}

func (m *Meta) applyRotateToken(_ uint64, _ Op, c RotateToken, _ *Changes) MetaOutcome {
	t := m.st.Tenants[c.Name]
	if t == nil {
		return tenantNotFound(c.Name)
	}
	if c.PreviousValidMs < 0 {
		return metaReject(api.CodeBadRequest, "previous_valid_ms: must not be negative")
	}
	if versionOf(m.st.Version) >= 4 && t.Credentials.Current.Equal(c.TokenHash) && t.Rotation != nil &&
		t.Rotation.PreviousValidMs != c.PreviousValidMs {
		return metaReject(api.CodeConflict, "tenant %s: its token is this secret's already, set by a rotation with previous_valid_ms %d, not %d: "+
			"a retry sends the same; to end the previous token now, revoke it (rafting tenant revoke-previous)",
			c.Name, t.Rotation.PreviousValidMs, c.PreviousValidMs)
	}
	var changed bool
	t.Credentials, changed = tenants.Rotate(t.Credentials, c.TokenHash, time.UnixMilli(c.NowMs),
		time.Duration(c.PreviousValidMs)*time.Millisecond)
	if changed && versionOf(m.st.Version) >= 4 {
		t.Rotation = &Rotation{PreviousValidMs: c.PreviousValidMs, AtMs: c.NowMs}
	}
	return MetaOutcome{Tenant: t.clone()}
}

func (m *Meta) applyRevokePrevious(_ uint64, _ Op, c RevokePrevious, _ *Changes) MetaOutcome {
	t := m.st.Tenants[c.Name]
	if t == nil {
		return tenantNotFound(c.Name)
	}
	t.Credentials.Previous, t.Credentials.PreviousValidUntil = nil, time.Time{}
	return MetaOutcome{Tenant: t.clone()}
}

func (m *Meta) applyRemoveNode(_ uint64, _ Op, c RemoveNode, _ *Changes) MetaOutcome {
	if c.ID == 0 {
		return metaReject(api.CodeBadRequest, "remove_node: id is required")
	}
	delete(m.st.Nodes, c.ID)
	for _, t := range m.st.Tenants {
		for rid, rep := range t.Replicas {
			if rep.Node == c.ID {
				delete(t.Replicas, rid)
			}
		}
		if mv := t.Move; mv != nil && versionOf(m.st.Version) >= 5 {
			if _, ok := t.Replicas[mv.Add]; mv.Add != 0 && !ok {
				t.Move = nil // its new replica was on the node: undone
			} else if _, ok := t.Replicas[mv.Remove]; mv.Remove != 0 && !ok {
				t.Move = nil // the replica it took out was: done
			}
		}
	}
	if m.st.Removed == nil {
		m.st.Removed = map[uint64]int64{}
	}
	if _, done := m.st.Removed[c.ID]; !done {
		m.st.Removed[c.ID] = c.NowMs
	}
	return MetaOutcome{}
}

func (m *Meta) applyRestore(_ uint64, _ Op, c Restore, _ *Changes) MetaOutcome {
	return m.restore(c)
}

func (m *Meta) applyRestoreDone(_ uint64, _ Op, c RestoreDone, _ *Changes) MetaOutcome {
	t := m.st.Tenants[c.Name]
	if t == nil {
		return tenantNotFound(c.Name)
	}
	if t.Restore == nil {
		t.Restore = &RestoreMark{} // a forced restore over a tenant no restore created
	}
	t.Restore.Pending = false
	t.Restore.Index = max(t.Restore.Index, c.Index)
	return MetaOutcome{Tenant: t.clone()}
}

func (m *Meta) applyAddReplica(_ uint64, _ Op, c AddReplica, _ *Changes) MetaOutcome {
	t := m.st.Tenants[c.Name]
	if t == nil {
		return tenantNotFound(c.Name)
	}
	if id, _, ok := t.ReplicaOn(c.Node); ok {
		return MetaOutcome{Tenant: t.clone(), Replica: id}
	}
	if _, gone := m.st.Removed[c.Node]; gone {
		return metaReject(api.CodeConflict, "node %d was removed from the cluster", c.Node)
	}
	id := m.st.NextReplicaID
	m.st.NextReplicaID++
	t.Replicas[id] = Replica{Node: c.Node, RaftAddress: c.RaftAddress, Join: true}
	return MetaOutcome{Tenant: t.clone(), Replica: id, Created: true}
}

func (m *Meta) createTenant(c CreateTenant) MetaOutcome {
	if err := api.ValidateTenantName("name", c.Name); err != nil {
		return metaRejectErr(err.(*api.Error))
	}
	if t := m.st.Tenants[c.Name]; t != nil {
		if t.Credentials.Current.Equal(c.TokenHash) {
			return MetaOutcome{Tenant: t.clone()} // a retry
		}
		return metaReject(api.CodeConflict, "tenant %s exists", c.Name)
	}
	if versionOf(m.st.Version) >= 2 && m.st.Epochs[c.Name] >= MaxEpoch {
		return metaReject(api.CodeConflict, "tenant name %s has had all %d incarnations its fencing tokens can tell apart; choose another name", c.Name, MaxEpoch)
	}
	if len(c.Members) == 0 {
		return metaReject(api.CodeUnavailable, "create_tenant: no members to place the shard on")
	}
	if c.Replicas != 0 && versionOf(m.st.Version) < 5 {
		return metaRejectErr(unknownField(OpCreateTenant, "replicas"))
	}
	if c.Replicas > MaxReplicas {
		return metaReject(api.CodeBadRequest, "create_tenant: replicas %d, at most %d", c.Replicas, MaxReplicas)
	}
	t := &TenantRecord{
		Name: c.Name, ShardID: m.st.NextShardID, Epoch: m.st.Epochs[c.Name] + 1,
		Replicas: map[uint64]Replica{}, InitialQuotas: c.Quotas, Quotas: c.Quotas,
		Credentials: tenants.Credentials{Current: c.TokenHash}, CreatedMs: c.NowMs,
	}
	if versionOf(m.st.Version) >= 2 {
		t.Version = m.st.Version
	}
	m.st.NextShardID++
	m.st.Epochs[c.Name] = t.Epoch
	nodes := make([]uint64, 0, len(c.Members))
	for n := range c.Members {
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i] < nodes[j] })
	if c.Replicas != 0 {
		nodes = m.place(nodes, nil, int(c.Replicas))
		sort.Slice(nodes, func(i, j int) bool { return nodes[i] < nodes[j] })
	}
	for _, n := range nodes {
		t.Replicas[m.st.NextReplicaID] = Replica{Node: n, RaftAddress: c.Members[n]}
		m.st.NextReplicaID++
	}
	m.st.Tenants[c.Name] = t
	return MetaOutcome{Tenant: t.clone(), Created: true}
}

// restore applies a Restore: the command's checks first, then the state's
// (a cluster with tenants takes only a retry), then the counters and
// epochs are raised and the tenants created.
func (m *Meta) restore(c Restore) MetaOutcome {
	if err := checkRestore(c, versionOf(m.st.Version)); err != nil {
		return metaRejectErr(err)
	}
	if len(m.st.Tenants) > 0 {
		for _, t := range c.Tenants {
			if have := m.st.Tenants[t.Name]; have == nil || !have.Credentials.Current.Equal(t.Credentials.Current) {
				return metaReject(api.CodeConflict, "restore: the cluster has tenants already; restore into a new cluster")
			}
		}
		return MetaOutcome{} // a retry
	}
	if len(c.Members) == 0 && len(c.Tenants) > 0 {
		return metaReject(api.CodeUnavailable, "restore: no members to place the shards on")
	}
	for _, name := range sortedKeys(c.Epochs) { // a refusal names the first name: alike on every replica
		// The restored tenant's own epoch is one more: it must fit too.
		if e := max(m.st.Epochs[name], c.Epochs[name]) + c.EpochGap; e >= MaxEpoch || c.EpochGap >= MaxEpoch {
			return metaReject(api.CodeBadRequest, "restore: tenant name %s: epoch %d + epoch gap %d leaves no incarnation below %d; restore with a smaller gap",
				name, max(m.st.Epochs[name], c.Epochs[name]), c.EpochGap, MaxEpoch)
		}
	}
	m.st.NextShardID = max(m.st.NextShardID, c.NextShardID)
	m.st.NextReplicaID = max(m.st.NextReplicaID, c.NextReplicaID)
	for name, e := range c.Epochs {
		m.st.Epochs[name] = max(m.st.Epochs[name], e) + c.EpochGap
	}
	for _, t := range c.Tenants {
		m.restoreTenant(c, t)
	}
	return MetaOutcome{Created: len(c.Tenants) > 0}
}

// checkRestore runs the checks of a Restore that depend only on the
// command and the state's version v.
func checkRestore(c Restore, v uint64) *api.Error {
	switch {
	case c.EpochGap != 0 && v < 2:
		return unknownField(OpRestore, "epoch_gap")
	case (c.Mark || c.BackupIndex != 0) && v < 4:
		return unknownField(OpRestore, "mark")
	case c.Replicas != 0 && v < 5:
		return unknownField(OpRestore, "replicas")
	case c.Replicas > MaxReplicas:
		return api.Errorf(api.CodeBadRequest, "restore: replicas %d, at most %d", c.Replicas, MaxReplicas)
	}
	names := map[string]bool{}
	for _, t := range c.Tenants {
		if err := api.ValidateTenantName("name", t.Name); err != nil {
			return err.(*api.Error)
		}
		if t.Credentials.Current.IsZero() || names[t.Name] {
			return api.Errorf(api.CodeBadRequest, "restore: tenant %s: no token hash, or named twice", t.Name)
		}
		names[t.Name] = true
	}
	return nil
}

// restoreTenant creates one of a restore's tenants, with the backup's
// credentials and creation time.
func (m *Meta) restoreTenant(c Restore, t RestoreTenant) {
	m.createTenant(CreateTenant{Name: t.Name, Quotas: t.Quotas, TokenHash: t.Credentials.Current,
		Members: c.Members, NowMs: c.NowMs, Replicas: c.Replicas})
	rec := m.st.Tenants[t.Name]
	rec.Credentials = t.Credentials // decoded for this entry: nothing else holds it
	if t.CreatedMs != 0 {
		rec.CreatedMs = t.CreatedMs
	}
	if c.Mark {
		rec.Restore = &RestoreMark{Pending: true, BackupIndex: c.BackupIndex}
	}
}

// Version is the meta state's semantics version (version.go): what every
// node of the cluster was found to run, and what new tenants start at.
func (m *Meta) Version() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return versionOf(m.st.Version)
}

// TooOld reports whether this build refused a version the cluster agreed on.
func (m *Meta) TooOld() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.tooOld
}

// MetaBackup is what a backup takes of the meta state, read at once.
type MetaBackup struct {
	Applied                  uint64
	NextShardID, NextReplica uint64
	Epochs                   map[string]uint64
	Tenants                  []*TenantRecord // sorted by name
}

// Backup returns a copy of what a backup takes of the meta state.
func (m *Meta) Backup() MetaBackup {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b := MetaBackup{Applied: m.st.Applied, NextShardID: m.st.NextShardID, NextReplica: m.st.NextReplicaID,
		Epochs: make(map[string]uint64, len(m.st.Epochs))}
	for k, v := range m.st.Epochs {
		b.Epochs[k] = v
	}
	for _, name := range sortedKeys(m.st.Tenants) {
		b.Tenants = append(b.Tenants, m.st.Tenants[name].clone())
	}
	return b
}

// Notify wakes the meta watchers (the reconciler) after a batch.
func (m *Meta) Notify() {
	m.watch.notify(&Changes{})
}

// WaitApplied returns the applied index and a channel closed after the next
// applied batch.
func (m *Meta) WaitApplied() (uint64, <-chan struct{}) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.Applied, m.watch.appliedChan()
}

// Applied is the index of the last applied meta entry.
func (m *Meta) Applied() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.Applied
}

// Removed reports whether a node was taken out of the cluster.
func (m *Meta) Removed(id uint64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, gone := m.st.Removed[id]
	return gone
}

// RemovedIDs is the IDs of the nodes taken out of the cluster, ascending.
func (m *Meta) RemovedIDs() []uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids := make([]uint64, 0, len(m.st.Removed))
	for id := range m.st.Removed {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Tenant returns a copy of a tenant's record.
func (m *Meta) Tenant(name string) (*TenantRecord, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.st.Tenants[name]
	if t == nil {
		return nil, false
	}
	return t.clone(), true
}

// Tenants returns copies of every tenant's record, sorted by name.
func (m *Meta) Tenants() []*TenantRecord {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*TenantRecord, 0, len(m.st.Tenants))
	for _, name := range sortedKeys(m.st.Tenants) {
		out = append(out, m.st.Tenants[name].clone())
	}
	return out
}

// TenantBrief is what the request path needs of a tenant, without copying
// its replica map.
type TenantBrief struct {
	ShardID uint64
	Epoch   uint64
	Quotas  api.Quotas
}

// Brief returns a tenant's shard, epoch and quotas.
func (m *Meta) Brief(name string) (TenantBrief, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.st.Tenants[name]
	if t == nil {
		return TenantBrief{}, false
	}
	return TenantBrief{ShardID: t.ShardID, Epoch: t.Epoch, Quotas: t.Quotas}, true
}

// ReplicaNode is the node hosting a tenant's replica.
func (m *Meta) ReplicaNode(name string, replica uint64) (uint64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.st.Tenants[name]
	if t == nil {
		return 0, false
	}
	r, ok := t.Replicas[replica]
	return r.Node, ok
}

// TenantByShard returns the tenant that owns a shard, if it is live.
func (m *Meta) TenantByShard(shardID uint64) (*TenantRecord, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, t := range m.st.Tenants {
		if t.ShardID == shardID {
			return t.clone(), true
		}
	}
	return nil, false
}

// Restoring reports whether a restore is writing some tenant's state.
func (m *Meta) Restoring() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, t := range m.st.Tenants {
		if t.Restore != nil && t.Restore.Pending {
			return true
		}
	}
	return false
}

// Restored reports whether a restore has created tenants here and none of
// them is still being written.
func (m *Meta) Restored() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	restored := false
	for _, t := range m.st.Tenants {
		if t.Restore != nil {
			if t.Restore.Pending {
				return false
			}
			restored = true
		}
	}
	return restored
}

// RestoreMark returns what a tenant's record keeps of its restore: false
// for a tenant no restore wrote (or no such tenant).
func (m *Meta) RestoreMark(name string) (RestoreMark, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.st.Tenants[name]
	if t == nil || t.Restore == nil {
		return RestoreMark{}, false
	}
	return *t.Restore, true
}

// Credentials returns a tenant's token hashes.
func (m *Meta) Credentials(name string) (tenants.Credentials, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.st.Tenants[name]
	if t == nil {
		return tenants.Credentials{}, false
	}
	c := t.Credentials
	if c.Previous != nil {
		p := *c.Previous
		c.Previous = &p
	}
	return c, true
}

// Nodes returns every registered node, sorted by ID.
func (m *Meta) Nodes() []NodeRecord {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]NodeRecord, 0, len(m.st.Nodes))
	for _, n := range m.st.Nodes {
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Node returns one node's record.
func (m *Meta) Node(id uint64) (NodeRecord, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := m.st.Nodes[id]
	if n == nil {
		return NodeRecord{}, false
	}
	return *n, true
}

// Tombstoned reports whether a shard ID belongs to a deleted tenant.
func (m *Meta) Tombstoned(shardID uint64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.st.Tombstones[shardID]
	return ok
}

// Tombstones returns every tombstone, sorted by shard ID.
func (m *Meta) Tombstones() []Tombstone {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]Tombstone, 0, len(m.st.Tombstones))
	for _, t := range m.st.Tombstones {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ShardID < out[j].ShardID })
	return out
}

// Snapshot returns the encoded state.
func (m *Meta) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, err := Marshal(&m.st)
	if err != nil {
		return nil, fmt.Errorf("encode meta snapshot: %w", err)
	}
	return append([]byte{CodecVersion}, b...), nil
}

// SaveSnapshot writes the encoded state.
func (m *Meta) SaveSnapshot(w io.Writer) error {
	b, err := m.Snapshot()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// check refuses a decoded snapshot that no state machine wrote: the reads
// and commands take its structure for granted. Missing maps it makes empty.
func (st *metaState) check() error {
	if st.Epochs == nil {
		st.Epochs = map[string]uint64{}
	}
	if st.Nodes == nil {
		st.Nodes = map[uint64]*NodeRecord{}
	}
	if st.Tenants == nil {
		st.Tenants = map[string]*TenantRecord{}
	}
	if st.Tombstones == nil {
		st.Tombstones = map[uint64]*Tombstone{}
	}
	if st.Removed == nil {
		st.Removed = map[uint64]int64{}
	}
	for name, t := range st.Tenants {
		if t == nil {
			return fmt.Errorf("tenant %q is null", name)
		}
		if t.Replicas == nil {
			t.Replicas = map[uint64]Replica{}
		}
	}
	for id, n := range st.Nodes {
		if n == nil {
			return fmt.Errorf("node %d is null", id)
		}
	}
	for id, ts := range st.Tombstones {
		if ts == nil {
			return fmt.Errorf("tombstone %d is null", id)
		}
	}
	return nil
}

// Restore replaces the state with a snapshot's.
func (m *Meta) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read meta snapshot: %w", err)
	}
	if len(b) < 1 || b[0] != CodecVersion {
		return fmt.Errorf("meta snapshot: unknown codec version")
	}
	st := NewMeta().st
	if err := json.Unmarshal(b[1:], &st); err != nil {
		return fmt.Errorf("decode meta snapshot: %w", err)
	}
	if err := st.check(); err != nil {
		return fmt.Errorf("meta snapshot: %w", err)
	}
	if st.Version > Version {
		return fmt.Errorf("meta snapshot: version %d, this build knows up to %d: run a newer build", st.Version, Version)
	}
	m.mu.Lock()
	m.st = st
	m.mu.Unlock()
	m.watch.wakeAll()
	return nil
}
