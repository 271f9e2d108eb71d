package api

import "time"

// Headers of REST API v1.
const (
	// HeaderIndex carries the Raft index a read was served at (reads) or a
	// write was applied at (writes). It never goes backwards for a client that
	// passes it back as ?index=.
	HeaderIndex = "X-Rafting-Index"
	// HeaderLeader is the API address of the tenant shard's Raft leader, so a
	// client can send leader-only work (keepalives, streams) there directly.
	HeaderLeader = "X-Rafting-Leader"
	// HeaderSession names the caller's own session on deregister and resign:
	// a mastership released under the holder's own session is handed over in
	// the same entry; any other release waits for the holder's last promise.
	HeaderSession = "X-Rafting-Session"
	// HeaderSequence numbers a write made under the caller's own session
	// (X-Rafting-Session, or a registration's session): a positive number,
	// increasing from one write to the next of that session, and the same
	// when a write is sent again. The tenant shard keeps each session's
	// highest number and the answer it gave: a copy numbered at or below it
	// is not applied again (the same number gets that answer, a lower one
	// 409 `conflict`), so a copy that arrives late — after the write was sent
	// again and answered — cannot hand over a mastership the holder took
	// back.
	HeaderSequence = "X-Rafting-Sequence"
	// HeaderEpoch is the tenant's epoch on every answer a tenant's replica
	// serves: its incarnation, the high bits of its fencing tokens. Indexes
	// of different epochs are not comparable (a tenant deleted and created
	// again, or restored from a backup, starts its Raft log over); a client
	// that sees a higher epoch starts over, and passes it back as ?epoch=
	// with ?index=, so that a blocking query from an older one answers at
	// once.
	HeaderEpoch = "X-Rafting-Epoch"
	// HeaderStateVersion is the state machines' version a node's build
	// speaks (server/fsm's Version), sent with its join request: a cluster
	// that agreed on a later one refuses the node.
	HeaderStateVersion = "X-Rafting-State-Version"
)

// MaxBodyBytes is the largest request body a server reads (413 above it).
const MaxBodyBytes = 1 << 20

// Mode is how an instance takes part in its service.
type Mode string

// Modes.
const (
	ModeFarm          Mode = "farm"           // every ready instance is active
	ModeMasterStandby Mode = "master-standby" // one ready instance is elected master
)

// Valid reports whether m is a known mode.
func (m Mode) Valid() bool { return m == ModeFarm || m == ModeMasterStandby }

// State is an instance's life-cycle state. Balancers pick only ready
// instances; elections grant only ready ones.
type State string

// States.
const (
	StateStarting State = "starting" // registered, visible to operators, never picked or elected
	StateReady    State = "ready"    // eligible
	StateDraining State = "draining" // leaving: never picked; a master releases
)

// Valid reports whether s is a known state.
func (s State) Valid() bool { return s == StateStarting || s == StateReady || s == StateDraining }

// DefaultWeight is an instance's weight when the registration omits it.
const DefaultWeight = 100

// Instance is one registered instance of a service, as reads return it.
type Instance struct {
	ID           string            `json:"id"`
	Address      string            `json:"address"`
	Mode         Mode              `json:"mode"`
	State        State             `json:"state"`
	Weight       int               `json:"weight"`
	Priority     int               `json:"priority"`
	Zone         string            `json:"zone"`
	Meta         map[string]string `json:"meta,omitempty"`
	SessionTag   string            `json:"session_tag,omitempty"`
	RegisteredAt time.Time         `json:"registered_at"`
}

// RegisterRequest is the body of PUT /v1/tenants/{t}/services/{s}/instances/{id}.
// A missing weight is DefaultWeight; a missing mode is farm; a missing state
// is ready. A master-standby instance must name a session. ColdStart, when
// set, is the service's election policy carried by the instance; a policy set
// through the policy endpoint wins over it.
type RegisterRequest struct {
	Address   string            `json:"address"`
	Mode      Mode              `json:"mode,omitempty"`
	State     State             `json:"state,omitempty"`
	Weight    *int              `json:"weight,omitempty"`
	Priority  int               `json:"priority,omitempty"`
	Zone      string            `json:"zone,omitempty"`
	Meta      map[string]string `json:"meta,omitempty"`
	Session   string            `json:"session,omitempty"`
	ColdStart *ColdStart        `json:"cold_start,omitempty"`
}

// WriteResponse answers every write: the index it was applied at, for
// read-your-writes (pass it as ?index=N-1, or wait for X-Rafting-Index >= N).
type WriteResponse struct {
	Index uint64 `json:"index"`
}

// RegisterResponse answers a registration (201 created, 200 updated).
type RegisterResponse struct {
	Index    uint64   `json:"index"`
	Instance Instance `json:"instance"`
}

// Master is a service's master record. FencingToken is epoch<<40 | raft
// index of the grant: strictly increasing per service, below 2^53.
type Master struct {
	Instance     string    `json:"instance"`
	SessionTag   string    `json:"session_tag"`
	FencingToken uint64    `json:"fencing_token"`
	Since        time.Time `json:"since"`
	// Releasing is true when someone other than the holder revoked the
	// mastership: the holder must stop acting; the successor is granted when
	// the holder's last promise has lapsed or it resigns itself.
	Releasing bool `json:"releasing"`
}

// ColdStart is the election policy of a service with no master: the next
// grant waits until MinReady candidates are ready or SettleMs has passed
// since the first became ready.
type ColdStart struct {
	MinReady int   `json:"min_ready"`
	SettleMs int64 `json:"settle_ms"`
}

// Policy is a service's election policy.
type Policy struct {
	ColdStart ColdStart `json:"cold_start"`
}

// PolicyRequest is the body of PUT .../services/{s}/policy.
type PolicyRequest struct {
	ColdStart *ColdStart `json:"cold_start"`
}

// ServiceResponse answers GET /v1/tenants/{t}/services/{s}. Index is the
// replica's applied index when the read was served (never below the asked
// index); ModifyIndex is the index of the last entry that changed this
// service's answer: a blocking query returns when it exceeds the asked index.
type ServiceResponse struct {
	Index       uint64     `json:"index"`
	ModifyIndex uint64     `json:"modify_index"`
	Service     string     `json:"service"`
	Instances   []Instance `json:"instances"`
	Master      *Master    `json:"master"`
	Policy      Policy     `json:"policy"`
}

// ServiceSummary is one entry of GET /v1/tenants/{t}/services.
type ServiceSummary struct {
	Name        string `json:"name"`
	Instances   int    `json:"instances"`
	Ready       int    `json:"ready"`
	Master      string `json:"master,omitempty"`
	ModifyIndex uint64 `json:"modify_index"`
}

// ServiceList answers GET /v1/tenants/{t}/services.
type ServiceList struct {
	Index    uint64           `json:"index"`
	Services []ServiceSummary `json:"services"`
}

// SessionRequest is the body of PUT /v1/tenants/{t}/sessions/{id}. Zero
// values take the defaults: ttl_ms 5000, lease_ms 0 (no promise: farm),
// drop_grace_ms min(500, lease_ms) or 500 without a lease.
type SessionRequest struct {
	TTLMs       int64 `json:"ttl_ms,omitempty"`
	LeaseMs     int64 `json:"lease_ms,omitempty"`
	DropGraceMs int64 `json:"drop_grace_ms,omitempty"`
}

// SessionResponse answers a session create (201) or read-back (200). The
// session ID itself is a secret and is never returned.
type SessionResponse struct {
	Index       uint64 `json:"index"`
	SessionTag  string `json:"session_tag"`
	TTLMs       int64  `json:"ttl_ms"`
	LeaseMs     int64  `json:"lease_ms"`
	DropGraceMs int64  `json:"drop_grace_ms"`
}

// SessionSummary is one live session in GET /v1/tenants/{t}/sessions. It
// never holds the session's ID (the holder's credential): SessionTag names
// it, as instances and master records do.
//
// RemainingMs is the session's countdown as the state machine last recorded
// it (the leader records countdowns in batches, only for sessions whose
// countdown fell behind or recovered), not the leader's live deadline: a
// session kept alive shows its TTL. Attached says whether a stream (a
// session stream or a client stream's attach) is attached to the session on
// the answering node; it is set only when that node leads the tenant's
// shard, the one node that knows.
type SessionSummary struct {
	SessionTag  string           `json:"session_tag"`
	TTLMs       int64            `json:"ttl_ms"`
	LeaseMs     int64            `json:"lease_ms"`
	DropGraceMs int64            `json:"drop_grace_ms"`
	RemainingMs int64            `json:"remaining_ms"`
	SeeksMaster bool             `json:"seeks_master"`
	Instances   []HeldInstance   `json:"instances"`
	Masters     []HeldMastership `json:"masters"`
	Attached    *bool            `json:"attached,omitempty"`
}

// SessionList answers GET /v1/tenants/{t}/sessions: the tenant's live
// sessions in the order of their tags, at most ?limit= of them (and about
// 1 MiB of answer), from ?start= (a tag, inclusive). Next, when set, is the
// ?start= of the next page. Each page is read at its own Index.
type SessionList struct {
	Index    uint64           `json:"index"`
	Sessions []SessionSummary `json:"sessions"`
	Next     string           `json:"next,omitempty"`
}

// MaxSessionPage is the most sessions one GET .../sessions answers (its
// ?limit=), and DefaultSessionPage its default.
const (
	MaxSessionPage     = 1000
	DefaultSessionPage = 1000
)

// KeepaliveResponse answers PUT .../sessions/{id}/keepalive. LeaseMs is the
// promise: the session will not be expired before the leader's receipt of
// the keepalive + LeaseMs; a client anchors it at the moment it sent the
// keepalive. Masters lists the masterships this session holds as of the
// answer; an entry with Releasing set must stop acting at once.
// Instances lists the state of every instance registered under the session,
// which someone else (an operator's drain) may have changed. Index is the
// applied index both lists were read at.
type KeepaliveResponse struct {
	LeaseMs   int64            `json:"lease_ms"`
	TTLMs     int64            `json:"ttl_ms"`
	Term      uint64           `json:"term"`
	Index     uint64           `json:"index"`
	Masters   []HeldMastership `json:"masters"`
	Instances []HeldInstance   `json:"instances"`
}

// HeldInstance is the state of one instance registered under a session.
type HeldInstance struct {
	Service  string `json:"service"`
	Instance string `json:"instance"`
	State    State  `json:"state"`
}

// HeldMastership is one mastership a session holds.
type HeldMastership struct {
	Service      string `json:"service"`
	Instance     string `json:"instance"`
	FencingToken uint64 `json:"fencing_token"`
	Releasing    bool   `json:"releasing"`
}

// Stream event types, one JSON object per line of a session stream.
const (
	EventHeartbeat = "heartbeat" // term and index; never a lease
	EventMoved     = "moved"     // the server closes the stream: reconnect to Leader (may be empty)
	EventExpired   = "expired"   // the session has ended
	EventMaster    = "master"    // a mastership of this session was granted, marked releasing or lost
	EventInstance  = "instance"  // someone else changed the state of this session's instance, or removed it
)

// StreamEvent is one line of GET /v1/tenants/{t}/sessions/{id}/stream.
type StreamEvent struct {
	Type   string `json:"type"`
	Term   uint64 `json:"term,omitempty"`
	Index  uint64 `json:"index,omitempty"`
	Leader string `json:"leader,omitempty"`
	// Service and Master are set on "master" events; Master is nil when this
	// session lost the service's mastership.
	Service string  `json:"service,omitempty"`
	Master  *Master `json:"master,omitempty"`
	// Instance is set on "instance" events; its State is empty when the
	// instance was removed.
	Instance *HeldInstance `json:"instance,omitempty"`
}

// ResignRequest is the body of POST .../services/{s}/master/resign. It applies
// only while FencingToken is the current one; To names a ready standby.
type ResignRequest struct {
	Instance     string `json:"instance"`
	FencingToken uint64 `json:"fencing_token"`
	To           string `json:"to,omitempty"`
}

// Quotas bound what one tenant may use. In a create request a zero field
// takes the default; in a PATCH a zero field is left unchanged. Answers show
// every field resolved.
type Quotas struct {
	MaxServices       int64 `json:"max_services,omitempty"`
	MaxInstances      int64 `json:"max_instances,omitempty"`
	MaxSessions       int64 `json:"max_sessions,omitempty"`
	MaxWatchers       int64 `json:"max_watchers,omitempty"`
	MaxMetaBytes      int64 `json:"max_meta_bytes,omitempty"`
	MinTTLMs          int64 `json:"min_ttl_ms,omitempty"`
	MaxTTLMs          int64 `json:"max_ttl_ms,omitempty"`
	RequestsPerSecond int64 `json:"requests_per_second,omitempty"`
	Burst             int64 `json:"burst,omitempty"`
	WritesPerSecond   int64 `json:"writes_per_second,omitempty"`
	// The configuration store: how many keys, the largest value, and the
	// bytes of every key, value and per-key overhead together.
	MaxKeys       int64 `json:"max_keys,omitempty"`
	MaxValueBytes int64 `json:"max_value_bytes,omitempty"`
	MaxKVBytes    int64 `json:"max_kv_bytes,omitempty"`
}

// Usage is what a tenant uses now, against its Quotas. Counts come from the
// tenant's state machine; Watchers are this node's open blocking queries.
type Usage struct {
	Services  int64 `json:"services"`
	Instances int64 `json:"instances"`
	Sessions  int64 `json:"sessions"`
	Watchers  int64 `json:"watchers"`
	Keys      int64 `json:"keys"`
	KVBytes   int64 `json:"kv_bytes"` // what max_kv_bytes counts
}

// CreateTenantRequest is the body of POST /v1/tenants. Secret, when given, is
// the random part of the token (>= 22 characters of base64url), so a retried
// create returns 200 with the same token.
type CreateTenantRequest struct {
	Name   string `json:"name"`
	Quotas Quotas `json:"quotas"`
	Secret string `json:"secret,omitempty"`
}

// Tenant is a tenant as GET /v1/tenants/{t} shows it. Token is set only in
// the answer to a create or a rotation.
type Tenant struct {
	Name      string    `json:"name"`
	Token     string    `json:"token,omitempty"`
	Epoch     uint64    `json:"epoch"`
	ShardID   uint64    `json:"shard_id"`
	Quotas    Quotas    `json:"quotas"`
	Usage     *Usage    `json:"usage,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// PreviousTokenValidUntil is when the token a rotation replaced stops
	// working; absent when there is none (never rotated, revoked, expired).
	PreviousTokenValidUntil *time.Time `json:"previous_token_valid_until,omitempty"`
	// Restoring is set while a restore writes the tenant (its clients are
	// answered 503 restoring).
	Restoring bool `json:"restoring,omitempty"`
}

// TenantList answers GET /v1/tenants.
type TenantList struct {
	Tenants []Tenant `json:"tenants"`
}

// UpdateTenantRequest is the body of PATCH /v1/tenants/{t}.
type UpdateTenantRequest struct {
	Quotas Quotas `json:"quotas"`
}

// RotateTokenRequest is the body of POST /v1/tenants/{t}/token. A missing
// PreviousValidMs keeps the old token valid for one hour; 0 revokes it now.
type RotateTokenRequest struct {
	Secret          string `json:"secret,omitempty"`
	PreviousValidMs *int64 `json:"previous_valid_ms,omitempty"`
}

// Node is a server of the cluster, as the node that answers sees it.
type Node struct {
	ID          uint64 `json:"id"`
	RaftAddress string `json:"raft_address"`
	APIAddress  string `json:"api_address"`
	// Health is the node's state: NodeReady, NodeNotReady, NodeRemoved,
	// NodeUnreachable (its API did not answer the answering node's last
	// look), or NodeUnknown (no look yet, or no token to look with).
	Health string `json:"health,omitempty"`
	// Build is what the node runs, nil while unknown (unreachable, or a
	// build from before builds were reported).
	Build *Build `json:"build,omitempty"`
	// Leaders is how many shards the node leads, as the answering node
	// sees them.
	Leaders int `json:"leaders"`
	// Lag is how many entries the node's replicas are behind the most
	// caught-up replica of their shard, the most over its shards, as of
	// the answering node's last look (every 2 s); 0 while unknown.
	Lag uint64 `json:"lag"`
	// LastContactMs is how long ago the node last answered the answering
	// node's look at it (-1: never; 0 for the answering node itself).
	LastContactMs int64 `json:"last_contact_ms"`
	// Zone is the node's failure domain (--zone), "" for none.
	Zone string `json:"zone,omitempty"`
	// Replicas is how many tenant shard replicas the meta shard places on
	// the node.
	Replicas int `json:"replicas"`
}

// A Node's Health.
const (
	NodeReady       = "ready"
	NodeNotReady    = "not_ready"
	NodeRemoved     = "removed"
	NodeUnreachable = "unreachable"
	NodeUnknown     = "unknown"
)

// Build is what a server runs: its release version and commit (set when
// the binary is built: "devel" and "" for a plain go build), the Go
// toolchain, and the newest state version it speaks (a cluster raises its
// state version once every node speaks it).
type Build struct {
	Version      string `json:"version"`
	Commit       string `json:"commit,omitempty"`
	GoVersion    string `json:"go_version,omitempty"`
	StateVersion uint64 `json:"state_version"`
}

// Shard is one Raft shard as a node sees it.
type Shard struct {
	ShardID  uint64            `json:"shard_id"`
	Tenant   string            `json:"tenant,omitempty"` // empty for the meta shard
	Replicas map[uint64]uint64 `json:"replicas"`         // replica ID -> node ID
	Leader   uint64            `json:"leader_node"`      // 0 when unknown
	Term     uint64            `json:"term"`
	Applied  uint64            `json:"applied_index"`
	// NonVoting is the replicas (IDs) not voting yet: added by a move
	// and catching up.
	NonVoting []uint64 `json:"non_voting,omitempty"`
	// Move is the replica move under way in the shard, if any.
	Move *ShardMove `json:"move,omitempty"`
}

// ShardMove is a tenant shard's replica move under way: a replica added on
// node To (0: none) and/or the one on node From taken out (0: none), at
// Step (adding, caught_up, promoted), for Reason (balance, repair, dead
// node, above R).
type ShardMove struct {
	To        uint64    `json:"to_node,omitempty"`
	From      uint64    `json:"from_node,omitempty"`
	Step      string    `json:"step"`
	Reason    string    `json:"reason,omitempty"`
	StartedAt time.Time `json:"started_at"`
}

// Cluster answers GET /v1/cluster.
type Cluster struct {
	NodeID uint64 `json:"node_id"`
	// Build is the answering node's build; StateVersion the state version
	// the cluster agreed on (its meta shard's).
	Build        *Build `json:"build,omitempty"`
	StateVersion uint64 `json:"state_version,omitempty"`
	// Ready is the answering node's readiness (GET /readyz).
	Ready bool `json:"ready"`
	// Replicas is R, the voting replicas of each tenant shard.
	Replicas int     `json:"replicas,omitempty"`
	Nodes    []Node  `json:"nodes"`
	Shards   []Shard `json:"shards"`
	// Removed is the IDs of the nodes taken out of the cluster for good
	// (never taken back): a removed node that still runs learns it here.
	Removed []uint64 `json:"removed,omitempty"`
}

// LeaderTransferRequest is the body of POST /v1/cluster/leaders: move one
// shard's leadership (Shard, or the shard of Tenant) to node To (0: to any
// other node), or every leadership node From holds to other nodes.
type LeaderTransferRequest struct {
	Shard  uint64 `json:"shard,omitempty"`
	Tenant string `json:"tenant,omitempty"`
	To     uint64 `json:"to,omitempty"`
	From   uint64 `json:"from,omitempty"`
}

// JoinRequest is the body of POST /v1/cluster/nodes, sent by a node started
// with --join to a running member.
type JoinRequest struct {
	ID          uint64 `json:"id"`
	RaftAddress string `json:"raft_address"`
	APIAddress  string `json:"api_address"`
}

// BackupVersion is the version of the Backup format this build writes and
// reads.
const BackupVersion = 1

// Backup is the cluster's durable state, as GET /v1/backup answers it and
// POST /v1/restore takes it: each tenant with its token hashes and quotas,
// each service's policy and permanent instances (those registered without
// a session), the permanent keys of the tenant's configuration store, and
// the counters that keep shard IDs and fencing tokens from being issued
// twice. Sessions, the instances and keys owned by them, and masterships
// are not in it: they belong to running processes, which register again
// with the restored cluster.
type Backup struct {
	Version       int               `json:"version"`
	CreatedAt     time.Time         `json:"created_at"`
	Index         uint64            `json:"index"` // the meta shard's applied index it was read at
	NextShardID   uint64            `json:"next_shard_id"`
	NextReplicaID uint64            `json:"next_replica_id"`
	Epochs        map[string]uint64 `json:"epochs"` // each tenant name's last epoch, deleted tenants' too
	Tenants       []BackupTenant    `json:"tenants"`
}

// BackupTenant is one tenant in a Backup. Token hashes are SHA-256, hex:
// a restored tenant's clients keep their tokens.
type BackupTenant struct {
	Name               string          `json:"name"`
	Epoch              uint64          `json:"epoch"`
	Quotas             Quotas          `json:"quotas"`
	TokenHash          string          `json:"token_hash"`
	PreviousTokenHash  string          `json:"previous_token_hash,omitempty"`
	PreviousValidUntil time.Time       `json:"previous_valid_until,omitzero"`
	CreatedAt          time.Time       `json:"created_at"`
	Services           []BackupService `json:"services"`
	// KV holds the tenant's permanent keys (those written without a
	// session), sorted; their indexes and versions start over when they
	// are restored.
	KV []KV `json:"kv,omitempty"`
}

// BackupService is one service of a tenant in a Backup: its own policy, if
// set, and its permanent instances (the session_tag of each is empty).
type BackupService struct {
	Name   string     `json:"name"`
	Policy *ColdStart `json:"policy,omitempty"`
	// Carried is the election policy the service's instances carried
	// (WithColdStart), which a service without a policy of its own follows.
	Carried   *ColdStart `json:"carried,omitempty"`
	Instances []Instance `json:"instances"`
}

// RestoreResponse answers POST /v1/restore.
type RestoreResponse struct {
	Tenants   int `json:"tenants"`
	Policies  int `json:"policies"`
	Instances int `json:"instances"`
	Keys      int `json:"keys"`
	// Unchanged counts the tenants a restore sent again left alone: their
	// durable state was the backup's already.
	Unchanged int `json:"unchanged,omitempty"`
}

// ServerList answers GET /v1/servers (any valid token): the API address of
// every node of the cluster, so that clients configured with some of them
// learn the others (a node added, or one that replaced a lost node).
type ServerList struct {
	Servers []string `json:"servers"`
}
