package fsm

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rafting/rafting/api"
)

// watchHub wakes blocking queries. Each service name has a channel that is
// closed (and forgotten) when the service's answer changes; `applied` is
// closed after every batch. Channels are taken under the Tenant's read lock
// together with the index they guard, so no change can slip between them.
type watchHub struct {
	retired  atomic.Bool // the replica stopped (Retire): nothing changes any more
	mu       sync.Mutex
	services map[string]*watchEntry
	keys     map[string]*watchEntry // the configuration store: one key
	trees    map[string]*watchEntry // the configuration store: a subtree
	applied  chan struct{}
}

type watchEntry struct {
	ch   chan struct{}
	refs int
}

func (h *watchHub) serviceChan(name string) (<-chan struct{}, func()) {
	return h.chanIn(&h.services, name)
}

// chanIn returns the channel of name in *m, made when missing, and the
// function that gives it up.
func (h *watchHub) chanIn(m *map[string]*watchEntry, name string) (<-chan struct{}, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if *m == nil {
		*m = map[string]*watchEntry{}
	}
	e := (*m)[name]
	if e == nil {
		e = &watchEntry{ch: make(chan struct{})}
		(*m)[name] = e
	}
	e.refs++
	return e.ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		e.refs--
		if e.refs == 0 && (*m)[name] == e {
			delete(*m, name)
		}
	}
}

// wake closes and forgets name's channel in m, if any.
func wake(m map[string]*watchEntry, name string) {
	if e := m[name]; e != nil {
		close(e.ch)
		delete(m, name)
	}
}

func (h *watchHub) appliedChan() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.applied == nil {
		h.applied = make(chan struct{})
	}
	return h.applied
}

func (h *watchHub) notify(ch *Changes) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name := range ch.Services {
		wake(h.services, name)
	}
	if len(h.keys) > 0 || len(h.trees) > 0 {
		for _, c := range ch.KV {
			wake(h.keys, c.Key)
			if len(h.trees) > 0 {
				ancestors(c.Key, func(a string) { wake(h.trees, a) })
			}
		}
	}
	if h.applied != nil {
		close(h.applied)
		h.applied = nil
	}
}

// Retire marks the state machine as its replica's last: the replica was
// stopped on this node (placement moved it away) and applies nothing more.
// Every waiter is woken, to find Retired and go elsewhere.
func (t *Tenant) Retire() {
	t.watch.retired.Store(true)
	t.watch.wakeAll()
}

// Retired reports whether Retire was called.
func (t *Tenant) Retired() bool { return t.watch.retired.Load() }

func (h *watchHub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range []map[string]*watchEntry{h.services, h.keys, h.trees} {
		for name, e := range m {
			close(e.ch)
			delete(m, name)
		}
	}
	if h.applied != nil {
		close(h.applied)
		h.applied = nil
	}
}

// Watch returns, in one consistent read, the service's modify index (for a
// service that does not exist: the index of the last service creation or
// removal), the replica's applied index, and a channel closed at the next
// change that matters: the next applied batch while applied < minApplied,
// else the next change of the service. Call done when no longer waiting.
func (t *Tenant) Watch(service string, minApplied uint64) (modify, applied uint64, wake <-chan struct{}, done func()) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	applied = t.st.Applied
	modify = t.st.ServicesIndex
	if svc := t.st.Services[service]; svc != nil {
		modify = svc.ModifyIndex
	}
	if applied < minApplied {
		return modify, applied, t.watch.appliedChan(), func() {}
	}
	wake, done = t.watch.serviceChan(service)
	return modify, applied, wake, done
}

// WaitApplied returns the applied index and a channel closed after the next
// applied batch.
func (t *Tenant) WaitApplied() (uint64, <-chan struct{}) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.st.Applied, t.watch.appliedChan()
}

// Applied is the index of the last entry applied to this replica.
func (t *Tenant) Applied() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.st.Applied
}

// Name is the tenant's name; Epoch its incarnation.
func (t *Tenant) Name() string { t.mu.RLock(); defer t.mu.RUnlock(); return t.st.Name }

// Epoch is the tenant's incarnation, the high bits of its fencing tokens.
func (t *Tenant) Epoch() uint64 { t.mu.RLock(); defer t.mu.RUnlock(); return t.st.Epoch }

// Service returns a service's answer. A service that does not exist answers
// with no instances and no master. Under the tenant's lock only the
// instances' pointers are taken (instances are never changed in place);
// their views are made after it: a service of 10,000 instances took the
// lock, and held the tenant's applies, for as long as 10,000 views took.
func (t *Tenant) Service(name string) api.ServiceResponse {
	t.mu.RLock()
	index := t.st.Applied
	v := t.serviceView(name, t.st.Services[name])
	t.mu.RUnlock()
	r := v.r
	r.Index = index
	slices.SortFunc(v.instances, func(x, y instanceJSON) int { return strings.Compare(x.id, y.id) })
	if len(v.instances) > 0 {
		r.Instances = make([]api.Instance, 0, len(v.instances))
	}
	for _, x := range v.instances {
		r.Instances = append(r.Instances, *t.instanceView(x.id, x.in)) // reads only x.in
	}
	return r
}

// Durable returns what a backup takes of the tenant, and the applied index
// it was read at: each service with a policy of its own or a permanent
// instance (one registered without a session), sorted by name, with its
// policy and its permanent instances.
func (t *Tenant) Durable() ([]api.BackupService, uint64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := []api.BackupService{}
	for _, name := range sortedKeys(t.st.Services) {
		svc := t.st.Services[name]
		b := api.BackupService{Name: name, Instances: []api.Instance{}}
		if svc.Policy != nil {
			p := *svc.Policy
			b.Policy = &p
		}
		if svc.Carried != nil {
			p := *svc.Carried
			b.Carried = &p
		}
		for _, id := range sortedKeys(svc.Instances) {
			if in := svc.Instances[id]; in.Session == "" {
				b.Instances = append(b.Instances, *t.instanceView(id, in))
			}
		}
		if b.Policy != nil || len(b.Instances) > 0 {
			out = append(out, b)
		}
	}
	return out, t.st.Applied
}

// encoded is a service's answer encoded once per modify index: many
// watchers woken by one change share one encoding.
type encoded struct {
	modify uint64
	done   chan struct{} // closed once answer or err is set
	answer *Answer
	err    error
	size   int // answer.Len(), or the previous answer's until it is encoded (cacheMu)
}

// Answer is a service's answer encoded as JSON without its leading "index"
// field (the replica's applied index, different for every read):
// AppendServiceHead(index) followed by the Answer's bytes (WriteTo) is what
// Service returns, encoded, with a trailing newline.
//
// An Answer is immutable and shared by every reader of its modify index.
// Its instances are encoded one by one and each encoding is kept for the
// next modify index while its instance is unchanged (instances are never
// changed in place): after a write of one instance of a service of 10,000
// with 4 KB of meta each, the next answer encodes 4 KB, not 40 MB, and
// holds no new copy of the other instances' bytes.
type Answer struct {
	open      []byte         // `"modify_index":N,"service":"s","instances":[`
	instances []instanceJSON // sorted by ID, written separated by commas
	close     []byte         // `],"master":...,"policy":...}` and a newline
	size      int
	fresh     int // instances encoded for this answer, not taken from the previous one
}

// instanceJSON is one instance's JSON in an Answer.
type instanceJSON struct {
	id string
	in *instance // what b encodes
	b  []byte
}

// Len is the number of bytes WriteTo writes.
func (a *Answer) Len() int { return a.size }

// Fresh is how many of the answer's instances were encoded for it, rather
// than taken from the answer of the service's previous modify index.
func (a *Answer) Fresh() int { return a.fresh }

var comma = []byte{','}

// WriteTo writes the answer's bytes to w, in as many Writes as it has
// instances (twice as many, with the commas): give it a buffered writer.
func (a *Answer) WriteTo(w io.Writer) (int64, error) {
	var n int64
	write := func(b []byte) error {
		m, err := w.Write(b)
		n += int64(m)
		return err
	}
	if err := write(a.open); err != nil {
		return n, err
	}
	for i := range a.instances {
		if i > 0 {
			if err := write(comma); err != nil {
				return n, err
			}
		}
		if err := write(a.instances[i].b); err != nil {
			return n, err
		}
	}
	return n, write(a.close)
}

// AppendTo appends the answer's bytes to b.
func (a *Answer) AppendTo(b []byte) []byte {
	b = slices.Grow(b, a.size)
	b = append(b, a.open...)
	for i := range a.instances {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, a.instances[i].b...)
	}
	return append(b, a.close...)
}

// AppendServiceHead appends what comes before an Answer's bytes in a
// service answer at index.
func AppendServiceHead(b []byte, index uint64) []byte {
	b = append(b, `{"index":`...)
	b = strconv.AppendUint(b, index, 10)
	return append(b, ',')
}

// ServiceAnswer returns a service's answer, encoded, at the replica's
// applied index. The answer is encoded once per modify index, outside the
// tenant's lock (under it only the instances' pointers are taken, and
// instances are never changed in place, so they stay true), readers that
// ask while it is being encoded wait for that one encoding, and of the
// instances only those changed since the previous answer are encoded
// again. Encoding a 41.6 MB answer under the lock, once per reader, held
// the tenant's applies (and its Dragonboat apply worker, which other
// tenants share) for as long; encoding it whole after each small write
// took 40 MB of garbage per write on every node.
func (t *Tenant) ServiceAnswer(name string) (index uint64, a *Answer, err error) {
	t.mu.RLock()
	index = t.st.Applied
	svc := t.st.Services[name]
	if svc == nil {
		v := t.serviceView(name, nil) // nothing to share: no instances
		t.mu.RUnlock()
		a, err = t.encode(&v, nil)
		return index, a, err
	}
	t.cacheMu.Lock()
	prev := t.cache[name]
	if prev != nil && prev.modify == svc.ModifyIndex {
		t.cacheMu.Unlock()
		t.mu.RUnlock()
		<-prev.done
		return index, prev.answer, prev.err
	}
	e := &encoded{modify: svc.ModifyIndex, done: make(chan struct{})}
	if prev != nil {
		e.size = prev.size // until this one is encoded
	}
	if t.cache == nil {
		t.cache = map[string]*encoded{}
	}
	t.cache[name] = e
	t.cacheMu.Unlock()
	v := t.serviceView(name, svc)
	t.mu.RUnlock()

	var reuse []instanceJSON
	if prev != nil {
		<-prev.done // its instances, to take the unchanged ones from
		if prev.answer != nil {
			reuse = prev.answer.instances
		}
	}
	t.encodes.Add(1)
	a, err = t.encode(&v, reuse)
	t.cacheMu.Lock()
	e.answer, e.err = a, err
	if a != nil {
		e.size = a.size
	}
	if err != nil && t.cache[name] == e {
		delete(t.cache, name)
	}
	t.cacheMu.Unlock()
	close(e.done)
	return index, a, err
}

// AnswersEncoded is how many service answers ServiceAnswer encoded (an
// answer shared by many readers once).
func (t *Tenant) AnswersEncoded() uint64 { return t.encodes.Load() }

// serviceView is what an Answer is encoded from, taken under the
// tenant's read lock.
type serviceView struct {
	r         api.ServiceResponse // all but the instances
	instances []instanceJSON      // unsorted, without their bytes
}

// serviceView reads svc (nil: a service that does not exist) under the
// tenant's lock: its instances' pointers, not their views.
func (t *Tenant) serviceView(name string, svc *service) serviceView {
	v := serviceView{r: api.ServiceResponse{ModifyIndex: t.st.ServicesIndex, Service: name,
		Instances: []api.Instance{}, Policy: api.Policy{ColdStart: api.ColdStart{MinReady: 1}}}}
	if svc == nil {
		return v
	}
	v.r.ModifyIndex = svc.ModifyIndex
	v.r.Policy = api.Policy{ColdStart: svc.policy()}
	if m := svc.Master; m != nil {
		v.r.Master = &api.Master{Instance: m.Instance, SessionTag: api.SessionTag(m.Session),
			FencingToken: m.Token, Since: msTime(m.SinceMs), Releasing: m.Releasing}
	}
	v.instances = make([]instanceJSON, 0, len(svc.Instances))
	for id, in := range svc.Instances {
		v.instances = append(v.instances, instanceJSON{id: id, in: in})
	}
	return v
}

// encode encodes v outside the tenant's lock, taking each instance's bytes from reuse (sorted by ID)
// where its instance is the same.
func (t *Tenant) encode(v *serviceView, reuse []instanceJSON) (*Answer, error) {
	b, err := json.Marshal(&v.r) // Index 0, no instances
	if err != nil {
		return nil, err
	}
	name, err := json.Marshal(v.r.Service)
	if err != nil {
		return nil, err
	}
	open := []byte(`"modify_index":`)
	open = strconv.AppendUint(open, v.r.ModifyIndex, 10)
	open = append(open, `,"service":`...)
	open = append(open, name...)
	open = append(open, `,"instances":[`...)
	const head = `{"index":0,`
	if !bytes.HasPrefix(b, []byte(head)) || !bytes.HasPrefix(b[len(head):], open) || len(b) < len(head)+len(open)+1 || b[len(head)+len(open)] != ']' {
		return nil, fmt.Errorf("fsm: encoded service answer starts %q", b[:min(len(b), 64)])
	}
	a := &Answer{open: open, close: append(b[len(head)+len(open):], '\n'), instances: v.instances}
	slices.SortFunc(a.instances, func(x, y instanceJSON) int { return strings.Compare(x.id, y.id) })
	j := 0
	for i := range a.instances {
		x := &a.instances[i]
		for j < len(reuse) && reuse[j].id < x.id {
			j++
		}
		if j < len(reuse) && reuse[j].id == x.id && reuse[j].in == x.in {
			x.b = reuse[j].b
		} else {
			// instanceView reads only x.in: no lock needed.
			if x.b, err = json.Marshal(t.instanceView(x.id, x.in)); err != nil {
				return nil, err
			}
			a.fresh++
		}
		a.size += len(x.b)
	}
	a.size += len(a.open) + max(len(a.instances)-1, 0) + len(a.close)
	return a, nil
}

// AnswerSize is the size of the service's answer as last encoded, at
// whatever modify index (0 when never encoded): what a reader is charged
// before an answer is encoded, so that a reader over its budget costs no
// encoding.
func (t *Tenant) AnswerSize(name string) int {
	t.cacheMu.Lock()
	defer t.cacheMu.Unlock()
	if e := t.cache[name]; e != nil {
		return e.size
	}
	return 0
}

// Services lists the tenant's services.
func (t *Tenant) Services() api.ServiceList {
	t.mu.RLock()
	defer t.mu.RUnlock()
	l := api.ServiceList{Index: t.st.Applied, Services: []api.ServiceSummary{}}
	for _, name := range sortedKeys(t.st.Services) {
		svc := t.st.Services[name]
		s := api.ServiceSummary{Name: name, Instances: len(svc.Instances), ModifyIndex: svc.ModifyIndex}
		for _, in := range svc.Instances {
			if in.State == api.StateReady {
				s.Ready++
			}
		}
		if svc.Master != nil {
			s.Master = svc.Master.Instance
		}
		l.Services = append(l.Services, s)
	}
	return l
}

// Usage counts what the tenant uses (Watchers is the caller's to fill).
func (t *Tenant) Usage() api.Usage {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return api.Usage{Services: int64(len(t.st.Services)), Instances: t.instanceCount(), Sessions: int64(len(t.st.Sessions)),
		Keys: int64(len(t.st.KV)), KVBytes: t.kv.bytes}
}

// Quotas is the tenant shard's copy of its quotas and its version.
func (t *Tenant) Quotas() (api.Quotas, uint64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.st.Quotas, t.st.QuotasVersion
}

// SessionState says whether a session is live, ended (a known tombstone) or
// unknown.
type SessionState int

// Session states.
const (
	SessionUnknown SessionState = iota + 1
	SessionLive
	SessionEnded
)

// SessionInfo is what the leader's session manager needs of a session.
type SessionInfo struct {
	ID          string
	TTLMs       int64
	LeaseMs     int64
	DropGraceMs int64
	RemainingMs int64 // last recorded countdown
	// SeeksMaster is true when the session owns a master-standby instance or
	// holds a mastership: it is renewed only while its stream is attached.
	SeeksMaster bool
	Held        []api.HeldMastership
	Instances   []api.HeldInstance // sorted by service, then ID
	Applied     uint64             // the applied index the rest was read at
}

// Session returns one session's info and state.
func (t *Tenant) Session(id string) (SessionInfo, SessionState) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := t.st.Sessions[id]
	if s == nil {
		if _, dead := t.st.Tombs[id]; dead {
			return SessionInfo{ID: id}, SessionEnded
		}
		return SessionInfo{ID: id}, SessionUnknown
	}
	return t.sessionInfo(id, s), SessionLive
}

func (t *Tenant) sessionInfo(id string, s *session) SessionInfo {
	info := SessionInfo{ID: id, TTLMs: s.TTLMs, LeaseMs: s.LeaseMs, DropGraceMs: s.DropGraceMs, RemainingMs: s.RemainingMs,
		Applied: t.st.Applied}
	for _, name := range sortedKeys(t.held[id]) {
		m := t.st.Services[name].Master
		info.Held = append(info.Held, api.HeldMastership{Service: name, Instance: m.Instance,
			FencingToken: m.Token, Releasing: m.Releasing})
	}
	info.SeeksMaster = len(info.Held) > 0
	for k := range t.owned[id] {
		in := t.st.Services[k.service].Instances[k.id]
		if in == nil {
			continue
		}
		info.SeeksMaster = info.SeeksMaster || in.Mode == api.ModeMasterStandby
		info.Instances = append(info.Instances, api.HeldInstance{Service: k.service, Instance: k.id, State: in.State})
	}
	slices.SortFunc(info.Instances, func(a, b api.HeldInstance) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Instance, b.Instance))
	})
	return info
}

// Sessions returns every live session, sorted by ID.
func (t *Tenant) Sessions() []SessionInfo {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]SessionInfo, 0, len(t.st.Sessions))
	for _, id := range sortedKeys(t.st.Sessions) {
		out = append(out, t.sessionInfo(id, t.st.Sessions[id]))
	}
	return out
}

// Version is the state's semantics version (version.go).
func (t *Tenant) Version() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return versionOf(t.st.Version)
}

// TooOld reports whether this build refused a version the cluster agreed
// on: the replica can no longer apply entries as the others do.
func (t *Tenant) TooOld() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.tooOld
}

// BarrierTerm is the term of the last applied barrier.
func (t *Tenant) BarrierTerm() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.st.BarrierTerm
}

// MaxLeaseMs is the largest lease of any live session: a new leader expires
// nothing and releases nothing before its takeover + this.
func (t *Tenant) MaxLeaseMs() int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var m int64
	for _, s := range t.st.Sessions {
		m = max(m, s.LeaseMs)
	}
	return m
}

// ReleasingMaster is a master record waiting for its holder's last promise.
type ReleasingMaster struct {
	Service string
	Session string
	Token   uint64
}

// Releasing lists the releasing master records, sorted by service.
func (t *Tenant) Releasing() []ReleasingMaster {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []ReleasingMaster
	for _, name := range sortedKeys(t.st.Services) {
		if m := t.st.Services[name].Master; m != nil && m.Releasing {
			out = append(out, ReleasingMaster{Service: name, Session: m.Session, Token: m.Token})
		}
	}
	return out
}

// Waiting reports whether a service waits on a cold-start settle period, so
// the leader must propose Ticks.
func (t *Tenant) Waiting() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, svc := range t.st.Services {
		if svc.Waiting {
			return true
		}
	}
	return false
}
