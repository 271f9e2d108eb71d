package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/election"
	"github.com/rafting/rafting/sdk/internal/transport"
)

// Mode is how an instance takes part in its service.
type Mode = api.Mode

// Modes.
const (
	Farm          = api.ModeFarm          // every ready instance serves; balancers spread calls
	MasterStandby = api.ModeMasterStandby // one ready instance is elected master
)

// State is an instance's registered life-cycle state.
type State = api.State

// States.
const (
	StateStarting = api.StateStarting // never picked, never elected
	StateReady    = api.StateReady
	StateDraining = api.StateDraining // never picked; a master hands over
)

// Instance is what an instance tells about itself when it joins.
type Instance struct {
	Service string // required: [A-Za-z0-9._-]{1,128}
	// ID identifies the instance within its service. Empty: a generated
	// one, the host name and a random suffix. A restarted process may
	// reuse its ID once its old session has ended.
	ID string
	// Address is where callers reach the instance (host:port). Empty: the
	// host name.
	Address string
	Mode    Mode // empty: Farm
	// Weight is the instance's capacity relative to the others, for
	// balancers. 0: DefaultWeight (100). Negative: registered as 0, never
	// picked.
	Weight int
	// Priority orders master candidates: the highest wins an election
	// (ties: the earliest ready). It never pre-empts a sitting master.
	Priority int
	Zone     string            // failure domain, e.g. "eu-1"
	Meta     map[string]string // free-form metadata, e.g. {"version": "1.4.2"}
}

// DefaultWeight is the weight of an instance that gives none.
const DefaultWeight = api.DefaultWeight

// Member is a registered instance and the session that keeps it
// registered: created by Join, ended by Leave. Its methods are safe for
// concurrent use.
type Member struct {
	c       *Client
	owns    bool // Join made c for this member: Leave closes it
	cfg     memberConfig
	service string
	id      string
	path    string // of the instance
	farm    bool
	lease   time.Duration
	log     *slog.Logger

	mu       sync.Mutex
	reg      api.RegisterRequest  // the registration, without its session
	writes   int                  // registrations of ours in flight
	regIndex uint64               // the position (epoch, index) our last registration applied at
	regSess  *session             // the session our last registration was made under
	sess     *session             // the current session
	leader   string               // the tenant shard leader's API address, when known
	down     map[string]time.Time // servers that gave no answer at all, and when (see unreachable)
	st       election.State
	role     Role
	token    uint64
	term     *term
	resigned uint64 // the releasing token we resigned for
	leaving  bool
	paused   bool // tests: keepalives stop, as in a paused process

	pendingResign uint64        // a revoked mastership for the worker to resign
	lane          chan struct{} // taken by a Resign or Update until its outcome is known
	seq           uint64        // the last X-Rafting-Sequence a holder write took
	unsettled     *holderWrite  // a handover of ours whose outcome is unknown, sent again until known
	reregister    bool          // the servers lost the registration: the worker sends it again
	lost          error

	notes   *election.Notifier[RoleChange] // tells OnRoleChange's callbacks, in order; published under mu
	changed chan struct{}                  // closed and replaced at every change of role or token
	timer   chan struct{}                  // the role loop must look at its timer again
	work    chan struct{}                  // the session worker has work (an expiry, a resign)

	cancel    context.CancelFunc // ends the loops
	wg        sync.WaitGroup     // the loops
	done      chan struct{}
	doneOnce  sync.Once
	leaveOnce sync.Once
	leaveErr  error
	unlisten  func()

	held heldKeys // the ephemeral keys it holds (member_kv.go)

	shared *sharedSession // the Client's session it shares, or nil: a session of its own (shared_session.go)
	keeps  *sharedSession // it is the keeper of this shared session: it registers nothing
}

// term is the current mastership's context. It is kept in the member
// because Term hands it to the application: it is the one context the SDK
// stores, cancelled when the mastership ends locally.
type term struct {
	token  uint64
	ctx    context.Context
	cancel context.CancelFunc
	view   *termCtx // what Term.Ctx is: ctx, with Err and Done that look at the promise
}

// Join registers an instance and returns its Member, on a Client of its
// own made from the options (see Connect); Leave closes that Client. Join
// returns once the session's stream is attached (so a crash is noticed
// from then on), the instance registered, and the Client's cache has
// caught up with the registration: a member elected at once is Master
// when Join returns.
func Join(ctx context.Context, inst Instance, opts ...Option) (*Member, error) {
	cfg := defaults()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	m, err := c.join(ctx, inst, cfg.member, true)
	if err != nil {
		c.Close()
		return nil, err
	}
	return m, nil
}

// Join registers an instance on this Client's connection, with the
// Client's member options overridden by opts (connection options are
// refused). Close leaves every member still joined.
func (c *Client) Join(ctx context.Context, inst Instance, opts ...Option) (*Member, error) {
	cfg := config{member: c.cfg.member}
	cfg.member.roleChange = nil
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.connSet {
		return nil, errors.New("sdk: (*Client).Join takes member options only; give connection options to Connect")
	}
	if err := cfg.member.validate(); err != nil {
		return nil, err
	}
	cfg.member.roleChange = append(c.cfg.member.roleChange[:len(c.cfg.member.roleChange):len(c.cfg.member.roleChange)], cfg.member.roleChange...)
	return c.join(ctx, inst, cfg.member, false)
}

func (c *Client) join(ctx context.Context, inst Instance, cfg memberConfig, owns bool) (*Member, error) {
	if inst.ID == "" {
		inst.ID = newInstanceID()
	}
	if inst.Address == "" {
		inst.Address = defaultAddress()
	}
	if inst.Mode == "" {
		inst.Mode = Farm
	}
	switch {
	case inst.Weight == 0:
		inst.Weight = DefaultWeight
	case inst.Weight < 0:
		inst.Weight = 0
	}
	for _, err := range []error{api.ValidateName("service", inst.Service), api.ValidateName("id", inst.ID)} {
		if err != nil {
			return nil, fmt.Errorf("sdk: join: %w", err)
		}
	}
	if !inst.Mode.Valid() {
		return nil, fmt.Errorf("sdk: join: mode %q is not %s or %s", inst.Mode, Farm, MasterStandby)
	}
	if inst.Mode == MasterStandby && cfg.lease == 0 {
		return nil, errors.New("sdk: join: a master-standby member needs a lease (WithLease > 0): a master acts only within its promise")
	}
	m := newMember(c, inst, cfg, owns)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	for o := range c.members {
		if o.service == inst.Service && o.id == inst.ID {
			// Under one shared session the second would overwrite the
			// first's registration; under its own the servers would
			// refuse it (409) only once the first's session ends.
			c.mu.Unlock()
			return nil, fmt.Errorf("sdk: join %s/%s: %w: this Client has a member with this ID already", inst.Service, inst.ID, ErrConflict)
		}
	}
	c.members[m] = struct{}{}
	var startShared bool
	if sharesSession(inst, cfg, owns) {
		m.shared, startShared = c.shareLocked(cfg)
		m.shared.members[m] = struct{}{}
	}
	c.mu.Unlock()
	if m.shared != nil {
		if startShared {
			m.shared.start()
		}
		m.shared.claim(m.path)
		s := m.shared.view()
		m.mu.Lock()
		m.sess = s
		m.mu.Unlock()
	}

	for _, fn := range cfg.roleChange {
		m.OnRoleChange(fn)
	}
	lctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.notes.Run()
	if m.shared == nil { // else the keeper keeps the session attached
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if c.stream != nil {
				m.attachLoop(lctx)
			} else {
				m.streamLoop(lctx)
			}
		}()
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.roleLoop(lctx)
	}()
	if !m.farm {
		// The member's own watch of its service: a source of its master
		// record besides keepalive answers and stream events.
		s, err := c.watch(m.service, 0)
		if err != nil {
			m.end(err)
			return nil, err
		}
		m.unlisten = s.listen(func(snap *Snapshot) { m.observe(snap.pos, snap.Master) })
	}
	err := m.establish(ctx)
	j := transport.NewJitter(50*time.Millisecond, 2*time.Second)
	for errors.Is(err, api.ErrSessionExpired) && ctx.Err() == nil {
		// The servers ended the session before the registration landed:
		// none of its keepalives arrived within the TTL (a cluster under
		// load, a partition). Join again under a new session, within ctx,
		// as a joined member would.
		m.log.Warn("session ended while joining", "err", err)
		if !sleep(ctx, j.NextBackOff()) || !m.replaceSession(ctx) {
			break
		}
		err = m.establish(ctx)
	}
	if err != nil {
		m.log.Debug("join failed", "err", err)
		m.abandon(ctx)
		if errors.Is(err, ErrLeft) {
			return nil, ErrClosed // the Client closed while we joined: it made the member leave
		}
		return nil, fmt.Errorf("sdk: join %s/%s: %w", m.service, m.id, err)
	}
	m.mu.Lock()
	if m.leavingLocked() {
		// The Client closed while we joined: it made the member leave.
		m.mu.Unlock()
		m.end(nil)
		return nil, ErrClosed
	}
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		m.worker(lctx)
	}()
	m.log.Debug("joined", "mode", inst.Mode, "session", m.sessionTag())
	return m, nil
}

func newMember(c *Client, inst Instance, cfg memberConfig, owns bool) *Member {
	m := &Member{
		c: c, owns: owns, cfg: cfg, service: inst.Service, id: inst.ID,
		path: c.tenantPath("/services/" + url.PathEscape(inst.Service) + "/instances/" + url.PathEscape(inst.ID)),
		farm: inst.Mode == Farm, lease: cfg.lease,
		log:   c.log.With("service", inst.Service, "instance", inst.ID),
		notes: election.NewNotifier[RoleChange](), timer: make(chan struct{}, 1), work: make(chan struct{}, 1),
		lane: make(chan struct{}, 1), done: make(chan struct{}),
		changed: make(chan struct{}),
		held:    heldKeys{lane: make(chan struct{}, 1)},
	}
	if m.lease < 0 {
		m.lease = DefaultLease
		if m.farm {
			m.lease = 0
		}
	}
	w := inst.Weight
	m.reg = api.RegisterRequest{Address: inst.Address, Mode: inst.Mode, State: StateReady, Weight: &w,
		Priority: inst.Priority, Zone: inst.Zone, Meta: maps.Clone(inst.Meta), ColdStart: cfg.coldStart}
	if cfg.twoStep {
		m.reg.State = StateStarting
	}
	m.st = election.State{Phase: election.PhaseJoining, Farm: m.farm}
	m.role = Starting
	m.sess = newSession()
	return m
}

// ID is the member's instance ID.
func (m *Member) ID() string { return m.id }

// Service is the member's service.
func (m *Member) Service() string { return m.service }

// Client is the Client the member joined through; for a member made by
// Join, the one Leave closes. Use it to watch other services on the same
// connection.
func (m *Member) Client() *Client { return m.c }

// Role returns the member's role now. A master whose promise has just run
// out reads Suspended (or Standby) at once, even before the change is
// reported to OnRoleChange callbacks.
func (m *Member) Role() Role {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reconcileLocked(time.Now())
	return m.role
}

// IsMaster reports whether the member may act as its service's master now:
// the latest known master record names its session, and the latest
// keepalive promise (anchored at its send, less a margin) has not run out.
// To act as master, use Mastership (or RunAsMaster) instead: it gives the
// fencing token and a Ctx for the work in the same read, and a second read
// after IsMaster may already disagree with it.
func (m *Member) IsMaster() bool {
	return m.Role() == Master
}

// Mastership returns the member's current term, in one consistent read:
// its fencing token and a context cancelled when the term ends locally
// (the promise runs out, a demotion, Resign, Leave). ok is false when the
// member is not Master. The Ctx does not end with any ctx of the caller's
// (Join's included): to stop with one too, use RunAsMaster, or derive.
func (m *Member) Mastership() (Term, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reconcileLocked(time.Now())
	if m.role != Master || m.term == nil {
		return Term{}, false
	}
	return Term{Token: m.term.token, Ctx: m.term.view}, true
}

// Done is closed when the member has left (Leave) or lost its session for
// good (Err says why).
func (m *Member) Done() <-chan struct{} { return m.done }

// Err is nil while the member is joined; after Done, ErrLeft for a member
// that left, or an error matching ErrSessionLost.
func (m *Member) Err() error {
	select {
	case <-m.done:
	default:
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lost != nil {
		return m.lost
	}
	return ErrLeft
}

// Ready makes a member that joined with WithTwoStepStartup eligible: it
// registers as ready, and balancers may pick it and elections grant it.
// It is a no-op for a member already ready.
func (m *Member) Ready(ctx context.Context) error {
	return m.Update(ctx, SetState(StateReady))
}

// Change is one change that Member.Update makes to the registration.
type Change func(*api.RegisterRequest)

// SetWeight changes the member's weight (0: never picked).
func SetWeight(w int) Change {
	return func(r *api.RegisterRequest) { w := max(w, 0); r.Weight = &w }
}

// SetMeta replaces the member's metadata.
func SetMeta(meta map[string]string) Change {
	return func(r *api.RegisterRequest) { r.Meta = maps.Clone(meta) }
}

// SetPriority changes the member's election priority.
func SetPriority(p int) Change {
	return func(r *api.RegisterRequest) { r.Priority = p }
}

// SetState changes the member's state: StateReady (see Ready), StateStarting
// (out of rotation and of elections), or StateDraining (likewise; a master
// hands over at once).
func SetState(s State) Change {
	return func(r *api.RegisterRequest) { r.State = s }
}

// Update changes the member's registration and waits until the Client's
// cache reflects it. A change that makes a master ineligible (starting,
// draining) demotes it locally first, then hands over. Updates (and
// resigns) of one member are made one at a time.
//
// Such a change whose outcome is unknown when Update returns (its ctx
// ended before an answer, or the servers answered 504) may still be
// applied, and hand the mastership over in its entry: the member keeps the
// new state locally (so it does not act as master) and sends the change
// again until the servers answer. If they applied it, it stays; if they
// refused it, the member is as before, master again if it still holds the
// record and its promise.
func (m *Member) Update(ctx context.Context, changes ...Change) error {
	if err := m.takeLane(ctx); err != nil {
		if errors.Is(err, ErrLeft) {
			return ErrLeft
		}
		return fmt.Errorf("sdk: update %s/%s: %w", m.service, m.id, err)
	}
	m.mu.Lock()
	if m.leavingLocked() {
		m.mu.Unlock()
		m.freeLane()
		return ErrLeft
	}
	reg := m.reg
	reg.Meta = maps.Clone(reg.Meta)
	for _, ch := range changes {
		ch(&reg)
	}
	if !reg.State.Valid() {
		m.mu.Unlock()
		m.freeLane()
		return fmt.Errorf("sdk: update: state %q is not starting, ready or draining", reg.State)
	}
	w := &holderWrite{s: m.sess, seq: m.nextSeqLocked(), reg: &reg, before: m.st.Phase}
	if reg.State != StateReady {
		// Stop acting before the servers hear of it.
		m.st.Phase = phaseOf(reg.State)
		m.reconcileLocked(time.Now())
	}
	m.mu.Unlock()

	known, pos, err := m.try(ctx, w)
	m.settled(w, known, err)
	if err != nil {
		if !known && w.handsOver() {
			return fmt.Errorf("sdk: update %s/%s: outcome unknown: %w", m.service, m.id, err)
		}
		return fmt.Errorf("sdk: update %s/%s: %w", m.service, m.id, err)
	}
	return m.c.wrote(ctx, m.service, pos)
}

func phaseOf(s State) election.Phase {
	switch s {
	case StateStarting:
		return election.PhaseStarting
	case StateDraining:
		return election.PhaseDraining
	}
	return election.PhaseReady
}

// register sends the member's registration, as it is now, under the
// current session and returns the position (epoch and index) it was
// applied at, and the registration sent. It takes the lane of Update
// and Resign, and reads the registration and numbers the write in one
// step: a registration made again under a new session, or while an
// Update is in flight, carries the Update's change (a registration read
// before the Update and numbered after it would undo it). A member that
// is leaving registers nothing (ErrLeft): its Leave numbers the drain
// and the deregistration after everything it sent.
func (m *Member) register(ctx context.Context) (uint64, api.RegisterRequest, error) {
	if err := m.takeLane(ctx); err != nil {
		return 0, api.RegisterRequest{}, err
	}
	defer m.freeLane()
	m.mu.Lock()
	if m.leavingLocked() {
		m.mu.Unlock()
		return 0, api.RegisterRequest{}, ErrLeft
	}
	s, reg := m.sess, m.reg
	seq := m.nextSeqLocked()
	m.mu.Unlock()
	idx, err := m.registerUnder(ctx, s, reg, seq)
	return idx, reg, err
}

// registerUnder sends the registration under session s, numbered seq
// (X-Rafting-Sequence), or with a number of its own when seq is 0: every
// registration of the member's is numbered, so a copy of an earlier one
// that lands late (a 504, then a retry that applied) cannot undo a later
// one — a drain, an Update, the next registration.
func (m *Member) registerUnder(ctx context.Context, s *session, reg api.RegisterRequest, seq uint64) (uint64, error) {
	return m.registerNumbered(ctx, s, reg, &seq)
}

// registerNumbered is registerUnder, leaving in *seq the number the
// registration went under last (a member sharing its session may number
// it again: see renumber).
func (m *Member) registerNumbered(ctx context.Context, s *session, reg api.RegisterRequest, seq *uint64) (uint64, error) {
	m.mu.Lock()
	m.writes++
	if *seq == 0 {
		*seq = m.nextSeqLocked()
	}
	m.mu.Unlock()
	var at uint64
	defer func() {
		m.mu.Lock()
		m.writes--
		if at > 0 {
			m.regIndex, m.regSess = max(m.regIndex, at), s
		}
		m.mu.Unlock()
	}()
	sid := s.id
	reg.Session = sid
	resp, err := m.writeNumbered(ctx, api.ClientFrame{Type: api.FramePutInstance, Service: m.service, ID: m.id}, http.MethodPut, m.path, reg, sid, seq)
	if err != nil {
		return 0, err
	}
	var out api.RegisterResponse
	if err := jsonUnmarshal(resp.Body, &out); err != nil {
		return 0, err
	}
	at = position(resp.Epoch(), out.Index)
	return at, nil
}

// writeNumbered sends a write of the member's under session sid,
// numbered *seq, and numbers it again when a member sharing the session
// may (renumber).
func (m *Member) writeNumbered(ctx context.Context, f api.ClientFrame, method, path string, body any, sid string, seq *uint64) (*transport.Response, error) {
	for i := 0; ; i++ {
		h := http.Header{api.HeaderSession: {sid}}
		numbered(h, *seq)
		resp, err := m.c.write(ctx, f, method, path, body, h)
		if err == nil || i >= maxRenumber || ctx.Err() != nil || !m.renumber(seq, err) {
			return resp, err
		}
	}
}

// wrote makes the Client's cache of a service reflect a write applied at
// a position (epoch and index) before it serves that service again
// (read-your-writes): a watched service is refreshed now; for one not
// watched yet, its first answer must reach it.
func (c *Client) wrote(ctx context.Context, service string, pos uint64) error {
	c.mu.Lock()
	s := c.services[service]
	if s == nil {
		c.floors[service] = max(c.floors[service], pos)
	}
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	if !s.filledNow() {
		s.raiseFloor(pos)
		select {
		case <-s.filled:
		case <-ctx.Done():
			return fmt.Errorf("sdk: service %s: read-your-writes at index %d: %w", service, indexOf(pos), ctx.Err())
		}
	}
	return s.refresh(ctx, pos)
}

// Resign hands the member's mastership over to the next candidate: the
// member stops acting first (its Term's Ctx is cancelled, OnRoleChange
// reports Standby), then asks the servers under its own session, which
// grant the successor in the same entry. It returns ErrNotMaster when the
// member holds no mastership, and an error matching ErrConflict when there
// is no other ready candidate (the member then stays master).
//
// When the outcome is unknown as Resign returns (its ctx ended before an
// answer, or the servers answered 504), the resign may still be applied
// and grant the successor: the member stays Standby and sends it again
// until the servers answer. Only if they refuse it is the member master
// again, with the same token, if its promise holds.
func (m *Member) Resign(ctx context.Context) error {
	return m.resign(ctx, "")
}

// ResignTo hands the mastership over to the ready standby with instance
// ID to, as Resign does.
func (m *Member) ResignTo(ctx context.Context, to string) error {
	return m.resign(ctx, to)
}

func (m *Member) resign(ctx context.Context, to string) error {
	if err := m.takeLane(ctx); err != nil {
		if errors.Is(err, ErrLeft) {
			return ErrNotMaster
		}
		return fmt.Errorf("sdk: resign %s/%s: %w", m.service, m.id, err)
	}
	m.mu.Lock()
	if m.st.Rec == nil || m.farm {
		m.mu.Unlock()
		m.freeLane()
		return ErrNotMaster
	}
	w := &holderWrite{s: m.sess, seq: m.nextSeqLocked(), resign: &api.ResignRequest{Instance: m.id, FencingToken: m.st.Rec.Token, To: to}}
	m.st.Resigning = true
	m.reconcileLocked(time.Now())
	m.mu.Unlock()

	known, _, err := m.try(ctx, w)
	m.settled(w, known, err)
	switch {
	case err == nil:
		return nil
	case !known:
		return fmt.Errorf("sdk: resign %s/%s: outcome unknown: %w", m.service, m.id, err)
	}
	return fmt.Errorf("sdk: resign %s/%s: %w", m.service, m.id, err)
}

func (m *Member) sendResign(ctx context.Context, sid string, body api.ResignRequest, seq uint64) (uint64, error) {
	h := http.Header{api.HeaderSession: {sid}}
	numbered(h, seq)
	resp, err := m.c.write(ctx, api.ClientFrame{Type: api.FrameResign, Service: m.service}, http.MethodPost,
		m.c.tenantPath("/services/"+url.PathEscape(m.service)+"/master/resign"), body, h)
	if err != nil {
		return 0, err
	}
	var out api.WriteResponse
	if err := jsonUnmarshal(resp.Body, &out); err != nil {
		return 0, err
	}
	return position(resp.Epoch(), out.Index), nil
}

// Leave is the graceful stop. The member stops acting first (a master's
// Term ends, OnRoleChange reports Draining), registers as draining under
// its own session (a master hands over in that same entry), waits the
// drain delay so that callers' caches drop it, then deregisters and ends
// its session. Leave is bounded by its ctx and by the leave timeout
// (default 5 s), whichever ends first, even when no server answers, and
// always ends the member locally: when Leave returns its role is Left, its
// Term is over, Done is closed and its loops have stopped. Leave waits for
// the role callbacks to be told Left, but only within that bound: a
// callback still running then (one that blocks) is not waited for, and
// Leave returns an error saying so; the callback finishes on its own, and
// the goroutine that runs callbacks ends once it returns.
//
// A member made by Join closes its Client too. Leave is idempotent: a
// second call waits for the first. Do not call it from an OnRoleChange
// callback: it would wait for that callback until its ctx ends.
func (m *Member) Leave(ctx context.Context) error {
	err := m.leave(ctx)
	if errors.Is(err, ErrLeft) {
		return nil
	}
	return err
}

func (m *Member) leave(ctx context.Context) error {
	m.leaveOnce.Do(func() { m.leaveErr = m.doLeave(ctx) })
	return m.leaveErr
}

func (m *Member) doLeave(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.leaveTimeout)
	defer cancel()
	m.mu.Lock()
	lost := m.lost
	m.leaving = true
	registered := m.st.Phase != election.PhaseJoining && lost == nil
	reg, s, sid := m.reg, m.sess, m.sess.id
	m.st.Phase = election.PhaseDraining
	m.reconcileLocked(time.Now())
	// Numbered after every write of the member's so far: a copy of an
	// earlier one (a registration sent again, an Update) that lands late
	// cannot undo the drain or bring the instance back. The deregistration
	// is numbered after the drain's answer (the drain may be numbered
	// again meanwhile: see renumber).
	drain := m.nextSeqLocked()
	m.mu.Unlock()

	var errs []error
	if registered {
		reg.State = StateDraining
		if _, err := m.registerUnder(ctx, s, reg, drain); err != nil {
			errs = append(errs, fmt.Errorf("drain: %w", err))
		}
		delay := m.cfg.drainDelay
		if delay < 0 {
			delay = DefaultDrainDelay
		}
		if len(errs) == 0 {
			sleep(ctx, delay)
		}
		m.mu.Lock()
		dereg := m.nextSeqLocked()
		m.mu.Unlock()
		if err := m.deregister(ctx, sid, dereg); err != nil {
			errs = append(errs, fmt.Errorf("deregister: %w", err))
			if m.shared != nil {
				m.shared.depart(m, sid) // the keeper deregisters it while the session lives
			}
		}
	}
	switch {
	case m.shared != nil:
		// The session lives on with the Client's other members: the
		// member's keys go now, as its instance went, and the last
		// member's leave ends the session.
		if lost == nil {
			if err := m.deleteEphemeralAll(ctx); err != nil {
				errs = append(errs, fmt.Errorf("ephemeral keys: %w", err))
			}
		}
		if err := m.shared.leave(ctx, m); err != nil && !errors.Is(err, ErrLeft) {
			errs = append(errs, fmt.Errorf("end shared session: %w", err))
		}
	case lost == nil:
		if _, err := m.c.write(ctx, api.ClientFrame{Type: api.FrameCloseSession, ID: sid}, http.MethodDelete, m.c.tenantPath("/sessions/"+sid), nil, nil); err != nil {
			errs = append(errs, fmt.Errorf("end session: %w", err))
		}
	}
	if len(errs) > 0 && m.shared != nil {
		m.log.Warn("leave incomplete: the Client's session lives on; its keeper deregisters the instance", "err", errors.Join(errs...))
	} else if len(errs) > 0 {
		m.log.Warn("leave incomplete: the servers end the session after its TTL", "err", errors.Join(errs...))
	}
	if err := m.endWithin(ctx, nil); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("sdk: leave %s/%s: %w", m.service, m.id, errors.Join(errs...))
	}
	m.log.Debug("left")
	if lost != nil {
		return lost
	}
	return nil
}

// deregister deletes the member's instance under session sid, numbered
// seq. An instance already gone is no error for a member sharing its
// session: a copy of the delete renumbered after another member's write
// may find it deleted by its first copy.
func (m *Member) deregister(ctx context.Context, sid string, seq uint64) error {
	_, err := m.writeNumbered(ctx, api.ClientFrame{Type: api.FrameDeleteInstance, Service: m.service, ID: m.id}, http.MethodDelete, m.path, nil, sid, &seq)
	if err != nil && m.shared != nil && errors.Is(err, api.ErrNotFound) && !errors.Is(err, api.ErrSessionExpired) {
		return nil
	}
	return err
}

// finish ends the member locally without waiting: role Left (reported
// to callbacks), loops told to stop, Done closed. cause is nil for a
// Leave. It may be called from the member's own loops.
func (m *Member) finish(cause error) {
	m.mu.Lock()
	if cause != nil && m.lost == nil {
		m.lost = cause
		m.log.Error("session lost: the member has left", "err", cause)
		if m.keeps != nil && cause != errCrashed {
			defer m.keeps.lostFor(cause) // after m.mu
		}
	}
	m.dropUnsettledLocked()
	m.st.Phase = election.PhaseLeft
	m.reconcileLocked(time.Now())
	m.mu.Unlock()
	m.notes.Close() // after the Left change above
	if m.cancel != nil {
		m.cancel()
	}
	m.doneOnce.Do(func() { close(m.done) })
}

// end ends the member and releases its Client (closing it if the member
// owns it), waiting for its callbacks at most the leave timeout.
func (m *Member) end(cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.leaveTimeout)
	defer cancel()
	m.endWithin(ctx, cause)
}

// endWithin is end, waiting for the callbacks until ctx ends.
func (m *Member) endWithin(ctx context.Context, cause error) error {
	err := m.stop(ctx, cause)
	m.release()
	return err
}

// stop ends the member locally and waits for its loops, and for its
// callbacks until ctx ends: its Term is over when it returns and, unless
// it returns an error, every callback has been told Left. A callback
// still running when ctx ends (one that blocks) is not waited for: it
// finishes on its own, and the notifier goroutine ends once it returns.
func (m *Member) stop(ctx context.Context, cause error) error {
	m.finish(cause)
	m.wg.Wait()
	select {
	case <-m.notes.Quiet():
		return nil
	default:
	}
	select {
	case <-m.notes.Quiet():
		return nil
	case <-ctx.Done():
		m.log.Warn("a role callback is still running: not waiting for it")
		return fmt.Errorf("a role callback is still running: %w", ctx.Err())
	}
}

// release lets the member's Client go (closing it if the member owns it).
func (m *Member) release() {
	if m.unlisten != nil {
		m.unlisten()
	}
	if m.shared != nil { // a no-op after Leave's
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.leaveTimeout)
		m.shared.leave(ctx, m)
		cancel()
	}
	m.c.mu.Lock()
	delete(m.c.members, m)
	m.c.mu.Unlock()
	if m.owns {
		m.c.Close()
	}
}

// abandon ends a member whose Join failed; its session, if opened, is
// ended so that it does not linger for a TTL. The member may have been
// granted (and reported Master) before Join failed, and ending the
// session grants a successor at once: so, as Leave does, it stops acting
// first — its Term over and Left delivered to every callback — and only
// then ends the session.
//
// Callbacks are waited for within Join's ctx (and the leave timeout) only:
// a Join whose ctx ended returns at once. Acting as master is bounded by
// the Term, whose Ctx finish has ended before the session is; a callback
// still running sees Left later.
func (m *Member) abandon(joinCtx context.Context) {
	m.mu.Lock()
	sid, opened := m.sess.id, m.sess.isOpen()
	m.leaving = true
	var seq uint64
	if m.shared != nil && opened {
		seq = m.nextSeqLocked() // after the registration's
	}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(joinCtx, m.cfg.leaveTimeout)
	defer cancel()
	m.stop(ctx, nil)
	if m.shared != nil {
		// The session lives on with the Client's other members: take back
		// a registration that may have landed, and leave the session.
		if opened {
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if err := m.deregister(dctx, sid, seq); err != nil {
				m.shared.depart(m, sid)
			}
			cancel()
		}
		m.release() // and the shared session
		return
	}
	if opened {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		m.c.do(ctx, http.MethodDelete, m.c.tenantPath("/sessions/"+sid), nil, nil, false)
		cancel()
	}
	m.release()
}
