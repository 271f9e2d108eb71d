package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/rafting/rafting/api"
)

// CodecVersion is the first byte of every command and snapshot. A replica
// that meets a version it does not know rejects the command (Update stays
// total) and refuses the snapshot, rather than guessing.
const CodecVersion = 1

// Op names a command. The numbering is part of the on-disk format: append,
// never renumber.
type Op uint8

// Tenant shard commands. Ordinary commands may be proposed by any node and
// carry no time; leader-only commands carry the proposer's Raft term and
// time and are rejected unless the term is that of the last barrier.
const (
	OpOpenSession  Op = iota + 1 // ordinary
	OpCloseSession               // ordinary
	OpRegister                   // ordinary
	OpDeregister                 // ordinary
	OpSetPolicy                  // ordinary
	OpResign                     // ordinary
	OpSetQuotas                  // system (proposed by the reconciler)
	OpBarrier                    // leader-only: a new leader's first word
	OpRenew                      // leader-only: remaining countdowns
	OpExpire                     // leader-only: end sessions
	OpTick                       // leader-only: time for cold-start waits
	OpRelease                    // leader-only: grant the successor of a releasing master
	OpSetVersion                 // system: the state's semantics version (SetVersion)
	OpKVPut                      // ordinary, from version 3: write a key (kv.go)
	OpKVDelete                   // ordinary, from version 3: delete a key or a subtree
	OpKVTxn                      // ordinary, from version 3: compares, then puts and deletes
)

// Meta shard commands.
const (
	OpRegisterNode Op = iota + 64
	OpCreateTenant
	OpDeleteTenant
	OpUpdateQuotas
	OpRotateToken
	OpAddReplica
	OpRestore
	OpRemoveNode
	OpSetMetaVersion // the meta state's semantics version (SetVersion)
	OpRestoreDone    // a restored tenant's state is written (from version 4)
	OpRevokePrevious // a tenant's previous token ends (from version 4)
	OpSetReplicas    // the cluster's replicas per tenant shard (from version 5)
	OpMoveStart      // a replica move begins (from version 5: placement.go)
	OpMoveStep       // a move's step is done
	OpMoveEnd        // a move is finished or undone
)

var opNames = map[Op]string{
	OpOpenSession: "open_session", OpCloseSession: "close_session", OpRegister: "register",
	OpDeregister: "deregister", OpSetPolicy: "set_policy", OpResign: "resign",
	OpSetQuotas: "set_quotas", OpBarrier: "barrier", OpRenew: "renew", OpExpire: "expire",
	OpTick: "tick", OpRelease: "release", OpSetVersion: "set_version",
	OpKVPut: "kv_put", OpKVDelete: "kv_delete", OpKVTxn: "kv_txn",
	OpRegisterNode: "register_node", OpCreateTenant: "create_tenant", OpDeleteTenant: "delete_tenant",
	OpUpdateQuotas: "update_quotas", OpRotateToken: "rotate_token", OpAddReplica: "add_replica",
	OpRestore: "restore", OpRemoveNode: "remove_node", OpSetMetaVersion: "set_meta_version",
	OpRestoreDone: "restore_done", OpRevokePrevious: "revoke_previous",
	OpSetReplicas: "set_replicas", OpMoveStart: "move_start", OpMoveStep: "move_step", OpMoveEnd: "move_end",
}

func (o Op) String() string {
	if n, ok := opNames[o]; ok {
		return n
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Encode returns the wire form of a command: version, op, JSON body.
func Encode(op Op, body any) []byte {
	b, err := Marshal(body)
	if err != nil {
		// Commands are plain structs built by this module: a marshal error
		// is a programming error, not input.
		panic(fmt.Sprintf("fsm: encode %s: %v", op, err))
	}
	out := make([]byte, 0, len(b)+2)
	out = append(out, CodecVersion, byte(op))
	return append(out, b...)
}

// Marshal is json.Marshal without HTML escaping: a command or a snapshot
// holds what it was given, byte for byte (json.Marshal writes each <, >
// and & as six bytes, so a meta value of them grew a refused write — which
// still entered the Raft log — six times over).
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Decode splits a command into its op and body. It never panics; every
// malformed input is an error.
func Decode(cmd []byte) (Op, []byte, error) {
	if len(cmd) < 2 {
		return 0, nil, fmt.Errorf("command of %d bytes", len(cmd))
	}
	if cmd[0] != CodecVersion {
		return 0, nil, fmt.Errorf("codec version %d, want %d", cmd[0], CodecVersion)
	}
	return Op(cmd[1]), cmd[2:], nil
}

// Command bodies of the tenant shard. Ordinary commands carry the
// proposer's clock in AtMs; it stamps what reads display (registered_at,
// since) as max(sm_now, at_ms) and never moves sm_now, which decides.

// OpenSession creates a session with a client-chosen secret ID, or reads it
// back when it exists with the same parameters.
type OpenSession struct {
	ID          string `json:"id"`
	TTLMs       int64  `json:"ttl_ms"`
	LeaseMs     int64  `json:"lease_ms"`
	DropGraceMs int64  `json:"drop_grace_ms"`
	AtMs        int64  `json:"at_ms,omitempty"` // proposer's clock: display times only
}

// CloseSession ends a session: its instances are removed and its
// masterships handed over at once (the caller is the holder).
type CloseSession struct {
	ID   string `json:"id"`
	AtMs int64  `json:"at_ms,omitempty"` // proposer's clock: display times only
}

// Register creates or replaces an instance. Caller is the X-Rafting-Session
// of the request, if any; the request is the holder's own when Caller or
// the body's session names the instance's current session.
type Register struct {
	Service  string              `json:"service"`
	ID       string              `json:"id"`
	Instance api.RegisterRequest `json:"instance"`
	Caller   string              `json:"caller,omitempty"`
	Seq      uint64              `json:"seq,omitempty"`   // X-Rafting-Sequence of the caller's session
	AtMs     int64               `json:"at_ms,omitempty"` // proposer's clock: display times only
	// RegisteredMs keeps a restored instance's registration time (a
	// restore's registrations only; from version 2).
	RegisteredMs int64 `json:"registered_ms,omitempty"`
}

// Deregister removes an instance.
type Deregister struct {
	Service string `json:"service"`
	ID      string `json:"id"`
	Caller  string `json:"caller,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`   // X-Rafting-Sequence of the caller's session
	AtMs    int64  `json:"at_ms,omitempty"` // proposer's clock: display times only
}

// SetPolicy sets a service's election policy (it wins over instances' policy).
type SetPolicy struct {
	Service   string        `json:"service"`
	ColdStart api.ColdStart `json:"cold_start"`
	AtMs      int64         `json:"at_ms,omitempty"` // proposer's clock: display times only
}

// Resign hands a mastership over, only while Token is the current one.
type Resign struct {
	Service  string `json:"service"`
	Instance string `json:"instance"`
	Token    uint64 `json:"fencing_token"`
	To       string `json:"to,omitempty"`
	Caller   string `json:"caller,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`   // X-Rafting-Sequence of the caller's session
	AtMs     int64  `json:"at_ms,omitempty"` // proposer's clock: display times only
}

// SetQuotas brings the tenant shard's copy of its quotas to a version of the
// meta shard's. Older versions are ignored.
type SetQuotas struct {
	Version uint64     `json:"version"`
	Quotas  api.Quotas `json:"quotas"`
}

// Leader-only commands. Term is the Raft term they were proposed in; NowMs
// the proposer's clock (Unix milliseconds).

// Barrier is proposed by a new leader before it answers any keepalive.
type Barrier struct {
	Term  uint64 `json:"term"`
	NowMs int64  `json:"now_ms"`
}

// Renew records sessions' remaining countdowns, so that a new leader resumes
// them instead of granting a fresh TTL.
type Renew struct {
	Term  uint64      `json:"term"`
	NowMs int64       `json:"now_ms"`
	Items []RenewItem `json:"items"`
}

// RenewItem is one session's remaining countdown.
type RenewItem struct {
	ID          string `json:"id"`
	RemainingMs int64  `json:"remaining_ms"`
}

// Expire ends sessions whose deadline passed, then grants successors.
type Expire struct {
	Term  uint64   `json:"term"`
	NowMs int64    `json:"now_ms"`
	IDs   []string `json:"ids"`
}

// Tick advances time for services waiting on a cold-start settle period.
type Tick struct {
	Term  uint64 `json:"term"`
	NowMs int64  `json:"now_ms"`
}

// Release grants the successor of a releasing mastership once the holder's
// last promise has lapsed.
type Release struct {
	Term    uint64 `json:"term"`
	NowMs   int64  `json:"now_ms"`
	Service string `json:"service"`
	Token   uint64 `json:"fencing_token"`
}
