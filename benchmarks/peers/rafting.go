package peers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/benchmarks/internal/bench"
	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/internal/restclient"
	"github.com/rafting/rafting/sdk"
)

// The Rafting target: three `rafting server` processes on loopback at the
// production RTT (50 ms), one tenant with quotas far above the workloads,
// and the workloads done the way a Rafting user does them:
//
//   - Register: REST PUTs of instances, spread over the three nodes, each
//     client updating its own 20 instances (benchmarks/register_test.go);
//   - Propagation: SDK Clients watching the service (Client.Service +
//     Watch, as sdk's BenchmarkPropagation), a new instance registered by
//     one PUT under the driver's open session;
//   - KVPut: SDK Clients, each Client.Put of its own keys (which exist
//     before the clock starts);
//   - KVWatch: SDK Clients, each with a Config view of the key's subtree
//     and an OnChange callback; a new value written by one Client.Put;
//   - Handover and Failover: three processes of examples/masterstandby (one
//     SDK Member each); SIGTERM runs Member.Leave (an immediate handover),
//     kill -9 leaves the successor to the lease (benchmarks/failover);
//   - Idle: one SDK farm member per instance (its own session, renewed every
//     TTL/3, its stream attached), over the shape's Clients.
const (
	raftingTenant     = "bench"
	raftingAdminToken = "rfa_peers-bench-admin-0123456789abcdef"
	raftingRTT        = 50 * time.Millisecond // production (benchmarks/failover)
	raftingTTL        = 5 * time.Second       // the SDK's default session TTL
)

type rafting struct {
	binDir  string // where the binaries were built (under a Start's dir)
	server  string // the rafting binary
	member  string // the examples/masterstandby binary
	data    string // this cluster's directory, removed by Stop
	servers []*raftingServer
	token   string
	hc      *http.Client
	tenants atomic.Int64 // tenants made for handover and failover groups
	kvRuns  atomic.Int64 // KVPut and KVWatch calls: each its own keys
	// stream: the SDK Clients use the client stream, as the SDK does by
	// default; RAFTING_PEERS_STREAM=0 keeps them on REST.
	stream bool
}

type raftingServer struct {
	id        int
	api, raft string
	proc      *proctest.Proc
}

// NewRafting returns the Rafting target.
func NewRafting() Target {
	stream, err := bench.Bool("RAFTING_PEERS_STREAM", true)
	if err != nil {
		panic(err) // a knob that does not parse: the run would not measure what it says
	}
	return &rafting{hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}}, stream: stream}
}

func (r *rafting) Name() string { return "rafting" }

// Settings: Rafting's failover knob is the session's lease (client side);
// the servers keep their defaults in every setting.
func (r *rafting) Settings() []Setting {
	srv := map[string]string{"rtt": raftingRTT.String()}
	mk := func(name string, lease time.Duration, note string) Setting {
		client := map[string]string{"lease": lease.String(), "ttl": raftingTTL.String()}
		if !r.stream {
			client["client_stream"] = "off"
		}
		return Setting{Name: name, Lease: lease, Note: note, Server: srv, Client: client}
	}
	return []Setting{
		mk("default", time.Second, "SDK defaults: lease_ms 1000 (keepalive every 250 ms), ttl_ms 5000; servers at defaults, --rtt 50ms"),
		mk("shortest-default-server", 160*time.Millisecond, "lease_ms 160 (keepalive every 40 ms), ttl_ms 5000: a default server takes any lease_ms ≤ ttl_ms (ttl_ms ≥ 3000), "+
			"and its per-session keepalive lane (25/s) sustains keepalives every lease/4 ≥ 40 ms"),
		mk("tuned", 200*time.Millisecond, "lease_ms 200 (keepalive every 50 ms), ttl_ms 5000: the documented tuned lease (DESIGN.md), headroom in the 25/s lane "+
			"for stream re-attaches; Rafting has no server knob to turn, servers at defaults"),
		mk("same-lease", time.Second, "lease_ms 1000, ttl_ms 5000 (the common 1 s lease; Rafting's default)"),
	}
}

// mainModuleRoot is the main module's directory (two levels above this file):
// the binaries are built there, with the main module's own dependencies.
func mainModuleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("rafting: cannot locate the source")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.Contains(b, []byte("module github.com/rafting/rafting\n")) {
		return "", fmt.Errorf("rafting: %s is not the main module", root)
	}
	return root, nil
}

func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// build builds the server and the member binaries into dir/bin, once per dir.
func (r *rafting) build(dir string) error {
	binDir := filepath.Join(dir, "bin")
	if r.binDir == binDir {
		if _, err := os.Stat(r.member); err == nil {
			return nil
		}
	}
	root, err := mainModuleRoot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	for _, pkg := range []string{"./cmd/rafting", "./examples/masterstandby"} {
		cmd := exec.Command(goCommand(), "build", "-o", filepath.Join(binDir, filepath.Base(pkg)), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	r.binDir, r.server, r.member = binDir, filepath.Join(binDir, "rafting"), filepath.Join(binDir, "masterstandby")
	return nil
}

func (r *rafting) Start(ctx context.Context, dir string, s Setting) error {
	if err := r.Stop(); err != nil {
		return err
	}
	if err := r.build(dir); err != nil {
		return err
	}
	data, err := os.MkdirTemp(dir, "rafting-*")
	if err != nil {
		return err
	}
	r.data = data
	rtt := raftingRTT.String()
	if v := s.Server["rtt"]; v != "" {
		rtt = v
	}
	var initial []string
	for i := 1; i <= 3; i++ {
		apiPort, err := proctest.Port()
		if err != nil {
			return err
		}
		raftPort, err := proctest.Port()
		if err != nil {
			return err
		}
		sv := &raftingServer{id: i, api: fmt.Sprintf("127.0.0.1:%d", apiPort), raft: fmt.Sprintf("127.0.0.1:%d", raftPort)}
		r.servers = append(r.servers, sv)
		initial = append(initial, fmt.Sprintf("%d=%s", i, sv.raft))
	}
	for _, sv := range r.servers {
		p, err := StartProcess(fmt.Sprintf("rafting-server%d", sv.id), data, r.server, []string{"RAFTING_ADMIN_TOKEN=" + raftingAdminToken},
			"server", "--id", strconv.Itoa(sv.id), "--data", filepath.Join(data, fmt.Sprintf("n%d", sv.id)),
			"--api", sv.api, "--raft", sv.raft, "--initial-cluster", strings.Join(initial, ","),
			"--rtt", rtt, "--log-level", "warn")
		if err != nil {
			r.Stop()
			return err
		}
		sv.proc = p
	}
	if err := r.waitReady(ctx, 60*time.Second); err != nil {
		r.Stop()
		return err
	}
	var t api.Tenant
	if err := r.admin(ctx, http.MethodPost, "/v1/tenants", api.CreateTenantRequest{Name: raftingTenant, Quotas: raftingQuotas(),
		Secret: proctest.Secret("peers-b")}, &t); err != nil {
		r.Stop()
		return fmt.Errorf("create tenant: %w", err)
	}
	r.token = t.Token
	return nil
}

// raftingQuotas are far above every workload, so no quota shapes a figure.
func raftingQuotas() api.Quotas {
	return api.Quotas{MaxInstances: 50_000, MaxSessions: 20_000, MaxWatchers: 20_000,
		RequestsPerSecond: 1_000_000, Burst: 1_000_000, WritesPerSecond: 1_000_000}
}

func (r *rafting) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, sv := range r.servers {
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+sv.api+"/readyz", nil)
			resp, err := r.hc.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-sv.proc.Exited():
				return fmt.Errorf("rafting server %d exited: %s", sv.id, r.logTail(sv))
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("rafting server %d not ready after %v: %s", sv.id, timeout, r.logTail(sv))
			}
		}
	}
	return nil
}

func (r *rafting) logTail(sv *raftingServer) string {
	b, _ := os.ReadFile(filepath.Join(r.data, fmt.Sprintf("rafting-server%d.log", sv.id)))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func (r *rafting) Stop() error {
	var wg sync.WaitGroup
	for _, sv := range r.servers {
		if sv.proc != nil {
			wg.Add(1)
			go func(p *proctest.Proc) {
				defer wg.Done()
				p.Stop(10 * time.Second)
			}(sv.proc)
		}
	}
	wg.Wait()
	r.servers = nil
	var err error
	if r.data != "" {
		err = os.RemoveAll(r.data)
		r.data = ""
	}
	r.token = ""
	return err
}

func (r *rafting) running() error {
	if len(r.servers) == 0 {
		return errors.New("rafting: not started")
	}
	return nil
}

// PIDs are the server processes' IDs.
func (r *rafting) PIDs() []int {
	var pids []int
	for _, sv := range r.servers {
		pids = append(pids, sv.proc.PID())
	}
	return pids
}

func (r *rafting) addrs() []string {
	var a []string
	for _, sv := range r.servers {
		a = append(a, sv.api)
	}
	return a
}

// must sends a request to node (0-based) and decodes a 2xx answer into
// out; after a retryable error or no answer it tries the next node, 50 ms
// apart, for 30 s at most. An error answer is an *api.Error.
func (r *rafting) must(ctx context.Context, node int, token, method, path string, body, out any) error {
	c := restclient.Client{Token: token, HTTP: r.hc, Retry: restclient.For(30*time.Second, 50*time.Millisecond)}
	for i := range r.servers {
		c.Servers = append(c.Servers, "http://"+r.servers[(node+i)%len(r.servers)].api)
	}
	return c.Do(ctx, method, path, body, out)
}

func (r *rafting) admin(ctx context.Context, method, path string, body, out any) error {
	return r.must(ctx, 0, raftingAdminToken, method, path, body, out)
}

func (r *rafting) tenantPath(tenant, suffix string) string { return "/v1/tenants/" + tenant + suffix }

func (r *rafting) sdkOptions(tenant, token string) []sdk.Option {
	return []sdk.Option{sdk.WithServers(r.addrs()...), sdk.WithTenant(tenant), sdk.WithToken(token), sdk.WithClientStream(r.stream)}
}

// Register: clients SDK Clients (one connection each, on the client
// stream unless RAFTING_PEERS_STREAM=0), each with one farm member joined
// beforehand (its session, as each etcd client holds one lease), each
// re-registering its member in turn with a new weight (Member.Update: one
// registration under the session, a Raft entry, answered once applied).
func (r *rafting) Register(ctx context.Context, clients int, d time.Duration) (Sample, error) {
	if err := r.running(); err != nil {
		return Sample{}, err
	}
	members := make([]*sdk.Member, clients)
	defer func() {
		var wg sync.WaitGroup
		for _, m := range members {
			if m != nil {
				wg.Go(func() { m.Leave(context.Background()) })
			}
		}
		wg.Wait()
	}()
	err := raftingParallel(ctx, 32, clients, func(w int) error {
		m, err := sdk.Join(ctx, sdk.Instance{Service: "web", ID: fmt.Sprintf("reg-%d", w), Address: fmt.Sprintf("10.4.%d.%d:80", w/250, w%250)},
			append(r.sdkOptions(raftingTenant, r.token), sdk.WithDrainDelay(0))...)
		members[w] = m
		return err
	})
	if err != nil {
		return Sample{}, fmt.Errorf("rafting register: join: %w", err)
	}
	return closedLoop(ctx, "rafting register", clients, d, 0, func(ctx context.Context, w, i int) error {
		return members[w].Update(ctx, sdk.SetWeight(1+i%100))
	})
}

// Propagation: watchers SDK Clients watch service "prop" (Client.Service
// and its Watch); each round the driver registers one more instance with
// one PUT under its session, opened beforehand and kept alive (as the
// etcd target puts under a granted lease and the ZooKeeper target creates
// in an open session), and each watcher's sample is the time from the
// PUT's start until its cache held the instance. The service keeps at most
// 10 instances: the oldest is deregistered between rounds.
func (r *rafting) Propagation(ctx context.Context, watchers, rounds int) (Sample, error) {
	if err := r.running(); err != nil {
		return Sample{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type round struct {
		id   string
		seen []atomic.Int64 // unix nanos, 0 until seen
		left atomic.Int32
		done chan struct{}
	}
	var cur atomic.Pointer[round]
	var wg sync.WaitGroup
	var clients []*sdk.Client
	var svcs []*sdk.Service
	defer func() {
		cancel()
		for _, c := range clients {
			c.Close()
		}
		wg.Wait()
	}()
	opts := r.sdkOptions(raftingTenant, r.token)
	for i := range watchers {
		c, err := sdk.Connect(ctx, opts...)
		if err != nil {
			return Sample{}, fmt.Errorf("rafting propagation: connect: %w", err)
		}
		clients = append(clients, c)
		svc, err := c.Service(ctx, "prop")
		if err != nil {
			return Sample{}, fmt.Errorf("rafting propagation: watch: %w", err)
		}
		svcs = append(svcs, svc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for snap := range svc.Watch(ctx) {
				now := time.Now().UnixNano()
				r := cur.Load()
				if r == nil {
					continue
				}
				if _, ok := snap.Instance(r.id); ok && r.seen[i].CompareAndSwap(0, now) && r.left.Add(-1) == 0 {
					close(r.done)
				}
			}
		}()
	}
	// The driver's session, renewed every TTL/3 as the SDK renews a farm
	// session; ending it at the end removes its instances.
	leader := r.leaderNode(ctx)
	sid := sessionID()
	if err := r.must(ctx, leader, r.token, http.MethodPut, r.tenantPath(raftingTenant, "/sessions/"+sid),
		api.SessionRequest{TTLMs: raftingTTL.Milliseconds()}, nil); err != nil {
		return Sample{}, fmt.Errorf("rafting propagation: session: %w", err)
	}
	defer r.must(context.Background(), leader, r.token, http.MethodDelete, r.tenantPath(raftingTenant, "/sessions/"+sid), nil, nil)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(raftingTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = r.must(ctx, leader, r.token, http.MethodPut, r.tenantPath(raftingTenant, "/sessions/"+sid+"/keepalive"), struct{}{}, nil)
			}
		}
	}()
	var s Sample
	var ids []string
	start := time.Now()
	for n := range rounds {
		if len(ids) == 10 {
			if err := r.must(ctx, leader, r.token, http.MethodDelete, r.tenantPath(raftingTenant, "/services/prop/instances/"+ids[0]), nil, nil); err != nil {
				return Sample{}, fmt.Errorf("rafting propagation: deregister: %w", err)
			}
			if err := removed(ctx, svcs, ids[0]); err != nil {
				return Sample{}, fmt.Errorf("rafting propagation: deregister: %w", err)
			}
			ids = ids[1:]
		}
		rd := &round{id: fmt.Sprintf("p%d", n), seen: make([]atomic.Int64, watchers), done: make(chan struct{})}
		rd.left.Store(int32(watchers))
		cur.Store(rd)
		t0 := time.Now()
		if err := r.must(ctx, leader, r.token, http.MethodPut, r.tenantPath(raftingTenant, "/services/prop/instances/"+rd.id),
			api.RegisterRequest{Address: "10.0.0.1:80", Session: sid}, nil); err != nil {
			return Sample{}, fmt.Errorf("rafting propagation: register: %w", err)
		}
		ids = append(ids, rd.id)
		select {
		case <-rd.done:
		case <-time.After(10 * time.Second):
			return Sample{}, fmt.Errorf("rafting propagation: instance %s reached %d of %d watchers in 10s", rd.id, watchers-int(rd.left.Load()), watchers)
		case <-ctx.Done():
			return Sample{}, ctx.Err()
		}
		for i := range rd.seen {
			s.Latencies = append(s.Latencies, max(0, time.Duration(rd.seen[i].Load()-t0.UnixNano())))
		}
		s.Ops++
	}
	s.Elapsed = time.Since(start)
	return s, nil
}

// removed waits until no watcher's cache holds instance id.
func removed(ctx context.Context, svcs []*sdk.Service, id string) error {
	deadline := time.Now().Add(10 * time.Second)
	for _, svc := range svcs {
		for {
			if _, ok := svc.Snapshot().Instance(id); !ok {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("instance %s still in a watcher's cache after 10s", id)
			}
			if !ezSleep(ctx, 5*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	return nil
}

// sdkClients connects n SDK Clients to the bench tenant, in parallel; the
// caller closes them (closeSDKClients) also after an error.
func (r *rafting) sdkClients(ctx context.Context, n int) ([]*sdk.Client, error) {
	cs := make([]*sdk.Client, n)
	err := raftingParallel(ctx, 16, n, func(i int) error {
		c, err := sdk.Connect(ctx, r.sdkOptions(raftingTenant, r.token)...)
		cs[i] = c
		return err
	})
	return cs, err
}

func closeSDKClients(cs []*sdk.Client) {
	var wg sync.WaitGroup
	for _, c := range cs {
		if c != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Close()
			}()
		}
	}
	wg.Wait()
}

// deleteKVs deletes the subtree at prefix, outside the measure, so the
// cluster holds nothing more than before.
func (r *rafting) deleteKVs(prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return r.must(ctx, 0, r.token, http.MethodDelete, r.tenantPath(raftingTenant, "/kv/"+prefix+"?prefix=true"), nil, nil)
}

// KVPut: each client its own SDK Client, Client.Put of its own kvKeys keys
// in turn (created before the clock starts, as the peers' are).
func (r *rafting) KVPut(ctx context.Context, clients int, d time.Duration) (Sample, error) {
	if err := r.running(); err != nil {
		return Sample{}, err
	}
	cs, err := r.sdkClients(ctx, clients)
	defer closeSDKClients(cs)
	if err != nil {
		return Sample{}, fmt.Errorf("rafting kv put: connect: %w", err)
	}
	prefix := fmt.Sprintf("config/put-%d", r.kvRuns.Add(1))
	defer r.deleteKVs(prefix)
	key := func(i, k int) string { return fmt.Sprintf("%s/c%d/k%d", prefix, i, k) }
	err = raftingParallel(ctx, 32, clients*kvKeys, func(n int) error {
		i, k := n/kvKeys, n%kvKeys
		_, err := cs[i].Put(ctx, key(i, k), []byte(kvValue(i, k)))
		return err
	})
	if err != nil {
		return Sample{}, fmt.Errorf("rafting kv put: create: %w", err)
	}
	return closedLoop(ctx, "rafting kv put", clients, d, kvKeys, func(ctx context.Context, i, n int) error {
		_, err := cs[i].Put(ctx, key(i, n%kvKeys), []byte(kvValue(i, n)))
		return err
	})
}

// KVWatch: each watcher its own SDK Client with a Config view of the key's
// subtree and an OnChange callback; a round is one Client.Put of a new
// value by the driver's Client, seen in the callback's snapshot.
func (r *rafting) KVWatch(ctx context.Context, watchers, rounds int) (Sample, error) {
	if err := r.running(); err != nil {
		return Sample{}, err
	}
	cs, err := r.sdkClients(ctx, watchers+1)
	defer closeSDKClients(cs) // ends every OnChange
	if err != nil {
		return Sample{}, fmt.Errorf("rafting kv watch: connect: %w", err)
	}
	driver, cs := cs[0], cs[1:]
	prefix := fmt.Sprintf("config/watch-%d", r.kvRuns.Add(1))
	key := prefix + "/rollout"
	if _, err := driver.Put(ctx, key, []byte("start")); err != nil {
		return Sample{}, fmt.Errorf("rafting kv watch: put: %w", err)
	}
	defer r.deleteKVs(prefix)
	obs := make(chan seen, watchers*(rounds+1)+16)
	err = raftingParallel(ctx, 16, watchers, func(i int) error {
		view, err := cs[i].Config(ctx, prefix)
		if err != nil {
			return err
		}
		var last uint64 // OnChange calls fn one at a time
		view.OnChange(func(snap sdk.ConfigSnapshot) {
			now := time.Now()
			if kv, ok := snap.Get(key); ok && kv.ModIndex != last {
				last = kv.ModIndex
				obs <- seen{string(kv.Value), now}
			}
		})
		return nil
	})
	if err != nil {
		return Sample{}, fmt.Errorf("rafting kv watch: config: %w", err)
	}
	return watchRounds(ctx, "rafting kv watch", watchers, rounds, obs, func(value string) error {
		_, err := driver.Put(ctx, key, []byte(value))
		return err
	})
}

// leaderNode is the 0-based node leading the tenant's shard (0 when no
// node names one).
func (r *rafting) leaderNode(ctx context.Context) int {
	var cl api.Cluster
	if r.admin(ctx, http.MethodGet, "/v1/cluster", nil, &cl) != nil {
		return 0
	}
	for _, sh := range cl.Shards {
		if sh.Tenant == raftingTenant && sh.Leader != 0 {
			for i, sv := range r.servers {
				if uint64(sv.id) == sh.Leader {
					return i
				}
			}
		}
	}
	return 0
}

func sessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// msEvent is one line a member of examples/masterstandby prints.
type msEvent struct {
	Ev    string `json:"ev"`
	ID    string `json:"id"`
	Role  string `json:"role"`
	Token uint64 `json:"token"`
	At    int64  `json:"at"`
}

// msGroup is three member processes of examples/masterstandby in a tenant
// of their own.
type msGroup struct {
	r       *rafting
	dir     string
	env     []string
	args    []string
	tenant  string
	next    int
	members map[string]*proctest.Proc
	events  chan msEvent
	role    map[string]msEvent
}

func (r *rafting) newGroup(ctx context.Context, args ...string) (*msGroup, error) {
	if err := r.running(); err != nil {
		return nil, err
	}
	tenant := fmt.Sprintf("ms%d", r.tenants.Add(1))
	var t api.Tenant
	if err := r.admin(ctx, http.MethodPost, "/v1/tenants", api.CreateTenantRequest{Name: tenant, Quotas: raftingQuotas(),
		Secret: proctest.Secret("peers-m")}, &t); err != nil {
		return nil, fmt.Errorf("create tenant: %w", err)
	}
	dir, err := os.MkdirTemp(r.data, tenant+"-*")
	if err != nil {
		return nil, err
	}
	return &msGroup{r: r, dir: dir, tenant: tenant, args: args, members: map[string]*proctest.Proc{},
		events: make(chan msEvent, 1<<14), role: map[string]msEvent{},
		env: []string{"RAFTING_SERVERS=" + strings.Join(r.addrs(), ","), "RAFTING_TENANT=" + tenant, "RAFTING_TOKEN=" + t.Token}}, nil
}

// fill starts members until three run and waits for a master among them,
// every member past its first role.
func (g *msGroup) fill(ctx context.Context) (msEvent, error) {
	for len(g.members) < 3 {
		g.next++
		id := fmt.Sprintf("%s-%d", g.tenant, g.next)
		p, err := StartProcess(id, g.dir, g.r.member, g.env, append([]string{"-role", "member", "-id", id,
			"-ledger", filepath.Join(g.dir, "ledger")}, g.args...)...)
		if err != nil {
			return msEvent{}, err
		}
		g.members[id] = p
		lines := p.Subscribe()
		go func() {
			for l := range lines {
				var e msEvent
				if json.Unmarshal([]byte(l), &e) == nil && e.Ev == "role" {
					g.events <- e
				}
			}
		}()
	}
	deadline := time.After(60 * time.Second)
	for {
		var master msEvent
		ready := 0
		for id := range g.members {
			if e, ok := g.role[id]; ok && e.Role != "starting" {
				ready++
				if e.Role == "master" {
					master = e
				}
			}
		}
		if master.ID != "" && ready == len(g.members) {
			return master, nil
		}
		select {
		case e := <-g.events:
			g.role[e.ID] = e
		case <-deadline:
			return msEvent{}, fmt.Errorf("rafting: no stable master among %d members in 60s", len(g.members))
		case <-ctx.Done():
			return msEvent{}, ctx.Err()
		}
	}
}

// successor waits for a member other than old to report master at or
// after t0 and returns how long after t0 it did.
func (g *msGroup) successor(ctx context.Context, old string, t0 time.Time, timeout time.Duration) (time.Duration, error) {
	deadline := time.After(timeout)
	for {
		select {
		case e := <-g.events:
			g.role[e.ID] = e
			if e.Role == "master" && e.ID != old && e.At >= t0.UnixNano() {
				return time.Duration(e.At - t0.UnixNano()), nil
			}
		case <-deadline:
			return 0, fmt.Errorf("rafting: no successor to %s within %v", old, timeout)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (g *msGroup) drop(id string) {
	g.members[id].Kill()
	delete(g.members, id)
	delete(g.role, id)
}

// close stops the remaining members (gracefully, then by force) and
// removes the group's directory.
func (g *msGroup) close() {
	var wg sync.WaitGroup
	for _, p := range g.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Stop(10 * time.Second)
		}()
	}
	wg.Wait()
	g.members = nil
	os.RemoveAll(g.dir)
}

// raftingSettle is how long a fresh master runs before it is signalled: a few
// keepalives into its term.
const raftingSettle = 300 * time.Millisecond

// Handover: SIGTERM to the master, whose Member.Leave hands the mastership
// over at once; the sample ends at the successor's role event.
func (r *rafting) Handover(ctx context.Context, rounds int) (Sample, error) {
	g, err := r.newGroup(ctx)
	if err != nil {
		return Sample{}, err
	}
	defer g.close()
	var s Sample
	for range rounds {
		m, err := g.fill(ctx)
		if err != nil {
			return s, err
		}
		time.Sleep(raftingSettle)
		t0 := time.Now()
		g.members[m.ID].Signal(syscall.SIGTERM)
		d, err := g.successor(ctx, m.ID, t0, 10*time.Second)
		if err != nil {
			return s, err
		}
		<-g.members[m.ID].Exited()
		g.drop(m.ID)
		s.Latencies = append(s.Latencies, d)
		s.Ops++
	}
	return s, nil
}

// Failover: after a random delay in [k, 2k) past settle, k the keepalive
// period (lease/4), the master gets kill -9; the sample ends at the
// successor's role event.
func (r *rafting) Failover(ctx context.Context, st Setting, rounds int) (Sample, error) {
	lease, ttl := st.Lease, raftingTTL
	if v, err := time.ParseDuration(st.Client["lease"]); err == nil {
		lease = v
	}
	if v, err := time.ParseDuration(st.Client["ttl"]); err == nil {
		ttl = v
	}
	if lease <= 0 {
		return Sample{}, fmt.Errorf("rafting: setting %s has no lease", st.Name)
	}
	g, err := r.newGroup(ctx, "-lease", lease.String(), "-ttl", ttl.String())
	if err != nil {
		return Sample{}, err
	}
	defer g.close()
	k := lease / 4
	var s Sample
	for range rounds {
		m, err := g.fill(ctx)
		if err != nil {
			return s, err
		}
		time.Sleep(raftingSettle + k + time.Duration(mrand.Int64N(int64(k))))
		t0 := time.Now()
		g.members[m.ID].Kill()
		d, err := g.successor(ctx, m.ID, t0, ttl+10*time.Second)
		if err != nil {
			return s, err
		}
		g.drop(m.ID)
		s.Latencies = append(s.Latencies, d)
		s.Ops++
	}
	return s, nil
}

// Idle: one SDK farm member per instance, renewed every TTL/3 (5 s TTL)
// with its session attached, the way the SDK keeps a member alive; each
// of shape's Clients (its connections) holds shape.PerClient of them.
// With PerSession the members of a Client share its one session, as the
// SDK's farm members do by default (each Client stands for a process);
// without, each member has a session of its own (sdk.WithOwnSession), as
// an instance process of its own would. After raftingIdleSettle, the
// servers' CPU and memory over d.
func (r *rafting) Idle(ctx context.Context, shape IdleShape, d time.Duration) (IdleCost, error) {
	if err := r.running(); err != nil {
		return IdleCost{}, err
	}
	nc, instances := max(shape.Clients, 1), shape.Instances()
	clients, err := r.sdkClients(ctx, nc)
	defer closeSDKClients(clients) // every member leaves
	if err != nil {
		return IdleCost{}, fmt.Errorf("rafting idle: connect %d clients: %w", nc, err)
	}
	memberOpts, sessions := []sdk.Option{sdk.WithDrainDelay(0)}, nc
	if !shape.PerSession {
		memberOpts, sessions = append(memberOpts, sdk.WithOwnSession()), instances
	}
	members := make([]*sdk.Member, instances)
	err = raftingParallel(ctx, 32, instances, func(n int) error {
		m, err := clients[n%nc].Join(ctx, sdk.Instance{Service: fmt.Sprintf("idle-%d", n%10), ID: fmt.Sprintf("i-%d", n),
			Address: fmt.Sprintf("10.%d.%d.%d:80", n>>16&255, n>>8&255, n&255)}, memberOpts...)
		members[n] = m
		return err
	})
	if err != nil {
		return IdleCost{}, fmt.Errorf("rafting idle: join: %w", err)
	}
	lost := func() error {
		for _, m := range members {
			select {
			case <-m.Done():
				return fmt.Errorf("rafting idle: member %s ended: %v", m.ID(), m.Err())
			default:
			}
		}
		return nil
	}
	select {
	case <-time.After(raftingIdleSettle):
	case <-ctx.Done():
		return IdleCost{}, ctx.Err()
	}
	if err := lost(); err != nil {
		return IdleCost{}, err
	}
	c, err := Usage(r.PIDs(), d)
	if err != nil {
		return IdleCost{}, err
	}
	if err := lost(); err != nil {
		return IdleCost{}, err
	}
	// Every instance is still listed: the sessions lived through it.
	var svc api.ServiceResponse
	if err := r.must(ctx, 0, r.token, http.MethodGet, r.tenantPath(raftingTenant, "/services/idle-0?consistent=true"), nil, &svc); err != nil {
		return IdleCost{}, err
	}
	if want := (instances + 9) / 10; len(svc.Instances) != want {
		return IdleCost{}, fmt.Errorf("rafting idle: service idle-0 lists %d instances after the window, want %d", len(svc.Instances), want)
	}
	c.Instances, c.Clients, c.Sessions = instances, nc, sessions
	return c, nil
}

// raftingParallel runs f(0..n-1) on workers goroutines and returns the first error.
func raftingParallel(ctx context.Context, workers, n int, f func(int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan int)
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(workers, max(n, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := f(i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		// the caller's ctx ended
		return context.Cause(ctx)
	}
	return first
}

// raftingIdleSettle is how long a cluster rests after the instances joined
// before it is measured (as long as the etcd target's).
const raftingIdleSettle = 2 * time.Second
