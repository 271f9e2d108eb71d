package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/tenants"
)

// TestRestartWithOnlyDataKeepsAdminToken (issue 24, item 5): a server
// restarted with only --data — no --admin-token-file, no
// RAFTING_ADMIN_TOKEN — keeps accepting the admin token it last ran with
// (the data dir remembers its SHA-256, in a file only its owner may read)
// and says at startup which admin token is in effect; and the CLI, given
// several servers, asks the next one when one answers 401.
func TestRestartWithOnlyDataKeepsAdminToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := proctest.StartCluster(t, 3, 20*time.Millisecond)
	s := c.Servers[0]
	stop(t, s.Proc)
	file := filepath.Join(s.Dir, "node.json")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var id identity
	if err := json.Unmarshal(raw, &id); err != nil || id.AdminTokenSHA256 != tenants.HashToken(proctest.AdminToken).String() ||
		strings.Contains(string(raw), proctest.AdminToken) {
		t.Fatalf("node.json = %s (%v), want the admin token's SHA-256 and not the token", raw, err)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("node.json: %v, mode %v; want 0600", err, st.Mode().Perm())
	}

	// Only --data, and no token in the environment.
	s.Proc = proctest.Start(t, "server1", proctest.Build(t, binPkg), []string{"RAFTING_ADMIN_TOKEN="},
		"server", "--data", s.Dir, "--log-level", "info", "--rtt", "20ms")
	c.WaitServerReady(1)
	if code, b, err := c.Call(1, proctest.AdminToken, http.MethodGet, "/v1/cluster", nil); err != nil || code != http.StatusOK {
		t.Fatalf("admin call to the node restarted with only --data = %d %s %v, want 200", code, b, err)
	}
	if log := s.Proc.Stderr(); !strings.Contains(log, "admin token: the one the data dir remembers") {
		t.Fatalf("the restarted node does not say which admin token is in effect:\n%s", log)
	}

	// Node 2 restarted with another admin token answers the cluster's
	// 401; the CLI, given node 2 first, asks node 1 next.
	other := c.Servers[1]
	stop(t, other.Proc)
	other.Proc = proctest.Start(t, "server2", proctest.Build(t, binPkg), []string{"RAFTING_ADMIN_TOKEN=rfa_another-admin-9876543210fedcbaQRS"},
		"server", "--data", other.Dir, "--log-level", "info", "--rtt", "20ms")
	c.WaitServerReady(2)
	if code, _, _ := c.Call(2, proctest.AdminToken, http.MethodGet, "/v1/cluster", nil); code != http.StatusUnauthorized {
		t.Fatalf("node 2 with another admin token answers %d, want 401", code)
	}
	var out bytes.Buffer
	if err := run([]string{"cluster", "--servers", other.API + "," + s.API, "--token", proctest.AdminToken}, &out, &out); err != nil {
		t.Fatalf("rafting cluster, node 2 (401) then node 1: %v\n%s", err, out.String())
	}
	for _, s := range c.Servers {
		stop(t, s.Proc)
	}
}
