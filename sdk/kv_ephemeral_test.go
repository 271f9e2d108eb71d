package sdk_test

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestKVEphemeral runs the behaviours of members' ephemeral keys on one
// shared cluster, each in a tenant of its own.
func TestKVEphemeral(t *testing.T) {
	c := sdktest.Start(t)
	tests := []behaviour{
		{"LivesWithTheMember", testEphemeral, api.Quotas{}},
		{"NewSession", testEphemeralNewSession, api.Quotas{}},
		{"TakenOver", testEphemeralTakenOver, api.Quotas{}},
	}
	runBehaviours(t, c, "e", tests)
}

// testEphemeral: a member's ephemeral key lives as long as the
// member: present while it lives (past drop_grace), gone after it is
// crashed; DeleteEphemeral gives one up.
func testEphemeral(t *testing.T, tn *tenant) {
	m := tn.join(t, sdk.Instance{Service: "jobs", ID: "j1", Address: "a:1"})
	kv, err := m.PutEphemeral(ctxT(t, 10*time.Second), "jobs/owner", []byte("j1"))
	if err != nil {
		t.Fatal(err)
	}
	if kv.SessionTag != api.SessionTag(sdk.SessionID(m)) {
		t.Fatalf("PutEphemeral: session tag %q, want the member's", kv.SessionTag)
	}
	// Read-your-writes on the member's own Client.
	if got, _ := value(view(t, m.Client(), "jobs"), "jobs/owner"); got != "j1" {
		t.Fatal("PutEphemeral returned; the member's own view does not hold the key")
	}
	obs := tn.connect(t)
	v := view(t, obs, "jobs")
	// Held by a live session: another session cannot take it.
	other := tn.join(t, sdk.Instance{Service: "jobs", ID: "j2", Address: "a:2"})
	if _, err := other.PutEphemeral(ctxT(t, 10*time.Second), "jobs/owner", []byte("j2")); !errors.Is(err, sdk.ErrConflict) {
		t.Fatalf("PutEphemeral of a key another live session holds = %v, want ErrConflict", err)
	}
	throughout(t, 1500*time.Millisecond, func() error {
		if got, ok := value(v, "jobs/owner"); !ok || got != "j1" {
			return fmt.Errorf("the ephemeral key of a live member is %q, %v", got, ok)
		}
		return nil
	})
	if _, err := other.PutEphemeral(ctxT(t, 10*time.Second), "jobs/j2", []byte("up")); err != nil {
		t.Fatal(err)
	}
	crashed := time.Now()
	tn.c.Crash(t, m)
	eventually(t, 10*time.Second, "the crashed member's key to go", func() bool {
		_, ok := v.Get("jobs/owner")
		return !ok
	})
	t.Logf("the crashed member's key went after %v", time.Since(crashed).Round(time.Millisecond))
	if _, ok := v.Get("jobs/j2"); !ok {
		t.Fatal("a live member's key went with the crashed one's")
	}
	// The lock is free: the other member takes it.
	if _, err := other.PutEphemeral(ctxT(t, 10*time.Second), "jobs/owner", []byte("j2")); err != nil {
		t.Fatal(err)
	}
	if err := other.DeleteEphemeral(ctxT(t, 10*time.Second), "jobs/owner"); err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Get(ctxT(t, 10*time.Second), "jobs/owner"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("after DeleteEphemeral, Get = %v, want ErrNotFound", err)
	}
	// Leave ends the session, and its keys with it.
	if err := other.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Get(ctxT(t, 10*time.Second), "jobs/j2"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("after Leave, Get = %v, want ErrNotFound", err)
	}
	if _, err := other.PutEphemeral(ctxT(t, time.Second), "jobs/j2", []byte("x")); !errors.Is(err, sdk.ErrLeft) {
		t.Fatalf("PutEphemeral after Leave = %v, want ErrLeft", err)
	}
}

// testEphemeralNewSession: when the servers end a live member's
// session, its ephemeral keys go with it, and come back under the session
// it registers again with, with the values it last put.
func testEphemeralNewSession(t *testing.T, tn *tenant) {
	m := tn.join(t, sdk.Instance{Service: "pres", ID: "p1", Address: "a:1"})
	ctx := ctxT(t, 30*time.Second)
	for _, k := range []string{"pres/p1", "pres/p1/load"} {
		if _, err := m.PutEphemeral(ctx, k, []byte("v1")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.PutEphemeral(ctx, "pres/p1/load", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	obs := tn.connect(t)
	v := view(t, obs, "pres")
	old := sdk.SessionID(m)
	if res := tn.rest(t, http.MethodDelete, "/sessions/"+old, nil); res.Status != http.StatusNoContent {
		t.Fatalf("DELETE session = %d %s", res.Status, res.Body)
	}
	eventually(t, 15*time.Second, "the keys back under a new session", func() bool {
		a, okA := v.Get("pres/p1")
		b, okB := v.Get("pres/p1/load")
		return okA && okB && a.SessionTag != api.SessionTag(old) && a.SessionTag == b.SessionTag &&
			string(a.Value) == "v1" && string(b.Value) == "v2"
	})
	if tag, _ := v.Get("pres/p1"); tag.SessionTag != api.SessionTag(sdk.SessionID(m)) {
		t.Fatalf("the keys are under session %s, not the member's", tag.SessionTag)
	}
}

// testEphemeralTakenOver: a key someone else created while the
// member's session was being replaced is not overwritten: the member gives
// it up. One the member's own new session already holds is kept.
func testEphemeralTakenOver(t *testing.T, tn *tenant) {
	m := tn.join(t, sdk.Instance{Service: "lock", ID: "l1", Address: "a:1"})
	ctx := ctxT(t, 30*time.Second)
	for _, k := range []string{"lock/a", "lock/b"} {
		if _, err := m.PutEphemeral(ctx, k, []byte("l1")); err != nil {
			t.Fatal(err)
		}
	}
	// As if the session had ended and lock/a been taken meanwhile; lock/b
	// is still the member's (a PutEphemeral under the new session won).
	other := tn.connect(t)
	if err := other.Delete(ctx, "lock/a"); err != nil {
		t.Fatal(err)
	}
	put(t, other, "lock/a", "someone else")
	sdk.PutEphemeralAgain(ctx, m)
	a, err := other.Get(ctx, "lock/a")
	if err != nil || string(a.Value) != "someone else" || a.SessionTag != "" {
		t.Fatalf("lock/a = %+v, %v; want someone else's, untouched", a, err)
	}
	b, err := other.Get(ctx, "lock/b")
	if err != nil || b.SessionTag != api.SessionTag(sdk.SessionID(m)) {
		t.Fatalf("lock/b = %+v, %v; want the member's", b, err)
	}
	if held := sdk.HeldKeys(m); !slices.Equal(held, []string{"lock/b"}) {
		t.Fatalf("the member holds %v, want [lock/b]", held)
	}
	// Given up: DeleteEphemeral leaves it alone.
	if err := m.DeleteEphemeral(ctx, "lock/a"); err != nil {
		t.Fatal(err)
	}
	if a, err := other.Get(ctx, "lock/a"); err != nil || string(a.Value) != "someone else" {
		t.Fatalf("lock/a after DeleteEphemeral = %+v, %v", a, err)
	}
	// Written by someone else since: DeleteEphemeral refuses.
	put(t, other, "lock/b", "overwritten")
	if err := m.DeleteEphemeral(ctx, "lock/b"); !errors.Is(err, sdk.ErrConflict) {
		t.Fatalf("DeleteEphemeral of a key written since = %v, want ErrConflict", err)
	}
}
