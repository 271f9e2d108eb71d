package api

import (
	"bytes"
	"encoding/json"
)

// The client stream, POST /v1/tenants/{t}/stream: one full-duplex HTTP/2
// stream per SDK client and tenant that carries its keepalives, watches and
// writes. Frames are JSON objects, one a line (NDJSON), each way; every
// frame names itself in "type". A client frame that asks for an answer
// carries "req" (a positive number the client chooses); exactly one
// "result" frame with that req answers it, in any order.
//
// Client → server: attach, keepalive, watch, unwatch, the writes of the
// REST table (put_instance, delete_instance, open_session, close_session,
// resign, set_policy) and ping. Every frame but ping carries req.
//
// Server → client: result, snapshot and changes (a watch's), the session
// events of the session stream (master, instance, expired) with the
// session's tag, moved, resync, ping and, last on a stream the server
// ends for bad input or a revoked token, error.

// Types of the frames a client sends.
const (
	FrameAttach         = "attach"          // {req, session}
	FrameKeepalive      = "keepalive"       // {req, sessions: [{id}]}
	FrameWatch          = "watch"           // {req, w, service, index, epoch?}
	FrameWatchKV        = "watch_kv"        // {req, w, key, prefix?, index, epoch?}
	FrameUnwatch        = "unwatch"         // {req, w}
	FramePutInstance    = "put_instance"    // {req, service, id, body: RegisterRequest, session?, seq?}
	FrameDeleteInstance = "delete_instance" // {req, service, id, session?, seq?}
	FrameOpenSession    = "open_session"    // {req, id, body?: SessionRequest}
	FrameCloseSession   = "close_session"   // {req, id}
	FrameResign         = "resign"          // {req, service, body: ResignRequest, session?, seq?}
	FrameSetPolicy      = "set_policy"      // {req, service, body: PolicyRequest}
	FramePutKV          = "put_kv"          // {req, key, body: KVPutRequest, session?, seq?}
	FrameKVTxn          = "kv_txn"          // {req, body: KVTxnRequest, session?, seq?}
	FrameDeleteKV       = "delete_kv"       // {req, key, prefix?, if_index?, session?, seq?}
	FramePing           = "ping"            // {req?}; the server sends {"type":"ping"} on a quiet stream
)

// Types of the frames a server sends, besides ping and the session events
// (EventMaster, EventInstance, EventExpired) that SessionEventFrame carries.
const (
	FrameResult   = "result"   // ResultFrame
	FrameSnapshot = "snapshot" // SnapshotFrame
	FrameChanges  = "changes"  // ChangesFrame
	FrameMoved    = EventMoved // MovedFrame
	FrameResync   = "resync"   // ResyncFrame
	FrameError    = "error"    // ErrorFrame: the stream ends after it
)

// MaxFrameBytes is the largest frame a server reads, its newline excluded:
// a longer one ends the stream with an ErrorFrame (too_large).
const MaxFrameBytes = MaxBodyBytes

// ClientFrame is any frame a client sends; which fields a type takes is
// listed with the Frame constants, and a field another type takes is
// refused (400 naming it). The REST path's parameters are fields (service,
// id), the REST body is Body, and the REST headers X-Rafting-Session and
// X-Rafting-Sequence are Session and Seq.
type ClientFrame struct {
	Type string `json:"type"`
	Req  uint64 `json:"req,omitempty"`
	// Session is the session to attach (attach), or the caller's own
	// session a write is made under (X-Rafting-Session).
	Session string `json:"session,omitempty"`
	Seq     uint64 `json:"seq,omitempty"` // X-Rafting-Sequence
	// Sessions are a keepalive's sessions, answered in this order.
	Sessions []KeepaliveItem `json:"sessions,omitempty"`
	// W names a watch; the client chooses it, unique among its open
	// watches on the stream.
	W uint64 `json:"w,omitempty"`
	// Index and Epoch are a watch's ?index= and ?epoch=: the index of the
	// state the client holds (0: none), and the epoch it is of.
	Index   uint64          `json:"index,omitempty"`
	Epoch   uint64          `json:"epoch,omitempty"`
	Service string          `json:"service,omitempty"`
	ID      string          `json:"id,omitempty"`
	Body    json.RawMessage `json:"body,omitempty"`
	// Key and Prefix are a watch_kv's: one key, or with Prefix the
	// subtree of Key ("" with Prefix: every key), as GET .../kv/{key}
	// ?prefix=true reads it. Key is also the key a put_kv writes, and
	// Key and Prefix what a delete_kv deletes, as DELETE .../kv/{key}
	// ?prefix=true does.
	Key    string `json:"key,omitempty"`
	Prefix bool   `json:"prefix,omitempty"`
	// IfIndex is a delete_kv's ?if_index=: delete only if the key's
	// mod_index is this (0: only if it does not exist).
	IfIndex *uint64 `json:"if_index,omitempty"`
}

// KeepaliveItem is one session of a keepalive frame.
type KeepaliveItem struct {
	ID string `json:"id"`
}

// ResultFrame answers the client frame with the same Req: Status and Body
// are what the REST request would have been answered (an ErrorBody for a
// status >= 400; no body for 204). Req 0 answers a frame whose req could
// not be read.
type ResultFrame struct {
	Type   string          `json:"type"`
	Req    uint64          `json:"req"`
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body,omitempty"`
}

// KeepaliveResults is the body of a keepalive frame's result (status 200):
// one answer per session, in the frame's order, each what the REST
// keepalive of that session would have answered.
//
// A session the server does not know is charged to the tenant's requests
// and answer bytes; once one is refused 429 the frame's other unknown
// sessions are refused with it, each answered with status 429 and no body
// of its own: Limited is the body they share.
type KeepaliveResults struct {
	Sessions []KeepaliveAnswer `json:"sessions"`
	Limited  json.RawMessage   `json:"limited,omitempty"`
}

// KeepaliveAnswer is one session's answer in KeepaliveResults: Body is a
// KeepaliveResponse for status 200, else an ErrorBody (404
// session_expired, 409 not_attached, 503 with the leader...); absent for a
// 429 that shares KeepaliveResults.Limited.
type KeepaliveAnswer struct {
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body,omitempty"`
}

// AttachResponse is the body of an attach frame's result (status 200): the
// leader's term and the replica's applied index, as the session stream's
// first heartbeat. The session's events follow as SessionEventFrames.
type AttachResponse struct {
	SessionTag string `json:"session_tag"`
	Term       uint64 `json:"term"`
	Index      uint64 `json:"index"`
}

// WatchResponse is the body of a watch frame's result (status 200), sent
// before any frame of the watch. Snapshot says whether a SnapshotFrame
// follows: it does not when the asked index is still current (the client's
// state is the service's), and changes follow from there. Index is the
// index the watch starts from, never below the asked one; Epoch is the
// tenant's, to pass back with a later watch's index.
type WatchResponse struct {
	W        uint64 `json:"w"`
	Index    uint64 `json:"index"`
	Epoch    uint64 `json:"epoch"`
	Snapshot bool   `json:"snapshot"`
}

// SnapshotFrame is a watch's whole service at Index, sent once per watch
// (when its index was 0 or is no longer current): what GET
// .../services/{s} answers at that index.
type SnapshotFrame struct {
	Type      string     `json:"type"`
	W         uint64     `json:"w"`
	Index     uint64     `json:"index"`
	Instances []Instance `json:"instances"`
	Master    *Master    `json:"master"`
	Policy    Policy     `json:"policy"`
}

// ChangesFrame turns the service of the watch's previous frame (snapshot
// or changes) into the service at Index: Upsert are instances added or
// changed (whole), Delete the IDs of instances removed, Master is set when
// the master record changed (to null when there is none now) and Policy
// when the policy did. A watch's frames come in index order and never skip
// a change: applying them in order always yields the service as a REST read
// at that index shows it. Changes of several entries may come as one frame.
type ChangesFrame struct {
	Type   string       `json:"type"`
	W      uint64       `json:"w"`
	Index  uint64       `json:"index"`
	Upsert []Instance   `json:"upsert,omitempty"`
	Delete []string     `json:"delete,omitempty"`
	Master MasterUpdate `json:"master,omitzero"`
	Policy *Policy      `json:"policy,omitempty"`
}

// KVSnapshotFrame is a watch_kv's whole key or subtree at Index (the
// snapshot frame of a watch of the configuration store): every key with
// its value, in byte order, as GET .../kv/{key}?prefix=true lists them.
type KVSnapshotFrame struct {
	Type  string `json:"type"`
	W     uint64 `json:"w"`
	Index uint64 `json:"index"`
	KVs   []KV   `json:"kvs"`
}

// KVChangesFrame turns a watch_kv's previous frame into the key or subtree
// at Index: Put are keys created or changed (whole, with their values),
// Delete the keys removed. The ordering rules are ChangesFrame's.
type KVChangesFrame struct {
	Type   string   `json:"type"`
	W      uint64   `json:"w"`
	Index  uint64   `json:"index"`
	Put    []KV     `json:"put,omitempty"`
	Delete []string `json:"delete,omitempty"`
}

// MasterUpdate is a master record that may be present and null: Set says
// it was present; Master is nil when it was null (no master). It encodes
// as the record or null, and is left out of a frame when not Set.
type MasterUpdate struct {
	Set    bool
	Master *Master
}

// IsZero reports whether the update is absent.
func (u MasterUpdate) IsZero() bool { return !u.Set }

// MarshalJSON encodes the record, or null.
func (u MasterUpdate) MarshalJSON() ([]byte, error) { return json.Marshal(u.Master) }

// UnmarshalJSON decodes a record or null, and marks the update Set.
func (u *MasterUpdate) UnmarshalJSON(b []byte) error {
	u.Set = true
	u.Master = nil
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return nil
	}
	var m Master
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	u.Master = &m
	return nil
}

// MovedFrame says this server cannot serve something: the session work
// (attach, keepalive, open_session, close_session) belongs on Servers (the
// tenant leader first when it is known). With SessionTag, that session's
// attachment on this stream ended from the server's side — the leadership
// moved — and never starts drop_grace: attach it again there. Without, the
// session work of the whole stream belongs there; when the server closes
// the stream (shutdown, overload, a queue that stayed full) a MovedFrame
// is its last frame.
type MovedFrame struct {
	Type       string   `json:"type"`
	Servers    []string `json:"servers"`
	SessionTag string   `json:"session_tag,omitempty"`
}

// ResyncFrame ends a watch that fell behind: watch it again from the index
// of its last frame (a snapshot follows if anything changed since).
type ResyncFrame struct {
	Type string `json:"type"`
	W    uint64 `json:"w"`
}

// SessionEventFrame is an event of an attached session, as the session
// stream has it (master, instance, expired), with the session's tag.
type SessionEventFrame struct {
	SessionTag string `json:"session_tag"`
	StreamEvent
}

// ErrorFrame is the last frame of a stream the server ends for the
// client's fault: a frame over MaxFrameBytes (too_large), one that is not
// JSON (bad_request), or a token that was revoked or rotated out
// (unauthorized).
type ErrorFrame struct {
	Type  string      `json:"type"`
	Error ErrorDetail `json:"error"`
}

// ServerFrame is any frame a server sends, for a client that decodes each
// line once and looks at Type: the fields of every server frame type,
// each set as that type sets it.
type ServerFrame struct {
	Type string `json:"type"`
	// result
	Req    uint64          `json:"req,omitempty"`
	Status int             `json:"status,omitempty"`
	Body   json.RawMessage `json:"body,omitempty"`
	// snapshot, changes, resync
	W         uint64     `json:"w,omitempty"`
	Index     uint64     `json:"index,omitempty"`
	Instances []Instance `json:"instances,omitempty"`
	Upsert    []Instance `json:"upsert,omitempty"`
	Delete    []string   `json:"delete,omitempty"` // instance IDs, or keys
	// snapshot and changes of a watch_kv
	KVs []KV `json:"kvs,omitempty"`
	Put []KV `json:"put,omitempty"`
	// Master: snapshot, changes, and master events (null: none now).
	Master MasterUpdate `json:"master,omitzero"`
	Policy *Policy      `json:"policy,omitempty"`
	// moved and session events
	Servers    []string      `json:"servers,omitempty"`
	SessionTag string        `json:"session_tag,omitempty"`
	Term       uint64        `json:"term,omitempty"`
	Leader     string        `json:"leader,omitempty"`
	Service    string        `json:"service,omitempty"`
	Instance   *HeldInstance `json:"instance,omitempty"`
	// error
	Error *ErrorDetail `json:"error,omitempty"`
}
