package sdk

import (
	"context"
	"sync/atomic"
	"time"
)

// reconcileLocked brings the member's reported role up to date with its
// state at now: it starts or ends the Term, queues OnRoleChange
// notifications, and asks the worker to resign a revoked mastership. Every
// change of the state calls it, and so does every read of the role, so a
// lapsed promise demotes at once even before the role loop's timer fires.
func (m *Member) reconcileLocked(now time.Time) {
	role, token := m.st.role(now)
	if role == Master {
		m.st.mastered = token
		if m.term == nil || m.term.token != token {
			m.endTermLocked()
			ctx, cancel := context.WithCancel(context.Background())
			m.term = &term{token: token, ctx: ctx, cancel: cancel}
			m.term.view = &termCtx{Context: ctx, m: m, token: token}
		}
	} else {
		m.endTermLocked()
	}
	if rec := m.st.rec; rec != nil && rec.releasing && rec.token != m.resigned && !m.leaving && m.st.phase != phaseLeft {
		// An operator revoked our mastership: we stopped acting above;
		// now hand over at once under our own session.
		m.resigned = rec.token
		m.pendingResign = rec.token
		select {
		case m.work <- struct{}{}:
		default:
		}
	}
	if role != m.role || token != m.token {
		m.log.Info("role", "role", role.String(), "previous", m.role.String(), "token", token)
		m.queueLocked(notice{change: m.changeLocked(role, m.role, token, now), to: m.subs})
		m.role, m.token = role, token
	}
	select {
	case m.timer <- struct{}{}:
	default:
	}
}

// changeLocked is the RoleChange to role, with the Term when it is
// Master.
func (m *Member) changeLocked(role, previous Role, token uint64, at time.Time) RoleChange {
	c := RoleChange{Role: role, Previous: previous, Token: token, Member: m, At: at}
	if role == Master && m.term != nil {
		c.Term = Term{Token: m.term.token, Ctx: m.term.view}
	}
	return c
}

func (m *Member) endTermLocked() {
	if m.term != nil {
		m.term.cancel()
		m.term = nil
	}
}

// wallCheck is how often a master's role loop looks at the clocks besides
// the timer set to its promise's lapse. Timers follow the monotonic clock,
// which stands still while the host is suspended; the promise also counts
// the wall clock, so after a suspension it may have lapsed long before the
// timer fires. Each look costs about a microsecond, and only a master pays.
const wallCheck = 10 * time.Millisecond

// roleLoop demotes a master when its promise lapses, by a timer set to the
// lapse, or within wallCheck when the wall clock says it lapsed sooner; the
// role was already right for every reader before it fires.
func (m *Member) roleLoop(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		m.mu.Lock()
		var wait time.Duration
		if m.role == Master {
			// Never 0 while Master: a promise that lapsed while this loop
			// was kept from running (a pause, a busy host) is looked at
			// at once, not left until something else wakes the loop.
			wait = max(min(m.st.promise.remaining(time.Now())+time.Millisecond, wallCheck), time.Nanosecond)
		}
		m.mu.Unlock()
		if wait > 0 {
			t.Reset(wait)
		} else {
			t.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-m.timer:
		case <-t.C:
			m.mu.Lock()
			now := time.Now()
			if role, token := m.st.role(now); role != m.role || token != m.token {
				m.reconcileLocked(now)
			}
			m.mu.Unlock()
		}
	}
}

// termCtx is a Term's Ctx: the term's context, whose Err and Done look at
// the promise first, so that a reader never finds it live once IsMaster
// would say false (after a suspension, before the role loop's next look).
// A goroutine already waiting on Done is released by the role loop.
type termCtx struct {
	context.Context // cancelled when the term ends
	m               *Member
	token           uint64
}

func (c *termCtx) Done() <-chan struct{} {
	c.check()
	return c.Context.Done()
}

func (c *termCtx) Err() error {
	c.check()
	return c.Context.Err()
}

// check ends the term if the member is no longer master with its token.
func (c *termCtx) check() {
	if c.Context.Err() != nil {
		return
	}
	m := c.m
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if role, token := m.st.role(now); role != Master || token != c.token {
		m.reconcileLocked(now)
	}
}

func (c *termCtx) String() string { return "sdk.Term.Ctx" }

// roleSub is one OnRoleChange callback.
type roleSub struct {
	fn  func(RoleChange)
	off atomic.Bool
}

// notice is a RoleChange for the callbacks registered when it happened.
type notice struct {
	change RoleChange
	to     []*roleSub
}

func (m *Member) queueLocked(n notice) {
	if len(n.to) == 0 {
		return
	}
	m.queue = append(m.queue, n)
	m.kickNotifier()
}

func (m *Member) kickNotifier() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// notifier calls the callbacks, one change at a time, in order, outside
// every lock; it ends once the member ended and the queue is empty, and
// closes quiet as it does.
func (m *Member) notifier() {
	defer close(m.quiet)
	for {
		m.mu.Lock()
		q, closed := m.queue, m.closed
		m.queue = nil
		m.mu.Unlock()
		for _, n := range q {
			for _, s := range n.to {
				if !s.off.Load() {
					s.fn(n.change)
				}
			}
		}
		if closed && len(q) == 0 {
			return
		}
		if len(q) == 0 {
			<-m.wake
		}
	}
}

// OnRoleChange calls fn with the member's current role at once (Role and
// Previous equal), then with every change, in order, until the returned
// func is called. Each call carries the member, and a Master change its
// Term. Callbacks run one at a time on a goroutine of the member's,
// behind the role: a demotion is reported the moment the SDK sees it, and
// the Term's Ctx was cancelled before, so a callback acting on a Master
// change must do so under its Term. Keep callbacks short (to run a job
// while master, use RunAsMaster), and do not call Leave or Close from one
// (start a goroutine). A callback that blocks holds back the later ones,
// but never Leave or Close beyond their bound.
func (m *Member) OnRoleChange(fn func(RoleChange)) (stop func()) {
	sub := &roleSub{fn: fn}
	m.mu.Lock()
	m.reconcileLocked(time.Now())
	if m.closed {
		c := m.changeLocked(m.role, m.role, m.token, time.Now())
		m.mu.Unlock()
		fn(c)
		return func() {}
	}
	m.subs = append(m.subs[:len(m.subs):len(m.subs)], sub)
	m.queueLocked(notice{change: m.changeLocked(m.role, m.role, m.token, time.Now()), to: []*roleSub{sub}})
	m.mu.Unlock()
	return func() {
		sub.off.Store(true)
		m.mu.Lock()
		defer m.mu.Unlock()
		for i, s := range m.subs {
			if s == sub {
				m.subs = append(m.subs[:i:i], m.subs[i+1:]...)
				break
			}
		}
	}
}
