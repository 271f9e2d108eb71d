package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
)

// These tests run the real binary in separate processes: a test about
// processes dying needs processes. The binary is built once per run.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rafting-bin-*")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "rafting")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a child process, ended by its PID when the test ends.
type proc struct {
	cmd *exec.Cmd
	out *bytes.Buffer
	mu  *sync.Mutex
}

func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var mu sync.Mutex
	buf := &bytes.Buffer{}
	w := &lockedWriter{mu: &mu, w: buf}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: buf, mu: &mu}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("output of rafting %s:\n%s", strings.Join(args, " "), p.output())
		}
	})
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// kill sends SIGKILL to the process by its PID and reaps it.
func (p *proc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("graceful stop: %v\n%s", err, p.output())
		}
	case <-time.After(20 * time.Second):
		p.kill()
		t.Errorf("no graceful stop within 20s:\n%s", p.output())
	}
}

var httpc = &http.Client{Timeout: 10 * time.Second}

func call(method, url, token string, body any) (int, []byte, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func waitReady(t *testing.T, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for _, a := range addrs {
		for {
			if code, _, err := call(http.MethodGet, "http://"+a+"/readyz", "", nil); err == nil && code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not ready after 60s", a)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// retry calls until the answer is not retryable (or 30 s pass).
func retry(t *testing.T, method, url, token string, body any) (int, []byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, b, err := call(method, url, token, body)
		if err == nil && (code < 400 || !api.Decode(code, b, "").Code.Retryable()) {
			return code, b
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %s: still failing after 30s: %d %s %v", method, url, code, b, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const adminTok = "rfa_process-test-admin-0123456789"

type node struct {
	id         int
	api, raft  string
	dir        string
	p          *proc
	adminEnv   []string
	initialArg string
}

func (n *node) start(t *testing.T, first bool) {
	args := []string{"server", "--data", n.dir, "--log-level", "warn", "--rtt", "20ms"}
	if first {
		args = append(args, "--id", fmt.Sprint(n.id), "--api", n.api, "--raft", n.raft, "--initial-cluster", n.initialArg)
	}
	n.p = start(t, n.adminEnv, args...)
}

// startThree starts a new three-node cluster of `rafting server`
// processes in a temporary directory and waits until every node is ready.
func startThree(t *testing.T) (dir string, nodes []*node) {
	t.Helper()
	dir = t.TempDir()
	nodes = make([]*node, 3)
	var parts []string
	for i := range nodes {
		nodes[i] = &node{id: i + 1, api: freePort(t), raft: freePort(t), dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			adminEnv: []string{"RAFTING_ADMIN_TOKEN=" + adminTok}}
		parts = append(parts, fmt.Sprintf("%d=%s", i+1, nodes[i].raft))
	}
	for _, n := range nodes {
		n.initialArg = strings.Join(parts, ",")
		n.start(t, true)
	}
	waitReady(t, nodes[0].api, nodes[1].api, nodes[2].api)
	return dir, nodes
}

// TestFullRestartAfterKill: three `rafting server` processes; registrations
// acknowledged; kill -9 of all three; restart each with only --data; every
// acknowledged registration is still there.
func TestFullRestartAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	_, nodes := startThree(t)
	code, b := retry(t, http.MethodPost, "http://"+nodes[0].api+"/v1/tenants", adminTok,
		api.CreateTenantRequest{Name: "acme", Secret: strings.Repeat("s", 30)})
	if code != http.StatusCreated {
		t.Fatalf("create tenant = %d %s", code, b)
	}
	var ten api.Tenant
	_ = json.Unmarshal(b, &ten)

	// Registrations through every node; only acknowledged ones count.
	acked := map[string]bool{}
	for i := 0; i < 30; i++ {
		n := nodes[i%3]
		id := fmt.Sprintf("w%02d", i)
		code, b := retry(t, http.MethodPut, fmt.Sprintf("http://%s/v1/tenants/acme/services/web/instances/%s", n.api, id), ten.Token,
			api.RegisterRequest{Address: fmt.Sprintf("10.0.0.%d:80", i)})
		if code != http.StatusCreated {
			t.Fatalf("register %s = %d %s", id, code, b)
		}
		acked[id] = true
	}
	for _, n := range nodes {
		n.p.kill() // SIGKILL by PID
	}
	for _, n := range nodes {
		n.start(t, false) // only --data: the data dir remembers the rest
	}
	waitReady(t, nodes[0].api, nodes[1].api, nodes[2].api)
	for _, n := range nodes {
		code, b := retry(t, http.MethodGet, "http://"+n.api+"/v1/tenants/acme/services/web?consistent=true", ten.Token, nil)
		if code != http.StatusOK {
			t.Fatalf("read on %s = %d %s", n.api, code, b)
		}
		var s api.ServiceResponse
		_ = json.Unmarshal(b, &s)
		got := map[string]bool{}
		for _, in := range s.Instances {
			got[in.ID] = true
		}
		for id := range acked {
			if !got[id] {
				t.Errorf("node %d lost acknowledged registration %s after kill -9 of all nodes", n.id, id)
			}
		}
	}
	for _, n := range nodes {
		n.p.stop(t)
	}
}

var tokenLine = regexp.MustCompile(`(?m)^\s+tenant "default" token: (\S+)$`)

// TestDevRestartKeepsState: `rafting dev` creates the default tenant and
// prints a working curl session; a second start reuses the data, the tokens
// and the state.
func TestDevRestartKeepsState(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	apis := []string{freePort(t), freePort(t), freePort(t)}
	rafts := []string{freePort(t), freePort(t), freePort(t)}
	portsOf := func(addrs []string) string {
		var ps []string
		for _, a := range addrs {
			_, p, _ := net.SplitHostPort(a)
			ps = append(ps, p)
		}
		return strings.Join(ps, ",")
	}
	run := func() (*proc, string) {
		p := start(t, []string{"RAFTING_ADMIN_TOKEN="}, "dev", "--data", dir, "--api-ports", portsOf(apis), "--raft-ports", portsOf(rafts), "--rtt", "20ms")
		deadline := time.Now().Add(90 * time.Second)
		for {
			if m := tokenLine.FindStringSubmatch(p.output()); m != nil {
				return p, m[1]
			}
			if p.cmd.ProcessState != nil || time.Now().After(deadline) {
				t.Fatalf("dev cluster did not print its tokens:\n%s", p.output())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	p, tok := run()
	// The banner's curl lines, as printed.
	out := p.output()
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
		if strings.HasPrefix(l, "export RAFTING_TOKEN=") || (strings.HasPrefix(l, "curl ") && strings.Contains(l, "localhost:7070")) {
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
	if _, err := os.Stat(filepath.Join(dir, "admin.token")); err != nil {
		t.Fatalf("admin token not written to <data>/admin.token: %v", err)
	}
	p.stop(t)

	p2, tok2 := run()
	if tok2 != tok {
		t.Fatalf("second start printed another tenant token")
	}
	code, b := retry(t, http.MethodGet, "http://"+apis[1]+"/v1/tenants/default/services/web?consistent=true", tok, nil)
	var s api.ServiceResponse
	_ = json.Unmarshal(b, &s)
	if code != http.StatusOK || len(s.Instances) != 1 || s.Instances[0].ID != "web-1" {
		t.Fatalf("after restart: %d %s", code, b)
	}
	p2.stop(t)
}

// TestJoin: a fourth `rafting server` started with --join becomes a member:
// it catches up with the meta shard and every tenant shard (as a joiner),
// serves reads, and takes part in new tenants.
func TestJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir, nodes := startThree(t)
	code, b := retry(t, http.MethodPost, "http://"+nodes[0].api+"/v1/tenants", adminTok, api.CreateTenantRequest{Name: "acme", Secret: strings.Repeat("j", 30)})
	if code != http.StatusCreated {
		t.Fatalf("create tenant = %d %s", code, b)
	}
	var ten api.Tenant
	_ = json.Unmarshal(b, &ten)
	retry(t, http.MethodPut, "http://"+nodes[1].api+"/v1/tenants/acme/services/web/instances/w1", ten.Token, api.RegisterRequest{Address: "a:1"})

	fourth := &node{id: 4, api: freePort(t), raft: freePort(t), dir: filepath.Join(dir, "n4"), adminEnv: []string{"RAFTING_ADMIN_TOKEN=" + adminTok}}
	fourth.p = start(t, fourth.adminEnv, "server", "--id", "4", "--data", fourth.dir, "--api", fourth.api, "--raft", fourth.raft,
		"--join", nodes[0].api, "--log-level", "warn", "--rtt", "20ms")
	waitReady(t, fourth.api)
	code, b = retry(t, http.MethodGet, "http://"+fourth.api+"/v1/tenants/acme/services/web?consistent=true", ten.Token, nil)
	var s api.ServiceResponse
	_ = json.Unmarshal(b, &s)
	if code != http.StatusOK || len(s.Instances) != 1 {
		t.Fatalf("the joined node answers %d %s", code, b)
	}
	var cl api.Cluster
	_, b = retry(t, http.MethodGet, "http://"+fourth.api+"/v1/cluster", adminTok, nil)
	_ = json.Unmarshal(b, &cl)
	if len(cl.Nodes) != 4 {
		t.Fatalf("cluster after the join: %s", b)
	}
	for _, sh := range cl.Shards {
		if len(sh.Replicas) != 4 {
			t.Fatalf("shard %d has %d replicas after the join, want 4", sh.ShardID, len(sh.Replicas))
		}
	}
	// With four members, losing one still leaves a quorum; the joiner votes.
	nodes[0].p.kill()
	retry(t, http.MethodPut, "http://"+fourth.api+"/v1/tenants/acme/services/web/instances/w2", ten.Token, api.RegisterRequest{Address: "a:2"})
	// A tenant created now has a replica on the new node from the start.
	code, _ = retry(t, http.MethodPost, "http://"+nodes[1].api+"/v1/tenants", adminTok, api.CreateTenantRequest{Name: "later", Secret: strings.Repeat("k", 30)})
	if code != http.StatusCreated {
		t.Fatalf("create tenant after the join = %d", code)
	}
	for _, n := range []*node{nodes[1], nodes[2], fourth} {
		n.p.stop(t)
	}
}
