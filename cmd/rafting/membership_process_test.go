package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
)

// Day-two membership edges (issue 24), with real processes.

// startServer starts a `rafting server` process for node id of c with
// these flags (beside --data, the log level and --rtt), as an operator
// would by hand.
func startServer(t *testing.T, c *proctest.Cluster, s *proctest.Server, flags ...string) *proctest.Proc {
	t.Helper()
	args := append([]string{"server", "--data", s.Dir, "--log-level", "info", "--rtt", "20ms"}, flags...)
	return proctest.Start(t, "server"+strconv.Itoa(s.ID), proctest.Build(t, binPkg),
		[]string{"RAFTING_ADMIN_TOKEN=" + proctest.AdminToken}, args...)
}

// exited waits up to d for p to exit and reports whether it did.
func exited(p *proctest.Proc, d time.Duration) bool {
	select {
	case <-p.Exited():
		return true
	case <-time.After(d):
		return false
	}
}

// TestRejoinWipedDataDirSameID: a member whose data dir was lost (wiped)
// and that is started again with its used --id and --join is refused
// before Raft starts, with a message that says to join under a new ID;
// it does not crash-loop on Dragonboat's "invalid commitTo" panic, and
// the cluster keeps serving.
func TestRejoinWipedDataDirSameID(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := proctest.StartCluster(t, 3, 20*time.Millisecond)
	token := c.CreateTenant("acme")
	for i := range 5 {
		c.Retry(1, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/w"+strconv.Itoa(i), api.RegisterRequest{Address: "a:1"})
	}
	s := c.Servers[2]
	s.Proc.Kill()
	if err := os.RemoveAll(s.Dir); err != nil {
		t.Fatal(err)
	}
	p := startServer(t, c, s, "--id", "3", "--api", s.API, "--raft", s.Raft, "--join", c.Servers[0].API)
	if !exited(p, 30*time.Second) {
		t.Fatalf("a node rejoining with a wiped data dir and its used --id kept running:\n%s", p.Stderr())
	}
	out := p.Stderr()
	if p.ExitErr() == nil || strings.Contains(out, "panic") || !strings.Contains(out, "new --id") {
		t.Fatalf("exit %v; want a refusal (no panic) that says to join under a new --id; stderr:\n%s", p.ExitErr(), out)
	}
	// The cluster is unharmed: the other two still serve writes.
	if code, b := c.Retry(2, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/after", api.RegisterRequest{Address: "a:2"}); code != http.StatusCreated {
		t.Fatalf("write after the refused rejoin = %d %s", code, b)
	}
	for _, s := range c.Servers[:2] {
		stop(t, s.Proc)
	}
}

// TestRestartWipedDataDirInitialCluster: a member whose data dir was lost
// and that is started again as its unit file starts it — its used --id
// and --initial-cluster, as on the first start — does not serve, does not
// harm the cluster, and ends with a message that says what happened and to
// join under a new --id; started again the same way, it is refused before
// Raft starts.
func TestRestartWipedDataDirInitialCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := proctest.StartCluster(t, 3, 20*time.Millisecond)
	token := c.CreateTenant("acme")
	for i := range 5 {
		c.Retry(1, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/w"+strconv.Itoa(i), api.RegisterRequest{Address: "a:1"})
	}
	s := c.Servers[2]
	s.Proc.Kill()
	if err := os.RemoveAll(s.Dir); err != nil {
		t.Fatal(err)
	}
	flags := []string{"--id", "3", "--api", s.API, "--raft", s.Raft, "--initial-cluster", c.InitialCluster()}
	p := startServer(t, c, s, flags...)
	if !exited(p, 30*time.Second) {
		t.Fatalf("a node restarted with a wiped data dir and its used --id kept running:\n%s", p.Stderr())
	}
	if out := p.Stderr(); p.ExitErr() == nil || !strings.Contains(out, "new --id") {
		t.Fatalf("exit %v; want a failure that says to join under a new --id; stderr:\n%s", p.ExitErr(), out)
	}
	again := startServer(t, c, s, flags...)
	if !exited(again, 15*time.Second) {
		t.Fatalf("started again, it kept running:\n%s", again.Stderr())
	}
	if out := again.Stderr(); again.ExitErr() == nil || strings.Contains(out, "panic") || !strings.Contains(out, "new --id") {
		t.Fatalf("started again: exit %v; want a refusal before Raft starts (no panic) that says to join under a new --id; stderr:\n%s", again.ExitErr(), out)
	}
	if code, b := c.Retry(2, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/after", api.RegisterRequest{Address: "a:2"}); code != http.StatusCreated {
		t.Fatalf("write after the wiped restart = %d %s", code, b)
	}
	for _, s := range c.Servers[:2] {
		stop(t, s.Proc)
	}
}

// TestJoinerServesNothingStale: a node joining a cluster whose tenant
// holds instances answers a read of the tenant with 503 until its replica
// has caught up, never with an empty or older state: every 200 from it,
// from the moment its process starts, holds every instance registered
// before the join and an index at least the one the cluster answered.
func TestJoinerServesNothingStale(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := proctest.StartCluster(t, 3, 20*time.Millisecond)
	token := c.CreateTenant("acme")
	const n = 20
	for i := range n {
		c.Retry(1, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/w"+strconv.Itoa(i), api.RegisterRequest{Address: "a:1"})
	}
	_, b := c.Retry(1, token, http.MethodGet, "/v1/tenants/acme/services/web?consistent=true", nil)
	var before api.ServiceResponse
	if err := json.Unmarshal(b, &before); err != nil || len(before.Instances) != n {
		t.Fatalf("before the join: %v %s", err, b)
	}
	c.Join(1) // a 4th node, then a 5th, watched from its start
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() { // a writer throughout, as the issue's
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-stopWriter:
				return
			default:
			}
			proctest.Call(http.MethodPut, "http://"+c.Servers[i%3].API+"/v1/tenants/acme/services/other/instances/o", token, api.RegisterRequest{Address: "a:" + strconv.Itoa(i)})
		}
	}()
	defer func() { close(stopWriter); <-writerDone }()
	s := &proctest.Server{ID: 5, API: proctest.FreePort(t), Raft: proctest.FreePort(t), Dir: filepath.Join(t.TempDir(), "n5")}
	p := startServer(t, c, s, "--id", "5", "--api", s.API, "--raft", s.Raft, "--join", c.Servers[0].API)
	url := "http://" + s.API + "/v1/tenants/acme/services/web"
	deadline := time.Now().Add(60 * time.Second)
	var oks, unavailable int
	for oks < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("the joined node answered 200 %d times in 60s (503 %d times):\n%s", oks, unavailable, p.Stderr())
		}
		u := url
		if oks%2 == 1 {
			u += "?consistent=true"
		}
		code, b, err := proctest.Call(http.MethodGet, u, token, nil)
		switch {
		case err != nil:
		case code == http.StatusOK:
			oks++
			var got api.ServiceResponse
			if err := json.Unmarshal(b, &got); err != nil || len(got.Instances) != n || got.Index < before.Index {
				t.Fatalf("the joining node answered 200 with index %d and %d instances (the cluster: index %d, %d instances): %s",
					got.Index, len(got.Instances), before.Index, n, b)
			}
		case code == http.StatusServiceUnavailable:
			unavailable++
		default:
			t.Fatalf("the joining node answered %d %s", code, b)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("503 %d times, then 200", unavailable)
	stop(t, p)
	for _, s := range c.Servers {
		stop(t, s.Proc)
	}
}

// TestRemovedNodeExits: a node removed (`rafting cluster remove 3`, from
// another node) while it runs learns it, refuses tenant traffic with a 503
// that says it was removed, and its process ends with a failure that says
// so (a supervisor does not restart it into serving stale data); started
// again on its data dir, it ends the same way instead of waiting for ever.
func TestRemovedNodeExits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := proctest.StartCluster(t, 3, 20*time.Millisecond)
	token := c.CreateTenant("acme")
	c.Retry(1, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/w1", api.RegisterRequest{Address: "a:1"})
	s := c.Servers[2]
	var out bytes.Buffer
	if err := run([]string{"cluster", "remove", "3", "--servers", c.Servers[0].API, "--token", proctest.AdminToken, "-o", "json"}, &out, &out); err != nil {
		t.Fatalf("rafting cluster remove 3: %v\n%s", err, out.String())
	}
	// The cluster moves on without it.
	c.Retry(1, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/w2", api.RegisterRequest{Address: "a:2"})
	deadline := time.Now().Add(30 * time.Second)
	for !exited(s.Proc, 0) {
		if time.Now().After(deadline) {
			t.Fatalf("the removed node still runs 30s after its removal:\n%s", s.Proc.Stderr())
		}
		code, b, err := proctest.Call(http.MethodGet, "http://"+s.API+"/v1/tenants/acme/services/web", token, nil)
		if err == nil && code == http.StatusOK && !strings.Contains(string(b), `"w2"`) {
			t.Logf("before it learned of its removal, node 3 answered a stale read: %s", b)
		}
		if err == nil && code == http.StatusServiceUnavailable && strings.Contains(string(b), "removed from the cluster") {
			var e struct{ Error struct{ Code string } }
			if json.Unmarshal(b, &e); e.Error.Code != string(api.CodeUnavailable) {
				t.Errorf("a removed node's refusal has code %q, want %q: %s", e.Error.Code, api.CodeUnavailable, b)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	check := func(p *proctest.Proc) {
		t.Helper()
		if err := p.ExitErr(); err == nil || !strings.Contains(p.Stderr(), "was removed from the cluster") || !strings.Contains(p.Stderr(), "new --id") {
			t.Fatalf("the removed node exited with %v; want a failure that says it was removed; stderr:\n%s", err, p.Stderr())
		}
	}
	check(s.Proc)
	t.Logf("the removed node ended: %s", s.Proc.Stderr())
	// Started again by a supervisor, it learns it from its peers and ends.
	c.Restart(3)
	if !exited(s.Proc, 30*time.Second) {
		t.Fatalf("the removed node, restarted, still runs after 30s:\n%s", s.Proc.Stderr())
	}
	check(s.Proc)
	for _, s := range c.Servers[:2] {
		stop(t, s.Proc)
	}
}
