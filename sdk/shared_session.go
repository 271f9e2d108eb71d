package sdk

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/transport"
)

// Shared sessions: the farm members of one Client that ask for the same
// session (the same TTL; a farm session has no lease) share one session,
// as an etcd client's keys share its one lease. The Client is the
// process, and a process's crash ends all of them at once anyway, so a
// session per member buys nothing but keepalives: 1,000 processes of 10
// farm members each renewed 10,000 sessions where 1,000 do. A member with
// WithOwnSession, a master-standby member (its promise and fencing are
// its session's) and a member made by Join (the only member of its
// Client) keep a session of their own.
//
// The session belongs to a keeper: a Member with no instance, whose loops
// — the ones a lone member runs for its own session — open it, keep it
// attached (on the client stream, or a session stream on REST) and renew
// it on one schedule, and open a new one when the servers end it. Each
// sharing member registers its instance under the keeper's session, reads
// its own instance in the keeper's keepalive answers and session events,
// and registers again under the keeper's next session, as a lone member
// does under its own new one. Leave deregisters the member's instance
// (drained first) and deletes its ephemeral keys; the last member to
// leave ends the session.
//
// Writes under a session are numbered (X-Rafting-Sequence), one counter
// per session on the servers, which refuse a number below the last they
// applied. The sharing members draw their numbers from the session's one
// counter; a write refused because another member's later number landed
// first is sent again under a new number, unless the member has numbered
// a later write of its own meanwhile (then the refusal stands, as for a
// lone member: an earlier write never overtakes a later one of the same
// member).

// sharedSession is one shared session of a Client: its keeper and the
// members that share it. members is guarded by the Client's mu.
type sharedSession struct {
	c       *Client
	ttl     time.Duration
	k       *Member // the keeper
	members map[*Member]struct{}
	seq     atomic.Uint64 // the session's write numbers

	mu       sync.Mutex
	departed map[string]departed // instances whose Leave could not deregister them, by path
	gen      uint64              // numbers the departures
}

// departed is an instance a member left without deregistering (its Leave
// or failed Join could not): the keeper deregisters it.
type departed struct {
	service, id string
	session     string // the session it was registered under: another's end removed it
	gen         uint64 // tells one departure of the path from a later one
}

// sharesSession reports whether a member joined with cfg on a Client
// (made for it when owns) shares the Client's session.
func sharesSession(inst Instance, cfg memberConfig, owns bool) bool {
	return !owns && !cfg.ownSession && inst.Mode == Farm && cfg.lease <= 0
}

// shareLocked returns the Client's shared session for cfg's TTL, and
// whether it is new (the caller starts it); c.mu is held.
func (c *Client) shareLocked(cfg memberConfig) (*sharedSession, bool) {
	if ss := c.shared[cfg.ttl]; ss != nil {
		return ss, false
	}
	ss := &sharedSession{c: c, ttl: cfg.ttl, members: map[*Member]struct{}{}}
	kcfg := cfg
	kcfg.roleChange, kcfg.twoStep, kcfg.coldStart, kcfg.lease = nil, false, nil, 0
	k := newMember(c, Instance{Service: "-", ID: "-", Mode: Farm}, kcfg, false)
	k.log = c.log.With("shared_session_ttl", cfg.ttl)
	k.keeps = ss
	k.notes.Close() // no callbacks: its notifier returns at once
	k.notes.Run()
	ss.k = k
	if c.shared == nil {
		c.shared = map[time.Duration]*sharedSession{}
	}
	c.shared[cfg.ttl] = ss
	return ss, true
}

// start runs the keeper: it opens the session, attaches it and renews it
// until the last member leaves.
func (ss *sharedSession) start() {
	k := ss.k
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	k.wg.Add(2)
	go func() {
		defer k.wg.Done()
		if k.c.stream != nil {
			k.attachLoop(ctx)
		} else {
			k.streamLoop(ctx)
		}
	}()
	go func() {
		defer k.wg.Done()
		if k.establishFirst(ctx) {
			k.worker(ctx)
		}
	}()
}

// establishFirst opens the keeper's first session, attached: as Join
// does for a lone member, a session the servers end meanwhile is
// replaced, and any other failure ends the keeper (the members joining
// fail with it, and the Client's next Join opens another).
func (m *Member) establishFirst(ctx context.Context) bool {
	j := transport.NewJitter(50*time.Millisecond, 2*time.Second)
	for {
		err := m.establish(ctx)
		switch {
		case err == nil:
			return true
		case ctx.Err() != nil:
			return false
		case errors.Is(err, api.ErrSessionExpired):
			if !sleep(ctx, j.NextBackOff()) || !m.replaceSession(ctx) {
				return false
			}
		default:
			m.finish(fmt.Errorf("shared session: %w", err))
			return false
		}
	}
}

// view is a member's own handle on the keeper's current session: the
// same ID, with channels of the member's (guarded by its mu).
func (ss *sharedSession) view() *session {
	ss.k.mu.Lock()
	id := ss.k.sess.id
	ss.k.mu.Unlock()
	return sessionWithID(id)
}

// keeperGone is the error of a member whose keeper has stopped.
func (ss *sharedSession) keeperGone() error {
	ss.k.mu.Lock()
	defer ss.k.mu.Unlock()
	if ss.k.lost != nil {
		return ss.k.lost
	}
	return ErrClosed
}

// ready waits until the keeper's session id is open and attached. It
// answers ErrSessionExpired when that session has ended or been replaced
// (after the keeper has replaced it: the member's next view is the new
// one), and the keeper's error once it has stopped.
func (ss *sharedSession) ready(ctx context.Context, id string) error {
	k := ss.k
	for {
		k.mu.Lock()
		s := k.sess
		attached, attach := s.attached, s.attach
		k.mu.Unlock()
		select {
		case <-k.done:
			return ss.keeperGone()
		default:
		}
		switch {
		case s.id != id:
			return fmt.Errorf("%w: the shared session was replaced", api.ErrSessionExpired)
		case s.ended():
			select {
			case <-s.gone:
			case <-k.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			return fmt.Errorf("%w: the shared session ended", api.ErrSessionExpired)
		case s.isOpen() && attached:
			return nil
		}
		// Only what is still to come: an open session's closed open
		// channel (or an attached one's) would make this loop spin.
		var open, attached1 <-chan struct{}
		if !s.isOpen() {
			open = s.open
		}
		if !attached {
			attached1 = attach
		}
		select {
		case <-open:
		case <-attached1:
		case <-s.over:
		case <-s.gone:
		case <-k.done:
		case <-ctx.Done():
			return fmt.Errorf("shared session not ready: %w", ctx.Err())
		}
	}
}

// next returns the ID of the keeper's session after old, which the
// servers ended: it tells the keeper, if it has not heard, and waits for
// its new session. false when the keeper stopped or ctx ended.
func (ss *sharedSession) next(ctx context.Context, old string) (string, bool) {
	k := ss.k
	ss.ended(old)
	for {
		k.mu.Lock()
		s := k.sess
		k.mu.Unlock()
		if s.id != old {
			return s.id, true
		}
		select {
		case <-s.gone:
		case <-k.done:
			return "", false
		case <-ctx.Done():
			return "", false
		}
	}
}

// ended tells the keeper that the servers ended session id (a member's
// write under it was refused session_expired, or not_found: forgotten).
func (ss *sharedSession) ended(id string) {
	ss.k.mu.Lock()
	s := ss.k.sess
	ss.k.mu.Unlock()
	if s.id == id {
		ss.k.sessionEnded(s)
	}
}

// each calls fn for every member sharing the session now.
func (ss *sharedSession) each(fn func(*Member)) {
	ss.c.mu.Lock()
	ms := make([]*Member, 0, len(ss.members))
	for m := range ss.members {
		ms = append(ms, m)
	}
	ss.c.mu.Unlock()
	for _, m := range ms {
		fn(m)
	}
}

// nextSeq numbers a write under the session.
func (ss *sharedSession) nextSeq() uint64 { return ss.seq.Add(1) }

// leave takes m out of the session; the last member's leave ends it
// (ctx bounds the end), and the Client opens a new one for the next Join.
func (ss *sharedSession) leave(ctx context.Context, m *Member) error {
	c := ss.c
	c.mu.Lock()
	_, was := ss.members[m]
	delete(ss.members, m)
	last := was && len(ss.members) == 0
	if last && c.shared[ss.ttl] == ss {
		delete(c.shared, ss.ttl)
	}
	c.mu.Unlock()
	if !last {
		return nil
	}
	return ss.k.leave(ctx)
}

// depart hands the keeper an instance its member could not deregister:
// the keeper deregisters it while the session lives (sweep).
func (ss *sharedSession) depart(m *Member, sid string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.departed == nil {
		ss.departed = map[string]departed{}
	}
	ss.gen++
	ss.departed[m.path] = departed{service: m.service, id: m.id, session: sid, gen: ss.gen}
}

// claim takes path out of the departed: a member registers it again.
func (ss *sharedSession) claim(path string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.departed, path)
}

// settle takes path out of the departed if it is still d: deregistered
// (or gone with its session). A member may have claimed it since, and
// left it again.
func (ss *sharedSession) settle(path string, d departed) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if cur, ok := ss.departed[path]; ok && cur == d {
		delete(ss.departed, path)
	}
}

// sweep deregisters the departed instances under the keeper's session
// s. An instance a member claims again meanwhile is its own: a numbered
// delete that lands after that member's registration is refused (its
// number is below the registration's).
func (ss *sharedSession) sweep(ctx context.Context, s *session) {
	ss.mu.Lock()
	todo := make(map[string]departed, len(ss.departed))
	for p, d := range ss.departed {
		todo[p] = d
	}
	ss.mu.Unlock()
	for path, d := range todo {
		if d.session != s.id {
			ss.settle(path, d) // its session's end removed it
			continue
		}
		// Numbered only while still departed: a member that claims the
		// path again (joins with its ID) numbers its registration after
		// this, so this delete cannot land after it.
		ss.mu.Lock()
		var seq uint64
		if cur, ok := ss.departed[path]; ok && cur == d {
			seq = ss.nextSeq()
		}
		ss.mu.Unlock()
		if seq == 0 {
			continue
		}
		h := http.Header{api.HeaderSession: {s.id}}
		numbered(h, seq)
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := ss.c.write(wctx, api.ClientFrame{Type: api.FrameDeleteInstance, Service: d.service, ID: d.id}, http.MethodDelete, path, nil, h)
		cancel()
		if err == nil || errors.Is(err, api.ErrNotFound) || errors.Is(err, api.ErrConflict) {
			ss.settle(path, d)
			ss.k.log.Info("deregistered an instance its member left registered", "service", d.service, "id", d.id, "err", err)
			continue
		}
		ss.k.log.Debug("deregistering a departed instance", "service", d.service, "id", d.id, "err", err)
	}
}

// heldNews hands the keeper's news of the session's instances (a
// keepalive answer's whole list, or an event's one) to every member
// sharing session id.
// Each member is handed its own instance's entry only (a whole list of a
// Client's thousand members, scanned by each, would cost a million steps
// a keepalive).
func (ss *sharedSession) heldNews(id string, at uint64, held []api.HeldInstance, whole bool) {
	type key struct{ service, id string }
	byKey := make(map[key]api.HeldInstance, len(held))
	for _, h := range held {
		byKey[key{h.Service, h.Instance}] = h
	}
	ss.each(func(m *Member) {
		h, ok := byKey[key{m.service, m.id}]
		if !ok && !whole {
			return // news of another member's instance
		}
		var own []api.HeldInstance
		if ok {
			own = []api.HeldInstance{h}
		}
		m.mu.Lock()
		if m.sess.id == id {
			m.adoptStateLocked(at, own, whole)
			m.reconcileLocked(time.Now())
		}
		m.mu.Unlock()
	})
}

// endedFor marks the sharing members' view of session id ended: each
// registers again under the keeper's next session.
func (ss *sharedSession) endedFor(id string) {
	ss.each(func(m *Member) {
		m.mu.Lock()
		s := m.sess
		m.mu.Unlock()
		if s.id == id {
			m.sessionEnded(s)
		}
	})
}

// lostFor ends every sharing member: the keeper could not open a session
// (the servers refused for good).
func (ss *sharedSession) lostFor(cause error) {
	ss.each(func(m *Member) { m.finish(cause) })
	c := ss.c
	c.mu.Lock()
	if c.shared[ss.ttl] == ss {
		delete(c.shared, ss.ttl)
	}
	c.mu.Unlock()
}

// renumber gives a sharing member's numbered write refused with err a
// new number, if another member's later number is what refused it and no
// later write of the member's own was numbered since; false: the refusal
// stands.
func (m *Member) renumber(seq *uint64, err error) bool {
	var ae *api.Error
	if m.shared == nil || !errors.As(err, &ae) || ae.Code != api.CodeConflict || ae.Conflict != nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seq != *seq {
		return false
	}
	old := *seq
	*seq = m.nextSeqLocked()
	m.log.Debug("a write numbered again: another member's later number landed first", "seq", old, "now", *seq)
	return true
}

// maxRenumber bounds the renumberings of one write: a conflict that is
// not about numbers (an instance another session owns) is answered again
// each time.
const maxRenumber = 16

// nextSeqLocked numbers the member's next write under its session.
func (m *Member) nextSeqLocked() uint64 {
	if m.shared != nil {
		m.seq = m.shared.nextSeq()
	} else {
		m.seq++
	}
	return m.seq
}

// deleteEphemeralAll deletes the ephemeral keys a sharing member holds
// (its Leave: the session lives on with the other members), each if
// still as the member put it.
func (m *Member) deleteEphemeralAll(ctx context.Context) error {
	// In the key lane, after a put back in flight: the member is leaving,
	// so none is put after.
	if err := m.held.enter(ctx); err != nil {
		return err
	}
	defer m.held.exit()
	m.held.mu.Lock()
	keys := slices.Sorted(maps.Keys(m.held.keys))
	m.held.mu.Unlock()
	var errs []error
	for _, k := range keys {
		if err := m.deleteHeld(ctx, k); err != nil && !errors.Is(err, api.ErrConflict) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
