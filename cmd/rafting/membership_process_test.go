package main

import (
	"net/http"
	"os"
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
