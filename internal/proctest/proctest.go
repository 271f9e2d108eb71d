// Package proctest runs Rafting in real processes for tests and benchmarks
// about processes dying: it builds binaries, starts a cluster of `rafting
// server` processes on free loopback ports, starts member processes, reads
// their JSON event lines, and signals every process by its PID (SIGKILL,
// SIGTERM, SIGSTOP, SIGCONT). Every process it starts is killed by PID and
// every directory removed when the test ends. Launch, Port and WaitTCP
// serve the benchmarks' harness (benchmarks/peers), which runs without a
// test and ends its processes itself, by PID too.
package proctest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/restclient"
)

// Secret is a tenant secret for tests, the same for the same seed (so that
// a retried creation answers 200) and as strong as a random one looks
// (the servers refuse a secret that is far from random): base64url of the
// seed's SHA-256.
func Secret(seed string) string {
	sum := sha256.Sum256([]byte("rafting-test-secret:" + seed))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// AdminToken is the admin token of every cluster started here.
const AdminToken = "rfa_proctest-admin-0123456789abcdef"

var (
	buildMu sync.Mutex
	built   = map[string]string{}
	binDir  string
)

// Build builds a main package (an import path) once per process and
// returns the binary's path; Cleanup removes every binary built.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	return BuildTags(tb, pkg, "")
}

// BuildTags is Build with build tags (go build -tags, comma-separated).
func BuildTags(tb testing.TB, pkg, tags string) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := pkg + " " + tags
	if bin, ok := built[key]; ok {
		return bin
	}
	if binDir == "" {
		d, err := os.MkdirTemp("", "rafting-proctest-bin-*")
		if err != nil {
			tb.Fatal(err)
		}
		binDir = d
	}
	bin := filepath.Join(binDir, filepath.Base(pkg))
	args := []string{"build", "-o", bin}
	if tags != "" {
		bin += "-" + strings.ReplaceAll(tags, ",", "-")
		args = []string{"build", "-tags", tags, "-o", bin}
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = moduleRoot() // the main module, whatever module the caller is in
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	built[key] = bin
	return bin
}

// moduleRoot is the main module's directory: two levels above this file.
func moduleRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Cleanup removes the binaries Build made; call it from TestMain.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

var (
	portsMu sync.Mutex
	ports   = map[int]bool{} // every port FreePort gave
)

// FreePort returns a loopback host:port that was free a moment ago and
// that it never returned before in this process: see Port.
func FreePort(tb testing.TB) string {
	tb.Helper()
	port, err := Port()
	if err != nil {
		tb.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// Port returns a loopback port that was free a moment ago and that it
// never returned before in this process. It picks below the kernel's
// ephemeral range, where no outgoing connection takes a port: a server
// restarted on its port would otherwise find it, now and then, held by
// some connection's local end ("address already in use").
func Port() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	lo, hi := 10000, ephemeralLow()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if ports[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		ports[port] = true
		return port, nil
	}
	return 0, errors.New("proctest: no free port below the ephemeral range")
}

// WaitTCP waits until addr accepts a TCP connection, polling every 50 ms
// for timeout at most.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %v: %w", addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ephemeralLow is the lowest port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 11000 {
		return 32768
	}
	return n
}

// Proc is a child process whose stdout lines are kept and forwarded.
type Proc struct {
	Name  string
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	sub   []chan string
	done  chan struct{}
	log   bytes.Buffer // stderr, for failure messages
	// exitErr is cmd.Wait's answer, set before done is closed.
	exitErr error
}

// Spec is a process for Launch to start.
type Spec struct {
	Name string
	Bin  string
	Args []string
	Env  []string // added to os.Environ()
	// Stderr, if set, is where the process writes its stderr (an *os.File
	// is handed to it, and may be closed once Launch returns); else
	// stderr is kept for Stderr.
	Stderr io.Writer
	// OwnGroup starts it in a process group of its own, so a terminal's
	// Ctrl-C reaches only the program that started it, which ends it.
	OwnGroup bool
}

// Launch starts a process without a test: the caller ends it (Kill or
// Stop). Start is Launch for tests.
func Launch(s Spec) (*Proc, error) {
	p := &Proc{Name: s.Name, done: make(chan struct{})}
	p.cmd = exec.Command(s.Bin, s.Args...)
	p.cmd.Env = append(os.Environ(), s.Env...)
	p.cmd.Stderr = s.Stderr
	if s.Stderr == nil {
		p.cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.log}
	}
	if s.OwnGroup {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.line(sc.Text())
		}
		_, _ = io.Copy(io.Discard, stdout) // past a line over 1 MiB: never block the process
		p.exitErr = p.cmd.Wait()
		p.mu.Lock()
		for _, c := range p.sub {
			close(c)
		}
		p.sub = nil
		close(p.done)
		p.mu.Unlock()
	}()
	return p, nil
}

func (p *Proc) line(l string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines = append(p.lines, l)
	for _, c := range p.sub {
		select {
		case c <- l:
		default: // a subscriber that does not keep up loses lines, never blocks the pipe
		}
	}
}

// Start starts bin with args and extra environment; the test's cleanup
// kills it by PID if it still runs.
func Start(tb testing.TB, name, bin string, env []string, args ...string) *Proc {
	tb.Helper()
	p, err := Launch(Spec{Name: name, Bin: bin, Args: args, Env: env})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			tb.Logf("%s (%s) wrote on stderr:\n%s", name, strings.Join(args, " "), p.Stderr())
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

// PID is the process ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Lines returns every stdout line so far.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Stderr returns what the process wrote on stderr.
func (p *Proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Subscribe returns a channel of the stdout lines from now on (buffered;
// lines are dropped if it is full), closed when the process has exited.
func (p *Proc) Subscribe() <-chan string {
	c := make(chan string, 4096)
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		close(c)
	default:
		p.sub = append(p.sub, c)
	}
	return c
}

// Signal sends sig to the process by its PID.
func (p *Proc) Signal(sig syscall.Signal) {
	_ = syscall.Kill(p.cmd.Process.Pid, sig)
}

// Kill sends SIGKILL (after SIGCONT, in case it is stopped) and reaps it.
func (p *Proc) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT)
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for the process to exit; it
// reports whether it did (else it is killed).
func (p *Proc) Stop(timeout time.Duration) bool {
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		p.Kill()
		return false
	}
}

// Exited is closed when the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.done }

// ExitErr waits for the process to exit and returns how: nil for status 0.
func (p *Proc) ExitErr() error {
	<-p.done
	return p.exitErr
}

// Server is one `rafting server` process of a Cluster.
type Server struct {
	ID        int
	API, Raft string
	Dir       string
	Proc      *Proc
	past      []*Proc  // earlier processes of this server
	args      []string // more flags for its every start (Options.Server)
}

// Log returns what every process of this server wrote on stderr.
func (s *Server) Log() string {
	var b strings.Builder
	for _, p := range append(s.past, s.Proc) {
		b.WriteString(p.Stderr())
	}
	return b.String()
}

// Cluster is three (or more) `rafting server` processes.
type Cluster struct {
	tb      testing.TB
	bin     string
	dir     string
	rtt     string
	args    []string // more flags for every server
	server  func(id int, api, raft string) (string, []string)
	env     func(id int) []string
	initial string
	Servers []*Server
}

// StartCluster starts n servers with --rtt rtt and waits until all are ready.
func StartCluster(tb testing.TB, n int, rtt time.Duration) *Cluster {
	tb.Helper()
	return StartClusterWith(tb, Options{Servers: n, RTT: rtt})
}

// Options are StartClusterWith's settings.
type Options struct {
	Servers int           // [3]
	RTT     time.Duration // --rtt [50ms]
	Dir     string        // where the servers' data dirs go [a temporary dir]
	Args    []string      // more flags for every server
	// Server, if set, is called for each new server (at the start and by
	// Join) with its ID and the free ports it listens on; it returns the
	// Raft address the other nodes dial (--raft: raft itself, or a proxy in
	// front of it) and more flags for every start of that server (e.g.
	// --raft-listen, --advertise-api).
	Server func(id int, api, raft string) (dialRaft string, flags []string)
	// Tags are build tags for the rafting binary (go build -tags).
	Tags string
	// Env, if set, gives each server (by ID) more environment variables.
	Env func(id int) []string
}

// StartClusterWith starts a cluster as o says and waits until every
// server is ready.
func StartClusterWith(tb testing.TB, o Options) *Cluster {
	tb.Helper()
	if o.Servers == 0 {
		o.Servers = 3
	}
	if o.RTT == 0 {
		o.RTT = 50 * time.Millisecond
	}
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	bin := BuildTags(tb, "github.com/rafting/rafting/cmd/rafting", o.Tags)
	c := &Cluster{tb: tb, bin: bin, dir: o.Dir, rtt: o.RTT.String(), args: o.Args, server: o.Server, env: o.Env}
	var parts []string
	for i := 1; i <= o.Servers; i++ {
		s := c.newServer(i)
		c.Servers = append(c.Servers, s)
		parts = append(parts, fmt.Sprintf("%d=%s", i, s.Raft))
	}
	c.initial = strings.Join(parts, ",")
	for _, s := range c.Servers {
		c.start(s, append(s.first(), "--initial-cluster", c.initial)...)
	}
	c.WaitReady()
	return c
}

// newServer makes server id's addresses and data dir.
func (c *Cluster) newServer(id int) *Server {
	s := &Server{ID: id, API: FreePort(c.tb), Raft: FreePort(c.tb), Dir: filepath.Join(c.dir, fmt.Sprintf("n%d", id))}
	if c.server != nil {
		s.Raft, s.args = c.server(id, s.API, s.Raft)
	}
	return s
}

// start starts s's process; a server's first start names its ID and
// addresses (extra), a restart only its data dir.
func (c *Cluster) start(s *Server, extra ...string) {
	level := os.Getenv("RAFTING_PROCTEST_LOG") // e.g. debug, to see the servers' logs in failures
	if level == "" {
		level = "warn"
	}
	args := append([]string{"server", "--data", s.Dir, "--log-level", level, "--rtt", c.rtt}, c.args...)
	args = append(append(args, s.args...), extra...)
	env := []string{"RAFTING_ADMIN_TOKEN=" + AdminToken}
	if c.env != nil {
		env = append(env, c.env(s.ID)...)
	}
	s.Proc = Start(c.tb, fmt.Sprintf("server%d", s.ID), c.bin, env, args...)
}

func (s *Server) first() []string {
	return []string{"--id", strconv.Itoa(s.ID), "--api", s.API, "--raft", s.Raft}
}

// Restart starts a stopped server again from its data dir, with more
// flags if given.
func (c *Cluster) Restart(i int, extra ...string) {
	s := c.Servers[i-1]
	s.past = append(s.past, s.Proc)
	c.start(s, extra...)
}

// InitialCluster is the servers' --initial-cluster.
func (c *Cluster) InitialCluster() string { return c.initial }

// Join starts one more server that joins the cluster through server via
// (--join), waits until it is ready and returns it.
func (c *Cluster) Join(via int) *Server {
	c.tb.Helper()
	id := len(c.Servers) + 1
	s := c.newServer(id)
	c.Servers = append(c.Servers, s)
	c.start(s, append(s.first(), "--join", c.Servers[via-1].API)...)
	c.WaitServerReady(id)
	return s
}

// Addrs is the servers' API addresses, comma-separated (RAFTING_SERVERS).
func (c *Cluster) Addrs() string {
	var a []string
	for _, s := range c.Servers {
		a = append(a, s.API)
	}
	return strings.Join(a, ",")
}

// WaitReady waits until every running server answers /readyz.
func (c *Cluster) WaitReady() {
	c.tb.Helper()
	for _, s := range c.Servers {
		c.WaitServerReady(s.ID)
	}
}

// WaitServerReady waits until server i answers /readyz.
func (c *Cluster) WaitServerReady(i int) {
	c.tb.Helper()
	s := c.Servers[i-1]
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := client.Get("http://" + s.API + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("server %d not ready after 60s:\n%s", s.ID, s.Proc.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Call sends a request to server i and returns the status and body.
func (c *Cluster) Call(i int, token, method, path string, body any) (int, []byte, error) {
	return Call(method, "http://"+c.Servers[i-1].API+path, token, body)
}

var client = &http.Client{Timeout: 10 * time.Second}

// Call sends one request, with token as its bearer token unless it is
// empty, and returns the status and body.
func Call(method, url, token string, body any) (int, []byte, error) {
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
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Retry calls url until its answer is not a retryable error (30 s at
// most, then the test fails), and returns that answer.
func Retry(tb testing.TB, method, url, token string, body any) (int, []byte) {
	tb.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		tb.Fatal(err)
	}
	return retry(tb, []string{u.Scheme + "://" + u.Host}, token, method, u.RequestURI(), body)
}

// retry sends a request to servers in turn until an answer that is not a
// retryable error (30 s at most, then the test fails) and returns it.
func retry(tb testing.TB, servers []string, token, method, path string, body any) (int, []byte) {
	tb.Helper()
	c := restclient.Client{Servers: servers, Token: token, HTTP: client, Retry: restclient.For(30*time.Second, 50*time.Millisecond)}
	req := restclient.Request{Method: method, Path: path}
	if body != nil {
		req.Body, _ = json.Marshal(body)
	}
	resp, err := c.Send(context.Background(), req)
	if err != nil && (errors.Is(err, restclient.ErrNoAnswer) || !errors.As(err, new(*api.Error))) {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.Status, resp.Body
}

// Retry calls server i, and only it, until its answer is not a retryable
// error (30 s at most, then the test fails), and returns that answer.
func (c *Cluster) Retry(i int, token, method, path string, body any) (int, []byte) {
	c.tb.Helper()
	return retry(c.tb, []string{"http://" + c.Servers[i-1].API}, token, method, path, body)
}

// Must calls until the answer is not a retryable error (30 s at most) on
// any running server, starting with server i, and fails the test otherwise.
func (c *Cluster) Must(i int, token, method, path string, body any) []byte {
	c.tb.Helper()
	var servers []string
	for j := range c.Servers {
		servers = append(servers, "http://"+c.Servers[(i-1+j)%len(c.Servers)].API)
	}
	code, b := retry(c.tb, servers, token, method, path, body)
	if code >= 300 {
		c.tb.Fatalf("%s %s on server %d: %d %s", method, path, i, code, b)
	}
	return b
}

// CreateTenant creates a tenant and returns its token.
func (c *Cluster) CreateTenant(name string) string {
	c.tb.Helper()
	var t api.Tenant
	b := c.Must(1, AdminToken, http.MethodPost, "/v1/tenants", api.CreateTenantRequest{Name: name, Secret: Secret(name)})
	if err := json.Unmarshal(b, &t); err != nil {
		c.tb.Fatal(err)
	}
	return t.Token
}

// TenantLeader returns the server (1-based) leading a tenant's shard.
func (c *Cluster) TenantLeader(name string) int {
	c.tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.Servers {
			code, b, err := c.Call(s.ID, AdminToken, http.MethodGet, "/v1/cluster", nil)
			if err != nil || code != http.StatusOK {
				continue
			}
			var cl api.Cluster
			if json.Unmarshal(b, &cl) != nil {
				continue
			}
			for _, sh := range cl.Shards {
				if sh.Tenant == name && sh.Leader != 0 {
					return int(sh.Leader)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.tb.Fatalf("tenant %s has no leader", name)
	return 0
}
