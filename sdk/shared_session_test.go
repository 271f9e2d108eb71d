package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestSharedSession: the farm members of one Client share one session.
// Ten members joined at once hold one session on the servers, renewed by
// one keepalive schedule (on the stream, every keepalive frame names one
// session); one member's Leave deregisters it alone and deletes its own
// ephemeral key; the servers' end of the session brings all of them back
// under a new one, with their keys; the last Leave ends the session. A
// member WithOwnSession has its own.
func TestSharedSession(t *testing.T) {
	c := sdktest.Start(t)
	for i, mode := range transportModes {
		t.Run(mode.name, func(t *testing.T) {
			tn := newTenant(t, c, fmt.Sprintf("shared%d", i), api.Quotas{})
			tn.mode = mode.mode
			testSharedSession(t, tn)
		})
	}
}

func testSharedSession(t *testing.T, tn *tenant) {
	ctx := ctxT(t, 120*time.Second)
	cl := tn.connect(t)
	const n = 10
	members := make([]*sdk.Member, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			members[i], errs[i] = cl.Join(ctx, sdk.Instance{Service: "web", ID: fmt.Sprintf("w%d", i), Address: fmt.Sprintf("10.0.0.%d:80", i)},
				sdk.WithDrainDelay(50*time.Millisecond))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("join w%d: %v", i, err)
		}
	}
	t.Cleanup(func() {
		for _, m := range members {
			m.Leave(context.Background())
		}
	})
	sid := sdk.SessionID(members[0])
	for _, m := range members {
		if got := sdk.SessionID(m); got != sid {
			t.Fatalf("%s holds session %s, w0 %s: not one session", m.ID(), api.SessionTag(got), api.SessionTag(sid))
		}
	}
	tn.waitSessions(t, 1, fmt.Sprintf("%d farm members on one Client", n))
	listed := func() map[string]string {
		var svc api.ServiceResponse
		tn.rest(t, http.MethodGet, "/services/web?consistent=true", nil).JSON(t, &svc)
		out := map[string]string{}
		for _, in := range svc.Instances {
			out[in.ID] = in.SessionTag
		}
		return out
	}
	if got := listed(); len(got) != n {
		t.Fatalf("the service lists %v, want %d instances", got, n)
	}

	// Numbers: a write refused because another member's later number
	// landed first is numbered again; one refused because the member's
	// own later write landed first stays refused.
	if again, err := sdk.RaceNumbers(ctx, members[2], members[3], false); err != nil || !again {
		t.Fatalf("w2's registration after w3's later-numbered one: numbered again %v, err %v; want again, nil", again, err)
	}
	if again, err := sdk.RaceNumbers(ctx, members[2], members[3], true); !errors.Is(err, sdk.ErrConflict) || again {
		t.Fatalf("w2's registration after a later one of its own: numbered again %v, err %v; want refused (conflict)", again, err)
	}

	// One keepalive schedule: each frame names the one session.
	if tn.mode == streamMode {
		frames0, sessions0 := sdk.KeepaliveFrames(cl)
		time.Sleep(4 * time.Second) // two keepalives at the default 5 s TTL
		frames, sessions := sdk.KeepaliveFrames(cl)
		if frames-frames0 < 1 || sessions-sessions0 != frames-frames0 {
			t.Fatalf("keepalive frames: %d naming %d sessions in 4 s, want at least one, each naming one session",
				frames-frames0, sessions-sessions0)
		}
	}

	// A member of its own session beside them.
	own, err := cl.Join(ctx, sdk.Instance{Service: "web", ID: "own", Address: "10.0.1.1:80"}, sdk.WithOwnSession(), sdk.WithDrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	if sdk.SessionID(own) == sid {
		t.Fatalf("WithOwnSession: session %s, the shared one's", api.SessionTag(sid))
	}
	tn.waitSessions(t, 2, "with a member WithOwnSession")
	if err := own.Leave(ctx); err != nil {
		t.Fatal(err)
	}

	// Close ends a Client's shared session, its members left.
	cl2 := tn.connect(t)
	for i := range 3 {
		if _, err := cl2.Join(ctx, sdk.Instance{Service: "other", ID: fmt.Sprintf("o%d", i), Address: "10.0.2.1:80"}, sdk.WithDrainDelay(0)); err != nil {
			t.Fatal(err)
		}
	}
	tn.waitSessions(t, 2, "two Clients' farm members")
	if err := cl2.Close(); err != nil {
		t.Fatal(err)
	}
	tn.waitSessions(t, 1, "after Close")
	var other api.ServiceResponse
	tn.rest(t, http.MethodGet, "/services/other?consistent=true", nil).JSON(t, &other)
	if len(other.Instances) != 0 {
		t.Fatalf("after Close the service lists %d instances", len(other.Instances))
	}

	// Ephemeral keys are under the shared session; each member's own.
	for _, i := range []int{0, 1} {
		if _, err := members[i].PutEphemeral(ctx, fmt.Sprintf("locks/w%d", i), []byte("held")); err != nil {
			t.Fatal(err)
		}
	}

	// The servers end the session: every member comes back under a new
	// one, and so do the keys.
	if r := tn.rest(t, http.MethodDelete, "/sessions/"+sid, nil); r.Err() != nil {
		t.Fatal(r.Err())
	}
	eventually(t, 20*time.Second, "every member under a new session", func() bool {
		got := listed()
		if len(got) != n {
			return false
		}
		s := sdk.SessionID(members[0])
		for _, m := range members {
			if sdk.SessionID(m) != s || s == sid || got[m.ID()] != api.SessionTag(s) {
				return false
			}
		}
		return true
	})
	sid = sdk.SessionID(members[0])
	tn.waitSessions(t, 1, "after the session ended")
	obs := tn.connect(t)
	eventually(t, 10*time.Second, "the ephemeral keys back under the new session", func() bool {
		for _, i := range []int{0, 1} {
			kv, err := obs.Get(ctx, fmt.Sprintf("locks/w%d", i))
			if err != nil || kv.SessionTag != api.SessionTag(sid) {
				return false
			}
		}
		return true
	})
	for _, m := range members {
		if m.Err() != nil || m.Role() != sdk.Standby {
			t.Fatalf("%s after the session's end: role %v, err %v", m.ID(), m.Role(), m.Err())
		}
	}

	// One Leave: that member alone goes, and its key; the session stays.
	if err := members[0].Leave(ctx); err != nil {
		t.Fatal(err)
	}
	got := listed()
	if _, ok := got["w0"]; ok || len(got) != n-1 {
		t.Fatalf("after w0's Leave the service lists %v, want the other %d", slices.Sorted(maps.Keys(got)), n-1)
	}
	if _, err := obs.Get(ctx, "locks/w0"); err == nil {
		t.Fatal("w0's ephemeral key outlived its Leave")
	}
	if _, err := obs.Get(ctx, "locks/w1"); err != nil {
		t.Fatalf("w1's ephemeral key went with w0's Leave: %v", err)
	}
	tn.waitSessions(t, 1, "after one Leave")
	time.Sleep(2 * time.Second) // keepalives go on for the nine
	if got := listed(); len(got) != n-1 {
		t.Fatalf("the nine: the service lists %v", got)
	}

	// The last Leave ends the session.
	for _, m := range members[1:] {
		if err := m.Leave(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := listed(); len(got) != 0 {
		t.Fatalf("after every Leave the service lists %v", got)
	}
	tn.waitSessions(t, 0, "after the last Leave")
	if _, err := obs.Get(ctx, "locks/w1"); err == nil {
		t.Fatal("w1's ephemeral key outlived the last Leave")
	}

	// A Join after the last Leave opens a new session.
	again, err := cl.Join(ctx, sdk.Instance{Service: "web", ID: "w0", Address: "10.0.0.0:80"}, sdk.WithDrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	if sdk.SessionID(again) == sid {
		t.Fatalf("a Join after the last Leave: the old session %s", api.SessionTag(sid))
	}
	tn.waitSessions(t, 1, "a Join after the last Leave")
	if err := again.Leave(ctx); err != nil {
		t.Fatal(err)
	}
}

// waitSessions waits until the tenant's usage counts want live sessions
// (the node asked may lag the write that just returned), and fails t,
// saying when, if it does not within 5 s.
func (tn *tenant) waitSessions(t *testing.T, want int64, when string) {
	t.Helper()
	var got int64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if got = tn.sessions(t); got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the tenant has %d sessions, want %d", when, got, want)
		}
	}
}

// sessions is the tenant's live sessions, as its usage counts them.
func (tn *tenant) sessions(t *testing.T) int64 {
	t.Helper()
	var ten api.Tenant
	tn.rest(t, http.MethodGet, "", nil).JSON(t, &ten)
	if ten.Usage == nil {
		t.Fatal("the tenant's answer has no usage")
	}
	return ten.Usage.Sessions
}

// TestJoinSameIDTwiceOnOneClient: a second member with the ID of one the
// Client holds is refused at once (under one shared session it would
// overwrite the first's registration); once the first has left, the ID is
// free again.
func TestJoinSameIDTwiceOnOneClient(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	cl := c.Connect(t)
	ctx := ctxT(t, 30*time.Second)
	inst := sdk.Instance{Service: "farm", ID: "f1", Address: "10.0.0.1:80"}
	first, err := cl.Join(ctx, inst, sdk.WithDrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	inst.Address = "10.0.0.2:80"
	if _, err := cl.Join(ctx, inst, sdk.WithDrainDelay(0)); !errors.Is(err, sdk.ErrConflict) {
		t.Fatalf("a second Join of farm/f1 on the same Client = %v, want a conflict", err)
	}
	svc, err := c.Connect(t).Service(ctx, "farm")
	if err != nil {
		t.Fatal(err)
	}
	if in, ok := svc.Snapshot().Instance("f1"); !ok || in.Address != "10.0.0.1:80" {
		t.Fatalf("farm/f1 = %+v, %v: the refused Join changed the first's registration", in, ok)
	}
	if err := first.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	again, err := cl.Join(ctx, inst, sdk.WithDrainDelay(0))
	if err != nil {
		t.Fatalf("Join of farm/f1 after the first left: %v", err)
	}
	again.Leave(ctx)
}
