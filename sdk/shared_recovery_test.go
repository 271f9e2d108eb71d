package sdk_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// hookProxy is a proxy in front of one server through which a REST
// Client's every request goes, with a hook that may hold or answer one.
type hookProxy struct {
	*frontProxy

	mu   sync.Mutex
	hook func(w http.ResponseWriter, r *http.Request) bool // true: answered
}

func newHookProxy(t *testing.T, c *sdktest.Cluster) *hookProxy {
	t.Helper()
	p := &hookProxy{}
	p.frontProxy = newFrontProxy(t, c.Servers.Addrs()[0], func(w http.ResponseWriter, r *http.Request) bool {
		p.mu.Lock()
		hook := p.hook
		p.mu.Unlock()
		return hook != nil && hook(w, r)
	})
	return p
}

func (p *hookProxy) setHook(h func(w http.ResponseWriter, r *http.Request) bool) {
	p.mu.Lock()
	p.hook = h
	p.mu.Unlock()
}

// sharedRecovery is the setup of the tests below: two farm members of
// one REST Client, through a proxy, share a session; the servers end it,
// and the proxy holds the keeper's attach of its next session (opened on
// the servers) until release is closed, so both members wait, between
// their sessions, to register again.
type sharedRecovery struct {
	tn      *tenant
	p       *hookProxy
	a, b    *sdk.Member
	old     string
	release chan struct{}
}

func startSharedRecovery(t *testing.T, ctx context.Context, service string, keys ...string) *sharedRecovery {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	tn := &tenant{c: c, name: c.Tenant, tok: c.Token}
	p := newHookProxy(t, c)
	cl, err := sdk.Connect(ctx, sdk.WithServers(p.addr), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token),
		sdk.WithClientStream(false), sdk.WithDrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	sr := &sharedRecovery{tn: tn, p: p, release: make(chan struct{})}
	if sr.a, err = cl.Join(ctx, sdk.Instance{Service: service, ID: "a", Address: "10.0.0.1:80"}); err != nil {
		t.Fatal(err)
	}
	if sr.b, err = cl.Join(ctx, sdk.Instance{Service: service, ID: "b", Address: "10.0.0.2:80"}); err != nil {
		t.Fatal(err)
	}
	sr.old = sdk.SessionID(sr.a)
	if sdk.SessionID(sr.b) != sr.old {
		t.Fatal("a and b do not share a session")
	}
	for _, k := range keys { // a's ephemeral keys, deleted with the session
		if _, err := sr.a.PutEphemeral(ctx, k, []byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	opened := make(chan struct{})
	var once sync.Once
	p.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		sid := sessionOf(r)
		switch {
		case sid == "" || sid == sr.old:
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/stream"):
			select {
			case <-sr.release:
			case <-r.Context().Done():
				return true
			}
		case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/sessions/"+sid):
			p.rp.ServeHTTP(w, r)
			once.Do(func() { close(opened) })
			return true
		}
		return false
	})
	if r := tn.rest(t, http.MethodDelete, "/sessions/"+sr.old, nil); r.Err() != nil {
		t.Fatal(r.Err())
	}
	select {
	case <-opened:
	case <-ctx.Done():
		t.Fatal("the keeper opened no new session")
	}
	eventually(t, 10*time.Second, "both members on the keeper's next session", func() bool {
		return sdk.SessionID(sr.a) != sr.old && sdk.SessionID(sr.b) != sr.old
	})
	return sr
}

// instance is the service's instance id, read linearizably.
func (sr *sharedRecovery) instance(t *testing.T, service, id string) (api.Instance, bool) {
	t.Helper()
	var svc api.ServiceResponse
	sr.tn.rest(t, http.MethodGet, "/services/"+service+"?consistent=true", nil).JSON(t, &svc)
	for _, in := range svc.Instances {
		if in.ID == id {
			return in, true
		}
	}
	return api.Instance{}, false
}

// TestSharedUpdateDuringRecovery: an Update acknowledged while its member
// waits to register again under the keeper's next session is not undone
// by that registration (made from the registration as it was before the
// Update).
func TestSharedUpdateDuringRecovery(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	sr := startSharedRecovery(t, ctx, "upd")
	if err := sr.a.Update(ctx, sdk.SetWeight(7)); err != nil {
		t.Fatalf("Update during the recovery: %v", err)
	}
	// Let the keeper attach; the members register again. Wait for a's
	// registration after the release to have landed.
	registered := make(chan struct{})
	var once sync.Once
	sr.p.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/instances/a") {
			sr.p.rp.ServeHTTP(w, r)
			once.Do(func() { close(registered) })
			return true
		}
		return false
	})
	close(sr.release)
	select {
	case <-registered:
	case <-ctx.Done():
		t.Fatal("a did not register again")
	}
	eventually(t, 10*time.Second, "b registered again", func() bool {
		in, ok := sr.instance(t, "upd", "b")
		return ok && in.SessionTag == api.SessionTag(sdk.SessionID(sr.b))
	})
	in, ok := sr.instance(t, "upd", "a")
	if !ok || in.Weight != 7 {
		t.Fatalf("a after its acknowledged Update(SetWeight(7)) and its registration again: %+v (listed %v), want weight 7", in, ok)
	}
}

// TestSharedLeaveDuringRecovery: a member that leaves while it waits to
// register again under the keeper's next session is gone when Leave
// returns nil, and stays gone: the registration it waited to make is not
// made after its deregistration.
func TestSharedLeaveDuringRecovery(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	sr := startSharedRecovery(t, ctx, "lv")
	hold := sr.p.hook
	// The proxy applies a's deregistration, then lets the keeper attach,
	// and answers the deregistration once a's registration under the new
	// session has gone through, or after 2 s.
	reregistered := make(chan struct{})
	var once sync.Once
	var dereg sync.Once
	sr.p.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case r.Method == http.MethodDelete && strings.HasSuffix(r.URL.Path, "/instances/a"):
			rec := httptest.NewRecorder()
			sr.p.rp.ServeHTTP(rec, r)
			dereg.Do(func() { close(sr.release) })
			select {
			case <-reregistered:
			case <-time.After(2 * time.Second):
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return true
		case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/instances/a"):
			select {
			case <-sr.release: // after the deregistration
				sr.p.rp.ServeHTTP(w, r)
				once.Do(func() { close(reregistered) })
				return true
			default:
			}
		}
		return hold(w, r)
	})
	if err := sr.a.Leave(ctx); err != nil {
		t.Fatalf("Leave during the recovery: %v", err)
	}
	eventually(t, 10*time.Second, "b registered again", func() bool {
		in, ok := sr.instance(t, "lv", "b")
		return ok && in.SessionTag == api.SessionTag(sdk.SessionID(sr.b))
	})
	if in, ok := sr.instance(t, "lv", "a"); ok {
		t.Fatalf("a is registered after its Leave returned nil: %+v", in)
	}
}

// TestSharedLeaveDuringKeyRecovery: a member that leaves while it puts
// its ephemeral key back under the keeper's next session leaves no key
// behind when Leave returns nil. The session lives on with the Client's
// other members, so nothing else would ever delete it. The proxy holds
// the put back until Leave has deleted the key and given up on the put
// (or for 2 s), then applies it.
func TestSharedLeaveDuringKeyRecovery(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	const key = "jobs/lk-a"
	sr := startSharedRecovery(t, ctx, "lk", key)
	hold := sr.p.hook
	putHeld, landed, deleted := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var heldOnce, landedOnce, deletedOnce sync.Once
	sr.p.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/kv/"+key):
			heldOnce.Do(func() { close(putHeld) })
			select {
			case <-deleted:
				select { // until the member gives up on the put
				case <-r.Context().Done():
				case <-time.After(2 * time.Second):
				}
			case <-time.After(2 * time.Second):
			}
			rec := httptest.NewRecorder()
			sr.p.rp.ServeHTTP(rec, r.WithContext(context.WithoutCancel(r.Context())))
			landedOnce.Do(func() { close(landed) })
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
			return true
		case r.Method == http.MethodDelete && strings.HasSuffix(r.URL.Path, "/kv/"+key):
			sr.p.rp.ServeHTTP(w, r)
			deletedOnce.Do(func() { close(deleted) })
			return true
		}
		return hold(w, r)
	})
	close(sr.release) // a registers again, and puts its key back: held
	select {
	case <-putHeld:
	case <-ctx.Done():
		t.Fatal("a did not put its ephemeral key back")
	}
	if err := sr.a.Leave(ctx); err != nil {
		t.Fatalf("Leave while its key is put back: %v", err)
	}
	select {
	case <-landed:
	case <-ctx.Done():
		t.Fatal("the held put never went through")
	}
	eventually(t, 10*time.Second, "b registered again", func() bool {
		in, ok := sr.instance(t, "lk", "b")
		return ok && in.SessionTag == api.SessionTag(sdk.SessionID(sr.b))
	})
	if r := sr.tn.rest(t, http.MethodGet, "/kv/"+key+"?consistent=true", nil); r.Status != http.StatusNotFound {
		t.Fatalf("a's ephemeral key after its Leave returned nil: %d %s, want 404", r.Status, r.Body)
	}
}
