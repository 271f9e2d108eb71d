// Package session is the tenant shard leader's session manager: it answers
// keepalives from memory under the promise rule of DESIGN.md, records
// remaining countdowns in batched Renew entries, proposes Expire, Tick and
// Release, and serves session streams.
//
// The rule everything rests on: a promise is never broken. A keepalive is
// answered with lease_ms only after (1) this leader's barrier entry has been
// applied and (2) a ReadIndex issued after the keepalive arrived succeeded
// with this node leader in the same term before and after it. The session
// is then not expired before the keepalive's receipt + lease_ms, by this
// leader (its deadline is at least that) or by any successor (which expires
// nothing before its own takeover + the largest lease). A keepalive that
// asks for no promise (lease 0, no mastership held or sought) only restarts
// the TTL countdown and is answered without the ReadIndex.
//
// Threading: every exported method is safe for concurrent use. Applied is
// called by the state machine's apply goroutine and never blocks on IO.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

// Raft is what the manager needs of its shard's replica on this node.
type Raft interface {
	// Leader is the local view of the shard's leader replica and term.
	Leader() (replica, term uint64, ok bool)
	// ReplicaID is this node's replica of the shard.
	ReplicaID() uint64
	// ReadIndex confirms the local replica is current with a quorum, and
	// returns once the local state machine has applied up to that point.
	ReadIndex(ctx context.Context) error
	// Propose proposes one command and returns its outcome.
	Propose(ctx context.Context, cmd []byte) (fsm.Outcome, error)
	// LeaderAPI is the API address of the shard's leader, if known.
	LeaderAPI() string
}

// ErrNotLeader means this node does not lead the shard: forward the
// request to the leader.
var ErrNotLeader = errors.New("session: not the tenant shard's leader")

// Config tunes a Manager. Zero fields take the defaults in brackets.
type Config struct {
	RenewInterval       time.Duration // [1s] most often a Renew entry is proposed
	ExpiryInterval      time.Duration // [25ms] period of the expiry loop
	TickInterval        time.Duration // [100ms] period of Ticks while a cold start waits
	ReadIndexTimeout    time.Duration // [150ms] bound of one ReadIndex attempt
	ProposalTimeout     time.Duration // [1s] bound of one leader-only proposal
	BarrierTimeout      time.Duration // [250ms] bound of one barrier attempt (a dropped one is retried)
	SelfPreservationMin int           // [3] smallest expiry batch ever held back
	Logger              *slog.Logger  // nil: silent
}

func (c *Config) defaults() {
	if c.RenewInterval <= 0 {
		c.RenewInterval = time.Second
	}
	if c.ExpiryInterval <= 0 {
		c.ExpiryInterval = 25 * time.Millisecond
	}
	if c.TickInterval <= 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.ReadIndexTimeout <= 0 {
		c.ReadIndexTimeout = 150 * time.Millisecond
	}
	if c.ProposalTimeout <= 0 {
		c.ProposalTimeout = time.Second
	}
	if c.BarrierTimeout <= 0 {
		c.BarrierTimeout = 250 * time.Millisecond
	}
	if c.SelfPreservationMin <= 0 {
		c.SelfPreservationMin = 3
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

type role int

const (
	follower role = iota + 1
	takingOver
	leading
)

// Manager is one tenant shard's session manager on one node. It is active
// only while this node leads the shard.
type Manager struct {
	cfg  Config
	sm   *fsm.Tenant
	raft Raft
	log  *slog.Logger

	nudge chan struct{} // leadership may have changed
	kick  chan struct{} // keepalives are pending
	stop  chan struct{}
	wg    sync.WaitGroup

	// recording orders Renew entries: held (a token in it) from the choice
	// of a Renew's items to its outcome, so the Renew entries of one term
	// enter the log in the order they were decided (see entry.full). A
	// channel, not a mutex, so a wait on it is durable for synctest.
	recording chan struct{}

	mu        sync.Mutex
	role      role
	term      uint64
	takeover  time.Time // when this term's barrier applied (monotonic)
	wallBase  time.Time // wall clock when this term began, for stamps
	monoBase  time.Time // the same instant on the monotonic clock
	hold      time.Time // nothing expires or releases before
	entries   map[string]*entry
	pending   []*request
	streams   map[*Stream]struct{}
	lastRun   time.Time
	preserve  time.Time // self-preservation: unexplained expiries wait until
	next      time.Time // no entry's deadline is earlier (zero: unknown)
	lastTick  time.Time
	releasing map[uint64]bool // release proposals in flight, by token
	renewing  bool            // a Renew of the sessions falling behind is queued or in flight
	closed    bool
	handedOff bool // stopping: never take over again
	// transferring: a leadership transfer of a live node (placement) is
	// under way; no takeover until this node is seen a follower, after
	// which it takes over again as any leader does when elected.
	transferring bool
	transferTerm uint64 // the Raft term the transfer left
}

// entry is the leader's memory of one live session.
type entry struct {
	ttl, lease, grace time.Duration
	deadline          time.Time // expire at (monotonic)
	promised          time.Time // latest promise given
	clean             time.Time // latest promise given without a releasing notice
	recorded          int64     // remaining_ms as the state machine last recorded it
	attached          int       // streams attached on this node
	clientClosed      bool      // its stream was closed by the client: an explained expiry
	cut               time.Time // the deadline the client's close cut short to drop_grace (zero: none)
	queued            int       // keepalives waiting for a ReadIndex round: never expire
	expiring          bool      // decided: refused from now on, until an Expire applies or is known refused
	expireInFlight    bool      // an Expire naming it is in flight
	expireInDoubt     bool      // an Expire naming it had an unknown outcome: it may still apply
	full              bool      // the state machine records its whole TTL, and no lower record can still apply
}

type request struct {
	id   string
	recv time.Time
	done chan result
}

type result struct {
	resp api.KeepaliveResponse
	err  error
}

// New returns a manager for a tenant shard's replica; Close stops it.
func New(cfg Config, sm *fsm.Tenant, raft Raft) *Manager {
	cfg.defaults()
	m := &Manager{
		cfg: cfg, sm: sm, raft: raft, log: cfg.Logger,
		nudge: make(chan struct{}, 1), kick: make(chan struct{}, 1), stop: make(chan struct{}),
		role: follower, entries: map[string]*entry{}, streams: map[*Stream]struct{}{},
		releasing: map[uint64]bool{}, recording: make(chan struct{}, 1),
	}
	m.wg.Add(2)
	go m.loop()
	go m.reader()
	m.LeaderChanged()
	return m
}

// LeaderChanged tells the manager the shard's leadership may have changed.
// It never blocks.
func (m *Manager) LeaderChanged() {
	select {
	case m.nudge <- struct{}{}:
	default:
	}
}

// Expect tells the manager what Raft reports now (this node leads the shard
// in term, or not); it nudges the manager when its own view differs. The
// node calls it periodically for every shard, so a missed leader-change
// event never leaves a new leader unanswering. It never blocks.
func (m *Manager) Expect(leading bool, term uint64) {
	m.mu.Lock()
	differs := !m.closed && !m.handedOff && (m.transferring || leading && (m.role == follower || m.term != term) ||
		!leading && m.role != follower)
	m.mu.Unlock()
	if differs {
		m.LeaderChanged()
	}
}

// Close stops the manager: streams get `moved`, pending keepalives fail.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	m.stepDownLocked("")
	m.mu.Unlock()
	close(m.stop)
	m.wg.Wait()
}

// Handoff stops answering every session before this node transfers the
// shard's leadership: streams are told `moved`, keepalives fail over.
func (m *Manager) Handoff() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handedOff = true
	m.stepDownLocked("")
}

// Transfer stops answering every session before a live node transfers
// the shard's leadership (a replica move, the spreading of leaderships),
// as Handoff does, but only until the transfer is seen done: once this
// node is a follower, a leadership that comes back to it later is taken
// over as any new leader's is. (Handoff is for a node that stops, and
// never takes over again; a Transfer whose leadership never left must be
// undone with Resume.)
func (m *Manager) Transfer() {
	_, term, _ := m.raft.Leader()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.transferring, m.transferTerm = true, term
	m.stepDownLocked("")
}

// Resume undoes a Handoff or Transfer whose leadership transfer did not
// happen: the manager takes over again, as a new leader does (a barrier
// first, nothing expired before its takeover time + the largest lease).
func (m *Manager) Resume() {
	m.mu.Lock()
	m.handedOff, m.transferring = false, false
	m.mu.Unlock()
	m.LeaderChanged()
}

// Leading reports whether this node leads the shard and answers sessions.
func (m *Manager) Leading() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.role == leading
}

// loop drives the manager. A follower's manager sleeps until nudged; a
// leader's ticks its expiry loop only while it has work (live sessions, a
// cold start waiting, a record releasing), and checks its leadership and
// records countdowns every RenewInterval. So an idle tenant costs no
// wakeups beyond Dragonboat's own.
func (m *Manager) loop() {
	defer m.wg.Done()
	var expiry, slow *time.Ticker
	defer func() {
		if expiry != nil {
			expiry.Stop()
		}
		if slow != nil {
			slow.Stop()
		}
	}()
	for {
		leading, busy := m.activity()
		switch {
		case busy && expiry == nil:
			expiry = time.NewTicker(m.cfg.ExpiryInterval)
			m.mu.Lock()
			m.lastRun = time.Now() // the loop was idle, not late
			m.mu.Unlock()
		case !busy && expiry != nil:
			expiry.Stop()
			expiry = nil
		}
		switch {
		case leading && slow == nil:
			slow = time.NewTicker(m.cfg.RenewInterval)
		case !leading && slow != nil:
			slow.Stop()
			slow = nil
		}
		var expiryC, slowC <-chan time.Time
		if expiry != nil {
			expiryC = expiry.C
		}
		if slow != nil {
			slowC = slow.C
		}
		select {
		case <-m.stop:
			return
		case <-m.nudge:
			m.checkLeadership()
		case now := <-expiryC:
			m.checkLeadership()
			m.expire(now)
		case <-slowC:
			m.checkLeadership()
			m.renew()
		}
	}
}

// activity says whether this node leads (or is taking over) and whether the
// expiry loop has anything to watch.
func (m *Manager) activity() (leading, busy bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role == follower || m.closed {
		return false, false
	}
	if m.role == takingOver {
		return true, false
	}
	return true, len(m.entries) > 0 || m.sm.Waiting() || len(m.sm.Releasing()) > 0
}

// checkLeadership starts a takeover when this node became leader, and steps
// down when it is not leader any more (or the term moved on).
func (m *Manager) checkLeadership() {
	leader, term, ok := m.raft.Leader()
	me := ok && leader == m.raft.ReplicaID()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.handedOff {
		return
	}
	if m.transferring {
		if me && term == m.transferTerm {
			return // under way
		}
		// Done: a follower now, or leading again in a later term, which
		// is taken over as any new leader's is.
		m.transferring = false
	}
	if !me {
		if m.role != follower {
			m.stepDownLocked(m.raft.LeaderAPI())
		}
		return
	}
	if m.role != follower && m.term == term {
		return
	}
	if m.role != follower {
		m.stepDownLocked("") // re-elected in a new term: a new barrier first
	}
	m.role, m.term = takingOver, term
	m.monoBase = time.Now()
	m.wallBase = m.monoBase.Round(0)
	m.wallBase = m.wallBase.Add(wallSkew()) // the chaos campaign's wall-clock fault (build tag chaos); 0 otherwise
	m.log.Debug("taking over", "term", term)
	m.wg.Add(1)
	go m.barrier(term)
}

// barrier proposes this term's barrier and, once it applied, takes over.
func (m *Manager) barrier(term uint64) {
	defer m.wg.Done()
	for attempt := 0; ; attempt++ {
		m.mu.Lock()
		current := m.role == takingOver && m.term == term && !m.closed
		m.mu.Unlock()
		if !current {
			return
		}
		// A proposal made as leadership settles can be dropped silently
		// (it surfaces only at its deadline): short attempts, retried.
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.BarrierTimeout)
		o, err := m.raft.Propose(ctx, fsm.Encode(fsm.OpBarrier, fsm.Barrier{Term: term, NowMs: m.stampNow()}))
		cancel()
		if err == nil && o.Code == "" && m.sm.BarrierTerm() == term {
			m.takeOver(term)
			return
		}
		if err == nil && o.Code != "" {
			m.log.Warn("barrier rejected", "term", term, "code", o.Code, "message", o.Message)
		}
		m.log.Debug("barrier attempt failed", "term", term, "attempt", attempt, "err", err)
		select {
		case <-m.stop:
			return
		case <-time.After(min(time.Duration(attempt+1)*10*time.Millisecond, 50*time.Millisecond)):
		}
	}
}

// takeOver starts answering sessions. Every live session's countdown
// resumes from its recorded remaining time, and nothing expires or
// releases before takeover + the largest lease.
func (m *Manager) takeOver(term uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != takingOver || m.term != term || m.closed {
		return
	}
	now := time.Now()
	maxLease := time.Duration(m.sm.MaxLeaseMs()) * time.Millisecond
	m.takeover = now
	m.hold = now.Add(maxLease)
	m.entries, m.next = map[string]*entry{}, time.Time{}
	for _, s := range m.sm.Sessions() {
		m.entries[s.ID] = m.newEntry(s, now, max(time.Duration(s.RemainingMs)*time.Millisecond, maxLease))
	}
	m.role, m.lastRun, m.preserve = leading, now, time.Time{}
	m.releasing = map[uint64]bool{}
	m.LeaderChanged() // the loop starts ticking
	m.log.Debug("took over sessions", "term", term, "sessions", len(m.entries), "hold", maxLease)
}

func (m *Manager) newEntry(s fsm.SessionInfo, now time.Time, remaining time.Duration) *entry {
	e := &entry{
		ttl: ms(s.TTLMs), lease: ms(s.LeaseMs), grace: ms(s.DropGraceMs),
		deadline: now.Add(remaining), promised: m.hold, clean: m.hold, recorded: s.RemainingMs,
		full: s.RemainingMs >= s.TTLMs,
	}
	m.earlier(e.deadline)
	return e
}

// earlier keeps m.next no later than a deadline just set.
func (m *Manager) earlier(deadline time.Time) {
	if deadline.Before(m.next) {
		m.next = deadline
	}
}

func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

// stamp is the leader's time for leader-only commands, the barrier
// included: the wall clock read once when the term began, advanced by the
// monotonic clock, so two stamps of a term differ by real elapsed time and
// a wall-clock step during the term moves nothing (fsm's advance).
func (m *Manager) stamp(now time.Time) int64 {
	return m.wallBase.Add(now.Sub(m.monoBase)).UnixMilli()
}

func (m *Manager) stampNow() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stamp(time.Now())
}

func (m *Manager) stepDownLocked(leaderAPI string) {
	if m.role == follower && len(m.streams) == 0 && len(m.pending) == 0 {
		return
	}
	m.role = follower
	m.entries, m.next = map[string]*entry{}, time.Time{}
	for s := range m.streams {
		s.endLocked(api.StreamEvent{Type: api.EventMoved, Leader: leaderAPI})
	}
	for _, r := range m.pending {
		r.done <- result{err: ErrNotLeader}
	}
	m.pending = nil
}

// Keepalive renews a session and returns the promise. It returns
// ErrNotLeader on a node that does not lead the shard (forward it), and an
// *api.Error otherwise.
func (m *Manager) Keepalive(ctx context.Context, id string) (api.KeepaliveResponse, error) {
	var resp [1]api.KeepaliveResponse
	var errs [1]error
	m.KeepaliveAll(ctx, []string{id}, resp[:], errs[:])
	return resp[0], errs[0]
}

// KeepaliveAll renews many sessions at once, each as Keepalive does: every
// one that needs a promise joins the same ReadIndex round, and all are
// received at the same instant. resps[i] and errs[i] answer ids[i] (both
// as long as ids).
func (m *Manager) KeepaliveAll(ctx context.Context, ids []string, resps []api.KeepaliveResponse, errs []error) {
	recv := time.Now()
	type wait struct {
		i int
		r *request
	}
	var waits []wait
	m.mu.Lock()
	for i, id := range ids {
		if err := m.admitLocked(id, true); err != nil {
			errs[i] = err
			continue
		}
		if e := m.entries[id]; e.lease == 0 && e.full {
			// SeeksMaster covers a mastership held.
			if info, state := m.sm.Session(id); !info.SeeksMaster {
				// No promise asked, none to keep: the keepalive only restarts
				// the TTL countdown, so it needs no ReadIndex round.
				res := m.answerLocked(&request{id: id, recv: recv}, e, info, state)
				resps[i], errs[i] = res.resp, res.err
				continue
			}
		}
		m.entries[id].queued++
		r := &request{id: id, recv: recv, done: make(chan result, 1)}
		m.pending = append(m.pending, r)
		waits = append(waits, wait{i, r})
	}
	m.mu.Unlock()
	if len(waits) == 0 {
		return
	}
	select {
	case m.kick <- struct{}{}:
	default:
	}
	for _, w := range waits {
		select {
		case res := <-w.r.done:
			resps[w.i], errs[w.i] = res.resp, res.err
		case <-ctx.Done():
			// The round still answers into the buffered channel; its promise,
			// if any, was recorded: a longer deadline is always safe.
			errs[w.i] = &api.Error{Code: api.CodeUnavailable, Message: "keepalive: " + ctx.Err().Error(), RetryAfter: 50 * time.Millisecond}
		}
	}
}

// admitLocked checks that this node answers the session now.
func (m *Manager) admitLocked(id string, keepalive bool) error {
	switch {
	case m.closed || m.role == follower:
		return ErrNotLeader
	case m.role == takingOver:
		return &api.Error{Code: api.CodeUnavailable, Message: "the tenant shard's new leader is taking over", RetryAfter: 50 * time.Millisecond}
	}
	e := m.entries[id]
	if e == nil {
		info, state := m.sm.Session(id)
		switch state {
		case fsm.SessionEnded:
			return api.Errorf(api.CodeSessionExpired, "session %s has ended", api.SessionTag(id))
		case fsm.SessionUnknown:
			return api.Errorf(api.CodeNotFound, "session %s not found", api.SessionTag(id))
		}
		// Opened after the takeover read and before its Applied call.
		e = m.newEntry(info, time.Now(), ms(info.TTLMs))
		m.entries[id] = e
	}
	if e.expiring {
		return &api.Error{Code: api.CodeUnavailable, Message: fmt.Sprintf("session %s is being expired", api.SessionTag(id)), RetryAfter: 100 * time.Millisecond}
	}
	if keepalive && e.attached == 0 {
		if info, _ := m.sm.Session(id); info.SeeksMaster {
			return api.Errorf(api.CodeNotAttached, "session %s holds or seeks a mastership: attach its stream to renew it", api.SessionTag(id))
		}
	}
	return nil
}

// reader answers keepalives in rounds: one ReadIndex per round covers every
// keepalive that arrived before it was issued.
func (m *Manager) reader() {
	defer m.wg.Done()
	for {
		select {
		case <-m.stop:
			return
		case <-m.kick:
		}
		m.mu.Lock()
		batch, term := m.pending, m.term
		m.pending = nil
		m.mu.Unlock()
		if len(batch) > 0 {
			m.round(batch, term)
		}
	}
}

func (m *Manager) round(batch []*request, term uint64) {
	batch = m.recordFirst(batch, term)
	if len(batch) == 0 {
		return
	}
	me := m.raft.ReplicaID()
	ok := func() bool {
		l, t, known := m.raft.Leader()
		return known && l == me && t == term
	}
	var err error
	if !ok() {
		err = ErrNotLeader
		m.LeaderChanged() // the loop steps down without waiting for the event
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ReadIndexTimeout)
		err = m.raft.ReadIndex(ctx)
		cancel()
		if err == nil && !ok() {
			err = ErrNotLeader
			m.LeaderChanged()
		}
		if err != nil && !errors.Is(err, ErrNotLeader) {
			err = &api.Error{Code: api.CodeUnavailable, Message: "keepalive: leadership not confirmed: " + err.Error(), RetryAfter: 50 * time.Millisecond}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err == nil && (m.role != leading || m.term != term) {
		err = ErrNotLeader
	}
	for _, r := range batch {
		e := m.entries[r.id]
		if e != nil && e.queued > 0 {
			e.queued--
		}
		if err != nil {
			r.done <- result{err: err}
			continue
		}
		info, state := m.sm.Session(r.id)
		r.done <- m.answerLocked(r, e, info, state)
	}
}

// answerLocked gives a keepalive its promise, from the session as the
// state machine shows it (read by the caller under the manager's lock, so
// the Release check, also under it, sees every promise that did not carry
// a releasing notice).
func (m *Manager) answerLocked(r *request, e *entry, info fsm.SessionInfo, state fsm.SessionState) result {
	switch {
	case state == fsm.SessionEnded:
		return result{err: api.Errorf(api.CodeSessionExpired, "session %s has ended", api.SessionTag(r.id))}
	case state != fsm.SessionLive || e == nil:
		return result{err: api.Errorf(api.CodeNotFound, "session %s not found", api.SessionTag(r.id))}
	case e.expiring:
		return result{err: &api.Error{Code: api.CodeUnavailable, Message: "session is being expired", RetryAfter: 100 * time.Millisecond}}
	case !e.full:
		// recordFirst records the whole TTL before any answer: a renewal
		// the state machine does not show could be cut short by a new
		// leader, which resumes the recorded countdown.
		return result{err: &api.Error{Code: api.CodeUnavailable, Message: "keepalive: the session's countdown is not recorded yet", RetryAfter: 50 * time.Millisecond}}
	}
	if d := r.recv.Add(e.ttl); d.After(e.deadline) {
		e.deadline = d
	}
	promise := r.recv.Add(e.lease)
	if promise.After(e.promised) {
		e.promised = promise
	}
	releasing := false
	for _, h := range info.Held {
		releasing = releasing || h.Releasing
	}
	if !releasing && promise.After(e.clean) {
		e.clean = promise
	}
	e.clientClosed, e.cut = false, time.Time{}
	held, insts := info.Held, info.Instances
	if held == nil {
		held = []api.HeldMastership{}
	}
	if insts == nil {
		insts = []api.HeldInstance{}
	}
	return result{resp: api.KeepaliveResponse{LeaseMs: info.LeaseMs, TTLMs: info.TTLMs, Term: m.term,
		Index: info.Applied, Masters: held, Instances: insts}}
}

// expire runs the expiry loop once: lag compensation, self-preservation,
// then Expire, Release and Tick proposals.
func (m *Manager) expire(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != leading || m.closed {
		return
	}
	if lag := now.Sub(m.lastRun) - m.cfg.ExpiryInterval; lag > m.cfg.ExpiryInterval {
		// This loop ran late (a pause, an overloaded host): nobody could
		// keep alive meanwhile, so unexpired deadlines move by the lag.
		for _, e := range m.entries {
			if e.deadline.After(m.lastRun) {
				e.deadline = e.deadline.Add(lag)
			}
		}
		if m.hold.After(m.lastRun) {
			m.hold = m.hold.Add(lag)
		}
		m.log.Info("expiry loop ran late; deadlines moved", "lag", lag)
	}
	m.lastRun = now
	if now.Before(m.hold) {
		return
	}
	m.expireLocked(now)
	m.releaseLocked(now)
	if now.Sub(m.lastTick) >= m.cfg.TickInterval && m.sm.Waiting() {
		m.lastTick = now
		m.proposeAsync(fsm.Encode(fsm.OpTick, fsm.Tick{Term: m.term, NowMs: m.stamp(now)}), nil)
	}
}

func (m *Manager) expireLocked(now time.Time) {
	if now.Before(m.next) {
		// No deadline has come: the loop ticks every ExpiryInterval, and
		// a scan of every session each time would cost the leader CPU in
		// proportion to its sessions, idle ones included.
		m.preserve = time.Time{}
		return
	}
	var ids, again []string
	unexplained := 0
	var maxTTL time.Duration
	next := time.Time{}
	for id, e := range m.entries {
		if next.IsZero() || e.deadline.Before(next) {
			next = e.deadline
		}
		if e.expiring {
			if !e.expireInFlight {
				again = append(again, id) // its last Expire's outcome is unknown
			}
			continue
		}
		if e.queued > 0 || now.Before(e.deadline) {
			continue
		}
		ids = append(ids, id)
		maxTTL = max(maxTTL, e.ttl)
		if !e.clientClosed {
			unexplained++
		}
	}
	m.next = next // a session expiring, queued or held back keeps it at or before now
	if len(ids) == 0 {
		m.preserve = time.Time{}
		m.proposeExpireLocked(now, again)
		return
	}
	if silent := m.silentLocked(now); unexplained > 0 && silent >= m.cfg.SelfPreservationMin && 2*silent > len(m.entries) {
		if m.preserve.IsZero() {
			m.preserve = now.Add(maxTTL)
			m.log.Warn("self-preservation: most sessions went silent at once, unexplained by stream closes; holding expiries back",
				"sessions", len(m.entries), "silent", silent, "expiring", len(ids), "wait", maxTTL)
		}
		if now.Before(m.preserve) {
			kept := ids[:0]
			for _, id := range ids {
				if m.entries[id].clientClosed {
					kept = append(kept, id)
				}
			}
			ids = kept
		}
	} else {
		m.preserve = time.Time{}
	}
	m.proposeExpireLocked(now, append(ids, again...))
}

// proposeExpireLocked proposes the expiry of ids. From the decision on,
// each session is refused (no keepalive, no promise) until the Expire is
// known to have applied — Applied then removes it — or to have been
// refused. An outcome that is unknown is never taken for "not applied":
// the entry may still commit in this term and grant a successor, so the
// Expire is proposed again (it is idempotent) until one copy applies, and
// the session stays refused meanwhile. A new term drops the entries; its
// barrier orders every earlier copy before the new leader reads sessions.
func (m *Manager) proposeExpireLocked(now time.Time, ids []string) {
	if len(ids) == 0 {
		return
	}
	sort.Strings(ids)
	for _, id := range ids {
		e := m.entries[id]
		e.expiring, e.expireInFlight = true, true
	}
	m.log.Debug("expiring sessions", "count", len(ids))
	term := m.term
	m.proposeAsync(fsm.Encode(fsm.OpExpire, fsm.Expire{Term: term, NowMs: m.stamp(now), IDs: ids}), func(res outcome) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.term != term || m.role != leading {
			return
		}
		for _, id := range ids {
			e := m.entries[id] // gone when the Expire applied
			if e == nil {
				continue
			}
			e.expireInFlight = false
			switch res {
			case unknown:
				e.expireInDoubt = true // proposed again by the next loop
			case refused:
				// This copy did not apply; an earlier one in doubt still may.
				e.expiring = e.expireInDoubt
			}
		}
	})
}

// silentLocked counts the sessions that went silent: no keepalive for
// over half their TTL, none queued, and no client-side stream close to
// explain it. Keepalives come every lease/4 or TTL/3, so when the sessions
// of a correlated silence (the leader cut off from its clients) begin to
// expire, all of them count here, however their deadlines are spread.
func (m *Manager) silentLocked(now time.Time) int {
	n := 0
	for _, e := range m.entries {
		if !e.clientClosed && !e.expiring && e.queued == 0 && e.deadline.Sub(now) < e.ttl/2 {
			n++
		}
	}
	return n
}

// releaseLocked grants the successor of every releasing record whose
// holder's last clean promise has lapsed.
func (m *Manager) releaseLocked(now time.Time) {
	for _, r := range m.sm.Releasing() {
		if m.releasing[r.Token] {
			continue
		}
		if e := m.entries[r.Session]; e != nil && !now.After(e.clean) {
			continue
		}
		m.releasing[r.Token] = true
		token := r.Token
		m.proposeAsync(fsm.Encode(fsm.OpRelease, fsm.Release{Term: m.term, NowMs: m.stamp(now), Service: r.Service, Token: token}), func(outcome) {
			m.mu.Lock()
			delete(m.releasing, token)
			m.mu.Unlock()
		})
	}
}

// renew records, in one entry, the countdown of every session that fell
// behind its last record, so that a new leader resumes it instead of
// granting a fresh TTL. A session that kept alive is recorded whole by
// recordFirst before its keepalive is answered.
func (m *Manager) renew() {
	m.mu.Lock()
	if m.role != leading || m.renewing || m.closed {
		m.mu.Unlock()
		return
	}
	m.renewing = true
	term := m.term
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.recording <- struct{}{}
		defer func() { <-m.recording }()
		m.mu.Lock()
		items, stamp := m.behindLocked(term, time.Now())
		m.mu.Unlock()
		res := refused
		if len(items) > 0 {
			res = m.proposeSync(fsm.Encode(fsm.OpRenew, fsm.Renew{Term: term, NowMs: stamp, Items: items}))
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.renewing = false
		if res != applied || m.term != term || m.role != leading {
			return
		}
		for _, it := range items {
			if e := m.entries[it.ID]; e != nil {
				e.recorded = it.RemainingMs
			}
		}
	}()
}

// behindLocked lists the sessions whose remaining time fell behind their
// record by more than max(RenewInterval, ttl/2), and marks them not
// recorded whole: from this moment the lower record may apply, and
// recordFirst records the whole TTL again before any keepalive of theirs is
// answered. The caller holds m.recording.
func (m *Manager) behindLocked(term uint64, now time.Time) ([]fsm.RenewItem, int64) {
	if m.role != leading || m.term != term || m.closed {
		return nil, 0
	}
	var items []fsm.RenewItem
	for id, e := range m.entries {
		if e.expiring {
			continue
		}
		remaining := max(0, e.deadline.Sub(now).Milliseconds())
		if slack := max(m.cfg.RenewInterval, e.ttl/2).Milliseconds(); remaining < e.recorded-slack {
			e.full = false
			items = append(items, fsm.RenewItem{ID: id, RemainingMs: remaining})
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].ID < items[j].ID })
	return items, m.stamp(now)
}

// recordFirst takes out of a round the keepalives of sessions not recorded
// whole (they fell behind, or a lower record may still apply) and records
// their whole TTL before they are answered; the rest is returned.
//
// Why: a new leader resumes each session's recorded countdown. A renewal
// answered while a lower record stands (or may yet apply) could end, after a
// leader change, before the TTL since the keepalive ran out. With every
// answered keepalive covered by a whole-TTL record, the new leader's
// deadline — its takeover, later than any answer, plus the TTL — is never
// earlier than that. A healthy session stays recorded whole and costs no
// Raft write; one that recovers costs one, shared by its round.
func (m *Manager) recordFirst(batch []*request, term uint64) []*request {
	m.mu.Lock()
	defer m.mu.Unlock()
	var now, later []*request
	for _, r := range batch {
		if e := m.entries[r.id]; e != nil && !e.full && !e.expiring {
			later = append(later, r)
		} else {
			now = append(now, r)
		}
	}
	if len(later) > 0 {
		m.wg.Add(1)
		go m.record(later, term)
	}
	return now
}

// record proposes one Renew recording the whole TTL of the sessions of
// reqs, then queues reqs for the next round (or fails them). Renew entries
// are decided and proposed one at a time (m.recording), so a whole record
// applied means every lower record decided before it applied first or
// never will: entries of one term commit in the order they were proposed.
func (m *Manager) record(reqs []*request, term uint64) {
	defer m.wg.Done()
	m.recording <- struct{}{}
	defer func() { <-m.recording }()
	m.mu.Lock()
	var items []fsm.RenewItem
	var stamp int64
	if m.role == leading && m.term == term && !m.closed {
		seen := map[string]bool{}
		for _, r := range reqs {
			if e := m.entries[r.id]; e != nil && !e.full && !e.expiring && !seen[r.id] {
				seen[r.id] = true
				items = append(items, fsm.RenewItem{ID: r.id, RemainingMs: e.ttl.Milliseconds()})
			}
		}
		sort.Slice(items, func(i, j int) bool { return items[i].ID < items[j].ID })
		stamp = m.stamp(time.Now())
	}
	m.mu.Unlock()
	res := applied
	if len(items) > 0 {
		res = m.proposeSync(fsm.Encode(fsm.OpRenew, fsm.Renew{Term: term, NowMs: stamp, Items: items}))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if res == applied && m.term == term && m.role == leading && !m.closed {
		for _, it := range items {
			if e := m.entries[it.ID]; e != nil {
				e.full, e.recorded = true, it.RemainingMs
			}
		}
		m.pending = append(m.pending, reqs...)
		select {
		case m.kick <- struct{}{}:
		default:
		}
		return
	}
	err := error(&api.Error{Code: api.CodeUnavailable, Message: "keepalive: the session's countdown could not be recorded", RetryAfter: 50 * time.Millisecond})
	if m.closed || m.role == follower || m.term != term {
		err = ErrNotLeader
	}
	for _, r := range reqs {
		if e := m.entries[r.id]; e != nil && e.queued > 0 {
			e.queued--
		}
		r.done <- result{err: err}
	}
}

// outcome is what a proposal is known to have done.
type outcome int

const (
	applied outcome = iota + 1
	refused         // known not applied: rejected by the state machine, or never appended
	unknown         // it may still apply: a timeout, or anything unexplained
)

// proposeSync proposes a leader-only command, bounded by ProposalTimeout.
func (m *Manager) proposeSync(cmd []byte) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ProposalTimeout)
	defer cancel()
	o, err := m.raft.Propose(ctx, cmd)
	var ae *api.Error
	switch {
	case err == nil && o.Code == "":
		return applied
	case err == nil:
		m.log.Debug("leader-only command rejected", "code", o.Code, "message", o.Message)
		return refused
	case errors.As(err, &ae) && ae.Code != api.CodeTimeout:
		m.log.Debug("leader-only proposal not applied", "err", err)
		return refused
	}
	m.log.Debug("leader-only proposal: outcome unknown", "err", err)
	return unknown
}

// proposeAsync proposes a leader-only command without holding the lock;
// done (if any) learns its outcome.
func (m *Manager) proposeAsync(cmd []byte, done func(outcome)) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		res := m.proposeSync(cmd)
		if done != nil {
			done(res)
		}
	}()
}

// Applied is the state machine's observer: it learns sessions opened and
// ended, and pushes mastership changes to attached streams.
func (m *Manager) Applied(ch *fsm.Changes) {
	if len(ch.Opened) == 0 && len(ch.Ended) == 0 && len(ch.Masters) == 0 && len(ch.Instances) == 0 && ch.Barrier == 0 && len(ch.Services) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Wake the loop: a barrier may complete a takeover, a new session or
	// master change may give the expiry loop work.
	m.LeaderChanged()
	if m.role == leading {
		now := time.Now()
		for _, id := range ch.Opened {
			if m.entries[id] == nil {
				if info, state := m.sm.Session(id); state == fsm.SessionLive {
					m.entries[id] = m.newEntry(info, now, ms(info.TTLMs))
					m.entries[id].promised, m.entries[id].clean = now, now
				}
			}
		}
	}
	for _, id := range ch.Ended {
		delete(m.entries, id)
		for s := range m.streams {
			if s.id == id {
				s.endLocked(api.StreamEvent{Type: api.EventExpired})
			}
		}
	}
	for _, c := range ch.Instances {
		for s := range m.streams {
			if s.id == c.Session {
				held := c.Held
				s.sendLocked(api.StreamEvent{Type: api.EventInstance, Service: held.Service, Index: c.Index, Instance: &held})
			}
		}
	}
	for _, c := range ch.Masters {
		for s := range m.streams {
			switch {
			case c.New != nil && c.New.Session == s.id:
				s.sendLocked(api.StreamEvent{Type: api.EventMaster, Service: c.Service, Index: c.Index, Master: masterView(c.New)})
			case c.Old != nil && c.Old.Session == s.id:
				s.sendLocked(api.StreamEvent{Type: api.EventMaster, Service: c.Service, Index: c.Index})
			}
		}
	}
}

func masterView(v *fsm.MasterView) *api.Master {
	return &api.Master{Instance: v.Instance, SessionTag: api.SessionTag(v.Session), FencingToken: v.Token,
		Since: time.UnixMilli(v.SinceMs).UTC(), Releasing: v.Releasing}
}

// Term is the term this node leads in, and whether it answers sessions.
func (m *Manager) Term() (uint64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.term, m.role == leading
}

// Stats is a snapshot of the manager for metrics.
type Stats struct {
	Leading  bool
	Sessions int
	Streams  int
}

// Stats returns the manager's current counts.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Stats{Leading: m.role == leading, Sessions: len(m.entries), Streams: len(m.streams)}
}
