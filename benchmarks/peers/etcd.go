package peers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rafting/rafting/internal/proctest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// Etcd is the etcd target: a 3-member etcd cluster on loopback from
// Debian's etcd-server package (scripts/install-peers.sh), every member a
// child process started directly and ended by its PID, its data in a fresh
// temporary directory.
//
// The workloads, the idiomatic way with go.etcd.io/etcd/client/v3:
//
//   - Register: each client (its own clientv3.Client) grants one lease and
//     puts, then keeps updating, its instance keys under
//     /services/register/ with that lease; an operation is one Put.
//   - Propagation: each watcher is its own client with a Watch on the
//     service prefix; the driver puts a new instance key (with a lease) and
//     each watcher's latency is until its Put event arrives.
//   - KVPut: each client (its own clientv3.Client) puts the values of its
//     own keys under /config/put-<n>/, which exist before the clock starts.
//   - KVWatch: each watcher is its own client with a Watch on one key; the
//     driver puts a new value and each watcher's latency is until its Put
//     event arrives.
//   - Handover, Failover: three peermember processes, each a
//     concurrency.Session (TTL = the setting's lease) campaigning with
//     concurrency.Election. Handover: the master gets SIGTERM, Resigns and
//     exits. Failover: kill -9 after a random delay in [K, 2K), K the
//     client's actual keepalive period (etcdKeepalive: TTL/3 rounded up to
//     clientv3's 500 ms send loop).
//   - Idle: one lease per instance (a concurrency.Session each, as every
//     instance process would hold), its key attached; the leases are kept
//     alive over 10 client connections (a client multiplexes the
//     keepalives of all its leases on one gRPC stream). Then the CPU and
//     RSS of the three etcd processes, over d rounded up to whole
//     keepalive periods (20.5 s at the default TTL), so that every
//     lease is renewed equally often in the window.
//
// The server logs at warn level (--logger zap --log-level warn) to a file.
type Etcd struct {
	// Bin is the etcd server binary (default: etcd on PATH, else
	// /usr/bin/etcd).
	Bin string

	ezCluster // endpoints: the client URLs
	cli       *clientv3.Client
}

// NewEtcd returns the etcd target.
func NewEtcd() Target {
	t := &Etcd{Bin: etcdBinary()}
	t.ezCluster = ezCluster{system: "etcd", sys: t}
	return t
}

func etcdBinary() string {
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	return "/usr/bin/etcd"
}

// etcdInstalled reports whether the etcd server binary runs.
func etcdInstalled() (string, bool) {
	out, err := exec.Command(etcdBinary(), "--version").Output()
	if err != nil {
		return "", false
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(line, "etcd Version:")), true
}

func (t *Etcd) Name() string { return "etcd" }

// etcdMinTTL is the shortest lease TTL an etcd server grants: a shorter
// one is silently raised to it (lessor.Grant). etcdserver sets it to
// ceil(⌊3·electionTicks/2⌋ × heartbeat) in whole seconds, electionTicks =
// election-timeout / heartbeat-interval: 2 s for the defaults (100 ms,
// 1000 ms → 15 × 100 ms = 1.5 s → 2 s). Start checks it on the running
// server.
func etcdMinTTL(heartbeat, election time.Duration) time.Duration {
	ticks := int64(election / heartbeat)
	min := time.Duration(3*ticks/2) * heartbeat
	return time.Duration((min+time.Second-1)/time.Second) * time.Second
}

// etcdKeepalive is how often clientv3 actually renews a lease of ttl
// seconds: a renewal falls due TTL/3 after the last response, and the
// client's send loop looks for due leases every 500 ms (retryConnWait), so
// the period is TTL/3 rounded up to the next 500 ms step: 500 ms at TTL 1,
// 1 s at TTL 2, 20.5 s at TTL 60.
func etcdKeepalive(ttl int64) time.Duration {
	const step = 500 * time.Millisecond
	due := time.Duration(ttl) * time.Second / 3
	return (due/step + 1) * step
}

func (t *Etcd) Settings() []Setting {
	ver, ok := etcdInstalled()
	if !ok {
		ver = "(not installed)"
	}
	srv := func(hb, el int) map[string]string {
		return map[string]string{"heartbeat-interval": strconv.Itoa(hb), "election-timeout": strconv.Itoa(el)}
	}
	cl := func(ttl int) map[string]string { return map[string]string{"ttl": strconv.Itoa(ttl)} }
	return []Setting{
		{
			Name: "default", Lease: 60 * time.Second, Server: srv(100, 1000), Client: cl(60),
			Note: fmt.Sprintf("etcd %s, server defaults (--heartbeat-interval=100ms --election-timeout=1000ms); "+
				"concurrency.NewSession default TTL 60 s (keepalive every 20.5 s)", ver),
		},
		{
			Name: "shortest-default-server", Lease: 2 * time.Second, Server: srv(100, 1000), Client: cl(2),
			Note: fmt.Sprintf("etcd %s, server defaults; session TTL 2 s, the minimum lease TTL of a default server "+
				"(ceil(1.5 × election timeout); a shorter TTL is silently raised to 2 s); keepalive every 1 s", ver),
		},
		{
			Name: "tuned", Lease: 1 * time.Second, Server: srv(50, 500), Client: cl(1),
			Note: fmt.Sprintf("etcd %s, --heartbeat-interval=50ms --election-timeout=500ms (minimum lease TTL "+
				"ceil(15 × 50 ms) = 1 s); session TTL 1 s, the shortest etcd has (whole seconds); keepalive every 500 ms", ver),
		},
		{
			Name: "same-lease", Lease: 1 * time.Second, Server: srv(50, 500), Client: cl(1),
			Note: fmt.Sprintf("etcd %s, --heartbeat-interval=50ms --election-timeout=500ms; session TTL 1 s, "+
				"keepalive every 500 ms (= tuned: 1 s needs the faster server)", ver),
		},
	}
}

// ttlSeconds is the lease TTL of the current setting.
func (t *Etcd) ttlSeconds() int64 {
	if v, err := strconv.Atoi(t.setting.Client["ttl"]); err == nil && v > 0 {
		return int64(v)
	}
	if s := int64(t.setting.Lease / time.Second); s > 0 {
		return s
	}
	return 60
}

func (t *Etcd) Start(ctx context.Context, dir string, s Setting) error {
	if err := t.Stop(); err != nil {
		return err
	}
	if _, ok := etcdInstalled(); !ok {
		return fmt.Errorf("etcd: %s not runnable; run scripts/install-peers.sh", t.Bin)
	}
	if err := t.newRun(dir, s); err != nil {
		return err
	}
	fail := func(err error) error {
		t.Stop()
		return fmt.Errorf("etcd start (%s): %w", s.Name, err)
	}

	var cports, pports []int
	for i := 0; i < 3; i++ {
		c, err := proctest.Port()
		if err != nil {
			return fail(err)
		}
		p, err := proctest.Port()
		if err != nil {
			return fail(err)
		}
		cports, pports = append(cports, c), append(pports, p)
	}
	t.endpoints = ezHostPorts("http://", cports)
	peerURLs := ezHostPorts("http://", pports)
	var initial []string
	for i := range peerURLs {
		initial = append(initial, fmt.Sprintf("e%d=%s", i+1, peerURLs[i]))
	}
	var extra []string
	keys := make([]string, 0, len(s.Server))
	for k := range s.Server {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		extra = append(extra, fmt.Sprintf("--%s=%s", k, s.Server[k]))
	}
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("e%d", i+1)
		args := []string{
			"--name", name,
			"--data-dir", filepath.Join(t.dir, name+".etcd"),
			"--listen-client-urls", t.endpoints[i],
			"--advertise-client-urls", t.endpoints[i],
			"--listen-peer-urls", peerURLs[i],
			"--initial-advertise-peer-urls", peerURLs[i],
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--initial-cluster-token", fmt.Sprintf("bench-%d-%d", os.Getpid(), t.runs),
			"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
		}
		p, err := StartProcess("etcd-"+name, t.dir, t.Bin, nil, append(args, extra...)...)
		if err != nil {
			return fail(err)
		}
		t.procs = append(t.procs, p)
	}
	for i, u := range t.endpoints {
		if err := ezWaitServing(ctx, strings.TrimPrefix(u, "http://"), t.procs[i], 30*time.Second); err != nil {
			return fail(err)
		}
	}
	cli, err := t.client()
	if err != nil {
		return fail(err)
	}
	t.cli = cli
	// Serving: a write commits through the quorum.
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := t.cli.Put(cctx, "/bench/ready", "1")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fail(fmt.Errorf("no write committed within 30s: %w", err))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The server must grant the setting's TTL as is (it silently raises a
	// TTL below its minimum).
	want := t.ttlSeconds()
	lr, err := t.cli.Grant(ctx, want)
	if err != nil {
		return fail(fmt.Errorf("grant TTL %d: %w", want, err))
	}
	t.cli.Revoke(ctx, lr.ID)
	if lr.TTL != want {
		return fail(fmt.Errorf("server granted TTL %d s for a requested %d s (its minimum TTL is above the setting)", lr.TTL, want))
	}
	return nil
}

// ezWaitServing waits for addr to accept connections, failing early if the
// process exits.
func ezWaitServing(ctx context.Context, addr string, p *proctest.Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.Exited():
			return fmt.Errorf("%s exited during start (see %s.log)", p.Name, p.Name)
		default:
		}
		if err := proctest.WaitTCP(addr, 200*time.Millisecond); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not accepting connections after %v", p.Name, addr, timeout)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (t *Etcd) client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   t.endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// clients opens n clients in parallel.
func (t *Etcd) clients(n int) ([]*clientv3.Client, error) {
	if err := t.running(); err != nil {
		return nil, err
	}
	out := make([]*clientv3.Client, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = t.client()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeEtcdClients(out)
		return nil, err
	}
	return out, nil
}

func closeEtcdClients(cs []*clientv3.Client) {
	for _, c := range cs {
		if c != nil {
			c.Close()
		}
	}
}

func (t *Etcd) Stop() error {
	if t.cli != nil {
		t.cli.Close()
		t.cli = nil
	}
	// One at a time: a leader stopping hands its leadership to a live
	// peer at once, while with all three stopping together it waits ~7 s
	// for a transfer that cannot happen.
	for _, p := range t.procs {
		p.Stop(10 * time.Second)
	}
	return t.stopped()
}

func (t *Etcd) running() error {
	if t.cli == nil {
		return errors.New("etcd: not started")
	}
	return nil
}

// ezRegisterKeys is how many instances each Register client owns, in turn
// (as many as the Rafting target's): the first write of one registers it
// (etcd: Put with the client's lease; ZooKeeper: Create of an ephemeral
// znode), the next ones update it (Put; Set).
const ezRegisterKeys = 20

func (t *Etcd) Register(ctx context.Context, clients int, d time.Duration) (Sample, error) {
	cs, err := t.clients(clients)
	if err != nil {
		return Sample{}, fmt.Errorf("etcd register: clients: %w", err)
	}
	defer closeEtcdClients(cs)
	leases := make([]clientv3.LeaseID, clients)
	for i, c := range cs {
		lr, err := c.Grant(ctx, t.ttlSeconds())
		if err != nil {
			return Sample{}, fmt.Errorf("etcd register: grant: %w", err)
		}
		leases[i] = lr.ID
	}
	defer func() {
		for i, c := range cs {
			c.Revoke(context.Background(), leases[i])
		}
	}()
	run := t.runs
	return closedLoop(ctx, "etcd register", clients, d, 0, func(ctx context.Context, i, n int) error {
		key := fmt.Sprintf("/services/register/c%d-%d-i%d", run, i, n%ezRegisterKeys)
		val := fmt.Sprintf(`{"addr":"127.0.0.1:%d","rev":%d}`, 10000+i, n)
		_, err := cs[i].Put(ctx, key, val, clientv3.WithLease(leases[i]))
		return err
	})
}

func (t *Etcd) Propagation(ctx context.Context, watchers, rounds int) (Sample, error) {
	cs, err := t.clients(watchers)
	if err != nil {
		return Sample{}, fmt.Errorf("etcd propagation: clients: %w", err)
	}
	defer closeEtcdClients(cs)
	prefix := fmt.Sprintf("/services/propagation-%d/", time.Now().UnixNano())
	obs := make(chan seen, watchers*rounds+16)
	stop, err := etcdWatch(ctx, cs, prefix, obs, func(ev *clientv3.Event) (string, bool) {
		return strings.TrimPrefix(string(ev.Kv.Key), prefix), ev.Type == clientv3.EventTypePut && ev.IsCreate()
	}, clientv3.WithPrefix())
	if err != nil {
		return Sample{}, fmt.Errorf("etcd propagation: %w", err)
	}
	defer stop()
	lr, err := t.cli.Grant(ctx, t.ttlSeconds())
	if err != nil {
		return Sample{}, fmt.Errorf("etcd propagation: grant: %w", err)
	}
	defer t.cli.Revoke(context.Background(), lr.ID)
	return watchRounds(ctx, "etcd propagation", watchers, rounds, obs, func(name string) error {
		_, err := t.cli.Put(ctx, prefix+name, `{"addr":"127.0.0.1:9999"}`, clientv3.WithLease(lr.ID))
		return err
	})
}

// KVPut: each client its own clientv3.Client putting its own kvKeys keys
// in turn (plain keys, no lease: configuration outlives its writer).
func (t *Etcd) KVPut(ctx context.Context, clients int, d time.Duration) (Sample, error) {
	cs, err := t.clients(clients)
	if err != nil {
		return Sample{}, fmt.Errorf("etcd kv put: clients: %w", err)
	}
	defer closeEtcdClients(cs)
	prefix := fmt.Sprintf("/config/put-%d/", time.Now().UnixNano())
	defer t.cli.Delete(context.Background(), prefix, clientv3.WithPrefix())
	// Every key exists before the clock starts, as in the other targets.
	err = ezParallel(32, clients*kvKeys, func(n int) error {
		i, k := n/kvKeys, n%kvKeys
		_, err := cs[i].Put(ctx, fmt.Sprintf("%sc%d/k%d", prefix, i, k), kvValue(i, k))
		return err
	})
	if err != nil {
		return Sample{}, fmt.Errorf("etcd kv put: create: %w", err)
	}
	return closedLoop(ctx, "etcd kv put", clients, d, kvKeys, func(ctx context.Context, i, n int) error {
		_, err := cs[i].Put(ctx, fmt.Sprintf("%sc%d/k%d", prefix, i, n%kvKeys), kvValue(i, n))
		return err
	})
}

// KVWatch: each watcher its own client with a Watch on the key; a round
// is one Put of a new value, seen in the watcher's Put event.
func (t *Etcd) KVWatch(ctx context.Context, watchers, rounds int) (Sample, error) {
	cs, err := t.clients(watchers)
	if err != nil {
		return Sample{}, fmt.Errorf("etcd kv watch: clients: %w", err)
	}
	defer closeEtcdClients(cs)
	key := fmt.Sprintf("/config/watch-%d/rollout", time.Now().UnixNano())
	if _, err := t.cli.Put(ctx, key, "start"); err != nil {
		return Sample{}, fmt.Errorf("etcd kv watch: put: %w", err)
	}
	defer t.cli.Delete(context.Background(), key)
	obs := make(chan seen, watchers*rounds+16)
	stop, err := etcdWatch(ctx, cs, key, obs, func(ev *clientv3.Event) (string, bool) {
		return string(ev.Kv.Value), ev.Type == clientv3.EventTypePut
	})
	if err != nil {
		return Sample{}, fmt.Errorf("etcd kv watch: %w", err)
	}
	defer stop()
	return watchRounds(ctx, "etcd kv watch", watchers, rounds, obs, func(value string) error {
		_, err := t.cli.Put(ctx, key, value)
		return err
	})
}

// etcdWatch has each client Watch key (opts: clientv3.WithPrefix for a
// prefix) and sends on obs the name observe gives each event it accepts,
// stamped when its response arrived. It returns once every watch is
// created; stop ends them.
func etcdWatch(ctx context.Context, cs []*clientv3.Client, key string, obs chan<- seen,
	observe func(*clientv3.Event) (string, bool), opts ...clientv3.OpOption) (stop func(), err error) {
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop = func() { cancel(); wg.Wait() }
	for _, c := range cs {
		wch := c.Watch(wctx, key, append(opts, clientv3.WithCreatedNotify())...)
		select {
		case r, ok := <-wch:
			if !ok || !r.Created {
				stop()
				return nil, fmt.Errorf("watch not created: %v", r.Err())
			}
		case <-time.After(10 * time.Second):
			stop()
			return nil, errors.New("watch not created within 10s")
		}
		wg.Go(func() {
			for r := range wch {
				now := time.Now()
				for _, ev := range r.Events {
					if name, ok := observe(ev); ok {
						obs <- seen{name, now}
					}
				}
			}
		})
	}
	return stop, nil
}

func (t *Etcd) memberTTL() time.Duration { return time.Duration(t.ttlSeconds()) * time.Second }

func (t *Etcd) lease() time.Duration { return t.memberTTL() }

func (t *Etcd) keepalive() time.Duration { return etcdKeepalive(t.ttlSeconds()) }

// candidates counts the election's keys (concurrency.Election's, one per
// campaigning session).
func (t *Etcd) candidates(ctx context.Context, election string) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	r, err := t.cli.Get(cctx, "/election/"+election+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return int(r.Count), nil
}

// Idle: shape's Clients clientv3 clients (each its connections to the
// three members). With PerSession each client holds one lease
// (concurrency.Session) and puts its PerClient instance keys with it, as
// one process registering its instances would; else each instance has a
// lease of its own and its key, the clients being connections the
// instances share in turn.
func (t *Etcd) Idle(ctx context.Context, shape IdleShape, d time.Duration) (IdleCost, error) {
	nc, instances := max(shape.Clients, 1), shape.Instances()
	cs, err := t.clients(nc)
	if err != nil {
		return IdleCost{}, fmt.Errorf("etcd idle: %d clients: %w", nc, err)
	}
	defer closeEtcdClients(cs)
	// A session per instance, or per client; instance i is on client
	// i%nc, and with PerSession under that client's session.
	nsess := instances
	if shape.PerSession {
		nsess = nc
	}
	sessions := make([]*concurrency.Session, nsess)
	defer func() {
		// Revoke every lease (Close), so the cluster is left as found.
		ezParallel(64, nsess, func(i int) error {
			if sessions[i] != nil {
				sessions[i].Close()
			}
			return nil
		})
	}()
	ttl := int(t.ttlSeconds())
	err = ezParallel(64, nsess, func(i int) error {
		s, err := concurrency.NewSession(cs[i%nc], concurrency.WithTTL(ttl))
		sessions[i] = s
		return err
	})
	if err != nil {
		return IdleCost{}, fmt.Errorf("etcd idle: %d leases: %w", nsess, err)
	}
	run := time.Now().UnixNano()
	err = ezParallel(64, instances, func(i int) error {
		c, s := cs[i%nc], sessions[i%nsess]
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := c.Put(cctx, fmt.Sprintf("/services/idle-%d/inst-%d", run, i),
			fmt.Sprintf(`{"addr":"127.0.0.1:%d"}`, 20000+i), clientv3.WithLease(s.Lease()))
		return err
	})
	if err != nil {
		return IdleCost{}, fmt.Errorf("etcd idle: register %d instances: %w", instances, err)
	}
	if !ezSleep(ctx, 2*time.Second) { // settle
		return IdleCost{}, ctx.Err()
	}
	lost := func(when string) error {
		for i, s := range sessions {
			select {
			case <-s.Done():
				return fmt.Errorf("etcd idle: lease %d of %d lost%s", i, nsess, when)
			default:
			}
		}
		return nil
	}
	if err := lost(""); err != nil {
		return IdleCost{}, err
	}
	c, err := Usage(t.pids(), ezWholePeriods(d, t.keepalive()))
	if err != nil {
		return IdleCost{}, fmt.Errorf("etcd idle: usage: %w", err)
	}
	if err := lost(" during the window"); err != nil {
		return IdleCost{}, err
	}
	c.Instances, c.Clients, c.Sessions = instances, nc, nsess
	return c, nil
}

// ezParallel runs f(0..n-1) on workers goroutines and returns the first
// error (the rest still run).
func ezParallel(workers, n int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("#%d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}
