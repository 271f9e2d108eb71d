package fsm

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
)

// Session defaults and bounds. The tenant's quotas narrow TTLs further.
const (
	DefaultTTLMs       = 5000
	DefaultDropGraceMs = 500
	// MaxTombstones bounds the ended sessions a tenant remembers, so that a
	// keepalive for one is answered session_expired rather than not_found.
	MaxTombstones = 10000
)

// Tenant is the state machine of one tenant shard: services, instances,
// sessions, master records and indexes. Apply is deterministic: it reads no
// clock and no random source; time arrives in leader-only commands.
//
// Apply is called by one goroutine at a time (Dragonboat's apply worker);
// every read method may be called concurrently with it.
type Tenant struct {
	mu sync.RWMutex
	st tenantState
	// derived from st, rebuilt on restore
	owned map[string]map[instKey]struct{} // session -> instances it owns
	held  map[string]map[string]struct{}  // session -> services it masters
	kv    kvIndex                         // the store's sorted keys, owners, sizes

	watch  watchHub
	atMs   int64 // the entry being applied: proposer's clock (display only)
	tooOld bool  // a SetVersion newer than this build was refused

	cacheMu sync.Mutex
	cache   map[string]*encoded // per service: its answer, encoded (ServiceAnswer)
	encodes atomic.Uint64       // answers ServiceAnswer encoded (shared ones once)
}

type instKey struct{ service, id string }

// tenantState is everything a snapshot holds. encoding/json writes map keys
// sorted, so the same state always encodes to the same bytes.
type tenantState struct {
	Name          string              `json:"name"`
	Version       uint64              `json:"version,omitempty"` // semantics version (version.go); 0 is 1
	Epoch         uint64              `json:"epoch"`
	Quotas        api.Quotas          `json:"quotas"`
	QuotasVersion uint64              `json:"quotas_version"`
	Applied       uint64              `json:"applied"`
	NowMs         int64               `json:"now_ms"`
	StampTerm     uint64              `json:"stamp_term,omitempty"`   // term of the last leader stamp applied
	StampMs       int64               `json:"stamp_ms,omitempty"`     // the latest leader stamp of StampTerm
	ClockMs       int64               `json:"clock_ms,omitempty"`     // the latest proposer's clock (at_ms), from version 2
	ClockNowMs    int64               `json:"clock_now_ms,omitempty"` // sm_now when ClockMs was taken
	BarrierTerm   uint64              `json:"barrier_term"`
	ServicesIndex uint64              `json:"services_index"`
	Services      map[string]*service `json:"services"`
	Sessions      map[string]*session `json:"sessions"`
	Tombs         map[string]uint64   `json:"tombs"`
	TombOrder     []string            `json:"tomb_order"`
	// The configuration store (kv.go): the keys, and each subtree's last
	// change (a put or a delete under it), which prefix reads block on.
	KV     map[string]*kvEntry `json:"kv,omitempty"`
	KVTree map[string]uint64   `json:"kv_tree,omitempty"`
}

type service struct {
	ModifyIndex uint64               `json:"modify_index"`
	Instances   map[string]*instance `json:"instances"`
	Master      *master              `json:"master,omitempty"`
	Policy      *api.ColdStart       `json:"policy,omitempty"`  // set through the REST endpoint
	Carried     *api.ColdStart       `json:"carried,omitempty"` // carried by instances
	Cold        bool                 `json:"cold"`              // no ready candidate since the last grant
	Waiting     bool                 `json:"waiting"`           // cold start waits for min_ready or settle
	WaitFromMs  int64                `json:"wait_from_ms"`      // anchored by the first Tick of the wait

	ms int // derived: master-standby instances; 0 skips elections
}

type instance struct {
	Address      string            `json:"address"`
	Mode         api.Mode          `json:"mode"`
	State        api.State         `json:"state"`
	Weight       int               `json:"weight"`
	Priority     int               `json:"priority"`
	Zone         string            `json:"zone,omitempty"`
	Meta         map[string]string `json:"meta,omitempty"`
	Session      string            `json:"session,omitempty"`
	RegisteredMs int64             `json:"registered_ms"`
	ReadyIndex   uint64            `json:"ready_index"`
}

type session struct {
	TTLMs        int64    `json:"ttl_ms"`
	LeaseMs      int64    `json:"lease_ms"`
	DropGraceMs  int64    `json:"drop_grace_ms"`
	RemainingMs  int64    `json:"remaining_ms"`
	CreatedIndex uint64   `json:"created_index"`
	Seq          uint64   `json:"seq,omitempty"`         // highest X-Rafting-Sequence of its writes
	SeqOutcome   *Outcome `json:"seq_outcome,omitempty"` // what the write numbered Seq was answered
}

type master struct {
	Instance  string `json:"instance"`
	Session   string `json:"session"`
	Token     uint64 `json:"token"`
	SinceMs   int64  `json:"since_ms"`
	Releasing bool   `json:"releasing,omitempty"`
	To        string `json:"to,omitempty"` // preferred successor of a releasing record
}

// TenantInfo is what a tenant shard starts from, fixed by the meta entry
// that created the tenant, identical on every replica.
type TenantInfo struct {
	Name    string
	Epoch   uint64
	Quotas  api.Quotas
	Version uint64 // the meta state's version when the tenant was created (0: 1)
}

// NewTenant returns the state machine of a new tenant shard.
func NewTenant(info TenantInfo) *Tenant {
	t := &Tenant{st: tenantState{
		Name: info.Name, Version: info.Version, Epoch: info.Epoch, Quotas: info.Quotas,
		Services: map[string]*service{}, Sessions: map[string]*session{}, Tombs: map[string]uint64{},
	}}
	t.rebuild()
	return t
}

func (t *Tenant) rebuild() {
	t.owned = map[string]map[instKey]struct{}{}
	t.held = map[string]map[string]struct{}{}
	t.rebuildKV()
	for name, svc := range t.st.Services {
		svc.ms = 0
		for id, in := range svc.Instances {
			if in.Mode == api.ModeMasterStandby {
				svc.ms++
			}
			if in.Session != "" {
				t.own(in.Session, instKey{name, id})
			}
		}
		if svc.Master != nil {
			t.hold(svc.Master.Session, name)
		}
	}
}

func (t *Tenant) own(sess string, k instKey) {
	m := t.owned[sess]
	if m == nil {
		m = map[instKey]struct{}{}
		t.owned[sess] = m
	}
	m[k] = struct{}{}
}

func (t *Tenant) disown(sess string, k instKey) {
	if m := t.owned[sess]; m != nil {
		delete(m, k)
		if len(m) == 0 {
			delete(t.owned, sess)
		}
	}
}

func (t *Tenant) hold(sess, svc string) {
	m := t.held[sess]
	if m == nil {
		m = map[string]struct{}{}
		t.held[sess] = m
	}
	m[svc] = struct{}{}
}

func (t *Tenant) unhold(sess, svc string) {
	if m := t.held[sess]; m != nil {
		delete(m, svc)
		if len(m) == 0 {
			delete(t.held, sess)
		}
	}
}

// Outcome is the result of one command, returned to the proposer in the
// entry's Result.Data. A rejected command (Code set) changed nothing.
type Outcome struct {
	Code     api.Code             `json:"code,omitempty"`
	Message  string               `json:"message,omitempty"`
	Quota    string               `json:"quota,omitempty"`
	Limit    int64                `json:"limit,omitempty"`
	Used     int64                `json:"used,omitempty"`
	Index    uint64               `json:"index"`
	Created  bool                 `json:"created,omitempty"`
	Instance *api.Instance        `json:"instance,omitempty"`
	Session  *api.SessionResponse `json:"session,omitempty"`
	// The configuration store (kv.go): the key a put wrote, without its
	// value (the proposer has it); how many keys a delete removed; the
	// compare that failed.
	KV       *api.KV         `json:"kv,omitempty"`
	Deleted  int             `json:"deleted,omitempty"`
	Conflict *api.KVConflict `json:"conflict,omitempty"`
}

// Err returns the outcome as an *api.Error, or nil when it succeeded.
func (o *Outcome) Err() *api.Error {
	if o.Code == "" {
		return nil
	}
	return &api.Error{Code: o.Code, Message: o.Message, Quota: o.Quota, Limit: o.Limit, Used: o.Used, Conflict: o.Conflict}
}

func reject(err *api.Error) Outcome {
	return Outcome{Code: err.Code, Message: err.Message, Quota: err.Quota, Limit: err.Limit, Used: err.Used, Conflict: err.Conflict}
}

func (Outcome) rejected(err *api.Error) Outcome { return reject(err) }

func rejectf(code api.Code, format string, args ...any) Outcome {
	return reject(api.Errorf(code, format, args...))
}

// Changes tells a node's local observers what one batch of entries changed.
// It is derived from the entries, so every replica computes the same.
type Changes struct {
	Services   map[string]struct{} // services whose answer changed
	ServiceSet bool                // a service was created or removed
	Opened     []string            // sessions created
	Ended      []string            // sessions ended (expired or closed)
	Masters    []MasterChange      // master records granted, marked releasing or removed
	Instances  []InstanceChange    // session-owned instances changed by someone else
	Barrier    uint64              // the barrier term applied in this batch, if any
	KV         []KVChange          // keys written or deleted, in the order applied
}

// InstanceChange is a change of a session's instance that someone other
// than the session made: an operator's new state, or its removal (State
// empty).
type InstanceChange struct {
	Index   uint64 // the entry that made it: the state it shows is the state at Index
	Session string
	Held    api.HeldInstance
}

// MasterChange is one change of a service's master record. Old or New is
// nil when there was or is no master.
type MasterChange struct {
	Index    uint64 // the entry that made it (a batch applies several)
	Service  string
	Old, New *MasterView
}

// MasterView is a master record as local observers see it (with the secret
// session, which never leaves the node).
type MasterView struct {
	Instance  string
	Session   string
	Token     uint64
	SinceMs   int64
	Releasing bool
}

func (c *Changes) service(name string) {
	if c.Services == nil {
		c.Services = map[string]struct{}{}
	}
	c.Services[name] = struct{}{}
}

func (c *Changes) empty() bool {
	return len(c.Services) == 0 && !c.ServiceSet && len(c.Opened) == 0 && len(c.Ended) == 0 &&
		len(c.Masters) == 0 && c.Barrier == 0 && len(c.KV) == 0
}

// Apply applies one committed entry and returns its outcome. It never
// panics and never fails: a command that cannot be decoded or is invalid is
// rejected with a code and changes nothing.
func (t *Tenant) Apply(index uint64, cmd []byte, ch *Changes) Outcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.apply(index, cmd, ch)
	if index > t.st.Applied {
		t.st.Applied = index
	}
	o.Index = index
	return o
}

// Notify wakes the watchers of what a batch changed. Call it after the
// batch's Apply calls, outside any lock of the caller's.
func (t *Tenant) Notify(ch *Changes) {
	t.watch.notify(ch)
}

func (t *Tenant) apply(index uint64, cmd []byte, ch *Changes) (o Outcome) {
	defer func() {
		// Update must be total: Dragonboat stops the process on an Update
		// error. A panic here is a bug; it must still not take every
		// replica down, and every replica rejects the entry alike.
		if r := recover(); r != nil {
			o = rejectf(api.CodeInternal, "command at %d: %v", index, r)
		}
	}()
	op, body, err := Decode(cmd)
	if err != nil {
		return rejectf(api.CodeBadRequest, "undecodable command: %v", err)
	}
	t.atMs = 0
	if h := tenantOps[op]; h != nil {
		return h(t, index, op, body, ch)
	}
	return rejectf(api.CodeBadRequest, "unknown tenant command %s", op)
}

// command applies one command of a state machine S from its encoded body,
// answering O. ch collects what the entry changed for the node's watchers
// (a tenant's; the meta shard's watchers wake on every batch, and its
// commands get nil).
type command[S, O any] func(s S, index uint64, op Op, body []byte, ch *Changes) O

// tenantOp applies one tenant command from its encoded body.
type tenantOp = command[*Tenant, Outcome]

// tenantOps are the tenant shard's commands, each decoded strictly into
// its type first (decoded): an undecodable body is rejected, naming the
// command, before anything changes.
var tenantOps = map[Op]tenantOp{
	OpOpenSession:  decoded((*Tenant).applyOpenSession),
	OpCloseSession: decoded((*Tenant).applyCloseSession),
	OpRegister:     decoded((*Tenant).applyRegister),
	OpDeregister:   decoded((*Tenant).applyDeregister),
	OpSetPolicy:    decoded((*Tenant).applySetPolicy),
	OpResign:       decoded((*Tenant).applyResign),
	OpSetQuotas:    decoded((*Tenant).applySetQuotas),
	OpSetVersion:   decoded((*Tenant).applySetVersion),
	OpBarrier:      decoded((*Tenant).applyBarrier),
	OpRenew:        decoded((*Tenant).applyRenew),
	OpExpire:       decoded((*Tenant).applyExpire),
	OpTick:         decoded((*Tenant).applyTick),
	OpRelease:      decoded((*Tenant).applyRelease),
	OpKVPut:        (*Tenant).applyKV,
	OpKVDelete:     (*Tenant).applyKV,
	OpKVTxn:        (*Tenant).applyKV,
}

// outcome is the answer of a state machine's commands (Outcome,
// MetaOutcome): rejected makes the answer of a refused one.
type outcome[O any] interface {
	rejected(err *api.Error) O
}

// decoded adapts the handler of a decoded command C into a command of the
// state machine S (the tenant's and the meta shard's alike): the body is
// decoded strictly into a C, or the command is rejected, naming it, before
// anything changes.
func decoded[S, C any, O outcome[O]](fn func(s S, index uint64, op Op, c C, ch *Changes) O) command[S, O] {
	return func(s S, index uint64, op Op, body []byte, ch *Changes) O {
		c, err := decodeCommand[C](op, body)
		if err != nil {
			var o O
			return o.rejected(err)
		}
		return fn(s, index, op, c, ch)
	}
}

// decodeCommand decodes a command's body strictly into a C; its error
// names the command.
func decodeCommand[C any](op Op, body []byte) (C, *api.Error) {
	var c C
	if err := strictUnmarshal(body, &c); err != nil {
		return c, api.Errorf(api.CodeBadRequest, "%s: %v", op, err)
	}
	return c, nil
}

func (t *Tenant) applyOpenSession(index uint64, _ Op, c OpenSession, ch *Changes) Outcome {
	t.proposerClock(c.AtMs)
	return t.openSession(index, c, ch)
}

func (t *Tenant) applyCloseSession(index uint64, _ Op, c CloseSession, ch *Changes) Outcome {
	t.proposerClock(c.AtMs)
	if _, ok := t.st.Sessions[c.ID]; ok {
		t.endSessions(index, []string{c.ID}, ch)
	}
	return Outcome{}
}

func (t *Tenant) applyRegister(index uint64, op Op, c Register, ch *Changes) Outcome {
	t.proposerClock(c.AtMs)
	if c.RegisteredMs != 0 && versionOf(t.st.Version) < 2 {
		return reject(unknownField(op, "registered_ms"))
	}
	caller := cmp.Or(c.Caller, c.Instance.Session)
	return t.sequenced(index, op, caller, c.Seq, func() Outcome { return t.register(index, c, ch) })
}

func (t *Tenant) applyDeregister(index uint64, op Op, c Deregister, ch *Changes) Outcome {
	t.proposerClock(c.AtMs)
	return t.sequenced(index, op, c.Caller, c.Seq, func() Outcome { return t.deregister(index, c, ch) })
}

func (t *Tenant) applySetPolicy(index uint64, _ Op, c SetPolicy, ch *Changes) Outcome {
	t.proposerClock(c.AtMs)
	return t.setPolicy(index, c, ch)
}

func (t *Tenant) applyResign(index uint64, op Op, c Resign, ch *Changes) Outcome {
	t.proposerClock(c.AtMs)
	return t.sequenced(index, op, c.Caller, c.Seq, func() Outcome { return t.resign(index, c, ch) })
}

func (t *Tenant) applySetQuotas(_ uint64, _ Op, c SetQuotas, _ *Changes) Outcome {
	if c.Version > t.st.QuotasVersion {
		t.st.QuotasVersion, t.st.Quotas = c.Version, c.Quotas
	}
	return Outcome{}
}

func (t *Tenant) applySetVersion(_ uint64, _ Op, c SetVersion, _ *Changes) Outcome {
	if err := setVersion(&t.st.Version, c, &t.tooOld); err != nil {
		return reject(err)
	}
	t.proposerClock(c.AtMs)
	return Outcome{}
}

func (t *Tenant) applyBarrier(_ uint64, _ Op, c Barrier, ch *Changes) Outcome {
	if c.Term < t.st.BarrierTerm {
		return rejectf(api.CodeConflict, "barrier of term %d after term %d", c.Term, t.st.BarrierTerm)
	}
	t.st.BarrierTerm = c.Term
	t.advance(c.Term, c.NowMs)
	ch.Barrier = c.Term
	return Outcome{}
}

// The leader-only commands below apply only under the term of the last
// barrier (guard).

func (t *Tenant) applyRenew(_ uint64, op Op, c Renew, _ *Changes) Outcome {
	if o, ok := t.guard(op, c.Term); !ok {
		return o
	}
	t.advance(c.Term, c.NowMs)
	for _, it := range c.Items {
		if s := t.st.Sessions[it.ID]; s != nil {
			s.RemainingMs = max(0, min(it.RemainingMs, s.TTLMs))
		}
	}
	return Outcome{}
}

func (t *Tenant) applyExpire(index uint64, op Op, c Expire, ch *Changes) Outcome {
	if o, ok := t.guard(op, c.Term); !ok {
		return o
	}
	t.advance(c.Term, c.NowMs)
	t.endSessions(index, c.IDs, ch)
	return Outcome{}
}

func (t *Tenant) applyTick(index uint64, op Op, c Tick, ch *Changes) Outcome {
	if o, ok := t.guard(op, c.Term); !ok {
		return o
	}
	t.advance(c.Term, c.NowMs)
	for _, name := range sortedKeys(t.st.Services) {
		svc := t.st.Services[name]
		if !svc.Waiting {
			continue
		}
		if svc.WaitFromMs == 0 {
			svc.WaitFromMs = t.st.NowMs
		}
		t.elect(index, name, svc, "", ch)
	}
	return Outcome{}
}

func (t *Tenant) applyRelease(index uint64, op Op, c Release, ch *Changes) Outcome {
	if o, ok := t.guard(op, c.Term); !ok {
		return o
	}
	t.advance(c.Term, c.NowMs)
	return t.release(index, c, ch)
}

// sequenced applies a write numbered seq under the caller's session at
// most once (X-Rafting-Sequence): a copy numbered as the session's last
// write gets that write's answer and changes nothing, a lower number is
// refused, and a higher one is applied and its answer kept, whatever it
// is — a refusal too, so a late copy of a write refused once cannot apply
// after the holder took the refusal for the write's outcome. Writes
// without a number, or under no live session, are applied as they come.
func (t *Tenant) sequenced(index uint64, op Op, caller string, seq uint64, write func() Outcome) Outcome {
	if seq == 0 {
		return write()
	}
	// Refused without applying, nor keeping an answer (admitSeq): before
	// version 2 (sent only once every node's build speaks it, so every
	// replica refuses it alike; the writer sends it again once the tenant
	// caught up — applied unnumbered it would lose what the number is
	// for); under a session that ended or never was (a late copy: the
	// session's end removed what it owned, and applied now it would undo
	// what came after, such as the next incarnation's registration of the
	// same instance); or numbered below the session's last.
	if err := t.admitSeq(caller, seq); err != nil {
		return reject(err)
	}
	s := t.st.Sessions[caller]
	if seq == s.Seq && s.SeqOutcome != nil {
		return *s.SeqOutcome
	}
	o := write()
	o.Index = index
	if s := t.st.Sessions[caller]; s != nil {
		kept := o
		s.Seq, s.SeqOutcome = seq, &kept
	}
	return o
}

// guard is the term guard of leader-only commands: a deposed leader's late
// command never applies after the new leader's barrier.
func (t *Tenant) guard(op Op, term uint64) (Outcome, bool) {
	if term == 0 || term != t.st.BarrierTerm {
		return rejectf(api.CodeConflict, "%s of term %d, barrier term is %d", op, term, t.st.BarrierTerm), false
	}
	return Outcome{}, true
}

// displayMs is the time reads show for what this entry does
// (registered_at, since): from version 2 the clock of the node that made
// the entry — an ordinary write's proposer, a leader entry's stamp —
// alone. sm_now is for decisions and may lag real time, and a version 1
// showed max(sm_now, clock), which let one leader an hour ahead (its
// first stamp starts sm_now) push every later time an hour ahead.
func (t *Tenant) displayMs() int64 {
	if versionOf(t.st.Version) >= 2 && t.atMs != 0 {
		return t.atMs
	}
	return max(t.st.NowMs, t.atMs)
}

// proposerClock takes in an ordinary write's clock (at_ms): what it
// displays, and, from version 2, the anchor a leader's stamps are clamped
// to (clampStamp).
func (t *Tenant) proposerClock(atMs int64) {
	t.atMs = atMs
	if atMs != 0 && versionOf(t.st.Version) >= 2 && atMs >= t.st.ClockMs {
		t.st.ClockMs, t.st.ClockNowMs = atMs, t.st.NowMs
	}
}

// stampAhead bounds how far ahead of the proposers' clocks a leader's
// stamp is shown (DESIGN.md: at most an interval and an election timeout).
const stampAhead = 2000

// clampStamp is a leader's stamp as reads show it: at most stampAhead past
// the latest proposer's clock, advanced by the leader time (sm_now) gone by
// since it was seen. A leader whose wall clock is an hour ahead shows its
// grants' since at about the right time, not an hour ahead.
func (t *Tenant) clampStamp(stamp int64) int64 {
	if t.st.ClockMs == 0 {
		return stamp
	}
	return min(stamp, t.st.ClockMs+max(0, t.st.NowMs-t.st.ClockNowMs)+stampAhead)
}

// advance moves sm_now by a leader's stamp; it never goes back, and it
// moves only as fast as real time, whatever a leader's wall clock says.
//
// A leader stamps with the wall clock read once when its term began plus
// the monotonic time since, so within a term the difference of two stamps
// is real elapsed time: sm_now moves by it. Across terms the two stamps
// come from two nodes' wall clocks, which may disagree by an hour: the
// first stamp of a term moves sm_now by nothing, and only anchors the
// term's later stamps. So sm_now — what cold-start settle periods are
// measured on — can lag real time (by the gaps between the last stamp of
// one term and the first of the next: an election, or an idle spell
// before it) but never runs ahead of it, and a settle period is never cut
// short (testdata/tenant/clock.txt). The stamp itself is shown in reads
// (since), as an ordinary write's proposer clock is (registered_at).
func (t *Tenant) advance(term uint64, stamp int64) {
	if versionOf(t.st.Version) < 2 {
		t.st.NowMs = max(t.st.NowMs, stamp) // version 1: the stamp itself
		return
	}
	t.atMs = t.clampStamp(stamp)
	switch {
	case t.st.NowMs == 0:
		t.st.NowMs = stamp // the tenant's first stamp: a start
	case term == t.st.StampTerm:
		t.st.NowMs += max(0, stamp-t.st.StampMs)
	}
	if term != t.st.StampTerm {
		t.st.StampTerm, t.st.StampMs = term, stamp
	}
	t.st.StampMs = max(t.st.StampMs, stamp)
}

func (t *Tenant) openSession(index uint64, c OpenSession, ch *Changes) Outcome {
	c, err := checkOpenSession(c, t.st.Quotas)
	if err != nil {
		return reject(err)
	}
	view := &api.SessionResponse{SessionTag: api.SessionTag(c.ID), TTLMs: c.TTLMs, LeaseMs: c.LeaseMs, DropGraceMs: c.DropGraceMs}
	if exists, err := t.admitOpen(c); err != nil {
		return reject(err)
	} else if exists {
		return Outcome{Session: view}
	}
	t.st.Sessions[c.ID] = &session{TTLMs: c.TTLMs, LeaseMs: c.LeaseMs, DropGraceMs: c.DropGraceMs,
		RemainingMs: c.TTLMs, CreatedIndex: index}
	ch.Opened = append(ch.Opened, c.ID)
	return Outcome{Created: true, Session: view}
}

// endSessions removes sessions, their instances and masterships, then grants
// successors: every expired session goes first, so no successor is chosen
// among sessions that are ending in the same entry.
func (t *Tenant) endSessions(index uint64, ids []string, ch *Changes) {
	affected := map[string]struct{}{}
	for _, id := range ids {
		if _, ok := t.st.Sessions[id]; !ok {
			continue
		}
		for _, name := range sortedKeys(t.held[id]) {
			svc := t.st.Services[name]
			t.setMaster(index, name, svc, nil, ch)
			affected[name] = struct{}{}
		}
		for _, k := range sortedInstKeys(t.owned[id]) {
			svc := t.st.Services[k.service]
			if in := svc.Instances[k.id]; in != nil && in.Mode == api.ModeMasterStandby {
				svc.ms--
			}
			delete(svc.Instances, k.id)
			svc.ModifyIndex = index
			ch.service(k.service)
			affected[k.service] = struct{}{}
		}
		delete(t.owned, id)
		t.kvEndSession(index, id, ch)
		delete(t.st.Sessions, id)
		t.tombstone(id, index)
		ch.Ended = append(ch.Ended, id)
	}
	for _, name := range sortedKeys(affected) {
		svc := t.st.Services[name]
		t.elect(index, name, svc, "", ch)
		t.dropIfEmpty(index, name, svc, ch)
	}
}

func (t *Tenant) tombstone(id string, index uint64) {
	t.st.Tombs[id] = index
	t.st.TombOrder = append(t.st.TombOrder, id)
	for len(t.st.TombOrder) > MaxTombstones {
		delete(t.st.Tombs, t.st.TombOrder[0])
		t.st.TombOrder = t.st.TombOrder[1:]
	}
	if cap(t.st.TombOrder) > 2*MaxTombstones {
		t.st.TombOrder = slices.Clone(t.st.TombOrder)
	}
}

func (t *Tenant) register(index uint64, c Register, ch *Changes) Outcome {
	r, err := checkRegister(c, t.st.Quotas, t.st.Name, versionOf(t.st.Version))
	if err != nil {
		return reject(err)
	}
	svc, old, sess, err := t.admitRegister(c, r)
	if err != nil {
		return reject(err)
	}

	// Valid: apply.
	if svc == nil {
		svc = &service{Instances: map[string]*instance{}, Cold: true, ModifyIndex: index}
		t.st.Services[c.Service] = svc
		t.st.ServicesIndex = index
		ch.ServiceSet = true
		ch.service(c.Service)
	}
	in := t.newInstance(index, c, r, sess)
	changed := true
	if old != nil {
		in.RegisteredMs = old.RegisteredMs
		if old.State == api.StateReady && in.State == api.StateReady {
			in.ReadyIndex = old.ReadyIndex
		}
		changed = !sameInstance(old, in)
	}
	if svc.carry(r.ColdStart) {
		changed = true
	}
	if !changed {
		return Outcome{Instance: t.instanceView(c.ID, old)}
	}
	t.putInstance(index, instKey{c.Service, c.ID}, svc, old, in, ch)
	if r.Session == "" && sess != "" && old != nil && old.State != in.State {
		ch.Instances = append(ch.Instances, InstanceChange{Index: index, Session: sess,
			Held: api.HeldInstance{Service: c.Service, Instance: c.ID, State: in.State}})
	}
	if m := svc.Master; m != nil && m.Instance == c.ID && !eligible(in) {
		holder := m.Session != "" && (m.Session == c.Caller || m.Session == r.Session)
		t.revoke(index, c.Service, svc, holder, "", ch)
	}
	t.elect(index, c.Service, svc, "", ch)
	return Outcome{Created: old == nil, Instance: t.instanceView(c.ID, in)}
}

// newInstance is the instance a registration (r, its checked request)
// writes, owned by sess.
func (t *Tenant) newInstance(index uint64, c Register, r api.RegisterRequest, sess string) *instance {
	weight := api.DefaultWeight
	if r.Weight != nil {
		weight = *r.Weight
	}
	in := &instance{
		Address: r.Address, Mode: r.Mode, State: r.State, Weight: weight, Priority: r.Priority,
		Zone: r.Zone, Meta: r.Meta, Session: sess, RegisteredMs: t.displayMs(), ReadyIndex: index,
	}
	if len(in.Meta) == 0 {
		in.Meta = nil
	}
	if c.RegisteredMs != 0 {
		in.RegisteredMs = c.RegisteredMs
	}
	return in
}

// carry records the cold-start policy an instance carries, and reports
// whether it changes the service's answer (no policy set wins over it).
func (svc *service) carry(cs *api.ColdStart) bool {
	if cs == nil || svc.Carried != nil && *svc.Carried == *cs {
		return false
	}
	c := *cs
	svc.Carried = &c
	return svc.Policy == nil
}

// putInstance stores in as the service's instance k in place of old (nil
// for a new one), moving its ownership and the master-standby count.
func (t *Tenant) putInstance(index uint64, k instKey, svc *service, old, in *instance, ch *Changes) {
	if old != nil && old.Session != "" && old.Session != in.Session {
		t.disown(old.Session, k)
	}
	if in.Session != "" {
		t.own(in.Session, k)
	}
	if old != nil && old.Mode == api.ModeMasterStandby {
		svc.ms--
	}
	if in.Mode == api.ModeMasterStandby {
		svc.ms++
	}
	svc.Instances[k.id] = in
	svc.ModifyIndex = index
	ch.service(k.service)
}

func sameInstance(a, b *instance) bool {
	if a.Address != b.Address || a.Mode != b.Mode || a.State != b.State || a.Weight != b.Weight ||
		a.Priority != b.Priority || a.Zone != b.Zone || a.Session != b.Session || len(a.Meta) != len(b.Meta) {
		return false
	}
	for k, v := range a.Meta {
		if w, ok := b.Meta[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (t *Tenant) deregister(index uint64, c Deregister, ch *Changes) Outcome {
	if err := checkNames(versionOf(t.st.Version), c.Service, c.ID); err != nil {
		return reject(err)
	}
	svc := t.st.Services[c.Service]
	if svc == nil || svc.Instances[c.ID] == nil {
		return Outcome{} // DELETE of a missing thing succeeds
	}
	in := svc.Instances[c.ID]
	if m := svc.Master; m != nil && m.Instance == c.ID {
		t.revoke(index, c.Service, svc, c.Caller != "" && c.Caller == m.Session, "", ch)
	}
	if in.Session != "" {
		t.disown(in.Session, instKey{c.Service, c.ID})
		if c.Caller != in.Session {
			ch.Instances = append(ch.Instances, InstanceChange{Index: index, Session: in.Session,
				Held: api.HeldInstance{Service: c.Service, Instance: c.ID}})
		}
	}
	if in.Mode == api.ModeMasterStandby {
		svc.ms--
	}
	delete(svc.Instances, c.ID)
	svc.ModifyIndex = index
	ch.service(c.Service)
	t.elect(index, c.Service, svc, "", ch)
	t.dropIfEmpty(index, c.Service, svc, ch)
	return Outcome{}
}

func (t *Tenant) setPolicy(index uint64, c SetPolicy, ch *Changes) Outcome {
	if err := checkPolicy(c, versionOf(t.st.Version)); err != nil {
		return reject(err)
	}
	validColdStart("cold_start", &c.ColdStart) // fills min_ready's default
	if err := t.admitPolicy(c); err != nil {
		return reject(err)
	}
	svc := t.st.Services[c.Service]
	if svc == nil {
		svc = &service{Instances: map[string]*instance{}, Cold: true}
		t.st.Services[c.Service] = svc
		t.st.ServicesIndex = index
		ch.ServiceSet = true
	} else if svc.Policy != nil && *svc.Policy == c.ColdStart {
		return Outcome{}
	}
	cs := c.ColdStart
	svc.Policy = &cs
	svc.ModifyIndex = index
	ch.service(c.Service)
	t.elect(index, c.Service, svc, "", ch)
	return Outcome{}
}

func validColdStart(field string, cs *api.ColdStart) *api.Error {
	switch {
	case cs.MinReady < 0 || cs.MinReady > 10_000:
		return api.BadField(field+".min_ready", "%d must be within [0, 10000]", cs.MinReady)
	case cs.SettleMs < 0 || cs.SettleMs > 3600_000:
		return api.BadField(field+".settle_ms", "%d must be within [0, 3600000]", cs.SettleMs)
	}
	if cs.MinReady == 0 {
		cs.MinReady = 1
	}
	return nil
}

func (t *Tenant) resign(index uint64, c Resign, ch *Changes) Outcome {
	if err := validName(versionOf(t.st.Version), "service", c.Service); err != nil {
		return reject(err)
	}
	if err := t.admitResign(c); err != nil {
		return reject(err)
	}
	svc := t.st.Services[c.Service]
	m := svc.Master
	holder := c.Caller != "" && c.Caller == m.Session
	if !holder {
		if m.Releasing && m.To == c.To {
			return Outcome{} // a retry
		}
		t.revoke(index, c.Service, svc, false, c.To, ch)
		svc.ModifyIndex = index
		return Outcome{}
	}
	t.revoke(index, c.Service, svc, true, "", ch)
	t.handOver(index, c.Service, svc, c.To, m.Instance, ch)
	return Outcome{}
}

// release grants the successor of a releasing record (leader-only: the
// leader proposes it once the holder's last promise has lapsed).
func (t *Tenant) release(index uint64, c Release, ch *Changes) Outcome {
	svc := t.st.Services[c.Service]
	if svc == nil || svc.Master == nil || !svc.Master.Releasing || svc.Master.Token != c.Token {
		return Outcome{} // already released, or re-granted: nothing to do
	}
	m := svc.Master
	t.setMaster(index, c.Service, svc, nil, ch)
	svc.ModifyIndex = index
	ch.service(c.Service)
	t.handOver(index, c.Service, svc, m.To, m.Instance, ch)
	t.dropIfEmpty(index, c.Service, svc, ch)
	return Outcome{}
}

// handOver grants a service with no master to `to` when it is a ready
// standby, else by the election rule, avoiding `from` when another
// candidate exists.
func (t *Tenant) handOver(index uint64, name string, svc *service, to, from string, ch *Changes) {
	if to != "" && t.candidate(svc.Instances[to]) {
		t.grant(index, name, svc, to, ch)
		return
	}
	t.elect(index, name, svc, from, ch)
}

// revoke ends a mastership. The holder's own revocation clears the record
// (the caller then elects a successor in the same entry); anyone else's
// marks it releasing, and the successor waits for the holder's last promise.
func (t *Tenant) revoke(index uint64, name string, svc *service, holder bool, to string, ch *Changes) {
	m := svc.Master
	if holder {
		t.setMaster(index, name, svc, nil, ch)
		return
	}
	if m.Releasing && m.To == to {
		return
	}
	next := *m
	next.Releasing, next.To = true, to
	t.setMaster(index, name, svc, &next, ch)
}

// setMaster changes a service's master record, and with it the service's
// answer: from version 2 its modify index moves too. (Version 1 left that
// to the callers, and one forgot: a session that ended holding a releasing
// mastership cleared the record without moving the index, so watchers and
// the cached answer kept the ended master.)
func (t *Tenant) setMaster(index uint64, name string, svc *service, m *master, ch *Changes) {
	if versionOf(t.st.Version) >= 2 {
		svc.ModifyIndex = index
	}
	old := svc.Master
	if old != nil {
		t.unhold(old.Session, name)
	}
	svc.Master = m
	if m != nil {
		t.hold(m.Session, name)
	}
	ch.service(name)
	ch.Masters = append(ch.Masters, MasterChange{Index: index, Service: name, Old: old.view(), New: m.view()})
}

func (m *master) view() *MasterView {
	if m == nil {
		return nil
	}
	return &MasterView{Instance: m.Instance, Session: m.Session, Token: m.Token, SinceMs: m.SinceMs, Releasing: m.Releasing}
}

func eligible(in *instance) bool {
	return in != nil && in.Mode == api.ModeMasterStandby && in.State == api.StateReady && in.Session != ""
}

func (t *Tenant) candidate(in *instance) bool {
	if !eligible(in) {
		return false
	}
	_, alive := t.st.Sessions[in.Session]
	return alive
}

// candidates are the service's ready master-standby instances with a live
// session, best first: highest priority, then earliest ready (Raft index),
// then ID. `avoid` is left out when any other candidate exists.
func (t *Tenant) candidates(svc *service, avoid string) []string {
	var ids []string
	for id, in := range svc.Instances {
		if id != avoid && t.candidate(in) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := svc.Instances[ids[i]], svc.Instances[ids[j]]
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		if a.ReadyIndex != b.ReadyIndex {
			return a.ReadyIndex < b.ReadyIndex
		}
		return ids[i] < ids[j]
	})
	return ids
}

// policy is the service's effective cold-start policy: the REST one, else
// the one its instances carry, else {1, 0}: grant at once.
func (svc *service) policy() api.ColdStart {
	switch {
	case svc.Policy != nil:
		return *svc.Policy
	case svc.Carried != nil:
		return *svc.Carried
	}
	return api.ColdStart{MinReady: 1}
}

// elect grants a service with no master, by the election rules.
func (t *Tenant) elect(index uint64, name string, svc *service, avoid string, ch *Changes) {
	if svc == nil || svc.Master != nil {
		return
	}
	if svc.ms == 0 { // a farm service: nothing to elect
		svc.Cold, svc.Waiting, svc.WaitFromMs = true, false, 0
		return
	}
	cands := t.candidates(svc, avoid)
	if len(cands) == 0 && avoid != "" {
		cands = t.candidates(svc, "")
	}
	if len(cands) == 0 {
		svc.Cold, svc.Waiting, svc.WaitFromMs = true, false, 0
		return
	}
	if svc.Cold {
		p := svc.policy()
		if p.SettleMs > 0 && len(cands) < max(1, p.MinReady) {
			if !svc.Waiting {
				svc.Waiting, svc.WaitFromMs = true, 0
			}
			if svc.WaitFromMs == 0 || t.st.NowMs-svc.WaitFromMs < p.SettleMs {
				return
			}
		}
	}
	t.grant(index, name, svc, cands[0], ch)
}

func (t *Tenant) grant(index uint64, name string, svc *service, id string, ch *Changes) {
	in := svc.Instances[id]
	svc.Cold, svc.Waiting, svc.WaitFromMs = false, false, 0
	t.setMaster(index, name, svc, &master{Instance: id, Session: in.Session, Token: t.st.Epoch<<40 | index, SinceMs: t.displayMs()}, ch)
	svc.ModifyIndex = index
}

// dropIfEmpty removes a service left with no instance, no master and no
// policy of its own.
func (t *Tenant) dropIfEmpty(index uint64, name string, svc *service, ch *Changes) {
	if svc == nil || len(svc.Instances) > 0 || svc.Master != nil || svc.Policy != nil {
		return
	}
	delete(t.st.Services, name)
	t.st.ServicesIndex = index
	ch.ServiceSet = true
	ch.service(name)
	t.cacheMu.Lock()
	delete(t.cache, name)
	t.cacheMu.Unlock()
}

func (t *Tenant) instanceCount() int64 {
	n := 0
	for _, svc := range t.st.Services {
		n += len(svc.Instances)
	}
	return int64(n)
}

func (t *Tenant) instanceView(id string, in *instance) *api.Instance {
	v := &api.Instance{
		ID: id, Address: in.Address, Mode: in.Mode, State: in.State, Weight: in.Weight,
		Priority: in.Priority, Zone: in.Zone, Meta: in.Meta, RegisteredAt: msTime(in.RegisteredMs),
	}
	if in.Session != "" {
		v.SessionTag = api.SessionTag(in.Session)
	}
	return v
}

func msTime(ms int64) time.Time {
	return time.UnixMilli(ms).UTC()
}

// sortedKeys returns m's keys in ascending order: state machines iterate
// maps this way, so that every replica does the same.
func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func sortedInstKeys(m map[instKey]struct{}) []instKey {
	keys := make([]instKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].service != keys[j].service {
			return keys[i].service < keys[j].service
		}
		return keys[i].id < keys[j].id
	})
	return keys
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// SaveSnapshot writes the whole state: version byte, then JSON.
func (t *Tenant) SaveSnapshot(w io.Writer) error {
	b, err := t.Snapshot()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Snapshot returns the encoded state, taken under the read lock (so it
// may run concurrently with reads) — all but the configuration store's
// keys, which are encoded after it: a key's record is never changed in
// place, so a copy of the map of them, made under the lock, is the state
// as of then. (A full store of 16 MiB took 122 ms to encode, which held
// the tenant's applies, and its Dragonboat apply worker, for as long.)
// The bytes are those of Marshal(&t.st): "kv" and "kv_tree" are its last
// fields.
func (t *Tenant) Snapshot() ([]byte, error) {
	t.mu.RLock()
	st := t.st
	kv, tree := maps.Clone(st.KV), maps.Clone(st.KVTree)
	st.KV, st.KVTree = nil, nil
	b, err := Marshal(&st)
	t.mu.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("encode tenant snapshot: %w", err)
	}
	out := append(make([]byte, 0, len(b)+1), CodecVersion)
	out = append(out, b[:len(b)-1]...) // without its closing brace
	for _, f := range []struct {
		name string
		v    any
		n    int
	}{{"kv", kv, len(kv)}, {"kv_tree", tree, len(tree)}} {
		if f.n == 0 {
			continue // omitempty
		}
		enc, err := Marshal(f.v)
		if err != nil {
			return nil, fmt.Errorf("encode tenant snapshot: %w", err)
		}
		out = append(out, `,"`+f.name+`":`...)
		out = append(out, enc...)
	}
	return append(out, '}'), nil
}

// check refuses a decoded snapshot that no state machine wrote: the reads
// and commands take its structure for granted. Missing maps it makes empty.
func (st *tenantState) check() error {
	if st.Services == nil {
		st.Services = map[string]*service{}
	}
	if st.Sessions == nil {
		st.Sessions = map[string]*session{}
	}
	if st.Tombs == nil {
		st.Tombs = map[string]uint64{}
	}
	if err := st.checkKV(); err != nil {
		return err
	}
	for name, svc := range st.Services {
		if svc == nil {
			return fmt.Errorf("service %q is null", name)
		}
		if svc.Instances == nil {
			svc.Instances = map[string]*instance{}
		}
		for id, in := range svc.Instances {
			if in == nil {
				return fmt.Errorf("instance %s/%s is null", name, id)
			}
		}
	}
	for id, s := range st.Sessions {
		if s == nil {
			return fmt.Errorf("session %q is null", id)
		}
	}
	return nil
}

// Restore replaces the state with a snapshot's and wakes every watcher.
func (t *Tenant) Restore(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read tenant snapshot: %w", err)
	}
	if len(b) < 1 || b[0] != CodecVersion {
		return fmt.Errorf("tenant snapshot: unknown codec version")
	}
	var st tenantState
	if err := json.Unmarshal(b[1:], &st); err != nil {
		return fmt.Errorf("decode tenant snapshot: %w", err)
	}
	if err := st.check(); err != nil {
		return fmt.Errorf("tenant snapshot: %w", err)
	}
	if st.Version > Version {
		return fmt.Errorf("tenant snapshot: version %d, this build knows up to %d: run a newer build", st.Version, Version)
	}
	t.mu.Lock()
	t.st = st
	t.rebuild()
	t.cacheMu.Lock()
	t.cache = nil // modify indexes may repeat across a restore
	t.cacheMu.Unlock()
	t.mu.Unlock()
	t.watch.wakeAll()
	return nil
}
