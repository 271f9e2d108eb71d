package sdk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rafting/rafting/sdk/internal/election"
)

// reconcileLocked brings the member's reported role up to date with its
// state at now: it starts or ends the Term, queues OnRoleChange
// notifications, and asks the worker to resign a revoked mastership. Every
// change of the state calls it, and so does every read of the role, so a
// lapsed promise demotes at once even before the role loop's timer fires.
func (m *Member) reconcileLocked(now time.Time) {
	role, token := m.st.Role(now)
	if role == Master {
		m.st.Mastered = token
		if m.term == nil || m.term.token != token {
			m.endTermLocked()
			ctx, cancel := context.WithCancel(context.Background())
			m.term = &term{token: token, ctx: ctx, cancel: cancel}
			m.term.view = &termCtx{Context: ctx, m: m, token: token}
		}
	} else {
		m.endTermLocked()
	}
	if rec := m.st.Rec; rec != nil && rec.Releasing && rec.Token != m.resigned && !m.leaving && m.st.Phase != election.PhaseLeft {
		// An operator revoked our mastership: we stopped acting above;
		// now hand over at once under our own session.
		m.resigned = rec.Token
		m.pendingResign = rec.Token
		select {
		case m.work <- struct{}{}:
		default:
		}
	}
	if role != m.role || token != m.token {
		m.log.Info("role", "role", role.String(), "previous", m.role.String(), "token", token)
		if role >= Starting && role <= Left && m.keeps == nil {
			m.c.roles[role].Add(1)
		}
		m.notes.Publish(m.changeLocked(role, m.role, token, now))
		m.role, m.token = role, token
		close(m.changed)
		m.changed = make(chan struct{})
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
			wait = max(min(m.st.Promise.Remaining(time.Now())+time.Millisecond, wallCheck), time.Nanosecond)
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
			if role, token := m.st.Role(now); role != m.role || token != m.token {
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
	if role, token := m.st.Role(now); role != Master || token != c.token {
		m.reconcileLocked(now)
	}
}

func (c *termCtx) String() string { return "sdk.Term.Ctx" }

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
	m.mu.Lock()
	m.reconcileLocked(time.Now())
	c := m.changeLocked(m.role, m.role, m.token, time.Now())
	stop, ok := m.notes.Subscribe(fn, c)
	m.mu.Unlock()
	if !ok { // the member has ended: its role is final
		fn(c)
	}
	return stop
}

// RunAsMaster runs fn whenever the member is master, and only then: it
// waits until the member is Master, calls fn with the Term, and when fn
// returns waits for the member's next term to call it again. It is the
// master's job loop, with nothing to poll:
//
//	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
//	defer stop()
//	m, err := sdk.Join(ctx, inst)
//	...
//	defer m.Leave(context.Background()) // hands the mastership over
//	err = m.RunAsMaster(ctx, func(t sdk.Term) error {
//		return work(t.Ctx, t.Token) // until t.Ctx ends
//	})
//
// The Term's Ctx ends when the term does (the promise ran out, a
// demotion, Resign, Leave) or when ctx ends, whichever is first, and
// once fn has returned; fn must stop acting when it ends, and return.
// What fn returns decides what follows:
//
//   - nil, or the Ctx's own error once the Ctx has ended (fn stopped with
//     its term): the job is done for this term. fn is called again in the
//     member's next term, never twice in one: a fn that returns at once
//     leaves the member master, idle, until its term ends.
//   - any other error: RunAsMaster returns it, wrapped.
//
// A term ends at a suspension too (the promise ran out while the session
// lives), so fn stops then, and runs again when the member resumes as
// Master, with the same token.
//
// RunAsMaster returns ctx.Err() once ctx ends, and the member's Err
// (ErrLeft, or an error matching ErrSessionLost) once it has left or lost
// its session; an error matching ErrNotMaster at once for a farm member,
// which never masters. It never resigns nor leaves: when it returns, the
// member may still be master with nothing running its job, so hand over
// then, with Leave (or Resign to stay a candidate) — the deferred Leave
// above does. Each call runs its own fn; a member may run several.
func (m *Member) RunAsMaster(ctx context.Context, fn func(Term) error) error {
	if m.farm {
		return fmt.Errorf("sdk: run as master %s/%s: a farm member never masters: %w", m.service, m.id, ErrNotMaster)
	}
	var last *term
	for {
		t, err := m.awaitTerm(ctx, last)
		if err != nil {
			return err
		}
		last = t
		job, cancel := t.job(ctx)
		err = fn(job)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
		case t.view.Err() != nil && errors.Is(err, context.Canceled):
			// fn stopped because its term ended.
		default:
			return fmt.Errorf("sdk: run as master %s/%s: term %d: %w", m.service, m.id, t.token, err)
		}
	}
}

// awaitTerm waits until the member is Master in a term other than last,
// and returns that term; or until ctx ends (its error), or the member
// ended (its Err). It looks at the role whenever it changes.
func (m *Member) awaitTerm(ctx context.Context, last *term) (*term, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m.mu.Lock()
		m.reconcileLocked(time.Now())
		t, changed := m.term, m.changed
		if m.role != Master {
			t = nil
		}
		m.mu.Unlock()
		if t != nil && t != last {
			return t, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.done:
			return nil, m.Err()
		case <-changed:
		}
	}
}

// job is the Term RunAsMaster gives its fn: t's, with a Ctx that also
// ends with ctx, and whose Err and Done look at the promise as t's do.
// cancel ends it and releases its resources.
func (t *term) job(ctx context.Context) (Term, context.CancelFunc) {
	jctx, cancel := context.WithCancel(t.ctx)
	stop := context.AfterFunc(ctx, cancel)
	view := &termCtx{Context: jctx, m: t.view.m, token: t.token}
	return Term{Token: t.token, Ctx: view}, func() { stop(); cancel() }
}
