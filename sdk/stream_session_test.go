package sdk_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestStreamRestartKeepsOtherSessions: on the client stream one member's
// not_attached refusal (restartStream → Attachment.Again) ends the
// Client's one stream from the client's side, which cuts every session on
// it to drop_grace (a crash, as far as the server can tell). The stream
// opens again at once and the sessions attach within the grace, which
// gives them back their deadlines (session.Stream's cut): a farm member of
// the same Client, renewing every TTL/3, lives on.
func TestStreamRestartKeepsOtherSessions(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	cl := c.Connect(t, sdk.WithClientStream(true))
	ctx := ctxT(t, 60*time.Second)
	ms, err := cl.Join(ctx, sdk.Instance{Service: "ms", ID: "m1", Address: "10.0.0.2:80", Mode: sdk.MasterStandby}, sdk.WithDrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Leave(t.Context()) })
	farm, err := cl.Join(ctx, sdk.Instance{Service: "farm", ID: "f1", Address: "10.0.0.1:80"},
		sdk.WithTTL(9*time.Second), sdk.WithDrainDelay(0)) // a keepalive every 3 s
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { farm.Leave(t.Context()) })
	eventually(t, 5*time.Second, "m1 master", ms.IsMaster)
	before := sdk.SessionID(farm)
	for i := range 3 {
		time.Sleep(1100 * time.Millisecond)
		// m1's keepalive, sent now, is refused not_attached (its
		// attachment was lost on the server without a word): the member
		// restarts "its" stream, i.e. the Client's.
		sdk.StreamAgain(ms, time.Now())
		time.Sleep(1500 * time.Millisecond)
		if got := sdk.SessionID(farm); got != before {
			t.Fatalf("restart %d of the shared stream for m1's sake ended f1's session (a farm member of the same Client): %s", i+1, sdk.Debug(farm))
		}
	}
	if !ms.IsMaster() {
		t.Fatalf("m1 lost its mastership: %s", sdk.Debug(ms))
	}
}

// TestStreamLeaderStopKeepsMaster: a graceful stop of the tenant's leader
// moves the Client's stream to the new leader at once (moved); the
// master's session attaches there and renews, and keeps its mastership.
// An attach that lands while the new leader is still taking over is
// refused 503 without a moved, and is sent again after the pause.
func TestStreamLeaderStopKeepsMaster(t *testing.T) {
	c := sdktest.Start(t)
	var opts []sdk.Option
	if os.Getenv("RAFTING_TEST_DEBUG") != "" {
		opts = append(opts, sdk.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	cl := c.Connect(t, append(opts, sdk.WithClientStream(true))...)
	ctx := ctxT(t, 120*time.Second)
	ms, err := cl.Join(ctx, sdk.Instance{Service: "ms", ID: "m1", Address: "10.0.0.2:80", Mode: sdk.MasterStandby}, sdk.WithDrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Leave(t.Context()) })
	eventually(t, 5*time.Second, "m1 master", ms.IsMaster)
	// A standby on a Client of its own, by REST.
	sb, err := c.Connect(t).Join(ctx, sdk.Instance{Service: "ms", ID: "m2", Address: "10.0.0.3:80", Mode: sdk.MasterStandby}, sdk.WithDrainDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Leave(t.Context()) })
	sess := sdk.SessionID(ms)
	for i := range 4 {
		id := c.Servers.WaitTenantLeader(c.Tenant)
		c.Servers.StopNode(id)
		// The session lives through the move: master again within a
		// few seconds, under the same session.
		deadline := time.Now().Add(8 * time.Second)
		for !ms.IsMaster() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := sdk.SessionID(ms); got != sess || !ms.IsMaster() {
			t.Fatalf("stop %d of the leader (node %d): m1's session replaced %v, m1 master %v, standby m2 master %v: %s", i+1, id, got != sess, ms.IsMaster(), sb.IsMaster(), sdk.Debug(ms))
		}
		c.Servers.StartNode(id)
		time.Sleep(2 * time.Second)
	}
}

// TestWritesOnClientStream: on the client stream a member's writes — its
// session's open and close, its registration, Updates, its drain and
// deregistration — travel as write frames on the Client's one stream
// (answered by the tenant leader it is kept on), many in flight at once;
// a write too large for a frame goes over REST and gets REST's 413, and
// the stream lives on.
func TestWritesOnClientStream(t *testing.T) {
	c := sdktest.Start(t)
	cl := c.Connect(t, sdk.WithClientStream(true))
	ctx := ctxT(t, 60*time.Second)
	const n = 8
	ms := make([]*sdk.Member, n)
	var first int64 // after the first Join: the stream may still be opening for it
	for i := range n {
		if i == 1 {
			first = sdk.StreamWrites(cl)
		}
		// Sessions of their own: each Join opens one (farm members of a
		// Client share one by default; TestSharedSession covers those).
		m, err := cl.Join(ctx, sdk.Instance{Service: "farm", ID: fmt.Sprintf("f%d", i), Address: "10.0.0.1:80"},
			sdk.WithDrainDelay(0), sdk.WithOwnSession())
		if err != nil {
			t.Fatal(err)
		}
		ms[i] = m
	}
	joined := sdk.StreamWrites(cl)
	if got := joined - first; got < 2*(n-1) { // a session's open and a registration each
		t.Fatalf("%d writes answered on the stream for %d Joins, want ≥ %d", got, n-1, 2*(n-1))
	}
	// Updates of every member at once: pipelined on the one stream.
	errs := make(chan error, n)
	for i, m := range ms {
		go func() { errs <- m.Update(ctx, sdk.SetWeight(10+i)) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := sdk.StreamWrites(cl) - joined; got < n {
		t.Fatalf("%d of %d Updates answered on the stream", got, n)
	}
	svc, err := c.Connect(t, sdk.WithClientStream(false)).Service(ctx, "farm")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the Updates seen by another Client", func() bool {
		insts := svc.Instances()
		for _, in := range insts {
			var i int
			fmt.Sscanf(in.ID, "f%d", &i)
			if in.Weight != 10+i {
				return false
			}
		}
		return len(insts) == n
	})

	// Too large for a frame: REST answers it, naming the quota.
	big := strings.Repeat("x", api.MaxFrameBytes)
	err = ms[0].Update(ctx, sdk.SetMeta(map[string]string{"b": big}))
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status() != http.StatusRequestEntityTooLarge {
		t.Fatalf("Update with %d bytes of meta = %v, want a 413", len(big), err)
	}
	before := sdk.StreamWrites(cl)
	if err := ms[1].Update(ctx, sdk.SetWeight(1)); err != nil {
		t.Fatal(err)
	}
	if sdk.StreamWrites(cl) != before+1 {
		t.Fatal("the write after a refused large one did not go on the stream")
	}

	// The configuration store's writes ride the stream too.
	kvBefore := sdk.StreamWrites(cl)
	kv, err := cl.Put(ctx, "app/flag", []byte("on"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CompareAndSet(ctx, "app/flag", []byte("off"), kv.ModIndex+1000); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("CompareAndSet with a stale index = %v, want a conflict", err)
	}
	if _, err := cl.Txn(ctx, new(sdk.Txn).IfModIndex("app/flag", kv.ModIndex).Put("app/flag", []byte("off"))); err != nil {
		t.Fatal(err)
	}
	if got := sdk.StreamWrites(cl) - kvBefore; got != 3 {
		t.Fatalf("%d of 3 configuration writes answered on the stream", got)
	}
	rest := c.Connect(t, sdk.WithClientStream(false))
	if got, err := rest.Get(ctx, "app/flag"); err != nil || string(got.Value) != "off" {
		t.Fatalf("Get over REST = %+v, %v, want off", got, err)
	}
	if _, err := cl.Put(ctx, "app/gone", []byte("1")); err != nil {
		t.Fatal(err)
	}
	delBefore := sdk.StreamWrites(cl)
	if err := cl.Delete(ctx, "app/gone"); err != nil {
		t.Fatal(err)
	}
	if got := sdk.StreamWrites(cl) - delBefore; got != 1 {
		t.Fatalf("Delete: %d writes answered on the stream, want 1", got)
	}
	if _, err := rest.Get(ctx, "app/gone"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("Get over REST after the Delete = %v, want not found", err)
	}

	left := sdk.StreamWrites(cl)
	for _, m := range ms {
		if err := m.Leave(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := sdk.StreamWrites(cl) - left; got < 3*n { // drain, deregistration, session's end
		t.Fatalf("%d writes on the stream for %d Leaves, want ≥ %d", got, n, 3*n)
	}
	eventually(t, 5*time.Second, "every member gone", func() bool { return len(svc.Instances()) == 0 })
}
