package sdk_test

// Red-team tests that FAIL on the current code: each is a confirmed break.
// Not committed (see the red-team report).

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// stallHandler is a slog.Handler that blocks the goroutine logging a
// record whose message contains trap, while armed, until released — a log
// sink that stalls (a full pipe to a stuck log shipper).
type stallHandler struct{ s *stallState }

type stallState struct {
	trap    atomic.Pointer[string]
	hit     chan struct{}
	hitOnce sync.Once
	release chan struct{}
	relOnce sync.Once
}

func newStall() *stallHandler {
	return &stallHandler{s: &stallState{hit: make(chan struct{}), release: make(chan struct{})}}
}

func (h *stallHandler) arm(trap string) { h.s.trap.Store(&trap) }
func (h *stallHandler) free()           { h.s.relOnce.Do(func() { close(h.s.release) }) }

func (h *stallHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *stallHandler) Handle(_ context.Context, r slog.Record) error {
	if p := h.s.trap.Load(); p != nil && strings.Contains(r.Message, *p) {
		h.s.hitOnce.Do(func() { close(h.s.hit) })
		<-h.s.release
	}
	return nil
}
func (h *stallHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *stallHandler) WithGroup(string) slog.Handler      { return h }

// TestRedTeamStalledLoggerKeepsTermLive: the SDK calls the application's
// slog handler while it holds the member's lock. When an operator drains
// the master, the keepalive answer (or stream event) that shows it is
// logged ("the servers changed this instance's state") before the role is
// reconciled, with the Term still live. If that log call stalls, nothing
// can end the Term: the role loop and the keepalives wait for the lock.
// The master's promise lapses, the servers grant the standby, and the old
// master's Term.Ctx Done channel (which a job waits on) stays open, and a
// context derived from it reads live, while the new master's Term is live.
func TestRedTeamStalledLoggerKeepsTermLive(t *testing.T) {
	c := sdktest.Start(t)
	tn := &tenant{c: c, name: c.Tenant, tok: c.Token}
	for i := range 8 {
		svc := fmt.Sprintf("stall%d", i)
		h := newStall()
		a := c.Join(t, msInstance(svc, "a", 0), sdk.WithLogger(slog.New(h)))
		b := c.Join(t, msInstance(svc, "b", 0))
		term, ok := a.Mastership()
		if !ok {
			t.Fatalf("a is %v, want master", a.Role())
		}
		done := term.Ctx.Done() // as a job waiting on its term holds it
		derived, cancel := context.WithCancel(term.Ctx)
		h.arm("the servers changed this instance's state")
		r := tn.rest(t, http.MethodPut, "/services/"+svc+"/instances/a",
			api.RegisterRequest{Address: "a:1", Mode: api.ModeMasterStandby, State: api.StateDraining})
		if r.Status >= 300 {
			t.Fatalf("operator drain = %d %s", r.Status, r.Body)
		}
		select {
		case <-h.s.hit:
		case <-time.After(3 * time.Second):
			h.free()
			cancel()
			t.Fatalf("run %d: the logger was never called with the state change", i)
		}
		var bt sdk.Term
		deadline := time.Now().Add(6 * time.Second)
		for time.Now().Before(deadline) {
			if bt, ok = b.Mastership(); ok {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if !ok {
			h.free()
			cancel()
			t.Fatalf("run %d: b never became master", i)
		}
		aLive := false
		select {
		case <-done:
		default:
			aLive = true
		}
		derivedErr := derived.Err()
		bLive := bt.Ctx.Err() == nil
		if aLive && bLive {
			h.free()
			cancel()
			t.Fatalf("run %d: b is master (token %d, Term.Ctx live) while a's Term.Ctx (token %d) has not ended: "+
				"its Done channel is open and a context derived from it reads Err()=%v; a's lock is held by its stalled logger",
				i, bt.Token, term.Token, derivedErr)
		}
		t.Logf("run %d: no overlap (a's Done closed=%v): the releasing record came first", i, !aLive)
		h.free()
		cancel()
	}
}

// TestRedTeamFailedJoinBlockedCallbackOutlivesCtx: a WithRoleChange
// callback is called while Join runs. If it blocks (here: it waits for
// something the caller does once Join returns, a natural mistake), and Join
// fails (its ctx ends), Join does not return when its ctx ends: it waits
// the leave timeout (default 5 s) for the callback, then gives up.
func TestRedTeamFailedJoinBlockedCallbackOutlivesCtx(t *testing.T) {
	c := sdktest.Start(t)
	cl := c.Connect(t)
	release := make(chan struct{})
	defer close(release)
	ctx, cancelJoin := context.WithCancel(context.Background())
	defer cancelJoin()
	var once sync.Once
	fn := func(sdk.RoleChange) {
		once.Do(func() {
			cancelJoin() // the caller gives up on Join (SIGTERM, a deadline)
			<-release    // and the callback waits for the caller
		})
	}
	start := time.Now()
	type res struct {
		m   *sdk.Member
		err error
	}
	out := make(chan res, 1)
	go func() {
		m, err := cl.Join(ctx, msInstance("fjoin", "a", 0), sdk.WithRoleChange(fn))
		out <- res{m, err}
	}()
	select {
	case r := <-out:
		d := time.Since(start)
		t.Logf("Join() = %v after %v", r.err, d)
		if r.err == nil {
			r.m.Leave(context.Background())
			t.Skip("Join succeeded before noticing its ctx")
		}
		if d > 2*time.Second {
			t.Fatalf("Join returned %v after its ctx had ended, bounded only by the leave timeout, not by its ctx", d)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Join still runs 20s after its ctx ended")
	}
}
