package sdk_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// streamNode is the node that holds the tenant's one client stream.
func streamNode(t *testing.T, c *sdktest.Cluster, skip int) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for id := 1; id <= 3; id++ {
			if id != skip && c.Servers.Server(id) != nil && c.Servers.Server(id).API().OpenStreams() > 0 {
				return id
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no node holds a client stream")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStreamWatchMovedRestart: the stream's node ends it with moved
// (CloseStreams), then stops, then crashes: each time the Client opens the
// stream again, watches from the index it had (no new snapshot after a
// moved: the server finds it covered), never goes back, and follows the
// changes made meanwhile to what a REST read shows.
func TestStreamWatchMovedRestart(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Quotas: api.Quotas{RequestsPerSecond: 100_000, Burst: 100_000, WritesPerSecond: 100_000}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.Connect(t, sdk.WithClientStream(true), sdk.WithQuarantine(0))
	svc, err := cl.Service(ctx, "fo")
	if err != nil {
		t.Fatal(err)
	}
	h := record(t, svc)
	joiner := c.Connect(t)
	n := 0
	join := func(k int) {
		t.Helper()
		for range k {
			n++
			if _, err := joiner.Join(ctx, sdk.Instance{Service: "fo", ID: fmt.Sprintf("i-%03d", n), Address: "10.0.0.1:80"}, sdk.WithDrainDelay(0)); err != nil {
				t.Fatal(err)
			}
		}
	}
	join(3)
	waitSame(t, c, svc, "first")
	_, snaps0, _ := sdk.StreamStats(cl)

	// moved: the node ends every stream, moved first.
	id := streamNode(t, c, 0)
	watched, snaps, _ := sdk.StreamStats(cl)
	c.Servers.Server(id).API().CloseStreams(time.Second)
	// Nothing changes until the watch is back: it must find its index
	// covered.
	deadline := time.Now().Add(10 * time.Second)
	for w, _, _ := sdk.StreamStats(cl); w == watched; w, _, _ = sdk.StreamStats(cl) {
		if time.Now().After(deadline) {
			t.Fatal("the watch did not start again after moved")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, s, _ := sdk.StreamStats(cl); s != snaps {
		t.Fatalf("after moved: snapshots %d→%d (%d at first): want none, the watch's index was current", snaps, s, snaps0)
	}
	join(3)
	waitSame(t, c, svc, "after moved")

	// A graceful stop of the stream's node (moved as it closes), and a
	// restart.
	id = streamNode(t, c, 0)
	c.Servers.StopNode(id)
	join(3)
	waitSame(t, c, svc, "node stopped")
	c.Servers.StartNode(id)

	// A crash: no moved, the connection just goes.
	id = streamNode(t, c, 0)
	c.Servers.AbortNode(id)
	join(3)
	waitSame(t, c, svc, "node crashed")
	c.Servers.StartNode(id)
	join(1)
	waitSame(t, c, svc, "node back")
	checkOrder(t, "stream", h, nil)
	if got := svc.Snapshot(); got.Stale || len(got.Instances) != n {
		t.Fatalf("snapshot stale %v with %d instances, want %d fresh", got.Stale, len(got.Instances), n)
	}
}

// TestStreamClose: Close of a Client on the stream leaves no goroutine
// behind.
func TestStreamClose(t *testing.T) {
	c := sdktest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ignore := goleak.IgnoreCurrent()
	cl, err := sdk.Connect(ctx, append(c.Options(), sdk.WithClientStream(true))...)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"a", "b", "c"} {
		if _, err := cl.Service(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	streamNode(t, c, 0)
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	// The servers' ends of the stream (handlers, connections) wind down
	// after the Client's: poll with a deadline.
	// The servers' Raft transport opens connections between the nodes
	// whenever it wants: not the Client's.
	raft := goleak.IgnoreAnyFunction("github.com/lni/dragonboat/v4/internal/transport.(*TCP).serveConn")
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := goleak.Find(ignore, raft)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
