package peers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/rafting/rafting/internal/proctest"
)

// ZooKeeper is the ZooKeeper target: a 3-member ensemble on loopback from
// Debian's zookeeper package (scripts/install-peers.sh). Each member is the
// JVM itself (java … org.apache.zookeeper.server.quorum.QuorumPeerMain
// zoo.cfg, no wrapper script), so the PID stopped and measured is the
// server's; its data is in a fresh temporary directory.
//
// zoo.cfg: tickTime per setting, initLimit=10, syncLimit=5,
// maxClientCnxns=0 (no per-address limit: every client here shares
// 127.0.0.1, and the default 60 would refuse them), admin.enableServer=false,
// 4lw.commands.whitelist=*; the JVM runs with -Xmx1000m (upstream
// zkEnv.sh's ZK_SERVER_HEAP; Debian's script sets none) and logs at warn
// level (slf4j-simple) to a file.
//
// The workloads, the idiomatic way with github.com/go-zookeeper/zk:
//
//   - Register: each client is its own session (zk.Conn); it creates its
//     instances as ephemeral znodes under /services/register-<n>/ and then
//     keeps updating them (Set); an operation is one Create or Set.
//   - Propagation: each watcher is its own session with ChildrenW on the
//     service znode, re-armed after each fire (as Curator's
//     PathChildrenCache does); its latency is until the re-read children
//     list holds the new instance (an ephemeral znode the driver creates).
//   - KVPut: each client is its own session; setData on its own persistent
//     znodes under /config/put-<n>/, created before the clock starts.
//   - KVWatch: each watcher is its own session reading the znode with
//     getData and a watch, re-armed after each fire (as Curator's NodeCache
//     does); its latency is until the re-read returns the new value (the
//     driver's setData).
//   - Handover, Failover: three peermember processes running Curator's
//     LeaderLatch recipe (ephemeral sequential znodes; the lowest leads,
//     each other watches its predecessor). Handover: the master gets
//     SIGTERM, deletes its latch znode (LeaderLatch.close) and exits.
//     Failover: kill -9 after a random delay in [T/3, 2T/3), T the session
//     timeout — the client pings every T/3.
//   - Idle: one session per instance, each holding its instance's
//     ephemeral znode. A ZooKeeper session is a connection, and the
//     recipes use one session per process, so N live instances (processes)
//     are N sessions; the honest cost of 10,000 instances is 10,000
//     sessions, not a few sessions holding many znodes each. The CPU and
//     RSS of the three JVMs are taken over d rounded up to whole ping
//     periods (T/3: 13.3 s at the default 40 s), so that every session
//     pings equally often in the window.
//
// Settings: default and shortest-default-server keep tickTime 2000;
// tuned lowers tickTime to 200 ms and uses the shortest session that
// allows (400 ms). That is stable for the failover workload (an election
// on an otherwise idle ensemble: 10 of 10 rounds), but not under load: with
// 32 or 128 clients registering, 400 ms and 600 ms sessions lost their
// connections (go-zookeeper's read timeout is 2/3 of the session: 267 ms,
// and the slowest responses under that load took 150–300 ms); 800 ms and
// 1 s held. tickTime 100 (200 ms sessions) also elects on an idle
// loopback ensemble (failover p50 about 240 ms); tuned stops at 200 ms by
// choice, not at a measured limit.
//
// Warm-up: the JVM's figures settle only once its JIT has compiled the
// request path — on this machine Register with 64 clients rose from about
// 1,000–3,000 to 6,000–10,000 operations/s over its first 15–30 s, while
// etcd's was flat from the first second — so Start ends with a warm-up
// that runs until the throughput stops rising (see warmup; at most
// Warmup, default 45 s), not measured.
type ZooKeeper struct {
	// Java is the java binary (default: java on PATH).
	Java string
	// Classpath holds the server's jars (default: Debian's
	// /usr/share/java/zookeeper.jar, whose manifest names its
	// dependencies, and slf4j-simple for logging).
	Classpath string
	// Heap is the JVM's -Xmx (default 1000m).
	Heap string
	// Warmup bounds how long Start exercises a fresh ensemble before
	// returning (it stops earlier once throughput settles); 0 means the
	// default 45 s, negative none.
	Warmup time.Duration

	ezCluster // endpoints: 127.0.0.1:clientPort
	cli       *zk.Conn
	// warmupRates are the last warm-up's Register steps, operations/s.
	warmupRates []float64
}

// NewZooKeeper returns the ZooKeeper target.
func NewZooKeeper() Target {
	java, err := exec.LookPath("java")
	if err != nil {
		java = "/usr/bin/java"
	}
	t := &ZooKeeper{Java: java, Classpath: zkDefaultClasspath, Heap: "1000m"}
	t.ezCluster = ezCluster{system: "zookeeper", sys: t}
	return t
}

const (
	zkJar              = "/usr/share/java/zookeeper.jar"
	zkDefaultClasspath = zkJar + ":/usr/share/java/slf4j-simple.jar"
	zkDefaultWarmup    = 45 * time.Second
)

// zkInstalled reports whether the server jar and java are there, and the
// package version.
func zkInstalled() (string, bool) {
	if _, err := os.Stat(zkJar); err != nil {
		return "", false
	}
	if _, err := exec.LookPath("java"); err != nil {
		if _, err := os.Stat("/usr/bin/java"); err != nil {
			return "", false
		}
	}
	ver := "3.x"
	if out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "zookeeper").Output(); err == nil {
		ver = strings.TrimSpace(string(out))
	}
	return ver, true
}

func (t *ZooKeeper) Name() string { return "zookeeper" }

func (t *ZooKeeper) Settings() []Setting {
	ver, ok := zkInstalled()
	if !ok {
		ver = "(not installed)"
	}
	mk := func(name string, tick, session, negotiated time.Duration, note string) Setting {
		return Setting{
			Name: name, Lease: negotiated,
			Server: map[string]string{"tickTime": strconv.Itoa(int(tick / time.Millisecond))},
			Client: map[string]string{"sessionTimeout": session.String()},
			Note:   fmt.Sprintf("ZooKeeper %s (Debian), -Xmx1000m; %s", ver, note),
		}
	}
	return []Setting{
		mk("default", 2*time.Second, 60*time.Second, 40*time.Second,
			"tickTime=2000 (default); session timeout 60 s requested (Curator's default), "+
				"negotiated to 40 s = maxSessionTimeout 20 × tickTime; ping every 13.3 s"),
		mk("shortest-default-server", 2*time.Second, 4*time.Second, 4*time.Second,
			"tickTime=2000 (default); session timeout 4 s = minSessionTimeout 2 × tickTime; ping every 1.33 s"),
		mk("tuned", 200*time.Millisecond, 400*time.Millisecond, 400*time.Millisecond,
			"tickTime=200; session timeout 400 ms = 2 × tickTime; ping every 133 ms "+
				"(stable for an idle election; sessions under 1 s lose their connection under a 32-client write load here)"),
		mk("same-lease", 200*time.Millisecond, time.Second, time.Second,
			"tickTime=200 (as tuned); session timeout 1 s; ping every 333 ms"),
	}
}

// sessionTimeout is the session timeout the clients request.
func (t *ZooKeeper) sessionTimeout() time.Duration {
	if d, err := time.ParseDuration(t.setting.Client["sessionTimeout"]); err == nil && d > 0 {
		return d
	}
	if t.setting.Lease > 0 {
		return t.setting.Lease
	}
	return 60 * time.Second
}

func (t *ZooKeeper) Start(ctx context.Context, dir string, s Setting) error {
	if err := t.Stop(); err != nil {
		return err
	}
	if _, ok := zkInstalled(); !ok {
		return fmt.Errorf("zookeeper: %s or java missing; run scripts/install-peers.sh", zkJar)
	}
	if err := t.newRun(dir, s); err != nil {
		return err
	}
	fail := func(err error) error {
		t.Stop()
		return fmt.Errorf("zookeeper start (%s): %w", s.Name, err)
	}
	tick := s.Server["tickTime"]
	if tick == "" {
		tick = "2000"
	}
	ports := make([]int, 9) // client, quorum, election × 3
	for i := range ports {
		p, err := proctest.Port()
		if err != nil {
			return fail(err)
		}
		ports[i] = p
	}
	t.endpoints = ezHostPorts("", []int{ports[0], ports[3], ports[6]})
	var ensemble strings.Builder
	for i := 0; i < 3; i++ {
		fmt.Fprintf(&ensemble, "server.%d=127.0.0.1:%d:%d\n", i+1, ports[3*i+1], ports[3*i+2])
	}
	extra := make([]string, 0, len(s.Server))
	for k, v := range s.Server {
		if k != "tickTime" {
			extra = append(extra, k+"="+v+"\n")
		}
	}
	sort.Strings(extra)
	heap := t.Heap
	if heap == "" {
		heap = "1000m"
	}
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("zk%d", i+1)
		data := filepath.Join(t.dir, name)
		if err := os.MkdirAll(data, 0o755); err != nil {
			return fail(err)
		}
		if err := os.WriteFile(filepath.Join(data, "myid"), []byte(strconv.Itoa(i+1)+"\n"), 0o644); err != nil {
			return fail(err)
		}
		cfg := fmt.Sprintf("tickTime=%s\ninitLimit=10\nsyncLimit=5\ndataDir=%s\nclientPort=%d\nclientPortAddress=127.0.0.1\n"+
			"maxClientCnxns=0\nadmin.enableServer=false\n4lw.commands.whitelist=*\n%s%s",
			tick, data, ports[3*i], ensemble.String(), strings.Join(extra, ""))
		cfgPath := filepath.Join(t.dir, name+".cfg")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return fail(err)
		}
		p, err := StartProcess("zookeeper-"+name, t.dir, t.Java, nil,
			"-Xmx"+heap,
			"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
			"-Dzookeeper.jmx.log4j.disable=true",
			"-cp", t.Classpath,
			"org.apache.zookeeper.server.quorum.QuorumPeerMain", cfgPath)
		if err != nil {
			return fail(err)
		}
		t.procs = append(t.procs, p)
	}
	for i, addr := range t.endpoints {
		if err := ezWaitServing(ctx, addr, t.procs[i], 60*time.Second); err != nil {
			return fail(err)
		}
	}
	// Serving: every member is in the quorum (leader or follower).
	deadline := time.Now().Add(60 * time.Second)
	for i, addr := range t.endpoints {
		for {
			mode, err := zkMode(addr)
			if err == nil && (mode == "leader" || mode == "follower") {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fail(fmt.Errorf("%s (%s) not in the quorum after 60s: mode %q, %v", t.procs[i].Name, addr, mode, err))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The server must grant the setting's session timeout as is.
	want := t.sessionTimeout()
	if s.Lease > 0 {
		want = s.Lease
	}
	conn, got, err := t.connect(t.sessionTimeout(), true, false)
	if err != nil {
		return fail(err)
	}
	t.cli = conn
	if got != want {
		return fail(fmt.Errorf("session timeout %v requested, server negotiated %v, setting says %v", t.sessionTimeout(), got, want))
	}
	if err := zkMkdirs(t.cli, "/services"); err != nil {
		return fail(err)
	}
	if err := t.warmup(ctx); err != nil {
		return fail(fmt.Errorf("warm-up: %w", err))
	}
	return nil
}

// warmup exercises the fresh ensemble until its throughput settles:
// Register with 64 clients in 3 s steps until two steps in a row add less
// than 10% over the best before, and at least five steps (15 s) ran — at
// most Warmup in all — then 10 propagation
// rounds to 50 watchers. Its sessions use the server's longest timeout
// (20 × tickTime), not the setting's: a warm-up must not fail because a
// tuned sub-second session loses its connection under the load.
func (t *ZooKeeper) warmup(ctx context.Context) error {
	limit := t.Warmup
	if limit == 0 {
		limit = zkDefaultWarmup
	}
	t.warmupRates = nil
	if limit < 0 {
		return nil
	}
	tick, err := strconv.Atoi(t.setting.Server["tickTime"])
	if err != nil || tick <= 0 {
		tick = 2000
	}
	timeout := 20 * time.Duration(tick) * time.Millisecond
	start := time.Now()
	best, flat := 0.0, 0
	for flat < 2 || len(t.warmupRates) < 5 {
		left := limit - time.Since(start)
		if left <= 0 {
			break
		}
		s, err := t.register(ctx, 64, min(3*time.Second, left), timeout)
		if err != nil {
			return err
		}
		rate := float64(s.Ops) / s.Elapsed.Seconds()
		t.warmupRates = append(t.warmupRates, rate)
		if rate < 1.1*best {
			flat++
		} else {
			flat = 0
		}
		best = max(best, rate)
	}
	_, err = t.propagation(ctx, 50, 10, timeout)
	return err
}

// zkMode asks a server for its mode with the srvr four-letter word.
func zkMode(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	if m := regexp.MustCompile(`(?m)^Mode: (\w+)`).FindSubmatch(b); m != nil {
		return string(m[1]), nil
	}
	return "", fmt.Errorf("srvr: %q", strings.TrimSpace(string(b)))
}

type zkNopLogger struct{}

func (zkNopLogger) Printf(string, ...any) {}

// zkTimeoutLogger captures the negotiated session timeout go-zookeeper
// logs on connect ("authenticated: id=…, timeout=…").
type zkTimeoutLogger struct{ ms chan int }

var zkTimeoutRE = regexp.MustCompile(`authenticated: id=\d+, timeout=(\d+)`)

func (l zkTimeoutLogger) Printf(f string, args ...any) {
	if m := zkTimeoutRE.FindStringSubmatch(fmt.Sprintf(f, args...)); m != nil {
		ms, _ := strconv.Atoi(m[1])
		select {
		case l.ms <- ms:
		default:
		}
	}
}

// connect opens a session and waits until it is established; with
// negotiated it also returns the session timeout the server granted; small
// bounds the connection's buffers (zkIdleBuffer).
func (t *ZooKeeper) connect(timeout time.Duration, negotiated, small bool) (*zk.Conn, time.Duration, error) {
	var (
		got    chan int
		logger zk.Logger = zkNopLogger{}
	)
	if negotiated {
		got = make(chan int, 1)
		logger = zkTimeoutLogger{got}
	}
	var (
		conn   *zk.Conn
		events <-chan zk.Event
		err    error
	)
	if small {
		conn, events, err = zk.Connect(t.endpoints, timeout, zk.WithLogger(logger), zk.WithLogInfo(negotiated),
			zk.WithMaxBufferSize(zkIdleBuffer), zk.WithMaxConnBufferSize(zkIdleBuffer))
	} else {
		conn, events, err = zk.Connect(t.endpoints, timeout, zk.WithLogger(logger), zk.WithLogInfo(negotiated))
	}
	if err != nil {
		return nil, 0, err
	}
	wait := time.NewTimer(15 * time.Second)
	defer wait.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return nil, 0, errors.New("zookeeper: connection closed before a session")
			}
			if ev.State == zk.StateHasSession {
				go func() { // never let the event channel fill
					for range events {
					}
				}()
				var d time.Duration
				if negotiated {
					select {
					case ms := <-got:
						d = time.Duration(ms) * time.Millisecond
					case <-time.After(time.Second):
						conn.Close()
						return nil, 0, errors.New("zookeeper: negotiated session timeout not reported")
					}
				}
				return conn, d, nil
			}
			if ev.State == zk.StateExpired || ev.State == zk.StateAuthFailed {
				conn.Close()
				return nil, 0, fmt.Errorf("zookeeper: session %v", ev.State)
			}
		case <-wait.C:
			conn.Close()
			return nil, 0, fmt.Errorf("zookeeper: no session with %v within 15s", t.endpoints)
		}
	}
}

// connectN opens n sessions in parallel.
func (t *ZooKeeper) connectN(n int, timeout time.Duration) ([]*zk.Conn, error) {
	if err := t.running(); err != nil {
		return nil, err
	}
	out := make([]*zk.Conn, n)
	err := ezParallel(64, n, func(i int) error {
		c, _, err := t.connect(timeout, false, false)
		out[i] = c
		return err
	})
	if err != nil {
		zkCloseAll(out)
		return nil, err
	}
	return out, nil
}

func zkCloseAll(cs []*zk.Conn) {
	ezParallel(64, len(cs), func(i int) error {
		if cs[i] != nil {
			cs[i].Close()
		}
		return nil
	})
}

// zkMkdirs creates path and its parents as persistent znodes.
func zkMkdirs(c *zk.Conn, path string) error {
	p := ""
	for _, part := range strings.Split(strings.Trim(path, "/"), "/") {
		p += "/" + part
		if _, err := c.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("zookeeper: create %s: %w", p, err)
		}
	}
	return nil
}

func (t *ZooKeeper) Stop() error {
	if t.cli != nil {
		t.cli.Close()
		t.cli = nil
	}
	for _, p := range t.procs {
		p.Signal(syscall.SIGTERM)
	}
	for _, p := range t.procs {
		p.Stop(10 * time.Second)
	}
	return t.stopped()
}

func (t *ZooKeeper) running() error {
	if t.cli == nil {
		return errors.New("zookeeper: not started")
	}
	return nil
}

func (t *ZooKeeper) Register(ctx context.Context, clients int, d time.Duration) (Sample, error) {
	return t.register(ctx, clients, d, t.sessionTimeout())
}

// register is Register with sessions of the given timeout.
func (t *ZooKeeper) register(ctx context.Context, clients int, d, timeout time.Duration) (Sample, error) {
	cs, err := t.connectN(clients, timeout)
	if err != nil {
		return Sample{}, fmt.Errorf("zookeeper register: sessions: %w", err)
	}
	defer zkCloseAll(cs) // ends the sessions: their ephemeral znodes go
	parent := fmt.Sprintf("/services/register-%d", time.Now().UnixNano())
	if err := zkMkdirs(t.cli, parent); err != nil {
		return Sample{}, err
	}
	return closedLoop(ctx, "zookeeper register", clients, d, 0, func(_ context.Context, i, n int) error {
		path := fmt.Sprintf("%s/c%d-i%d", parent, i, n%ezRegisterKeys)
		val := []byte(fmt.Sprintf(`{"addr":"127.0.0.1:%d","rev":%d}`, 10000+i, n))
		var err error
		if n < ezRegisterKeys {
			_, err = cs[i].Create(path, val, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		} else {
			_, err = cs[i].Set(path, val, -1)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	})
}

func (t *ZooKeeper) Propagation(ctx context.Context, watchers, rounds int) (Sample, error) {
	return t.propagation(ctx, watchers, rounds, t.sessionTimeout())
}

// propagation is Propagation with sessions of the given timeout.
func (t *ZooKeeper) propagation(ctx context.Context, watchers, rounds int, timeout time.Duration) (Sample, error) {
	cs, err := t.connectN(watchers, timeout)
	if err != nil {
		return Sample{}, fmt.Errorf("zookeeper propagation: sessions: %w", err)
	}
	defer zkCloseAll(cs)
	svc := fmt.Sprintf("/services/propagation-%d", time.Now().UnixNano())
	if err := zkMkdirs(t.cli, svc); err != nil {
		return Sample{}, err
	}
	obs := make(chan seen, watchers*(rounds+1)+16)
	stop, err := zkFollow(ctx, cs, svc, func(c *zk.Conn) func() (<-chan zk.Event, error) {
		known := map[string]bool{}
		return func() (<-chan zk.Event, error) {
			children, _, ch, err := c.ChildrenW(svc)
			now := time.Now()
			for _, k := range children {
				if !known[k] {
					known[k] = true
					obs <- seen{k, now}
				}
			}
			return ch, err
		}
	})
	if err != nil {
		return Sample{}, fmt.Errorf("zookeeper propagation: %w", err)
	}
	defer stop()
	return watchRounds(ctx, "zookeeper propagation", watchers, rounds, obs, func(name string) error {
		_, err := t.cli.Create(svc+"/"+name, []byte(`{"addr":"127.0.0.1:9999"}`), zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		return err
	})
}

// KVPut: each client its own session, setData on its own kvKeys
// persistent znodes in turn (created before the clock starts: setData
// needs them).
func (t *ZooKeeper) KVPut(ctx context.Context, clients int, d time.Duration) (Sample, error) {
	cs, err := t.connectN(clients, t.sessionTimeout())
	if err != nil {
		return Sample{}, fmt.Errorf("zookeeper kv put: sessions: %w", err)
	}
	defer zkCloseAll(cs)
	parent := fmt.Sprintf("/config/put-%d", time.Now().UnixNano())
	if err := zkMkdirs(t.cli, parent); err != nil {
		return Sample{}, err
	}
	path := func(i, k int) string { return fmt.Sprintf("%s/c%d-k%d", parent, i, k) }
	defer func() { // persistent znodes: delete them, then their parent
		ezParallel(32, clients*kvKeys, func(n int) error { return t.cli.Delete(path(n/kvKeys, n%kvKeys), -1) })
		t.cli.Delete(parent, -1)
	}()
	err = ezParallel(32, clients*kvKeys, func(n int) error {
		i, k := n/kvKeys, n%kvKeys
		_, err := cs[i].Create(path(i, k), []byte(kvValue(i, k)), 0, zk.WorldACL(zk.PermAll))
		return err
	})
	if err != nil {
		return Sample{}, fmt.Errorf("zookeeper kv put: create: %w", err)
	}
	// The client library takes no context: an operation ends with its session.
	return closedLoop(ctx, "zookeeper kv put", clients, d, kvKeys, func(_ context.Context, i, n int) error {
		if _, err := cs[i].Set(path(i, n%kvKeys), []byte(kvValue(i, n)), -1); err != nil {
			return fmt.Errorf("%s: %w", path(i, n%kvKeys), err)
		}
		return nil
	})
}

// KVWatch: each watcher its own session reading the znode with getData and
// a watch, re-armed by the next getData after each fire (as Curator's
// NodeCache does); its latency is until that read returns the new value.
// A round is one setData by the driver.
func (t *ZooKeeper) KVWatch(ctx context.Context, watchers, rounds int) (Sample, error) {
	cs, err := t.connectN(watchers, t.sessionTimeout())
	if err != nil {
		return Sample{}, fmt.Errorf("zookeeper kv watch: sessions: %w", err)
	}
	defer zkCloseAll(cs)
	parent := fmt.Sprintf("/config/watch-%d", time.Now().UnixNano())
	if err := zkMkdirs(t.cli, parent); err != nil {
		return Sample{}, err
	}
	node := parent + "/rollout"
	if _, err := t.cli.Create(node, []byte("start"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		return Sample{}, fmt.Errorf("zookeeper kv watch: create: %w", err)
	}
	defer func() {
		t.cli.Delete(node, -1)
		t.cli.Delete(parent, -1)
	}()
	obs := make(chan seen, watchers*(rounds+1)+16)
	stop, err := zkFollow(ctx, cs, node, func(c *zk.Conn) func() (<-chan zk.Event, error) {
		version := int32(-1)
		return func() (<-chan zk.Event, error) {
			data, stat, ch, err := c.GetW(node)
			now := time.Now()
			if err == nil && stat.Version != version {
				version = stat.Version
				obs <- seen{string(data), now}
			}
			return ch, err
		}
	})
	if err != nil {
		return Sample{}, fmt.Errorf("zookeeper kv watch: %w", err)
	}
	defer stop()
	return watchRounds(ctx, "zookeeper kv watch", watchers, rounds, obs, func(value string) error {
		_, err := t.cli.Set(node, []byte(value), -1)
		return err
	})
}

// zkFollow has every session follow path the way Curator's caches do:
// a read that sets a watch, again each time the watch fires, until stop.
// reader gives each session its read, which keeps what that session has
// seen and reports what is new, and returns the watch. zkFollow returns
// once every session's first read is in.
func zkFollow(ctx context.Context, cs []*zk.Conn, path string, reader func(*zk.Conn) func() (<-chan zk.Event, error)) (stop func(), err error) {
	armed := make(chan error, len(cs))
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop = func() { cancel(); wg.Wait() }
	for _, c := range cs {
		// A read is served by the session's own server, which may not
		// have applied the create of path yet: sync it first.
		if _, err := c.Sync(path); err != nil {
			stop()
			return nil, fmt.Errorf("sync: %w", err)
		}
		read := reader(c)
		wg.Go(func() {
			ch, err := read()
			armed <- err
			for err == nil {
				select {
				case <-ch:
				case <-wctx.Done():
					return
				}
				ch, err = read()
			}
		})
	}
	for range cs {
		if err := <-armed; err != nil {
			stop()
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
	return stop, nil
}

func (t *ZooKeeper) memberTTL() time.Duration { return t.sessionTimeout() }

// lease is the session timeout the server negotiated.
func (t *ZooKeeper) lease() time.Duration {
	if t.setting.Lease > 0 {
		return t.setting.Lease
	}
	return t.sessionTimeout()
}

// keepalive: the client pings every third of the session timeout.
func (t *ZooKeeper) keepalive() time.Duration { return t.lease() / 3 }

// candidates counts the election's latch znodes.
func (t *ZooKeeper) candidates(ctx context.Context, election string) (int, error) {
	children, _, err := t.cli.Children("/latch/" + election)
	if errors.Is(err, zk.ErrNoNode) {
		return 0, nil
	}
	return len(children), err
}

// zkIdleBuffer bounds each idle session's buffers (go-zookeeper allocates
// 1.5 MiB per connection by default; a ping or a create needs little).
const zkIdleBuffer = 64 << 10

// Idle: ZooKeeper's session is its connection. With shape.PerSession each
// of shape's Clients is one session creating its PerClient ephemeral
// znodes, as one process registering its instances would; else each
// instance is a session of its own holding its ephemeral znode.
func (t *ZooKeeper) Idle(ctx context.Context, shape IdleShape, d time.Duration) (IdleCost, error) {
	if err := t.running(); err != nil {
		return IdleCost{}, err
	}
	instances := shape.Instances()
	nsess, per := instances, 1
	if shape.PerSession {
		nsess, per = max(shape.Clients, 1), shape.PerClient
	}
	svc := fmt.Sprintf("/services/idle-%d", time.Now().UnixNano())
	if err := zkMkdirs(t.cli, svc); err != nil {
		return IdleCost{}, err
	}
	cs := make([]*zk.Conn, nsess)
	defer zkCloseAll(cs)
	err := ezParallel(64, nsess, func(i int) error {
		c, _, err := t.connect(t.sessionTimeout(), false, true)
		if err != nil {
			return err
		}
		cs[i] = c
		for j := range per {
			n := i*per + j
			_, err = c.Create(fmt.Sprintf("%s/inst-%d", svc, n), []byte(fmt.Sprintf(`{"addr":"127.0.0.1:%d"}`, 20000+n)),
				zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return IdleCost{}, fmt.Errorf("zookeeper idle: register %d instances on %d sessions: %w", instances, nsess, err)
	}
	if !ezSleep(ctx, 2*time.Second) { // settle
		return IdleCost{}, ctx.Err()
	}
	c, err := Usage(t.pids(), ezWholePeriods(d, t.keepalive()))
	if err != nil {
		return IdleCost{}, fmt.Errorf("zookeeper idle: usage: %w", err)
	}
	// Every instance is still registered: no session expired.
	children, _, err := t.cli.Children(svc)
	if err != nil {
		return IdleCost{}, fmt.Errorf("zookeeper idle: %w", err)
	}
	if len(children) != instances {
		return IdleCost{}, fmt.Errorf("zookeeper idle: %d of %d instances still registered after the window", len(children), instances)
	}
	c.Instances, c.Clients, c.Sessions = instances, nsess, nsess
	return c, nil
}
