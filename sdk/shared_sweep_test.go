package sdk_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestSharedSweepSparesRejoin: instances whose Leave could not deregister
// them are deregistered by the shared session's keeper; an ID that joins
// the Client again while the keeper is at it is the new member's, and
// the keeper's deregistration does not remove its registration.
func TestSharedSweepSparesRejoin(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	tn := &tenant{c: c, name: c.Tenant, tok: c.Token}
	p := newHookProxy(t, c)
	ctx := ctxT(t, 60*time.Second)
	cl, err := sdk.Connect(ctx, sdk.WithServers(p.addr), sdk.WithTenant(c.Tenant), sdk.WithToken(c.Token),
		sdk.WithClientStream(false), sdk.WithDrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	sr := &sharedRecovery{tn: tn, p: p}
	join := func(id, addr string) *sdk.Member {
		m, err := cl.Join(ctx, sdk.Instance{Service: "sw", ID: id, Address: addr})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, cm := join("a", "10.0.0.1:80"), join("c", "10.0.0.3:80")
	join("b", "10.0.0.2:80") // keeps the session
	deregistration := func(r *http.Request) string {
		if r.Method != http.MethodDelete {
			return ""
		}
		for _, id := range []string{"a", "c"} {
			if strings.HasSuffix(r.URL.Path, "/instances/"+id) {
				return id
			}
		}
		return ""
	}
	// a's and c's Leaves cannot deregister them: the keeper will.
	p.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if deregistration(r) == "" {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"code":"unavailable","message":"the proxy refuses deregistrations"}}`))
		return true
	})
	for _, m := range []*sdk.Member{a, cm} {
		lctx, cancel := context.WithTimeout(ctx, 800*time.Millisecond)
		if err := m.Leave(lctx); err == nil {
			t.Fatalf("%s's Leave deregistered it through the proxy", m.ID())
		}
		cancel()
	}
	// The keeper's first deregistration is held while the other ID joins
	// again; then the keeper goes on.
	first := make(chan string, 1)
	release := make(chan struct{})
	firstDone := make(chan struct{})
	var mu sync.Mutex
	deleted := map[string]chan struct{}{"a": make(chan struct{}), "c": make(chan struct{})}
	var held bool
	p.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		id := deregistration(r)
		if id == "" {
			return false
		}
		mu.Lock()
		hold := !held
		held = true
		mu.Unlock()
		if hold {
			first <- id
			<-release
			p.rp.ServeHTTP(w, r)
			close(firstDone)
			return true
		}
		p.rp.ServeHTTP(w, r)
		mu.Lock()
		select {
		case <-deleted[id]:
		default:
			close(deleted[id])
		}
		mu.Unlock()
		return true
	})
	var x string
	select {
	case x = <-first:
	case <-ctx.Done():
		t.Fatal("the keeper deregistered nothing")
	}
	y := map[string]string{"a": "c", "c": "a"}[x]
	again := join(y, "10.0.1.9:80")
	close(release)
	<-firstDone
	select { // a deregistration of y's would follow at once
	case <-deleted[y]:
	case <-time.After(time.Second):
	}
	in, ok := sr.instance(t, "sw", y)
	if !ok || in.Address != "10.0.1.9:80" {
		t.Fatalf("%s joined again, then the keeper deregistered the departed ones: %+v (listed %v), want the new registration", y, in, ok)
	}
	if err := again.Leave(ctx); err != nil {
		t.Fatal(err)
	}
}
