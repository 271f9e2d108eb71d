// Package failover measures master failover with real processes: three
// `rafting server`s (production RTT 50 ms) and three members of
// examples/masterstandby, each scenario run N times (default 20):
//
//   - graceful: SIGTERM to the master (Member.Leave) → the next master's
//     role event;
//
//   - crash: kill -9 of the master, default lease (1 s);
//
//   - crash-lease200: the same with lease_ms 200;
//
//   - paused: SIGSTOP of the master (a silent host) → replaced after the TTL;
//
//   - raft-leader-crash: kill -9 of the tenant shard's Raft leader server:
//     no successor may be granted; the time the master spends Suspended.
//
//     cd benchmarks && go test -run '^$' -bench Failover -benchtime 1x -timeout 60m ./failover/
//
// RAFTING_BENCH_RUNS sets N.
package failover

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/benchmarks/internal/bench"
	"github.com/rafting/rafting/internal/proctest"
)

// event is one line a member of examples/masterstandby prints on stdout.
type event struct {
	Ev    string `json:"ev"`
	ID    string `json:"id"`
	Role  string `json:"role"`
	Token uint64 `json:"token"`
	At    int64  `json:"at"`
}

type group struct {
	b       *testing.B
	c       *proctest.Cluster
	bin     string
	env     []string
	args    []string
	tenant  string
	next    int
	members map[string]*proctest.Proc
	events  chan event
	role    map[string]event // latest role event per member
}

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.Cleanup() // the binaries it built
	os.Exit(code)
}

func newGroup(b *testing.B, c *proctest.Cluster, tenant string, args ...string) *group {
	g := &group{b: b, c: c, tenant: tenant, args: args, members: map[string]*proctest.Proc{},
		events: make(chan event, 1<<14), role: map[string]event{},
		bin: proctest.Build(b, "github.com/rafting/rafting/examples/masterstandby")}
	token := c.CreateTenant(tenant)
	g.env = []string{"RAFTING_SERVERS=" + c.Addrs(), "RAFTING_TENANT=" + tenant, "RAFTING_TOKEN=" + token}
	return g
}

// fill starts members until three run, and waits for a master among them.
func (g *group) fill() event {
	for len(g.members) < 3 {
		g.next++
		id := fmt.Sprintf("%s-%d", g.tenant, g.next)
		p := proctest.Start(g.b, id, g.bin, g.env, append([]string{"-role", "member", "-id", id,
			"-ledger", g.b.TempDir() + "/ledger"}, g.args...)...)
		g.members[id] = p
		lines := p.Subscribe()
		go func() {
			for l := range lines {
				var e event
				if json.Unmarshal([]byte(l), &e) == nil && e.Ev == "role" {
					g.events <- e
				}
			}
		}()
	}
	deadline := time.After(60 * time.Second)
	for {
		// A master, and every member past its first role.
		var master event
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
			return master
		}
		select {
		case e := <-g.events:
			g.role[e.ID] = e
		case <-deadline:
			g.b.Fatalf("no stable master among %d members", len(g.members))
		}
	}
}

// successor waits for a member other than old to become master after t0.
func (g *group) successor(old string, t0 time.Time, timeout time.Duration) time.Duration {
	deadline := time.After(timeout)
	for {
		select {
		case e := <-g.events:
			g.role[e.ID] = e
			if e.Role == "master" && e.ID != old && e.At >= t0.UnixNano() {
				return time.Duration(e.At - t0.UnixNano())
			}
		case <-deadline:
			g.b.Fatalf("no successor within %v", timeout)
		}
	}
}

// drop forgets a member whose process ended.
func (g *group) drop(id string) {
	g.members[id].Kill()
	delete(g.members, id)
	delete(g.role, id)
}

func report(b *testing.B, name string, d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	b.ReportMetric(bench.Pct(d, 50), name+"-p50-ms")
	b.ReportMetric(bench.Pct(d, 99), name+"-p99-ms")
	b.ReportMetric(float64(d[len(d)-1].Microseconds())/1000, name+"-max-ms")
	b.Logf("%s: %v", name, d)
}

func BenchmarkFailover(b *testing.B) {
	n := bench.MustInt(b, "RAFTING_BENCH_RUNS", 20, 1)
	c := proctest.StartCluster(b, 3, 50*time.Millisecond)

	kill := func(g *group, sig syscall.Signal, timeout time.Duration) []time.Duration {
		var out []time.Duration
		for i := 0; i < n; i++ {
			m := g.fill()
			time.Sleep(300 * time.Millisecond) // a few keepalives into the term
			t0 := time.Now()
			g.members[m.ID].Signal(sig)
			out = append(out, g.successor(m.ID, t0, timeout))
			if sig == syscall.SIGTERM {
				<-g.members[m.ID].Exited()
			}
			g.drop(m.ID)
		}
		return out
	}
	report(b, "graceful", kill(newGroup(b, c, "graceful"), syscall.SIGTERM, 10*time.Second))
	report(b, "crash", kill(newGroup(b, c, "crash"), syscall.SIGKILL, 10*time.Second))
	report(b, "crash-lease200", kill(newGroup(b, c, "crash200", "-lease", "200ms"), syscall.SIGKILL, 10*time.Second))
	report(b, "paused", kill(newGroup(b, c, "paused"), syscall.SIGSTOP, 20*time.Second))

	// The tenant shard's Raft leader crashes: the master keeps its token
	// and is at most briefly Suspended.
	g := newGroup(b, c, "raftleader")
	var suspended []time.Duration
	for i := 0; i < n; i++ {
		m := g.fill()
		time.Sleep(300 * time.Millisecond)
		leader := c.TenantLeader("raftleader")
		crashed := time.Now()
		c.Servers[leader-1].Proc.Kill()
		var from int64
		var total time.Duration
		settle := time.After(4 * time.Second)
	watch:
		for {
			select {
			case e := <-g.events:
				g.role[e.ID] = e
				switch {
				case e.Role == "master" && e.ID != m.ID:
					b.Fatalf("run %d: %s was granted the mastership when only the Raft leader crashed", i, e.ID)
				case e.ID == m.ID && e.Role == "suspended":
					from = e.At
				case e.ID == m.ID && e.Role == "master" && from != 0:
					if e.Token != m.Token {
						b.Fatalf("run %d: the master's token changed from %d to %d", i, m.Token, e.Token)
					}
					total += time.Duration(e.At - from)
					from = 0
				}
			case <-settle:
				break watch
			}
		}
		if from != 0 {
			b.Fatalf("run %d: the master is still suspended 4s after the crash (%v)", i, time.Since(crashed))
		}
		suspended = append(suspended, total)
		c.Restart(leader)
		c.WaitServerReady(leader)
	}
	report(b, "raft-leader-crash-suspended", suspended)
}
