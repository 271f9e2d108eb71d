package sdk_test

import (
	"log/slog"
	"os"
	"testing"
	"time"

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
