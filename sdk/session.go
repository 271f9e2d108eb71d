package sdk

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/election"
	"github.com/rafting/rafting/sdk/internal/transport"
)

// streamIdle is how long a session stream may stay silent before the SDK
// assumes its server is gone and re-attaches (servers send a heartbeat
// every second by default).
const streamIdle = 5 * time.Second

// session is one of a member's sessions. Its fields are guarded by the
// member's mu; its channels are closed once.
type session struct {
	id       string // a secret: never logged (tag is)
	tag      string
	open     chan struct{} // closed when the servers have created it
	gone     chan struct{} // closed when the member replaced it
	over     chan struct{} // closed when the servers ended it (expired)
	attached bool
	attach   chan struct{} // closed when the stream attaches; replaced when it detaches
	since    time.Time     // when the stream attached
	cancel   context.CancelFunc
	again    func(time.Time) // on the client stream: attach again if attached before then
}

func newSession() *session { return sessionWithID(newSessionID()) }

// sessionWithID is a handle on session id (a sharing member's view of
// its Client's shared session: see shared_session.go).
func sessionWithID(id string) *session {
	return &session{id: id, tag: api.SessionTag(id), open: make(chan struct{}), gone: make(chan struct{}),
		over: make(chan struct{}), attach: make(chan struct{})}
}

func (s *session) isOpen() bool {
	select {
	case <-s.open:
		return true
	default:
		return false
	}
}

func (s *session) ended() bool {
	select {
	case <-s.over:
		return true
	default:
		return false
	}
}

func (m *Member) sessionPath(id string) string {
	return m.c.tenantPath("/sessions/" + id)
}

func (m *Member) sessionTag() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sess.tag
}

// keepaliveInterval is lease/4 with a lease, else TTL/3.
func (m *Member) keepaliveInterval() time.Duration {
	if m.lease > 0 {
		return m.lease / 4
	}
	return m.cfg.ttl / 3
}

// keepaliveTimeout bounds one keepalive attempt: half the lease (a
// promise is at stake), or a sixth of the TTL, within [100 ms, 2 s].
func (m *Member) keepaliveTimeout() time.Duration {
	d := m.cfg.ttl / 6
	if m.lease > 0 {
		d = m.lease / 2
	}
	return min(max(d, 100*time.Millisecond), 2*time.Second)
}

// establish opens the current session, attaches its stream and gets a
// first promise (master-standby), registers the instance under it and
// brings the Client's cache up to the registration. Every step is
// idempotent, so a failed establish may be retried.
func (m *Member) establish(ctx context.Context) error {
	m.mu.Lock()
	s := m.sess
	m.mu.Unlock()
	if m.shared != nil {
		return m.establishShared(ctx, s)
	}
	body := api.SessionRequest{TTLMs: m.cfg.ttl.Milliseconds(), LeaseMs: m.lease.Milliseconds()}
	if _, err := m.c.write(ctx, api.ClientFrame{Type: api.FrameOpenSession, ID: s.id}, http.MethodPut, m.sessionPath(s.id), body, nil); err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	m.mu.Lock()
	if !s.isOpen() {
		close(s.open)
	}
	m.mu.Unlock()
	var err error
	if m.keeps != nil {
		err = m.keepOpened(ctx, s)
	} else {
		err = m.registerOpened(ctx, s)
	}
	if errors.Is(err, api.ErrNotFound) {
		// The session opened and the servers no longer know it, not even
		// by its tombstone: it ended long ago (a tenant remembers the last
		// fsm.MaxTombstones ended sessions; a storm of expiries under
		// load forgets older ones). A refusal a replica answers is
		// confirmed on the leader first, so this is the servers' word:
		// ended, as session_expired would say.
		return fmt.Errorf("%w: session %s is forgotten (%v)", api.ErrSessionExpired, s.tag, err)
	}
	return err
}

// registerOpened keeps s alive while the member attaches its stream, gets
// its first promise and registers under s, which the servers opened.
func (m *Member) registerOpened(ctx context.Context, s *session) error {
	// The session lives from now on: keep it alive while the member
	// attaches and registers, which under load can take longer than the
	// TTL (the worker takes over when Join returns).
	kctx, stopKeeping := context.WithCancel(ctx)
	kept := make(chan struct{})
	go func() { defer close(kept); m.keepJoining(kctx, s) }()
	defer func() { stopKeeping(); <-kept }()
	// The stream attached before the registration exists, so that a crash
	// is noticed (drop_grace) from the start. A master-seeking session
	// renews only with its stream attached, and the member wants a
	// promise before it can be granted.
	if err := m.waitAttached(ctx, s); err != nil {
		return err
	}
	if !m.farm {
		if err := m.firstKeepalive(ctx, s); err != nil {
			return err
		}
	}
	return m.registerUnderOpened(ctx, s)
}

// keepOpened is registerOpened for a shared session's keeper: the
// session attached, kept alive meanwhile; it registers nothing.
func (m *Member) keepOpened(ctx context.Context, s *session) error {
	kctx, stopKeeping := context.WithCancel(ctx)
	kept := make(chan struct{})
	go func() { defer close(kept); m.keepJoining(kctx, s) }()
	defer func() { stopKeeping(); <-kept }()
	return m.waitAttached(ctx, s)
}

// establishShared is establish for a member that shares its Client's
// session: the keeper opens and attaches it, the member registers under
// it.
func (m *Member) establishShared(ctx context.Context, s *session) error {
	if err := m.shared.ready(ctx, s.id); err != nil {
		return fmt.Errorf("shared session: %w", err)
	}
	m.mu.Lock()
	if !s.isOpen() {
		close(s.open)
	}
	m.mu.Unlock()
	err := m.registerUnderOpened(ctx, s)
	if errors.Is(err, api.ErrNotFound) {
		// As in establish: the servers no longer know the session.
		err = fmt.Errorf("%w: session %s is forgotten (%v)", api.ErrSessionExpired, s.tag, err)
	}
	if errors.Is(err, api.ErrSessionExpired) {
		m.shared.ended(s.id)
	}
	return err
}

// registerUnderOpened registers the member under s, open and attached,
// and brings the Client's cache and the member's ephemeral keys up to it.
func (m *Member) registerUnderOpened(ctx context.Context, s *session) error {
	idx, reg, err := m.register(ctx)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	m.mu.Lock()
	if !m.leaving && m.st.Phase != election.PhaseLeft {
		m.st.Phase = phaseOf(reg.State)
		m.reconcileLocked(time.Now())
	}
	m.mu.Unlock()
	if err := m.c.wrote(ctx, m.service, idx); err != nil {
		return err
	}
	m.putEphemeralAgain(ctx, s) // registered again: its ephemeral keys too (member_kv.go)
	return nil
}

// keepJoining sends s's keepalives on schedule until ctx ends: the
// session's keepalives while the member joins. Failures wait for the
// next period; the worker's recovery handles an ended session later.
func (m *Member) keepJoining(ctx context.Context, s *session) {
	t := time.NewTicker(m.keepaliveInterval())
	defer t.Stop()
	var missing time.Time // since when the servers have not known s
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		err := m.keepaliveOnce(ctx, s)
		if errors.Is(err, api.ErrNotFound) {
			// Not known, not even by its tombstone, for a TTL (as the
			// worker's keepalives judge it): forgotten, so ended.
			if missing.IsZero() {
				missing = sent
			}
			if time.Since(missing) > m.cfg.ttl {
				err = api.ErrSessionExpired
			}
		} else {
			missing = time.Time{}
		}
		if errors.Is(err, api.ErrSessionExpired) {
			m.sessionEnded(s) // Join starts again under a new session
			return
		}
		if err != nil && ctx.Err() == nil {
			m.log.Debug("keepalive while joining", "err", err)
		}
	}
}

// firstKeepalive waits for the stream and gets a promise.
func (m *Member) firstKeepalive(ctx context.Context, s *session) error {
	j := transport.NewJitter(10*time.Millisecond, 500*time.Millisecond)
	for {
		if err := m.waitAttached(ctx, s); err != nil {
			return err
		}
		err := m.keepaliveOnce(ctx, s)
		if err == nil {
			return nil
		}
		if !transport.Retryable(err) && !errors.Is(err, api.ErrNotAttached) {
			return fmt.Errorf("keepalive: %w", err)
		}
		if errors.Is(err, api.ErrNotAttached) {
			m.restartStream(s, time.Now())
		}
		if !sleep(ctx, j.NextBackOff()) {
			return fmt.Errorf("keepalive: %w", errors.Join(ctx.Err(), err))
		}
	}
}

// waitAttached waits until s's stream is attached.
func (m *Member) waitAttached(ctx context.Context, s *session) error {
	for {
		m.mu.Lock()
		if m.sess != s {
			m.mu.Unlock()
			return errors.New("session replaced")
		}
		attached, ch, ended := s.attached, s.attach, s.ended()
		m.mu.Unlock()
		if attached {
			return nil
		}
		if ended {
			return fmt.Errorf("attach session stream: %w", api.ErrSessionExpired)
		}
		select {
		case <-ch:
		case <-s.over:
		case <-s.gone:
		case <-ctx.Done():
			return fmt.Errorf("attach session stream: %w", ctx.Err())
		}
	}
}

// keepaliveOnce sends one keepalive for s and takes in its answer.
func (m *Member) keepaliveOnce(ctx context.Context, s *session) error {
	if m.c.batch != nil {
		return m.keepaliveStream(ctx, s)
	}
	m.mu.Lock()
	hint := m.leader
	if m.unreachableLocked(hint) {
		hint = ""
	}
	m.mu.Unlock()
	sent := time.Now()
	resp, err := m.c.tr.Do(ctx, transport.Request{Method: http.MethodPut, Path: m.sessionPath(s.id) + "/keepalive",
		Server: hint, Timeout: m.keepaliveTimeout()})
	m.answered(resp, err)
	if err == nil {
		var ka api.KeepaliveResponse
		if err := jsonUnmarshal(resp.Body, &ka); err != nil {
			return err
		}
		ka.Index = position(resp.Epoch(), ka.Index) // compared with positions from here on
		leader := resp.Leader()
		if leader == "" {
			leader = resp.Server
		}
		m.renewed(s, sent, &ka, leader)
		return nil
	}
	var ae *api.Error
	m.mu.Lock()
	if errors.As(err, &ae) {
		switch {
		case ae.Leader != "" && !m.unreachableLocked(ae.Leader):
			m.leader = ae.Leader
		case ae.Leader != "" || ae.Code == api.CodeUnavailable:
			m.leader = ""
		}
	} else {
		m.leader = "" // no answer: let the next one go to any server, which forwards
	}
	m.mu.Unlock()
	return err
}

// renewed takes in a keepalive answer: the promise, anchored at the send,
// the masterships the session holds and the member's state as the servers
// have it.
func (m *Member) renewed(s *session, sent time.Time, ka *api.KeepaliveResponse, leader string) {
	if m.keeps != nil {
		m.mu.Lock()
		current := m.sess == s
		if current {
			m.leader = leader
		}
		m.mu.Unlock()
		if current {
			m.keeps.heldNews(s.id, ka.Index, ka.Instances, ka.Instances != nil)
		}
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sess != s {
		return
	}
	m.leader = leader
	if ka.LeaseMs > 0 && sent.After(m.st.Promise.Sent) {
		m.st.Promise = election.NewPromise(sent, time.Duration(ka.LeaseMs)*time.Millisecond)
	}
	m.adoptStateLocked(ka.Index, ka.Instances, ka.Instances != nil)
	// At an equal position too: the answer and a stream event or a watch
	// read at one position show the same state, and when they seem not to
	// (a server that stamped several entries' events with one index), the
	// answer — read after them — is the one to believe.
	if !m.farm && ka.Index >= m.st.RecIndex {
		var rec *election.Record
		for _, h := range ka.Masters {
			if h.Service == m.service && h.Instance == m.id {
				rec = &election.Record{Token: h.FencingToken, Releasing: h.Releasing}
			}
		}
		m.st.Rec, m.st.RecIndex = rec, ka.Index
	}
	m.reconcileLocked(time.Now())
}

// adoptStateLocked takes in the member's registration as the servers have
// it at a position: the session's instances (a keepalive answer's whole
// list, or one that a stream event names). A state someone else gave the
// instance (an operator's drain, or its undoing) is adopted: later writes
// of the member's own (Update, a registration under a new session) carry
// it, and the role follows it. An instance the servers no longer list
// under the session (deregistered by someone else: missing from a whole
// list, or named with no state) is registered again by the worker, as
// Eureka and Consul's agents do. Only news read after the member's last
// registration applied, under this session, counts, and none while one is
// in flight.
func (m *Member) adoptStateLocked(at uint64, held []api.HeldInstance, whole bool) {
	if m.writes > 0 || at < m.regIndex || m.regSess != m.sess ||
		m.leaving || m.st.Phase == election.PhaseJoining || m.st.Phase == election.PhaseLeft {
		return
	}
	for _, h := range held {
		if h.Service != m.service || h.Instance != m.id {
			continue
		}
		if h.State == "" {
			whole = true // removed: as if missing from a whole list
			break
		}
		if h.State != m.reg.State && h.State.Valid() {
			m.log.Info("the servers changed this instance's state", "service", m.service, "id", m.id,
				"from", m.reg.State, "to", h.State)
			m.reg.State = h.State
			m.st.Phase = phaseOf(h.State)
		}
		return
	}
	if !whole {
		return
	}
	m.reregister = true
	select {
	case m.work <- struct{}{}:
	default:
	}
}

// observe takes in the service's master record as of a position (epoch
// and index), from the member's watch or its stream (nil: none, or not
// ours).
func (m *Member) observe(index uint64, master *api.Master) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.farm || index < m.st.RecIndex {
		return
	}
	var rec *election.Record
	if master != nil && master.Instance == m.id && master.SessionTag == m.sess.tag {
		rec = &election.Record{Token: master.FencingToken, Releasing: master.Releasing}
	}
	m.st.Rec, m.st.RecIndex = rec, index
	m.reconcileLocked(time.Now())
}

// worker is the member's session worker: keepalives on schedule, a new
// session when the servers ended the old one, and the resign that follows
// an operator's revocation.
func (m *Member) worker(ctx context.Context) {
	if m.shared != nil {
		m.shareWorker(ctx)
		return
	}
	interval := m.keepaliveInterval()
	j := transport.NewJitter(10*time.Millisecond, min(interval, time.Second))
	next := time.Now().Add(interval)
	t := time.NewTimer(interval)
	defer t.Stop()
	var missing time.Time // since when keepalives answer not_found
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.work:
		}
		m.mu.Lock()
		s, ended, resign, paused, rereg := m.sess, m.sess.ended(), m.pendingResign, m.paused, m.reregister
		m.pendingResign, m.reregister = 0, false
		m.mu.Unlock()
		if ended {
			m.recover(ctx)
			next, missing = time.Now().Add(interval), time.Time{}
			t.Reset(interval)
			continue
		}
		if resign != 0 {
			m.selfResign(ctx, s, resign)
		}
		if rereg {
			m.registerAgain(ctx)
		}
		if now := time.Now(); now.Before(next) || paused {
			if paused {
				next = now.Add(interval)
			}
			t.Reset(next.Sub(now))
			continue
		}
		sent := time.Now()
		err := m.keepaliveOnce(ctx, s)
		switch {
		case err == nil:
			next, missing = sent.Add(interval), time.Time{}
			j.Reset()
			if m.keeps != nil {
				m.keeps.sweep(ctx, s)
			}
		case ctx.Err() != nil:
			return
		case errors.Is(err, api.ErrSessionExpired):
			m.sessionEnded(s)
			next = time.Now()
		case errors.Is(err, api.ErrNotFound):
			// A session the leader does not know, and no tombstone: it
			// ended long ago. Retry for a TTL before taking it as ended.
			if missing.IsZero() {
				missing = sent
			}
			if time.Since(missing) > m.cfg.ttl {
				m.sessionEnded(s)
			}
			next = time.Now().Add(j.NextBackOff())
		case errors.Is(err, api.ErrNotAttached):
			m.log.Debug("keepalive: stream not attached on the leader; re-attaching")
			m.restartStream(s, sent)
			wctx, cancel := context.WithTimeout(ctx, interval)
			m.waitAttached(wctx, s)
			cancel()
			next = time.Now()
		default:
			var ae *api.Error
			if errors.As(err, &ae) && ae.RetryAfter > 0 {
				j.SetFloor(min(ae.RetryAfter, interval))
			}
			m.log.Debug("keepalive failed", "err", err)
			next = time.Now().Add(j.NextBackOff())
		}
		t.Reset(time.Until(next))
	}
}

// shareWorker is the worker of a member that shares its Client's
// session: the keeper renews it; the member registers again under the
// keeper's next session when the servers ended it, and registers again
// when they no longer list its instance.
func (m *Member) shareWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.work:
		}
		m.mu.Lock()
		ended, rereg := m.sess.ended(), m.reregister
		m.reregister = false
		m.mu.Unlock()
		if ended {
			m.recover(ctx)
			continue
		}
		if rereg {
			m.registerAgain(ctx)
		}
	}
}

// registerAgain sends the member's registration again under its current
// session: the servers no longer listed it. A failure waits for the next
// keepalive answer, which shows whether it is still missing.
//
// It is numbered (X-Rafting-Sequence), so a copy that lands after a later
// write of the member's — Leave's drain above all — is refused, and never
// makes a leaving member ready again.
func (m *Member) registerAgain(ctx context.Context) {
	m.mu.Lock()
	leaving := m.leavingLocked()
	m.mu.Unlock()
	if leaving {
		return
	}
	m.log.Warn("the servers no longer list this instance; registering it again", "service", m.service, "id", m.id)
	rctx, cancel := context.WithTimeout(ctx, m.cfg.ttl)
	defer cancel()
	idx, _, err := m.register(rctx)
	if errors.Is(err, ErrLeft) {
		return
	}
	if err != nil {
		m.log.Warn("registering again failed", "err", err)
		return
	}
	if err := m.c.wrote(rctx, m.service, idx); err != nil {
		m.log.Debug("registered again; the cache did not catch up", "err", err)
	}
}

// sessionEnded marks s as ended by the servers; the worker registers the
// member again under a new session.
//
// A shared session's keeper tells every member sharing it; a sharing
// member tells the keeper (which has heard already, unless the member's
// own write found out).
func (m *Member) sessionEnded(s *session) {
	m.mu.Lock()
	if m.sess != s || s.ended() {
		m.mu.Unlock()
		return
	}
	close(s.over)
	if !m.leaving && m.shared == nil {
		m.log.Warn("session ended by the servers", "session", s.tag)
	}
	// The mastership, if any, ended with the session, and nothing of the
	// session can hand anything over now.
	m.st.Rec = nil
	m.dropUnsettledLocked()
	m.reconcileLocked(time.Now())
	select {
	case m.work <- struct{}{}:
	default:
	}
	m.mu.Unlock()
	switch {
	case m.keeps != nil:
		m.keeps.endedFor(s.id)
	case m.shared != nil:
		m.shared.ended(s.id)
	}
}

// recover registers the member again under a new session (the same
// instance ID), retrying until it succeeds, the member leaves, or the
// servers refuse for good (then the member is lost).
func (m *Member) recover(ctx context.Context) {
	if !m.replaceSession(ctx) {
		return
	}
	m.establishAgain(ctx)
}

// establishAgain establishes the member's current session, retrying as
// recover does.
func (m *Member) establishAgain(ctx context.Context) {
	j := transport.NewJitter(50*time.Millisecond, 5*time.Second)
	for {
		err := m.establish(ctx)
		if err == nil || ctx.Err() != nil || errors.Is(err, ErrLeft) {
			return
		}
		if terminal(err) {
			m.finish(fmt.Errorf("%w: %w", ErrSessionLost, err))
			return
		}
		m.log.Warn("registering again failed; retrying", "err", err)
		if !sleep(ctx, j.NextBackOff()) {
			return
		}
		if errors.Is(err, api.ErrSessionExpired) && !m.replaceSession(ctx) {
			// The new session ended too before the registration landed
			// (its keepalives did not arrive within the TTL): a retry
			// under it can never succeed. Open another, as Join does.
			return
		}
	}
}

// replaceSession puts a new session in place of the member's current
// one, which the servers ended; false when the member is leaving. A
// member sharing its Client's session takes the keeper's next one
// (waiting for it within ctx).
func (m *Member) replaceSession(ctx context.Context) bool {
	next := newSession()
	if m.shared != nil {
		m.mu.Lock()
		old := m.sess.id
		m.mu.Unlock()
		id, ok := m.shared.next(ctx, old)
		if !ok {
			return false
		}
		next = sessionWithID(id)
	}
	m.mu.Lock()
	if m.leavingLocked() {
		m.mu.Unlock()
		return false
	}
	old := m.sess
	if old.cancel != nil {
		old.cancel()
	}
	m.sess = next
	close(old.gone)
	m.st.Rec, m.st.Promise = nil, election.Promise{}
	m.dropUnsettledLocked()
	m.reconcileLocked(time.Now())
	tag := m.sess.tag
	m.mu.Unlock()
	m.log.Info("registering again under a new session", "old", old.tag, "session", tag)
	return true
}

// terminal reports whether the servers refused for good: a retry cannot
// help.
func terminal(err error) bool {
	for _, e := range []error{api.ErrUnauthorized, api.ErrForbidden, api.ErrNotFound, api.ErrConflict, api.ErrBadRequest} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// selfResign resigns a mastership that someone else revoked (an operator
// drained the master): under the holder's own session the successor is
// granted at once instead of after the holder's last promise.
func (m *Member) selfResign(ctx context.Context, s *session, token uint64) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := m.sendResign(rctx, s.id, api.ResignRequest{Instance: m.id, FencingToken: token}, 0); err != nil {
		// No other candidate (409), or already released: the servers
		// release it when our last promise lapses.
		m.log.Debug("resign after revocation", "token", token, "err", err)
		return
	}
	m.log.Info("resigned a revoked mastership", "token", token)
}

// restartStream drops s's stream if it attached before at: a keepalive
// sent then was refused as not attached, so that stream is not on the
// tenant's leader.
func (m *Member) restartStream(s *session, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sess == s && s.again != nil {
		s.again(at) // on the client stream (session_stream.go)
		return
	}
	if m.sess == s && s.attached && s.since.Before(at) && s.cancel != nil {
		s.cancel()
	}
}

// streamLoop keeps the current session's stream attached to the tenant's
// leader: at once after `moved` (to the leader it names), with jittered
// backoff after a failure. Losing the stream does not demote a master; its
// promise does.
func (m *Member) streamLoop(ctx context.Context) {
	j := transport.NewJitter(10*time.Millisecond, 500*time.Millisecond)
	server := ""
	for ctx.Err() == nil {
		m.mu.Lock()
		s := m.sess
		m.mu.Unlock()
		select {
		case <-s.open:
		case <-s.gone:
			continue
		case <-ctx.Done():
			return
		}
		m.mu.Lock()
		if m.sess != s || s.ended() {
			ended := s.ended()
			m.mu.Unlock()
			if ended {
				select { // wait for the worker to replace it
				case <-s.gone:
				case <-ctx.Done():
				}
			}
			continue
		}
		if m.leader != "" && !m.unreachableLocked(m.leader) {
			server = m.leader
		}
		sctx, cancel := context.WithCancel(ctx)
		s.cancel = cancel
		m.mu.Unlock()

		resp, used, err := m.c.tr.Stream(sctx, server, m.sessionPath(s.id)+"/stream")
		m.reached(used, err)
		if err != nil {
			cancel()
			var ae *api.Error
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, api.ErrSessionExpired):
				m.sessionEnded(s)
			case errors.As(err, &ae) && ae.Leader != "" && ae.Leader != used:
				server = ae.Leader
			default:
				server = m.c.tr.Next(used)
			}
			if errors.As(err, &ae) && ae.RetryAfter > 0 {
				j.SetFloor(min(ae.RetryAfter, 200*time.Millisecond))
			}
			m.log.Debug("stream attach failed", "server", used, "err", err)
			sleep(ctx, j.NextBackOff())
			continue
		}
		moved, leader := m.readStream(cancel, s, resp, used, j)
		if moved {
			m.log.Debug("stream moved", "server", used, "leader", leader)
		}
		cancel()
		resp.Body.Close()
		m.detached(s)
		switch {
		case moved && leader != "" && !m.unreachable(leader):
			server = leader
			m.setLeader(leader)
			sleep(ctx, jitter(10*time.Millisecond))
		case moved:
			// No leader known, or one that just refused us (the servers'
			// view lags a crash until the election): pace the retries so
			// a failover is not met with a herd of attaches.
			server = m.c.tr.Next(used)
			m.setLeader("")
			sleep(ctx, 50*time.Millisecond+jitter(50*time.Millisecond))
		default:
			sleep(ctx, j.NextBackOff())
		}
	}
}

// readStream reads s's stream until it ends; moved reports a `moved`
// line (the server closed it and names the leader, if known).
func (m *Member) readStream(cancel context.CancelFunc, s *session, resp *http.Response, server string, j *transport.Jitter) (moved bool, leader string) {
	idle := time.AfterFunc(streamIdle, cancel)
	defer idle.Stop()
	epoch := transport.Epoch(resp.Header)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first := true
	for sc.Scan() {
		idle.Reset(streamIdle)
		var ev api.StreamEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			m.log.Warn("bad stream line", "err", err)
			return false, ""
		}
		switch ev.Type {
		case api.EventHeartbeat:
			if first {
				m.attached(s, server)
				j.Reset()
			}
		case api.EventMoved:
			return true, ev.Leader
		case api.EventExpired:
			m.sessionEnded(s)
			return false, ""
		case api.EventMaster:
			if ev.Service == m.service {
				m.observe(position(epoch, ev.Index), ev.Master)
			}
		case api.EventInstance:
			if ev.Instance != nil && m.keeps != nil {
				m.keeps.heldNews(s.id, position(epoch, ev.Index), []api.HeldInstance{*ev.Instance}, false)
			} else if ev.Instance != nil {
				m.mu.Lock()
				if m.sess == s {
					m.adoptStateLocked(position(epoch, ev.Index), []api.HeldInstance{*ev.Instance}, false)
					m.reconcileLocked(time.Now())
				}
				m.mu.Unlock()
			}
		}
		first = false
	}
	return false, ""
}

func (m *Member) attached(s *session, server string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sess != s || s.attached {
		return
	}
	s.attached, s.since = true, time.Now()
	close(s.attach)
	m.leader = server // only the leader serves streams
	m.log.Debug("stream attached", "server", server, "session", s.tag)
}

func (m *Member) detached(s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.attached {
		s.attached = false
		s.attach = make(chan struct{})
	}
	s.cancel = nil
}

func (m *Member) setLeader(l string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leader = l
}

// jitter is a random wait in [0, d].
func jitter(d time.Duration) time.Duration {
	return transport.NewJitter(d, d).NextBackOff()
}

// downFor is how long a server that gave no answer at all (refused,
// unreachable) is not taken for the leader, whatever other servers say:
// until an election completes they name the leader that just crashed. It
// is short: a restarted server must not stay shunned once it is back.
const downFor = 500 * time.Millisecond

// reached records whether server answered a request (any status) or gave
// no answer at all.
func (m *Member) reached(server string, err error) {
	if server == "" {
		return
	}
	var ne *transport.NetError
	noAnswer := errors.As(err, &ne) && !errors.Is(err, context.Canceled)
	m.mu.Lock()
	defer m.mu.Unlock()
	if noAnswer {
		if m.down == nil {
			m.down = map[string]time.Time{}
		}
		m.down[server] = time.Now()
		if m.leader == server {
			m.leader = ""
		}
		return
	}
	delete(m.down, server)
}

// answered is reached for a transport answer.
func (m *Member) answered(resp *transport.Response, err error) {
	server := ""
	var ne *transport.NetError
	switch {
	case resp != nil:
		server = resp.Server
	case errors.As(err, &ne):
		server = ne.Server
	}
	m.reached(server, err)
}

func (m *Member) unreachable(server string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unreachableLocked(server)
}

func (m *Member) unreachableLocked(server string) bool {
	at, ok := m.down[server]
	return ok && time.Since(at) < downFor
}
