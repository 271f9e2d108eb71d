package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/tenants"
)

// These tests run the real binary in separate processes (internal/proctest):
// a test about processes dying needs processes.

const binPkg = "github.com/rafting/rafting/cmd/rafting"

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.Cleanup()
	os.Exit(code)
}

// stop ends p with SIGTERM and fails t unless it exits cleanly within 20 s.
func stop(t *testing.T, p *proctest.Proc) {
	t.Helper()
	if !p.Stop(20 * time.Second) {
		t.Errorf("%s: no graceful stop within 20s", p.Name)
	} else if err := p.ExitErr(); err != nil {
		t.Errorf("%s: graceful stop: %v", p.Name, err)
	}
}

// TestFullRestartAfterKill: three `rafting server` processes; registrations
// acknowledged; kill -9 of all three; restart each with only --data; every
// acknowledged registration is still there.
func TestFullRestartAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := proctest.StartCluster(t, 3, 20*time.Millisecond)
	token := c.CreateTenant("acme")

	// Registrations through every node; only acknowledged ones count.
	acked := map[string]bool{}
	for i := 0; i < 30; i++ {
		id := fmt.Sprintf("w%02d", i)
		code, b := c.Retry(i%3+1, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/"+id,
			api.RegisterRequest{Address: fmt.Sprintf("10.0.0.%d:80", i)})
		if code != http.StatusCreated {
			t.Fatalf("register %s = %d %s", id, code, b)
		}
		acked[id] = true
	}
	for _, s := range c.Servers {
		s.Proc.Kill() // SIGKILL by PID
	}
	for _, s := range c.Servers {
		c.Restart(s.ID) // only --data: the data dir remembers the rest
	}
	c.WaitReady()
	for _, n := range c.Servers {
		code, b := c.Retry(n.ID, token, http.MethodGet, "/v1/tenants/acme/services/web?consistent=true", nil)
		if code != http.StatusOK {
			t.Fatalf("read on %s = %d %s", n.API, code, b)
		}
		var s api.ServiceResponse
		_ = json.Unmarshal(b, &s)
		got := map[string]bool{}
		for _, in := range s.Instances {
			got[in.ID] = true
		}
		for id := range acked {
			if !got[id] {
				t.Errorf("node %d lost acknowledged registration %s after kill -9 of all nodes", n.ID, id)
			}
		}
	}
	for _, s := range c.Servers {
		stop(t, s.Proc)
	}
}

// TestDamagedPeersFile: a server whose peers.json is damaged refuses to
// start and says what to do; done (the file removed, --initial-cluster
// given), it starts and catches up.
func TestDamagedPeersFile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := proctest.StartCluster(t, 3, 20*time.Millisecond)
	s := c.Servers[2]
	s.Proc.Kill()
	<-s.Proc.Exited()
	file := filepath.Join(s.Dir, "peers.json")
	if err := os.WriteFile(file, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Restart(3)
	select {
	case <-s.Proc.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("a server with a damaged peers.json kept running")
	}
	if err := s.Proc.ExitErr(); err == nil || !strings.Contains(s.Proc.Stderr(), "peers.json") ||
		!strings.Contains(s.Proc.Stderr(), "--initial-cluster") {
		t.Fatalf("exit %v, stderr %q: want a failure naming peers.json and --initial-cluster", err, s.Proc.Stderr())
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	c.Restart(3, "--initial-cluster", c.InitialCluster())
	c.WaitServerReady(3)
	for _, s := range c.Servers {
		stop(t, s.Proc)
	}
}

var tokenLine = regexp.MustCompile(`(?m)^\s+tenant "default" token: (\S+)$`)

// TestDevRestartKeepsState: `rafting dev` creates the default tenant and
// prints a working curl session; a second start reuses the data, the tokens
// and the state, and with -o json prints them as one JSON object.
func TestDevRestartKeepsState(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	apis := []string{proctest.FreePort(t), proctest.FreePort(t), proctest.FreePort(t)}
	rafts := []string{proctest.FreePort(t), proctest.FreePort(t), proctest.FreePort(t)}
	portsOf := func(addrs []string) string {
		var ps []string
		for _, a := range addrs {
			_, p, _ := net.SplitHostPort(a)
			ps = append(ps, p)
		}
		return strings.Join(ps, ",")
	}
	bin := proctest.Build(t, binPkg)
	output := func(p *proctest.Proc) string { return strings.Join(p.Lines(), "\n") }
	// run starts dev and returns its tenant token, read from the banner
	// or, with -o json, from its one JSON object (with the servers).
	run := func(args ...string) (*proctest.Proc, string) {
		p := proctest.Start(t, "dev", bin, []string{"RAFTING_ADMIN_TOKEN="}, append([]string{"dev", "--data", dir, "--api-ports", portsOf(apis), "--raft-ports", portsOf(rafts), "--rtt", "20ms"}, args...)...)
		deadline := time.Now().Add(90 * time.Second)
		for {
			var r devResult
			if m := tokenLine.FindStringSubmatch(output(p)); m != nil {
				return p, m[1]
			} else if json.Unmarshal([]byte(output(p)), &r) == nil {
				if r.Token == "" || r.AdminToken == "" || r.Tenant != "default" || r.Data != dir || !slices.Equal(r.Servers, apis) {
					t.Fatalf("dev -o json printed %+v", r)
				}
				return p, r.Token
			}
			select {
			case <-p.Exited():
				t.Fatalf("dev cluster exited before printing its tokens:\n%s", output(p))
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("dev cluster did not print its tokens:\n%s", output(p))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	p, tok := run()
	// The banner's curl lines, as printed.
	out := output(p)
	var curls []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "curl ") {
			curls = append(curls, l)
		}
	}
	if len(curls) != 2 {
		t.Fatalf("banner has %d curl lines:\n%s", len(curls), out)
	}
	for _, l := range curls {
		cmd := exec.Command("sh", "-c", l)
		cmd.Env = append(os.Environ(), "RAFTING_TOKEN="+tok)
		b, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(b), `"web-1"`) {
			t.Fatalf("banner line %q: %v %s", l, err, b)
		}
	}
	// The README's three lines, as written (with this test's port and dir).
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var script []string
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(l, "export RAFTING_") || (strings.HasPrefix(l, "curl ") && strings.Contains(l, "localhost:7070")) {
			l = strings.ReplaceAll(l, "localhost:7070", apis[0])
			l = strings.ReplaceAll(l, ".rafting-dev", dir)
			script = append(script, l)
		}
	}
	if len(script) != 3 {
		t.Fatalf("README's curl session has %d lines, want 3", len(script))
	}
	b, err := exec.Command("sh", "-c", strings.Join(script, "\n")).CombinedOutput()
	if err != nil || !strings.Contains(string(b), `"web-1"`) || !strings.Contains(string(b), `"instances":[{"id":"web-1"`) {
		t.Fatalf("README's curl session: %v\n%s", err, b)
	}
	if !strings.Contains(out, "admin token:") {
		t.Fatalf("banner lacks the admin token:\n%s", out)
	}
	// The start's progress, on stderr: it can take up to 60 s.
	for _, want := range []string{"dev: starting 3 nodes", "dev: node 1 started", "dev: node 3 started", "dev: waiting for the nodes to be ready", "dev: ready in "} {
		if !strings.Contains(p.Stderr(), want) {
			t.Errorf("dev's stderr lacks the progress line %q:\n%s", want, p.Stderr())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "admin.token")); err != nil {
		t.Fatalf("admin token not written to <data>/admin.token: %v", err)
	}
	stop(t, p)

	p2, tok2 := run("-o", "json")
	if tok2 != tok {
		t.Fatalf("second start printed another tenant token")
	}
	code, b := proctest.Retry(t, http.MethodGet, "http://"+apis[1]+"/v1/tenants/default/services/web?consistent=true", tok, nil)
	var s api.ServiceResponse
	_ = json.Unmarshal(b, &s)
	if code != http.StatusOK || len(s.Instances) != 1 || s.Instances[0].ID != "web-1" {
		t.Fatalf("after restart: %d %s", code, b)
	}
	stop(t, p2)
}

// TestJoin: a fourth `rafting server` started with --join becomes a member:
// it joins the meta shard, serves reads (of a tenant whose shard it holds
// no replica of, through a node that does), and takes part in new tenants.
// A tenant shard keeps R = 3 replicas (placement may move one onto it).
func TestJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := proctest.StartCluster(t, 3, 20*time.Millisecond)
	token := c.CreateTenant("acme")
	c.Retry(2, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/w1", api.RegisterRequest{Address: "a:1"})

	fourth := c.Join(1)
	code, b := c.Retry(fourth.ID, token, http.MethodGet, "/v1/tenants/acme/services/web?consistent=true", nil)
	var s api.ServiceResponse
	_ = json.Unmarshal(b, &s)
	if code != http.StatusOK || len(s.Instances) != 1 {
		t.Fatalf("the joined node answers %d %s", code, b)
	}
	// A move that placement may start onto the joiner holds R+1 replicas
	// for a while (the new one non-voting): look once none is under way.
	var cl api.Cluster
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, b = c.Retry(fourth.ID, proctest.AdminToken, http.MethodGet, "/v1/cluster", nil)
		cl = api.Cluster{}
		_ = json.Unmarshal(b, &cl)
		moving := false
		for _, sh := range cl.Shards {
			moving = moving || sh.Move != nil || len(sh.NonVoting) > 0
		}
		if !moving || time.Now().After(deadline) {
			break
		}
	}
	if len(cl.Nodes) != 4 {
		t.Fatalf("cluster after the join: %s", b)
	}
	for _, sh := range cl.Shards {
		want := 3 // R
		if sh.Tenant == "" {
			want = 4 // the meta shard is on every node
		}
		if len(sh.Replicas) != want {
			t.Fatalf("shard %d has %d replicas after the join, want %d", sh.ShardID, len(sh.Replicas), want)
		}
	}
	// With four members, losing one still leaves a quorum; the joiner votes.
	c.Servers[0].Proc.Kill()
	c.Retry(fourth.ID, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/w2", api.RegisterRequest{Address: "a:2"})
	// A tenant created now has a replica on the new node from the start.
	code, b = c.Retry(2, proctest.AdminToken, http.MethodPost, "/v1/tenants", api.CreateTenantRequest{Name: "later", Secret: tenants.NewSecret()})
	if code != http.StatusCreated {
		t.Fatalf("create tenant after the join = %d %s", code, b)
	}
	for _, s := range c.Servers[1:] {
		stop(t, s.Proc)
	}
}

// TestReplaceLostNode: a node's machine is lost (kill -9, never back). The
// operator removes it (`rafting cluster remove 3`) and joins a new node;
// the cluster then survives losing another node, which it would not with
// the lost node still counted as a member (two of four would be no
// quorum). The removed ID cannot come back.
// waitPromoted waits until tenant's shard has a voting replica on node
// and no move under way, as `rafting cluster` shows it.
func waitPromoted(t *testing.T, c *proctest.Cluster, node uint64, tenant string) {
	t.Helper()
	var last string
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		code, b := c.Retry(1, proctest.AdminToken, http.MethodGet, "/v1/cluster", nil)
		var cl api.Cluster
		if code != http.StatusOK || json.Unmarshal(b, &cl) != nil {
			continue
		}
		for _, sh := range cl.Shards {
			if sh.Tenant != tenant {
				continue
			}
			last = fmt.Sprintf("replicas %v, non-voting %v, move %+v", sh.Replicas, sh.NonVoting, sh.Move)
			for rid, n := range sh.Replicas {
				if n == node && sh.Move == nil && !slices.Contains(sh.NonVoting, rid) {
					return
				}
			}
		}
	}
	t.Fatalf("tenant %s has no voting replica on node %d after 60 s: %s", tenant, node, last)
}

func TestReplaceLostNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := proctest.StartCluster(t, 3, 20*time.Millisecond)
	token := c.CreateTenant("acme")
	c.Retry(1, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/w1", api.RegisterRequest{Address: "a:1"})
	c.Servers[2].Proc.Kill()

	var out bytes.Buffer
	if err := run([]string{"cluster", "remove", "3", "--servers", c.Servers[0].API, "--token", proctest.AdminToken, "-o", "json"}, &out, &out); err != nil {
		t.Fatalf("rafting cluster remove 3: %v\n%s", err, out.String())
	}
	var cl api.Cluster
	if err := json.Unmarshal(out.Bytes(), &cl); err != nil || len(cl.Nodes) != 2 {
		t.Fatalf("cluster after removing node 3: %v\n%s", err, out.String())
	}
	for _, sh := range cl.Shards {
		if _, on := sh.Replicas[3]; on && sh.Tenant == "" || len(sh.Replicas) != 2 {
			t.Fatalf("shard %d after removing node 3: replicas %v", sh.ShardID, sh.Replicas)
		}
	}
	fourth := c.Join(1)
	code, b := c.Retry(fourth.ID, token, http.MethodGet, "/v1/tenants/acme/services/web?consistent=true", nil)
	if code != http.StatusOK || !strings.Contains(string(b), `"w1"`) {
		t.Fatalf("the new node answers %d %s", code, b)
	}
	// The join repairs acme's shard by a move onto node 4 (non-voting,
	// caught up, promoted): until it is promoted, acme has two voters.
	waitPromoted(t, c, uint64(fourth.ID), "acme")
	// Members 1, 2 and 4: losing 2 leaves a quorum.
	c.Servers[1].Proc.Kill()
	c.Retry(fourth.ID, token, http.MethodPut, "/v1/tenants/acme/services/web/instances/w2", api.RegisterRequest{Address: "a:2"})
	if code, b := c.Retry(1, proctest.AdminToken, http.MethodPost, "/v1/cluster/nodes",
		api.JoinRequest{ID: 3, RaftAddress: proctest.FreePort(t), APIAddress: proctest.FreePort(t)}); code != http.StatusConflict {
		t.Fatalf("joining with the removed ID 3 = %d %s, want 409", code, b)
	}
	stop(t, c.Servers[0].Proc)
	stop(t, fourth.Proc)
}
