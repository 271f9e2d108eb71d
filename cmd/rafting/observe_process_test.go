package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
)

// Logs and metrics an operator reads (issue 24, item 8), with real
// processes at --log-level info.

// logsSince is what server s wrote on stderr after mark bytes of it.
func logsSince(s *proctest.Server, mark int) string {
	l := s.Proc.Stderr()
	if mark > len(l) {
		return ""
	}
	return l[mark:]
}

// levelLines is the lines of log at a level (level=ERROR, ...).
func levelLines(log, level string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level="+level) {
			out = append(out, l)
		}
	}
	return out
}

// waitLog waits up to 20 s until server s's log (after mark) has a line
// matching re, and returns it.
func waitLog(t *testing.T, s *proctest.Server, mark int, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := rx.FindString(logsSince(s, mark)); m != "" {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %d logged no line matching %s; it logged:\n%s", s.ID, re, logsSince(s, mark))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPlannedRestartLogsNoError: a rolling restart of every server, each
// stopped with SIGTERM and waited for, writes no ERROR line on any node,
// the restarted one included; and every node logs at INFO the shard
// leaderships that moved.
func TestPlannedRestartLogsNoError(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := proctest.StartClusterWith(t, proctest.Options{RTT: 20 * time.Millisecond, Args: []string{"--log-level", "info"}})
	token := c.CreateTenant("acme")
	load := startLoad(t, token, "acme", func() []string { return strings.Split(c.Addrs(), ",") })
	marks := map[int]int{}
	for _, s := range c.Servers {
		marks[s.ID] = len(s.Proc.Stderr())
	}
	for _, s := range c.Servers {
		stop(t, s.Proc)
		c.Restart(s.ID)
		c.WaitServerReady(s.ID)
		marks[s.ID] = 0 // a new process: its whole log counts
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // what the others log once the last is back
	load.Stop()
	for _, s := range c.Servers {
		if errs := levelLines(logsSince(s, marks[s.ID]), "ERROR"); len(errs) > 0 {
			t.Errorf("server %d logged %d ERROR lines during a planned rolling restart:\n%s", s.ID, len(errs), strings.Join(errs, "\n"))
		}
		waitLog(t, s, marks[s.ID], `level=INFO msg="shard leader: [^"]*" .*shard=\d+ term=\d+ leader_node=\d+`)
	}
	for _, s := range c.Servers {
		stop(t, s.Proc)
	}
}

// TestLogLevelReachesDragonboat: --log-level debug lets Dragonboat's own
// debug and info lines through (pkg=...); --log-level error lets none of
// its warnings through.
func TestLogLevelReachesDragonboat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := proctest.StartClusterWith(t, proctest.Options{RTT: 20 * time.Millisecond, Args: []string{"--log-level", "debug"}})
	for _, s := range c.Servers {
		if !regexp.MustCompile(`level=(DEBUG|INFO) msg=.* pkg=(raft|dragonboat|rsm|transport|logdb)`).MatchString(s.Proc.Stderr()) {
			t.Fatalf("at --log-level debug, server %d logged no debug or info line of Dragonboat's:\n%s", s.ID, s.Proc.Stderr())
		}
	}
	for _, s := range c.Servers {
		stop(t, s.Proc)
	}
	quiet := proctest.StartClusterWith(t, proctest.Options{RTT: 20 * time.Millisecond, Args: []string{"--log-level", "error"}})
	quiet.CreateTenant("acme")
	for _, s := range quiet.Servers {
		if l := regexp.MustCompile(`level=(DEBUG|INFO|WARN) .*`).FindString(s.Proc.Stderr()); l != "" {
			t.Fatalf("at --log-level error, server %d logged %q", s.ID, l)
		}
		stop(t, s.Proc)
	}
}

// TestOperatorActionsLogged: tenant and token actions, joins and removals
// are logged at INFO on the node that made them, with who asked; a node is
// removed only after its leaderships were moved off it (every shard has a
// leader when the removal answers); a leader transfer moves a shard's
// leadership where asked; and 401s count per tenant in /metrics.
func TestOperatorActionsLogged(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	// R is 4, so that the tenant's shard gets a replica on the node that
	// joins, and it can lead it.
	c := proctest.StartClusterWith(t, proctest.Options{RTT: 20 * time.Millisecond, Args: []string{"--log-level", "info", "--replicas", "4"}})
	s1 := c.Servers[0]
	cli := func(args ...string) []byte {
		t.Helper()
		var out bytes.Buffer
		args = append(args, "--servers", s1.API, "--token", proctest.AdminToken, "-o", "json")
		if err := run(args, &out, &out); err != nil {
			t.Fatalf("rafting %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.Bytes()
	}
	mark := len(s1.Proc.Stderr())
	var ten api.Tenant
	if err := json.Unmarshal(cli("tenant", "create", "acme", "--secret", proctest.Secret("acme")), &ten); err != nil {
		t.Fatal(err)
	}
	var rotated api.Tenant
	if err := json.Unmarshal(cli("tenant", "rotate-token", "acme", "--secret", proctest.Secret("acme-2"), "--previous-valid", "1h"), &rotated); err != nil {
		t.Fatal(err)
	}
	_, metrics, _ := c.Call(1, proctest.AdminToken, http.MethodGet, "/metrics", nil)
	if !regexp.MustCompile(`(?m)^rafting_tenant_previous_token_expiry_timestamp_seconds\{tenant="acme"\} \d`).Match(metrics) {
		t.Errorf("/metrics does not show when acme's previous token expires: %s", grepLines(string(metrics), "previous_token"))
	}
	cli("tenant", "revoke-previous", "acme")
	cli("tenant", "update", "acme", "--max-instances", "500")
	by := `by="admin at 127\.0\.0\.1:\d+"`
	for _, re := range []string{
		`level=INFO msg="tenant created" .*` + by + ` tenant=acme`,
		`level=INFO msg="tenant token rotated" .*` + by + ` tenant=acme previous_valid=1h0m0s`,
		`level=INFO msg="tenant previous token revoked" .*` + by + ` tenant=acme`,
		`level=INFO msg="tenant quotas changed" .*` + by + ` tenant=acme`,
	} {
		waitLog(t, s1, mark, re)
	}
	if strings.Contains(logsSince(s1, mark), ten.Token) || strings.Contains(logsSince(s1, mark), proctest.Secret("acme")) {
		t.Fatal("a token or its secret is in the log")
	}

	// 401s per tenant: the old token, revoked, is refused and counted.
	for range 3 {
		proctest.Call(http.MethodGet, "http://"+s1.API+"/v1/tenants/acme/services", ten.Token, nil)
	}
	_, metrics, _ = c.Call(1, proctest.AdminToken, http.MethodGet, "/metrics", nil)
	if !regexp.MustCompile(`(?m)^rafting_http_unauthorized_total\{tenant="acme"\} [3-9]`).Match(metrics) {
		t.Errorf("/metrics does not count the 401s of tenant acme: %s", grepLines(string(metrics), "unauthorized|previous_token"))
	}

	// A join, logged with who asked.
	mark = len(s1.Proc.Stderr())
	fourth := c.Join(1)
	waitLog(t, s1, mark, `level=INFO msg="node joined: [^"]*" .*member=4 .*by="admin at 127\.0\.0\.1:\d+"`)

	// The tenant's shard gets its fourth replica on node 4, in steps.
	var cl api.Cluster
	for deadline := time.Now().Add(60 * time.Second); !votingOn(cl, "acme", 4); {
		if time.Now().After(deadline) {
			t.Fatalf("acme's shard has no voting replica on node 4 a minute after it joined: %+v", cl.Shards)
		}
		time.Sleep(100 * time.Millisecond)
		cl = api.Cluster{}
		if err := json.Unmarshal(cli("cluster"), &cl); err != nil {
			t.Fatal(err)
		}
	}
	// Leadership moved where asked: the tenant's and the meta shard's to node 4.
	if err := json.Unmarshal(cli("cluster", "transfer-leader", "--tenant", "acme", "--to", "4"), &cl); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(cli("cluster", "transfer-leader", "--shard", "1", "--to", "4"), &cl); err != nil {
		t.Fatal(err)
	}
	for _, sh := range cl.Shards {
		if sh.Leader != 4 {
			t.Fatalf("after transfer-leader --to 4, shard %d is led by node %d", sh.ShardID, sh.Leader)
		}
	}
	// Node 4 removed while it leads everything, under load: its
	// leaderships are moved off first, and clients see nothing.
	load := startLoad(t, rotated.Token, "acme", func() []string { return strings.Split(c.Addrs(), ",")[:3] })
	for load.Acked() < 20 {
		time.Sleep(20 * time.Millisecond)
	}
	mark = len(s1.Proc.Stderr())
	if err := json.Unmarshal(cli("cluster", "remove", "4"), &cl); err != nil {
		t.Fatal(err)
	}
	for _, sh := range cl.Shards {
		if sh.Leader == 0 || sh.Leader == 4 {
			t.Errorf("when the removal of node 4 answered, shard %d was led by %d: its leadership was not moved off first", sh.ShardID, sh.Leader)
		}
	}
	waitLog(t, s1, mark, `level=INFO msg="node removal requested" .*member=4 by="admin at 127\.0\.0\.1:\d+"`)
	waitLog(t, s1, mark, `level=INFO msg="leaderships moved off the node before its removal" .*member=4 shards=2`)
	waitLog(t, s1, mark, `level=INFO msg="node removed: [^"]*" .*member=4 by="admin at 127\.0\.0\.1:\d+"`)
	start := time.Now()
	for load.Acked() < 40 && time.Since(start) < 20*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	load.Stop()
	<-fourth.Proc.Exited() // a removed node ends
	for _, s := range c.Servers[:3] {
		stop(t, s.Proc)
	}
}

// votingOn says whether the shard of tenant has a voting replica on node
// and no move under way.
func votingOn(cl api.Cluster, tenant string, node uint64) bool {
	for _, sh := range cl.Shards {
		if sh.Tenant != tenant || sh.Move != nil {
			continue
		}
		for replica, n := range sh.Replicas {
			if n == node && !slices.Contains(sh.NonVoting, replica) {
				return true
			}
		}
	}
	return false
}

// grepLines is the lines of s that match re.
func grepLines(s, re string) string {
	var out []string
	rx := regexp.MustCompile(re)
	for _, l := range strings.Split(s, "\n") {
		if rx.MatchString(l) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
