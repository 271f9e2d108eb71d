// Package servertest starts real in-process Rafting clusters on loopback for
// tests: every node a real server (NodeHost, state machines, REST API) with
// free ports and a temporary data directory, stopped by the test's cleanup.
package servertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/restclient"
	"github.com/rafting/rafting/server"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/tenants"
)

// AdminToken is the admin token of every test cluster.
const AdminToken = "rfa_test-admin-token-0123456789abcdef"

// Options tune a test cluster. Zero values take the defaults in brackets.
type Options struct {
	Nodes  int           // [3]
	RTT    time.Duration // [20ms]
	Dir    string        // [t.TempDir()]
	Logger *slog.Logger  // [silent unless RAFTING_TEST_LOG=1]
	// Configure, if set, edits each node's config before it starts.
	Configure func(*config.Config)
	// SkipWaitReady lists nodes (1-based) Start does not wait for: nodes a
	// test expects never to become ready.
	SkipWaitReady []int
}

// Cluster is a running test cluster.
type Cluster struct {
	T       testing.TB
	opts    Options
	mu      sync.Mutex
	Servers []*server.Server // nil while a node is stopped
	cfgs    []config.Config
	Client  *http.Client
}

// FreePort returns a loopback host:port that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start starts a cluster and waits until every node is ready; the test's
// cleanup stops it.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.RTT == 0 {
		opts.RTT = 20 * time.Millisecond
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		if os.Getenv("RAFTING_TEST_LOG") != "" {
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		} else {
			opts.Logger = slog.New(slog.DiscardHandler)
		}
	}
	c := &Cluster{T: t, opts: opts, Client: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	t.Cleanup(c.Stop)
	// A port found free can be taken by another process before the node
	// binds it: such a start is retried on fresh ports, in a fresh directory.
	for attempt := 0; ; attempt++ {
		dir := opts.Dir
		if attempt > 0 {
			dir = filepath.Join(opts.Dir, fmt.Sprintf("retry%d", attempt))
		}
		err := c.start(dir)
		if err == nil {
			break
		}
		if attempt < 3 && strings.Contains(err.Error(), "address already in use") {
			c.Stop()
			continue
		}
		t.Fatal(err)
	}
	c.WaitReady()
	c.waitVersion()
	return c
}

// waitVersion waits until the nodes agreed on the state version their build
// speaks (server/fsm's version.go): a fresh cluster does within seconds,
// and tests then run on the build's semantics, tenants created from then
// on included.
//
// A cluster with nodes not expected to get ready (SkipWaitReady) is not
// waited for: a member that cannot answer holds the version where it is.
func (c *Cluster) waitVersion() {
	c.T.Helper()
	if len(c.opts.SkipWaitReady) > 0 {
		return
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, s := range c.running() {
		for s.Node().Meta().Version() < server.StateVersion {
			if time.Now().After(deadline) {
				c.T.Fatalf("servertest: the cluster did not agree on state version %d", server.StateVersion)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// start starts the nodes of a new cluster on fresh ports, their data in dir.
func (c *Cluster) start(dir string) error {
	c.cfgs = nil
	initial := map[uint64]string{}
	for i := 1; i <= c.opts.Nodes; i++ {
		initial[uint64(i)] = FreePort(c.T)
	}
	for i := 1; i <= c.opts.Nodes; i++ {
		cfg := config.DefaultConfig()
		cfg.NodeID = uint64(i)
		cfg.DataDir = filepath.Join(dir, fmt.Sprintf("node%d", i))
		cfg.APIAddress = FreePort(c.T)
		cfg.RaftAddress = initial[cfg.NodeID]
		cfg.InitialCluster = initial
		cfg.AdminToken = AdminToken
		cfg.RTT = c.opts.RTT
		cfg.LogDB = "tiny"
		cfg.ProposalTimeout = 20 * c.opts.RTT * time.Duration(cfg.ElectionRTT) / 10
		cfg.ProposalTimeout = max(cfg.ProposalTimeout, 500*time.Millisecond)
		cfg.Logger = c.opts.Logger.With("node", i)
		if c.opts.Configure != nil {
			c.opts.Configure(&cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	c.Servers = make([]*server.Server, c.opts.Nodes)
	var wg sync.WaitGroup
	errs := make([]error, c.opts.Nodes)
	for i := range c.cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Servers[i], errs[i] = server.New(c.cfgs[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("start node %d: %w", i+1, err)
		}
	}
	return nil
}

// WaitReady waits until every running node is ready.
func (c *Cluster) WaitReady() {
	c.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	skip := map[*server.Server]bool{}
	for _, id := range c.opts.SkipWaitReady {
		skip[c.Server(id)] = true
	}
	for _, s := range c.running() {
		if skip[s] {
			continue
		}
		if err := s.WaitReady(ctx); err != nil {
			c.T.Fatal(err)
		}
	}
}

func (c *Cluster) running() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*server.Server
	for _, s := range c.Servers {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// Stop stops every running node at once, without handing leaderships over
// (there is no one left to hand them to; a graceful stop would wait for
// transfers that cannot happen). StopNode is the graceful stop of one node.
func (c *Cluster) Stop() {
	var wg sync.WaitGroup
	for i := range c.Servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.AbortNode(i + 1)
		}()
	}
	wg.Wait()
}

// StopNode stops node id (1-based) gracefully; StartNode brings it back.
func (c *Cluster) StopNode(id int) {
	c.mu.Lock()
	s := c.Servers[id-1]
	c.Servers[id-1] = nil
	c.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

// AbortNode crashes node id (1-based): no leadership transfer, no `moved`.
func (c *Cluster) AbortNode(id int) {
	c.mu.Lock()
	s := c.Servers[id-1]
	c.Servers[id-1] = nil
	c.mu.Unlock()
	if s != nil {
		s.Abort()
	}
}

// StartNode restarts a stopped node from its data dir, on its addresses.
func (c *Cluster) StartNode(id int) {
	c.T.Helper()
	cfg := c.cfgs[id-1]
	cfg.InitialCluster = nil // a restart: the data dir knows
	var s *server.Server
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if s, err = server.New(cfg); err == nil {
			break
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		c.T.Fatalf("restart node %d: %v", id, err)
	}
	c.mu.Lock()
	c.Servers[id-1] = s
	c.mu.Unlock()
}

// Server returns node id (1-based), nil while stopped.
func (c *Cluster) Server(id int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Servers[id-1]
}

// Addr is node id's API address (known while it is stopped too).
func (c *Cluster) Addr(id int) string { return c.cfgs[id-1].APIAddress }

// Addrs are every node's API addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.cfgs))
	for i, cfg := range c.cfgs {
		out[i] = cfg.APIAddress
	}
	return out
}

// Config is node id's configuration.
func (c *Cluster) Config(id int) config.Config { return c.cfgs[id-1] }

// Response is an HTTP answer with its body read.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Err decodes an error answer (nil below 400).
func (r *Response) Err() *api.Error {
	if r.Status < 400 {
		return nil
	}
	return api.Decode(r.Status, r.Body, r.Header.Get("Retry-After"))
}

// JSON decodes the body into v, failing the test on error.
func (r *Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// Do sends a request to node id with a bearer token and a JSON body (a
// []byte or string body is sent as is).
func (c *Cluster) Do(id int, token, method, path string, body any) *Response {
	c.T.Helper()
	r, err := c.DoErr(context.Background(), id, token, method, path, body, nil)
	if err != nil {
		c.T.Fatalf("%s %s on node %d: %v", method, path, id, err)
	}
	return r
}

// DoErr is Do returning transport errors, with extra headers.
func (c *Cluster) DoErr(ctx context.Context, id int, token, method, path string, body any, header http.Header) (*Response, error) {
	var rd io.Reader = http.NoBody
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr(id)+path, rd)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// CreateTenant creates a tenant through a running node and returns its
// token.
func (c *Cluster) CreateTenant(name string, quotas api.Quotas) string {
	c.T.Helper()
	rc := restclient.Client{Servers: []string{"http://" + c.Addr(c.anyRunning())}, Token: AdminToken, HTTP: c.Client,
		Retry: restclient.For(30*time.Second, 50*time.Millisecond)}
	// One secret for every attempt: a retry answers 200.
	req := api.CreateTenantRequest{Name: name, Quotas: quotas, Secret: tenants.NewSecret()}
	var t api.Tenant
	if err := rc.Do(context.Background(), http.MethodPost, "/v1/tenants", req, &t); err != nil {
		c.T.Fatalf("create tenant %s: %v", name, err)
	}
	c.waitTenantEverywhere(name)
	return t.Token
}

func (c *Cluster) anyRunning() int {
	for i := range c.cfgs {
		if c.Server(i+1) != nil {
			return i + 1
		}
	}
	c.T.Fatal("no node is running")
	return 0
}

// waitTenantEverywhere waits until every running node the tenant is placed
// on runs its shard and knows its leader.
func (c *Cluster) waitTenantEverywhere(name string) {
	c.T.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.running() {
		for {
			if _, known := s.Node().Meta().Tenant(name); known || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !s.Node().HostsTenant(name) {
			continue
		}
		for {
			if t, ok := s.Node().Tenant(name); ok {
				if _, _, known := t.Leader(); known {
					break
				}
			}
			if time.Now().After(deadline) {
				c.T.Fatalf("tenant %s not running everywhere after 30s", name)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TenantLeader is the node (1-based) leading a tenant's shard, or 0.
func (c *Cluster) TenantLeader(name string) int {
	for i := range c.cfgs {
		s := c.Server(i + 1)
		if s == nil {
			continue
		}
		if t, ok := s.Node().Tenant(name); ok && t.LeaderIsLocal() {
			if _, leading := t.Sessions.Term(); leading {
				return i + 1
			}
		}
	}
	return 0
}

// WaitTenantLeader waits until some running node leads the tenant's shard
// and answers its sessions.
func (c *Cluster) WaitTenantLeader(name string) int {
	c.T.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if id := c.TenantLeader(name); id != 0 {
			return id
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.T.Fatalf("tenant %s has no leader answering sessions", name)
	return 0
}

// Eventually polls cond every 5 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// JoinNode starts one more node that joins the running cluster as
// `rafting server --join` does (it asks a member to add it, then starts
// as a joiner), waits until it is ready and returns its ID (1-based).
func (c *Cluster) JoinNode() int {
	c.T.Helper()
	id := len(c.cfgs) + 1
	cfg := c.cfgs[0]
	cfg.NodeID = uint64(id)
	cfg.DataDir = filepath.Join(filepath.Dir(c.cfgs[0].DataDir), fmt.Sprintf("node%d", id))
	cfg.APIAddress = FreePort(c.T)
	cfg.RaftAddress = FreePort(c.T)
	cfg.InitialCluster = nil
	cfg.Join = c.Addr(c.anyRunning())
	cfg.Logger = c.opts.Logger.With("node", id)
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	rc := restclient.Client{Servers: []string{"http://" + cfg.Join}, Token: AdminToken, HTTP: c.Client,
		Retry: restclient.For(60*time.Second, 100*time.Millisecond)}
	body, _ := json.Marshal(api.JoinRequest{ID: cfg.NodeID, RaftAddress: cfg.RaftAddress, APIAddress: cfg.APIAddress})
	resp, err := rc.Send(context.Background(), restclient.Request{Method: http.MethodPost, Path: "/v1/cluster/nodes", Body: body,
		ContentType: "application/json", Header: http.Header{api.HeaderStateVersion: {fmt.Sprint(server.StateVersion)}}})
	if err != nil {
		c.T.Fatalf("join node %d: %v", id, err)
	}
	var cl api.Cluster
	if err := json.Unmarshal(resp.Body, &cl); err != nil {
		c.T.Fatalf("join node %d: %v", id, err)
	}
	cfg.Peers = map[uint64]string{}
	for _, n := range cl.Nodes {
		cfg.Peers[n.ID] = n.RaftAddress
	}
	s, err := server.New(cfg)
	if err != nil {
		c.T.Fatalf("start joined node %d: %v", id, err)
	}
	c.mu.Lock()
	c.cfgs = append(c.cfgs, cfg)
	c.Servers = append(c.Servers, s)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		c.T.Fatal(err)
	}
	return id
}

// JoinUnstarted asks node via to add node id as a joiner of this build
// would (its state version), for a node that never starts (its addresses
// are free ports no one listens on), and fails t unless the join is
// answered 200; asked again, it must be answered the same.
func (c *Cluster) JoinUnstarted(via, id int) {
	c.T.Helper()
	join := api.JoinRequest{ID: uint64(id), RaftAddress: FreePort(c.T), APIAddress: FreePort(c.T)}
	version := http.Header{api.HeaderStateVersion: {fmt.Sprint(server.StateVersion)}}
	for range 2 { // asked again, as a joiner retries: the same answer
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		r, err := c.DoErr(ctx, via, AdminToken, http.MethodPost, "/v1/cluster/nodes", join, version)
		cancel()
		if err != nil || r.Status != http.StatusOK {
			c.T.Fatalf("join of node %d through node %d = %v %v", id, via, r, err)
		}
	}
}
