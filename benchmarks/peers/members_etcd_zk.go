package peers

// The handover and failover drivers shared by the etcd and ZooKeeper
// targets (helpers named ez…, for etcd/ZooKeeper): three peermember
// processes (cmd/peermember) in one election, whose role changes arrive as
// JSON lines on their stdout.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/rafting/rafting/internal/proctest"
)

// ezCluster is what the etcd and ZooKeeper targets keep of the cluster
// they run, and the Handover and Failover workloads, which run alike on
// both: peermember processes in one election, each system's own way.
type ezCluster struct {
	system    string   // "etcd", "zookeeper": peermember's -system, and the errors' prefix
	sys       ezSystem // the target itself
	dir       string   // the cluster's directory, removed by stopped
	setting   Setting
	procs     []*proctest.Proc
	endpoints []string // the members' -endpoints
	memberBin string   // peermember, built once per cluster
	runs      int      // clusters started so far
}

// ezSystem is what the election workloads ask of the etcd or ZooKeeper
// target, for the setting its cluster runs.
type ezSystem interface {
	running() error
	// memberTTL is the session TTL (etcd) or timeout (ZooKeeper) a member
	// asks for; lease is how long a killed member's session outlives it
	// at most, and keepalive how often its client renews the session.
	memberTTL() time.Duration
	lease() time.Duration
	keepalive() time.Duration
	// candidates is how many members are in the election (see
	// memberGroup.candidates).
	candidates(ctx context.Context, election string) (int, error)
}

// newRun makes the directory of a new cluster under dir, running s.
func (c *ezCluster) newRun(dir string, s Setting) error {
	rundir, err := os.MkdirTemp(dir, c.system+"-")
	if err != nil {
		return err
	}
	c.dir, c.setting = rundir, s
	c.runs++
	return nil
}

// stopped forgets the cluster whose processes the target has stopped and
// removes its directory.
func (c *ezCluster) stopped() error {
	c.procs, c.endpoints = nil, nil
	c.memberBin = ""
	if c.dir == "" {
		return nil
	}
	err := os.RemoveAll(c.dir)
	c.dir = ""
	return err
}

func (c *ezCluster) pids() []int {
	var out []int
	for _, p := range c.procs {
		out = append(out, p.PID())
	}
	return out
}

func (c *ezCluster) Handover(ctx context.Context, rounds int) (Sample, error) {
	s, err := c.election(ctx, "handover", rounds, syscall.SIGTERM, 0, 30*time.Second)
	if err != nil {
		return s, fmt.Errorf("%s handover: %w", c.system, err)
	}
	return s, nil
}

func (c *ezCluster) Failover(ctx context.Context, s Setting, rounds int) (Sample, error) {
	if s.Name != c.setting.Name {
		return Sample{}, fmt.Errorf("%s failover: cluster runs setting %q, asked for %q", c.system, c.setting.Name, s.Name)
	}
	out, err := c.election(ctx, "failover", rounds, syscall.SIGKILL, c.sys.keepalive(), 2*c.sys.lease()+30*time.Second)
	if err != nil {
		return out, fmt.Errorf("%s failover (%s): %w", c.system, s.Name, err)
	}
	return out, nil
}

// election runs the rounds of a new election named after what (see
// runElection).
func (c *ezCluster) election(ctx context.Context, what string, rounds int, sig syscall.Signal, keepalive, timeout time.Duration) (Sample, error) {
	if err := c.sys.running(); err != nil {
		return Sample{}, err
	}
	if c.memberBin == "" {
		bin, err := buildPeerMember(ctx, c.dir)
		if err != nil {
			return Sample{}, err
		}
		c.memberBin = bin
	}
	election := fmt.Sprintf("%s-%d", what, time.Now().UnixNano())
	eps, ttl := strings.Join(c.endpoints, ","), c.sys.memberTTL().String()
	args := func(id string) []string {
		return []string{"-system", c.system, "-endpoints", eps, "-id", id, "-ttl", ttl, "-election", election}
	}
	candidates := func(ctx context.Context) (int, error) { return c.sys.candidates(ctx, election) }
	g := newMemberGroup(c.memberBin, c.dir, args, candidates)
	return runElection(ctx, g, rounds, sig, keepalive, timeout)
}

// buildPeerMember builds cmd/peermember into dir and returns the binary's
// path. It runs `go build` in the benchmarks module (found from this
// source file's location), so the build cache makes repeats cheap.
func buildPeerMember(ctx context.Context, dir string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("peermember: cannot locate the benchmarks module")
	}
	module := filepath.Dir(filepath.Dir(file)) // .../benchmarks/peers/x.go → .../benchmarks
	bin := filepath.Join(dir, "peermember")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(gobin); err != nil {
		gobin = "go"
	}
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", bin, "./peers/cmd/peermember")
	cmd.Dir = module
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build peermember in %s: %v\n%s", module, err, out)
	}
	return bin, nil
}

// roleEvent is one line a peermember printed.
type roleEvent struct {
	Ev   string `json:"ev"`
	ID   string `json:"id"`
	Role string `json:"role"`
	At   int64  `json:"at"` // Unix nanoseconds
	m    *peerMember
}

type peerMember struct {
	id   string
	proc *proctest.Proc
}

// memberGroup runs the election's member processes.
type memberGroup struct {
	bin    string
	logDir string
	args   func(id string) []string
	// candidates returns how many members are in the election (etcd keys
	// under the election prefix, ZooKeeper latch znodes), dead ones whose
	// lease or session has not expired yet included.
	candidates func(ctx context.Context) (int, error)

	seq     int
	members []*peerMember
	events  chan roleEvent
	master  *peerMember
}

func newMemberGroup(bin, logDir string, args func(id string) []string, candidates func(context.Context) (int, error)) *memberGroup {
	return &memberGroup{bin: bin, logDir: logDir, args: args, candidates: candidates, events: make(chan roleEvent, 1024)}
}

// start starts one more member and forwards its stdout events.
func (g *memberGroup) start() (*peerMember, error) {
	g.seq++
	id := fmt.Sprintf("m%d", g.seq)
	p, err := StartProcess("member-"+id, g.logDir, g.bin, nil, g.args(id)...)
	if err != nil {
		return nil, err
	}
	m := &peerMember{id: id, proc: p}
	g.members = append(g.members, m)
	sub := p.Subscribe()
	go func() {
		// Lines printed before Subscribe are in Lines(); dedupe by text.
		seen := map[string]bool{}
		forward := func(l string) {
			if seen[l] {
				return
			}
			seen[l] = true
			var ev roleEvent
			if json.Unmarshal([]byte(l), &ev) != nil {
				return
			}
			ev.m = m
			g.events <- ev
		}
		for _, l := range p.Lines() {
			forward(l)
		}
		for l := range sub {
			forward(l)
		}
	}()
	return m, nil
}

func (g *memberGroup) remove(m *peerMember) {
	for i, x := range g.members {
		if x == m {
			g.members = append(g.members[:i], g.members[i+1:]...)
			return
		}
	}
}

// stop ends every member (SIGTERM, then SIGKILL after a grace period).
func (g *memberGroup) stop() {
	for _, m := range g.members {
		m.proc.Signal(syscall.SIGTERM)
	}
	for _, m := range g.members {
		m.proc.Stop(10 * time.Second)
	}
	g.members = nil
	// Drain what the forwarders still hold so none of them blocks.
	for {
		select {
		case <-g.events:
		default:
			return
		}
	}
}

// nextEvent returns the next event, failing if a member reports a lost
// session or the deadline passes.
func (g *memberGroup) nextEvent(ctx context.Context, deadline time.Time) (roleEvent, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case ev := <-g.events:
		if ev.Ev == "lost" {
			return ev, fmt.Errorf("member %s lost its session (see %s.log in %s)", ev.ID, ev.m.proc.Name, g.logDir)
		}
		return ev, nil
	case <-t.C:
		return roleEvent{}, errors.New("timed out")
	case <-ctx.Done():
		return roleEvent{}, ctx.Err()
	}
}

// fill starts members until three run, then waits until a master is known
// and all three are candidates in the election.
func (g *memberGroup) fill(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for len(g.members) < 3 {
		if _, err := g.start(); err != nil {
			return err
		}
	}
	for g.master == nil || !g.alive(g.master) {
		ev, err := g.nextEvent(ctx, deadline)
		if err != nil {
			return fmt.Errorf("waiting for a master: %w", err)
		}
		if ev.Ev == "role" && ev.Role == "master" {
			g.master = ev.m
		}
	}
	for {
		n, err := g.candidates(ctx)
		if err == nil && n == 3 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("election has %d candidates, want 3 (err %v)", n, err)
		}
		if !ezSleep(ctx, 10*time.Millisecond) {
			return ctx.Err()
		}
	}
	// A member that died on its own (e.g. a failed connect) is an error.
	for _, m := range g.members {
		select {
		case <-m.proc.Exited():
			return fmt.Errorf("member %s exited (see %s.log in %s)", m.id, m.proc.Name, g.logDir)
		default:
		}
	}
	return nil
}

func (g *memberGroup) alive(m *peerMember) bool {
	for _, x := range g.members {
		if x == m {
			return true
		}
	}
	return false
}

// round ends the master with sig after delay and returns the time from the
// signal until another member printed master.
func (g *memberGroup) round(ctx context.Context, sig syscall.Signal, delay, timeout time.Duration) (time.Duration, error) {
	if err := g.fill(ctx, 30*time.Second); err != nil {
		return 0, err
	}
	if !ezSleep(ctx, delay) {
		return 0, ctx.Err()
	}
	old := g.master
	t0 := time.Now()
	old.proc.Signal(sig)
	deadline := t0.Add(timeout)
	var lat time.Duration
	for {
		ev, err := g.nextEvent(ctx, deadline)
		if err != nil {
			return 0, fmt.Errorf("after %v to %s (%s): no new master: %w", sig, old.id, old.proc.Name, err)
		}
		if ev.Ev == "role" && ev.Role == "master" && ev.m != old {
			if ev.At < t0.UnixNano() {
				return 0, fmt.Errorf("member %s became master before the old one (%s) was ended", ev.ID, old.id)
			}
			g.master = ev.m
			lat = time.Duration(ev.At - t0.UnixNano())
			break
		}
	}
	select {
	case <-old.proc.Exited():
	case <-time.After(10 * time.Second):
		old.proc.Kill()
		return 0, fmt.Errorf("member %s did not exit within 10s of %v", old.id, sig)
	}
	g.remove(old)
	return lat, nil
}

// runElection runs rounds handovers (SIGTERM: the master resigns and exits)
// or failovers (SIGKILL after a random delay in [keepalive, 2×keepalive)).
// Each sample runs from the driver's clock just before it sends the signal
// to the Unix-nanosecond timestamp the new master printed when it knew —
// one machine, one wall clock. Before each round three members run, a
// master is known and all three are candidates; the ended master is
// replaced by a fresh member after the round.
func runElection(ctx context.Context, g *memberGroup, rounds int, sig syscall.Signal, keepalive, timeout time.Duration) (Sample, error) {
	defer g.stop()
	var s Sample
	start := time.Now()
	for i := 0; i < rounds; i++ {
		var delay time.Duration
		if sig == syscall.SIGKILL {
			delay = keepalive + rand.N(keepalive)
		} else {
			delay = 50*time.Millisecond + rand.N(50*time.Millisecond)
		}
		lat, err := g.round(ctx, sig, delay, timeout)
		if err != nil {
			return s, fmt.Errorf("round %d: %w", i+1, err)
		}
		s.Latencies = append(s.Latencies, lat)
		s.Ops++
	}
	s.Elapsed = time.Since(start)
	return s, nil
}

func ezSleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// ezHostPorts joins "127.0.0.1:port" addresses with an optional scheme.
func ezHostPorts(scheme string, ports []int) []string {
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = fmt.Sprintf("%s127.0.0.1:%d", scheme, p)
	}
	return out
}

// ezWholePeriods rounds d up to a whole number of keepalive periods, so
// that an idle window holds every lease's or session's renewals equally
// often whatever their phases.
func ezWholePeriods(d, period time.Duration) time.Duration {
	if period <= 0 || d <= 0 {
		return d
	}
	return (d + period - 1) / period * period
}
