package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/sdk"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.Cleanup()
	os.Exit(code)
}

// TestConfigDemo runs the example as it is meant to run: three `rafting
// server` processes and three instance processes. A flag flipped by
// another client reaches every instance within a second, and the job's
// ownership moves to another instance when its owner is killed (SIGKILL),
// once the servers end the dead one's session.
func TestConfigDemo(t *testing.T) {
	c := proctest.StartCluster(t, 3, 50*time.Millisecond)
	token := c.CreateTenant("cfg")
	env := []string{"RAFTING_SERVERS=" + c.Addrs(), "RAFTING_TOKEN=" + token}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := sdk.Connect(ctx, sdk.WithServers(strings.Split(c.Addrs(), ",")...), sdk.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Put(ctx, flagKey, []byte(`{"text":"hello"}`)); err != nil {
		t.Fatal(err)
	}

	bin := proctest.Build(t, "github.com/rafting/rafting/examples/config")
	procs := map[string]*proctest.Proc{}
	lines := make(chan [2]string, 256)
	for _, id := range []string{"cfg-1", "cfg-2", "cfg-3"} {
		p := proctest.Start(t, id, bin, env, "-role", "instance", "-id", id)
		procs[id] = p
		sub := p.Subscribe()
		go func() {
			for l := range sub {
				lines <- [2]string{id, l}
			}
		}()
	}
	// wait returns, once want instances did, the instances that printed a
	// line containing what, among the lines from the from-th on; it fails t
	// after timeout.
	var history [][2]string
	wait := func(what string, want int, from int, timeout time.Duration) map[string]bool {
		t.Helper()
		deadline := time.After(timeout)
		for {
			seen := map[string]bool{}
			for _, l := range history[from:] {
				if strings.Contains(l[1], what) {
					seen[l[0]] = true
				}
			}
			if len(seen) >= want {
				return seen
			}
			select {
			case l := <-lines:
				history = append(history, l)
			case <-deadline:
				for id, p := range procs {
					t.Logf("%s: stdout %q, stderr %q", id, p.Lines(), p.Stderr())
				}
				t.Fatalf("%d instances printed %q within %v, want %d: %v", len(seen), what, timeout, want, seen)
			}
		}
	}
	wait(`flag "hello"`, 3, 0, 30*time.Second)
	owners := wait("owns the report job", 1, 0, 30*time.Second)

	flipped := len(history)
	if _, err := client.Put(ctx, flagKey, []byte(`{"text":"hello","loud":true}`)); err != nil {
		t.Fatal(err)
	}
	wait(`flag "HELLO"`, 3, flipped, time.Second)

	var owner string
	for id := range owners {
		owner = id
	}
	killed := len(history)
	procs[owner].Kill()
	next := wait("owns the report job", 1, killed, 5*time.Second)
	if next[owner] {
		t.Fatalf("the killed owner %s owns the job again", owner)
	}
	kv, err := client.Get(ctx, ownerKey)
	if err != nil {
		t.Fatal(err)
	}
	if string(kv.Value) == owner {
		t.Fatalf("the owner key still names the killed %s", owner)
	}
}
