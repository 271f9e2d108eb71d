package sdk_test

import (
	"context"
	"errors"
	"fmt"
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

// holdProxy stands between members and one server. It forwards every
// request, except that it holds the ones hold matches until the test opens
// its gate. A held request whose client gives up first (its ctx ended) is
// kept, unsent: the test delivers it later (deliver), as a Raft leader
// commits a write after answering 504 or after its client went away. So a
// write's outcome is unknown to the member for as long as the test wants,
// and what happens to the write meanwhile is the test's choice.
type holdProxy struct {
	*frontProxy

	mu   sync.Mutex
	hold func(*http.Request) bool
	gate chan struct{} // closed: held requests go through
	seen func(*http.Request)
}

func newHoldProxy(t *testing.T, server string) *holdProxy {
	p := &holdProxy{gate: make(chan struct{})}
	p.frontProxy = newFrontProxy(t, server, func(w http.ResponseWriter, r *http.Request) bool {
		p.mu.Lock()
		held, gate, seen := p.hold != nil && p.hold(r), p.gate, p.seen
		p.mu.Unlock()
		if seen != nil {
			seen(r)
		}
		if !held {
			return false
		}
		h := hold(r)
		select {
		case <-gate:
			return false
		case <-r.Context().Done():
			p.keep(h) // abandoned by its client
			return true
		}
	})
	t.Cleanup(p.open) // before the server closes: let held requests go
	return p
}

// holding sets which requests are held from now on, with a closed gate,
// for the rest of the test t; nothing abandoned before is kept.
func (p *holdProxy) holding(t *testing.T, match func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hold, p.gate = match, make(chan struct{})
	p.takeKept()
	t.Cleanup(func() {
		p.open()
		p.mu.Lock()
		p.hold = nil
		p.mu.Unlock()
	})
}

// open lets every held request through, and those held later.
func (p *holdProxy) open() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

// TestUnknownOutcome: a master's own write that hands its mastership over
// (a resign, an Update to draining or starting) and whose outcome is
// unknown (its ctx ended before any answer) keeps the member from acting
// as master until the servers have answered: the write may yet apply and
// grant the successor in that entry. When it did apply, the member never
// acts again with that token; when the servers refused it, the member is
// master again with the same token.
func TestUnknownOutcome(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	p := newHoldProxy(t, c.Servers.Addrs()[0])
	through := func(t *testing.T, inst sdk.Instance, opts ...sdk.Option) *sdk.Member {
		t.Helper()
		opts = append([]sdk.Option{sdk.WithServers(p.addr), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token),
			sdk.WithDrainDelay(0)}, opts...)
		m, err := sdk.Join(ctxT(t, 30*time.Second), inst, opts...)
		if err != nil {
			t.Fatalf("join %s: %v", inst.ID, err)
		}
		t.Cleanup(func() { m.Leave(context.Background()) })
		return m
	}
	resigns := func(r *http.Request) bool {
		return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/master/resign")
	}
	registrations := func(svc, id string) func(*http.Request) bool {
		return func(r *http.Request) bool {
			return r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/services/"+svc+"/instances/"+id)
		}
	}
	// unknown runs write with a ctx that ends while the proxy holds it,
	// and checks that the member is not master once it returns.
	unknown := func(t *testing.T, m *sdk.Member, write func(context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		err := write(ctx)
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("write = %v, want the ctx's end", err)
		}
		if m.IsMaster() {
			t.Fatalf("the member acts as master while its write's outcome is unknown: %s", sdk.Debug(m))
		}
		if _, ok := m.Mastership(); ok || fencingToken(m) != 0 {
			t.Fatal("Mastership() while the write's outcome is unknown")
		}
		eventually(t, 5*time.Second, "the proxy to see the write abandoned", func() bool { return p.keptCount() == 1 })
	}

	t.Run("ResignApplied", func(t *testing.T) {
		var ra roles
		a := through(t, msInstance("ra", "a", 0), sdk.WithRoleChange(ra.record))
		b := c.Join(t, msInstance("ra", "b", 0))
		watchOneMaster(t, a, b)
		term, ok := a.Mastership()
		if !ok {
			t.Fatalf("a is %v, want master", a.Role())
		}
		p.holding(t, resigns)
		unknown(t, a, a.Resign)
		if term.Ctx.Err() == nil {
			t.Fatal("the term's Ctx outlived a resign whose outcome is unknown")
		}
		// The servers apply the first copy late: b is granted in its entry.
		if got := p.deliver(t); len(got) != 1 || got[0] != http.StatusOK {
			t.Fatalf("the late resign answered %v, want [200]", got)
		}
		eventually(t, 5*time.Second, "b to take over", b.IsMaster)
		p.open() // the member's re-sent resign: 409, the token moved on
		throughout(t, 300*time.Millisecond, func() error {
			if a.IsMaster() {
				return fmt.Errorf("a is master again after its resign applied: %s", sdk.Debug(a))
			}
			return nil
		})
		if fencingToken(b) <= term.Token {
			t.Fatalf("b's token %d <= a's %d", fencingToken(b), term.Token)
		}
		if err := a.Resign(ctxT(t, 5*time.Second)); !errors.Is(err, sdk.ErrNotMaster) {
			t.Fatalf("a.Resign() after its mastership moved on = %v, want ErrNotMaster", err)
		}
	})

	t.Run("ResignRefused", func(t *testing.T) {
		a := through(t, msInstance("rr", "a", 0))
		term, ok := a.Mastership()
		if !ok {
			t.Fatalf("a is %v, want master", a.Role())
		}
		p.holding(t, resigns)
		unknown(t, a, a.Resign)
		// The late copy is refused (no other candidate), and so is the
		// member's own re-send: a is master again, with the same token.
		if got := p.deliver(t); len(got) != 1 || got[0] != http.StatusConflict {
			t.Fatalf("the late resign answered %v, want [409]", got)
		}
		if a.IsMaster() {
			t.Fatal("master again before the member itself learnt the outcome")
		}
		p.open()
		eventually(t, 5*time.Second, "a master again once its resign was refused", a.IsMaster)
		if got := fencingToken(a); got != term.Token {
			t.Fatalf("token %d after a refused resign, want %d", got, term.Token)
		}
	})

	t.Run("ResignRefusedThenLateCopy", func(t *testing.T) {
		// The re-sent resign is refused (no ready standby) and the member
		// is master again; then a standby becomes ready, and the first
		// copy arrives: it must get the refusal too, not hand over.
		a := through(t, msInstance("rl", "a", 0))
		b := c.Join(t, msInstance("rl", "b", 0), sdk.WithTwoStepStartup())
		watchOneMaster(t, a, b)
		term, ok := a.Mastership()
		if !ok {
			t.Fatalf("a is %v, want master", a.Role())
		}
		p.holding(t, resigns)
		unknown(t, a, a.Resign)
		p.open()
		eventually(t, 5*time.Second, "a master again once its re-sent resign was refused", a.IsMaster)
		if err := b.Ready(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		if got := p.deliver(t); len(got) != 1 || got[0] != http.StatusConflict {
			t.Fatalf("the late first copy answered %v, want [409], the re-sent copy's answer", got)
		}
		throughout(t, 300*time.Millisecond, func() error {
			if b.IsMaster() || fencingToken(a) != term.Token {
				return fmt.Errorf("a late copy of a refused resign handed over: a %v (token %d, was %d), b %v", a.Role(), fencingToken(a), term.Token, b.Role())
			}
			return nil
		})
	})

	for _, state := range []api.State{api.StateDraining, api.StateStarting} {
		t.Run("Update"+strings.ToUpper(string(state[:1]))+string(state[1:]), func(t *testing.T) {
			svc := "u" + string(state)
			a := through(t, msInstance(svc, "a", 0))
			b := c.Join(t, msInstance(svc, "b", 0))
			watchOneMaster(t, a, b)
			if !a.IsMaster() {
				t.Fatalf("a is %v, want master", a.Role())
			}
			p.holding(t, registrations(svc, "a"))
			unknown(t, a, func(ctx context.Context) error { return a.Update(ctx, sdk.SetState(state)) })
			if got := p.deliver(t); len(got) != 1 || got[0] != http.StatusOK {
				t.Fatalf("the late registration answered %v, want [200]", got)
			}
			eventually(t, 5*time.Second, "b to take over", b.IsMaster)
			p.open()
			want := sdk.Draining
			if state == api.StateStarting {
				want = sdk.Starting
			}
			eventually(t, 5*time.Second, "a to keep the state that applied", func() bool { return a.Role() == want })
			throughout(t, 300*time.Millisecond, func() error {
				if a.Role() != want {
					return fmt.Errorf("a is %v after its %s registration applied: %s", a.Role(), state, sdk.Debug(a))
				}
				return nil
			})
			// The member's registration is the one that applied: a later
			// Update (made once the outcome is known) keeps its state.
			if err := a.Update(ctxT(t, 10*time.Second), sdk.SetWeight(5)); err != nil {
				t.Fatal(err)
			}
			if a.Role() != want || !b.IsMaster() {
				t.Fatalf("after an Update of the weight: a %v, b %v; want %v and master", a.Role(), b.Role(), want)
			}
		})
	}
}

// TestLeaveRacesRegisterAgain: a member registering its instance again
// (someone deregistered it) when Leave begins: the registration, still on
// its way, lands during the drain delay — it must not make the leaving
// member ready again (it is numbered below the drain and refused).
func TestLeaveRacesRegisterAgain(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	p := newHoldProxy(t, c.Servers.Addrs()[0])
	m, err := sdk.Join(ctxT(t, 30*time.Second), sdk.Instance{Service: "lr", ID: "a", Address: "a:1"},
		sdk.WithServers(p.addr), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token),
		sdk.WithTTL(3*time.Second), sdk.WithDrainDelay(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/tenants/" + c.Tenant + "/services/lr/instances/a"
	var puts atomic.Int32
	p.holding(t, func(r *http.Request) bool {
		return r.Method == http.MethodPut && r.URL.Path == path && puts.Add(1) == 1 // the registration sent again
	})
	if r := c.Servers.Do(1, c.Token, http.MethodDelete, path, nil); r.Status != http.StatusNoContent {
		t.Fatalf("an operator's deregistration = %d %s", r.Status, r.Body)
	}
	eventually(t, 10*time.Second, "the member to register again", func() bool { return puts.Load() == 1 })
	left := make(chan error, 1)
	go func() { left <- m.Leave(context.Background()) }()
	state := func() api.State {
		var s api.ServiceResponse
		c.Servers.Do(1, c.Token, http.MethodGet, "/v1/tenants/"+c.Tenant+"/services/lr", nil).JSON(t, &s)
		for _, in := range s.Instances {
			if in.ID == "a" {
				return in.State
			}
		}
		return ""
	}
	eventually(t, 10*time.Second, "the drain", func() bool { return state() == api.StateDraining })
	p.open() // the registration sent before Leave reaches the servers now
	throughout(t, time.Second, func() error {
		if st := state(); st != api.StateDraining {
			return fmt.Errorf("during the drain delay the instance is %q, want draining: a late registration undid the drain", st)
		}
		return nil
	})
	if err := <-left; err != nil {
		t.Fatalf("Leave() = %v", err)
	}
}

// TestJoinFailureDemotesFirst: a Join that fails after the member was
// granted (and reported Master) ends the member locally — Term over, Left
// reported — before it ends the session, whose end grants a successor at
// once.
func TestJoinFailureDemotesFirst(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	p := newHoldProxy(t, c.Servers.Addrs()[0])
	// The Client's cache never fills: Join waits for its registration to
	// show there until its ctx ends.
	p.holding(t, func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/services/jf")
	})
	var r roles
	var mu sync.Mutex
	var atEnd []sdk.RoleChange // what the callbacks had been told when the session's end was sent
	ended := false
	p.mu.Lock()
	p.seen = func(req *http.Request) {
		_, rest, _ := strings.Cut(req.URL.Path, "/sessions/")
		if req.Method == http.MethodDelete && rest != "" && !strings.Contains(rest, "/") {
			mu.Lock()
			if !ended {
				ended, atEnd = true, r.all()
			}
			mu.Unlock()
		}
	}
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := sdk.Join(ctx, msInstance("jf", "a", 0),
		sdk.WithServers(p.addr), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token),
		sdk.WithRoleChange(func(ch sdk.RoleChange) {
			r.record(ch)
			if ch.Role == sdk.Master {
				cancel() // Join fails now, after the grant
			}
		}))
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Join() = %v, want the ctx's end", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !ended {
		t.Fatal("the failed Join did not end its session")
	}
	master := -1
	for i, ch := range atEnd {
		if ch.Role == sdk.Master {
			master = i
		}
	}
	if master < 0 || master == len(atEnd)-1 {
		t.Fatalf("when the session's end was sent the member had reported%v; want master, then its end", roleList(atEnd))
	}
	if last := atEnd[len(atEnd)-1]; last.Role != sdk.Left {
		t.Fatalf("last role reported before the session's end: %v, want left", last.Role)
	}
}

func roleList(seq []sdk.RoleChange) string {
	s := ""
	for _, c := range seq {
		s += " " + c.Role.String()
	}
	return s
}
