package sdk_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// lateProxy forwards every request to one server, except the first one
// that match accepts: that one is answered 504 timeout, as a server answers
// a write whose proposal timed out while its entry sits in the Raft log,
// and kept; deliver sends it to the server later — the entry committing
// after all, once the client has moved on.
type lateProxy struct {
	*frontProxy

	mu    sync.Mutex
	match func(*http.Request) bool
}

func newLateProxy(t *testing.T, server string) *lateProxy {
	p := &lateProxy{}
	p.frontProxy = newFrontProxy(t, server, func(w http.ResponseWriter, r *http.Request) bool {
		p.mu.Lock()
		hit := p.match != nil && p.match(r)
		if hit {
			p.match = nil // only the first
			p.keep(hold(r))
		}
		p.mu.Unlock()
		if hit {
			answer(w, api.Errorf(api.CodeTimeout, "proposal timed out: its outcome is unknown"))
		}
		return hit
	})
	return p
}

func (p *lateProxy) arm(match func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.match = match
}

func instanceState(t *testing.T, c *sdktest.Cluster, svc, id string) api.State {
	var s api.ServiceResponse
	c.Servers.Do(1, c.Token, http.MethodGet, "/v1/tenants/"+c.Tenant+"/services/"+svc+"?consistent=true", nil).JSON(t, &s)
	for _, in := range s.Instances {
		if in.ID == id {
			return in.State
		}
	}
	return ""
}

// TestJoinRegistrationCannotUndoDrain: the registration Join sends (and
// the one a member sends under a new session after losing its session) is
// not numbered (X-Rafting-Sequence). When its first copy is answered 504
// and commits after all once the client's retry applied, it lands after
// whatever the member wrote since, and undoes it:
//
//   - Leave: the drain (numbered, acknowledged) is undone during the drain
//     delay; callers' balancers see the leaving instance ready again. This
//     is TestLeaveRacesRegisterAgain's failure, through Join's registration
//     instead of a registration sent again.
//   - Update(SetState(draining)): acknowledged, then undone; the member
//     itself adopts "ready" from its next keepalive answer.
func TestJoinRegistrationCannotUndoDrain(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	p := newLateProxy(t, c.Servers.Addrs()[0])
	join := func(t *testing.T, svc string, opts ...sdk.Option) *sdk.Member {
		t.Helper()
		path := "/v1/tenants/" + c.Tenant + "/services/" + svc + "/instances/a"
		p.arm(func(r *http.Request) bool { return r.Method == http.MethodPut && r.URL.Path == path })
		opts = append([]sdk.Option{sdk.WithServers(p.addr), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token),
			sdk.WithTTL(3 * time.Second)}, opts...)
		m, err := sdk.Join(ctxT(t, 30*time.Second), sdk.Instance{Service: svc, ID: "a", Address: "a:1"}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Leave(context.Background()) })
		if p.keptCount() != 1 {
			t.Fatalf("the proxy kept %d registrations, want the first", p.keptCount())
		}
		return m
	}

	t.Run("Leave", func(t *testing.T) {
		m := join(t, "jl", sdk.WithDrainDelay(3*time.Second))
		left := make(chan error, 1)
		go func() { left <- m.Leave(context.Background()) }()
		eventually(t, 10*time.Second, "the drain", func() bool { return instanceState(t, c, "jl", "a") == api.StateDraining })
		got := p.deliver(t) // Join's first registration commits now
		t.Logf("the late copy of Join's registration answered %v", got)
		throughout(t, time.Second, func() error {
			if st := instanceState(t, c, "jl", "a"); st != api.StateDraining {
				return fmt.Errorf("during the drain delay the instance is %q, want draining: a late copy of Join's registration undid Leave's drain", st)
			}
			return nil
		})
		if err := <-left; err != nil {
			t.Fatalf("Leave() = %v", err)
		}
	})

	t.Run("Update", func(t *testing.T) {
		m := join(t, "ju")
		if err := m.Update(ctxT(t, 10*time.Second), sdk.SetState(sdk.StateDraining)); err != nil {
			t.Fatal(err)
		}
		if st := instanceState(t, c, "ju", "a"); st != api.StateDraining {
			t.Fatalf("after Update(draining): %q", st)
		}
		got := p.deliver(t)
		t.Logf("the late copy of Join's registration answered %v", got)
		time.Sleep(time.Second) // a few keepalive answers
		if st := instanceState(t, c, "ju", "a"); st != api.StateDraining {
			t.Errorf("an acknowledged Update(draining) was undone by a late copy of Join's registration: the instance is %q (member role %v)", st, m.Role())
		}
	})
}

// TestStaleDeregisterSparesNextIncarnation: Leave's deregistration
// is numbered under the leaving session, but the servers apply a numbered
// write "as it comes" once its session has ended, and a deregistration
// checks nothing of the instance it removes. So when its first copy is
// answered 504 and commits after all, after the session's end and after a
// restarted process registered the same instance ID (which DESIGN/sdk docs
// allow once the old session has ended), it removes the new incarnation's
// acknowledged registration and revokes its mastership.
func TestStaleDeregisterSparesNextIncarnation(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	p := newLateProxy(t, c.Servers.Addrs()[0])
	opts := []sdk.Option{sdk.WithServers(p.addr), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token), sdk.WithDrainDelay(0)}
	inst := msInstance("sd", "x", 0)
	old, err := sdk.Join(ctxT(t, 30*time.Second), inst, opts...)
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/tenants/" + c.Tenant + "/services/sd/instances/x"
	p.arm(func(r *http.Request) bool { return r.Method == http.MethodDelete && r.URL.Path == path })
	if err := old.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Leave() = %v", err)
	}
	if p.keptCount() != 1 {
		t.Fatalf("the proxy kept %d deregistrations, want 1", p.keptCount())
	}
	// The process restarts with the same instance ID.
	next, err := sdk.Join(ctxT(t, 30*time.Second), inst, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Leave(context.Background()) })
	eventually(t, 10*time.Second, "the new incarnation to be master", next.IsMaster)
	token := fencingToken(next)
	got := p.deliver(t) // the old incarnation's deregistration commits now
	t.Logf("the late copy of the old incarnation's deregistration answered %v", got)
	var s api.ServiceResponse
	c.Servers.Do(1, c.Token, http.MethodGet, "/v1/tenants/"+c.Tenant+"/services/sd?consistent=true", nil).JSON(t, &s)
	found := false
	for _, in := range s.Instances {
		found = found || in.ID == "x"
	}
	if !found || s.Master == nil || s.Master.Releasing || s.Master.FencingToken != token {
		t.Errorf("after the dead incarnation's late deregistration: instance listed %v, master %+v; the new incarnation's registration (acknowledged) and mastership (token %d) should be untouched", found, s.Master, token)
	}
	time.Sleep(2 * time.Second)
	if fencingToken(next) != token {
		t.Errorf("the new incarnation lost its mastership (token %d, now %d, role %v)", token, fencingToken(next), next.Role())
	}
}
