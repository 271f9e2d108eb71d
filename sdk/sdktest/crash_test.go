package sdktest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestCrash: a crashed member is removed by the servers as a kill -9'd
// process is — the dropped stream's drop_grace, well before its TTL, and
// never through draining — with every other member of its process (its
// Client), and a crashed master's standby takes over.
func TestCrash(t *testing.T) {
	c := sdktest.Start(t)
	const ttl = 20 * time.Second // far above drop_grace: a removal before it is the stream's doing

	t.Run("Farm", func(t *testing.T) {
		f1 := c.Join(t, sdk.Instance{Service: "farm", ID: "f1", Address: "127.0.0.1:1"}, sdk.WithTTL(ttl))
		shared := c.Connect(t, sdk.WithTTL(ttl))
		f2, err := shared.Join(ctx(t), sdk.Instance{Service: "farm", ID: "f2", Address: "127.0.0.1:2"})
		if err != nil {
			t.Fatal(err)
		}
		f3, err := shared.Join(ctx(t), sdk.Instance{Service: "farm", ID: "f3", Address: "127.0.0.1:3"})
		if err != nil {
			t.Fatal(err)
		}
		svc, err := c.Connect(t, sdk.WithQuarantine(0)).Service(ctx(t), "farm")
		if err != nil {
			t.Fatal(err)
		}
		c.WaitEndpoints(t, svc, 3)
		drained := watchDrains(t, svc)

		crashed := time.Now()
		c.Crash(t, f2) // its process, the shared Client: f3 goes with it, f1 stays
		c.WaitEndpoints(t, svc, 1)
		if d := time.Since(crashed); d > ttl/2 {
			t.Fatalf("the servers removed a crashed process's members after %v: their TTL's doing, not its dropped stream's", d)
		}
		if _, ok := svc.Snapshot().Instance("f1"); !ok || f1.Err() != nil {
			t.Fatalf("f1, on a Client of its own, is gone with the crashed f2's process (err %v)", f1.Err())
		}
		crashed = time.Now()
		c.Crash(t, f1) // its own Client goes with it
		c.WaitEndpoints(t, svc, 0)
		if d := time.Since(crashed); d > ttl/2 {
			t.Fatalf("the servers removed a crashed member after %v: its TTL's doing, not its dropped stream's", d)
		}
		if got := drained(); len(got) > 0 {
			t.Fatalf("crashed members %v were drained first: a crash says nothing to the servers", got)
		}
		for _, m := range []*sdk.Member{f1, f2, f3} {
			select {
			case <-m.Done():
			default:
				t.Fatalf("%s: Done not closed after Crash", m.ID())
			}
			if !errors.Is(m.Err(), sdk.ErrSessionLost) {
				t.Fatalf("%s: Err() = %v after Crash, want ErrSessionLost", m.ID(), m.Err())
			}
		}
	})

	t.Run("Master", func(t *testing.T) {
		inst := sdk.Instance{Service: "db", Mode: sdk.MasterStandby}
		a, b := inst, inst
		a.ID, a.Address, a.Priority = "a", "127.0.0.1:1", 10
		b.ID, b.Address = "b", "127.0.0.1:2"
		ma := c.Join(t, a, sdk.WithTTL(ttl))
		waitFor(t, "a to be master", ma.IsMaster)
		mb := c.Join(t, b, sdk.WithTTL(ttl))
		token := fencingToken(ma)
		crashed := time.Now()
		c.Crash(t, ma)
		waitFor(t, "b to take over", mb.IsMaster)
		if d := time.Since(crashed); d > ttl/2 {
			t.Fatalf("the standby took over %v after the master crashed: its TTL's doing, not its dropped stream's", d)
		}
		if fencingToken(mb) <= token {
			t.Fatalf("the new master's token %d is not above the crashed one's %d", fencingToken(mb), token)
		}
	})
}

// TestWaitEndpointsNamesWhatItSaw: WaitEndpoints fails after WaitTimeout,
// saying what the cache held.
func TestWaitEndpointsNamesWhatItSaw(t *testing.T) {
	c := sdktest.Start(t)
	c.Join(t, sdk.Instance{Service: "web", ID: "w1", Address: "127.0.0.1:1"})
	c.Join(t, sdk.Instance{Service: "web", ID: "w2", Address: "127.0.0.1:2"}, sdk.WithTwoStepStartup())
	svc, err := c.Connect(t).Service(ctx(t), "web")
	if err != nil {
		t.Fatal(err)
	}
	c.WaitTimeout = 100 * time.Millisecond
	c.WaitEndpoints(t, svc, 1)
	f := &fatal{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.WaitEndpoints(f, svc, 2)
	}()
	<-done
	for _, want := range []string{"service web", "1 endpoints", "want 2", "w1@127.0.0.1:1", "w2@127.0.0.1:2 (starting"} {
		if !strings.Contains(f.msg, want) {
			t.Errorf("WaitEndpoints failed with %q, want it to say %q", f.msg, want)
		}
	}
}

// fatal is a testing.TB whose Fatalf records the message and ends the
// goroutine, as testing's does.
type fatal struct {
	testing.TB
	msg string
}

func (f *fatal) Helper() {}
func (f *fatal) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// watchDrains records the instances svc ever lists as draining.
func watchDrains(t *testing.T, svc *sdk.Service) func() []string {
	wctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var drained []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for snap := range svc.Watch(wctx) {
			for _, in := range snap.Instances {
				if in.State == api.StateDraining {
					mu.Lock()
					drained = append(drained, in.ID)
					mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), drained...)
	}
}

// fencingToken is the member's token while it is Master, else 0.
func fencingToken(m *sdk.Member) uint64 {
	t, _ := m.Mastership()
	return t.Token
}
