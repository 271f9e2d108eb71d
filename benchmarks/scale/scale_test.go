// Package scale measures placement (issue 15): tenant shards on 3 of N
// nodes, so that a node's cost stays flat while nodes and tenants grow
// together, and replicas move without a failed request.
//
// One cluster of `rafting server` processes (--rtt 50ms, R = 3) grows
// from 3 to 6 to 9 nodes, 100 tenants a node created at each size; once
// placement is balanced and the cluster has settled, each node's idle CPU
// and resident memory. Then, under a live workload in 20 tenants (a farm
// of two members, a master-standby pair and a writer putting a key every
// 100 ms, all through the SDK), a 10th node joins: the replicas moved, the
// time until balanced, the failed operations, the sessions that expired,
// the longest time a service had no master, and whether fencing tokens
// only went up. Then a node is killed (--dead-after 30s): the time until
// every tenant shard has its three voting replicas again.
//
//	cd benchmarks && go test -run '^$' -bench Scale -benchtime 1x -timeout 90m ./scale/
//
// RAFTING_SCALE_QUICK=1 (or -args -quick): 30 tenants per three nodes, 3
// and 6 nodes then a 7th, 4 tenants under the workload, --dead-after 10s.
// RAFTING_SCALE_TENANTS sets the tenants per three nodes;
// RAFTING_SCALE_PLOT the PNG of replicas per node over time (a full run
// writes ../scale-plots/replicas.png); RAFTING_SCALE_SDK_LOG a file for
// the workload's SDK logs, at debug.
package scale

import (
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/benchmarks/internal/bench"
	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/sdk"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.Cleanup()
	os.Exit(code)
}

type settings struct {
	perThree       int   // tenants per three nodes
	sizes          []int // node counts measured idle
	work           int   // tenants under the workload
	deadAfter      time.Duration
	settle, window time.Duration
	plot           string
}

func knobs(b *testing.B) settings {
	s := settings{perThree: 300, sizes: []int{3, 6, 9}, work: 20, deadAfter: 30 * time.Second,
		settle: 15 * time.Second, window: 10 * time.Second, plot: filepath.Join("..", "scale-plots", "replicas.png")}
	if bench.Quick(b, "RAFTING_SCALE_QUICK") {
		s = settings{perThree: 30, sizes: []int{3, 6}, work: 4, deadAfter: 10 * time.Second,
			settle: 5 * time.Second, window: 5 * time.Second}
	}
	s.perThree = bench.MustInt(b, "RAFTING_SCALE_TENANTS", s.perThree, 3)
	s.plot = bench.String("RAFTING_SCALE_PLOT", s.plot)
	return s
}

func tenantName(i int) string { return fmt.Sprintf("t%04d", i) }

func tenantToken(i int) string {
	return "rft_" + tenantName(i) + "_" + proctest.Secret(tenantName(i))
}

func BenchmarkScale(b *testing.B) {
	k := knobs(b)
	c := proctest.StartClusterWith(b, proctest.Options{Dir: bench.Dir(b), Args: []string{"--dead-after", k.deadAfter.String()}})
	p := &poller{c: c}

	// Grow: 3, 6, 9 nodes, 100 tenants a node.
	tenants := 0
	var baseCPU, baseRSS float64
	for _, n := range k.sizes {
		for len(c.Servers) < n {
			c.Join(1)
		}
		want := k.perThree * n / 3
		createTenants(b, c, tenants, want)
		tenants = want
		took := p.waitBalanced(b, tenants, nil, 20*time.Minute)
		time.Sleep(k.settle)
		cpu, rss := bench.Idle(pids(c.Servers), k.window)
		if n == k.sizes[0] {
			baseCPU, baseRSS = bench.Mean(cpu), bench.Mean(rss)
		}
		b.Logf("%d nodes, %d tenants: balanced %v after the last join and creation; idle CPU %.2f %% a node (max %.2f), RSS %.1f MB (max %.1f)",
			n, tenants, took.Round(time.Millisecond), bench.Mean(cpu), slices.Max(cpu), bench.Mean(rss), slices.Max(rss))
		b.ReportMetric(bench.Mean(cpu), fmt.Sprintf("idle-cpu-%%core/node-%dn", n))
		b.ReportMetric(bench.Mean(rss), fmt.Sprintf("rss-MB/node-%dn", n))
		b.ReportMetric(bench.Mean(cpu)/baseCPU, fmt.Sprintf("cpu-vs-3n-%dn", n))
		b.ReportMetric(bench.Mean(rss)/baseRSS, fmt.Sprintf("rss-vs-3n-%dn", n))
	}

	// A node joins under a live workload.
	w := startWorkload(b, c, k.work)
	sampling := p.sample(500 * time.Millisecond)
	time.Sleep(3 * time.Second) // the workload settles: every service has its master
	w.mark()
	moved := p.moves()
	joinedAt := time.Now()
	added := c.Join(1)
	took := p.waitBalanced(b, tenants, nil, 20*time.Minute)
	time.Sleep(2 * time.Second)
	r := w.result()
	b.Logf("node %d joined: %d replicas moved, balanced after %v; workload: %d operations, %d failed, %d sessions expired, %d master gaps (longest %v, p99 %v), %d token decreases",
		added.ID, p.moves()-moved, took.Round(time.Millisecond), r.ops, r.failed, r.expired, len(r.gaps), r.longest().Round(time.Millisecond), r.p99().Round(time.Millisecond), r.decreases)
	b.ReportMetric(float64(p.moves()-moved), "replicas-moved")
	b.ReportMetric(took.Seconds(), "balanced-s")
	b.ReportMetric(float64(r.failed), "failed-ops")
	b.ReportMetric(float64(r.expired), "expired-sessions")
	b.ReportMetric(float64(r.longest().Milliseconds()), "longest-master-gap-ms")
	b.ReportMetric(float64(r.p99().Milliseconds()), "p99-master-gap-ms")
	b.ReportMetric(float64(r.decreases), "token-decreases")
	if r.lastErr != nil {
		b.Logf("the last failed operation: %v", r.lastErr)
	}

	// A node dies: its replicas are replaced after --dead-after.
	victim := c.Servers[len(c.Servers)-2] // not the newest, not node 1 (the tests' entry point)
	w.mark()
	victim.Proc.Kill()
	killed := time.Now()
	repaired := p.waitBalanced(b, tenants, map[uint64]bool{uint64(victim.ID): true}, 20*time.Minute)
	r = w.result()
	b.Logf("node %d killed: every tenant on 3 voting replicas again after %v (--dead-after %v); workload meanwhile: %d operations, %d failed, %d sessions expired, longest master gap %v",
		victim.ID, repaired.Round(time.Millisecond), k.deadAfter, r.ops, r.failed, r.expired, r.longest().Round(time.Millisecond))
	b.ReportMetric(time.Since(killed).Seconds(), "repaired-s")
	w.stop()
	sampling()
	if k.plot != "" {
		if err := p.plot(k.plot, joinedAt, killed); err != nil {
			b.Error(err)
		}
	}
	b.ReportMetric(0, "ns/op")
}

// createTenants creates tenants from..to-1, 16 at a time.
func createTenants(b *testing.B, c *proctest.Cluster, from, to int) {
	var next atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < to; i = int(next.Add(1)) - 1 {
				c.Must(1+i%len(c.Servers), proctest.AdminToken, http.MethodPost, "/v1/tenants",
					api.CreateTenantRequest{Name: tenantName(i), Secret: proctest.Secret(tenantName(i))})
			}
		})
	}
	wg.Wait()
}

// pids are the servers' process IDs.
func pids(servers []*proctest.Server) []int {
	out := make([]int, len(servers))
	for i, s := range servers {
		out[i] = s.Proc.PID()
	}
	return out
}

// poller reads the placement from GET /v1/cluster.
type poller struct {
	c *proctest.Cluster

	mu      sync.Mutex
	samples []sample
	seen    map[string]bool // replica moves seen: shard/to_node
}

type sample struct {
	at       time.Time
	replicas map[uint64]int // by node
}

// cluster is GET /v1/cluster from the first server that answers.
func (p *poller) cluster() (api.Cluster, bool) {
	for _, s := range p.c.Servers {
		code, body, err := p.c.Call(s.ID, proctest.AdminToken, http.MethodGet, "/v1/cluster", nil)
		var cl api.Cluster
		if err == nil && code == http.StatusOK && json.Unmarshal(body, &cl) == nil {
			return cl, true
		}
	}
	return api.Cluster{}, false
}

// balanced reports whether every tenant shard has three voting replicas,
// none on a dead node, with no move under way, and the nodes' replica
// counts are within one (or 10 %) of each other.
func balanced(cl api.Cluster, tenants int, dead map[uint64]bool) (bool, string) {
	n := 0
	for _, sh := range cl.Shards {
		if sh.Tenant == "" {
			continue
		}
		n++
		voting := 0
		for _, node := range sh.Replicas {
			if dead[node] {
				return false, fmt.Sprintf("%s has a replica on dead node %d", sh.Tenant, node)
			}
			voting++
		}
		voting -= len(sh.NonVoting)
		if voting != 3 || sh.Move != nil || len(sh.NonVoting) > 0 {
			return false, fmt.Sprintf("%s: %d voting, %d non-voting, move %+v", sh.Tenant, voting, len(sh.NonVoting), sh.Move)
		}
	}
	if n != tenants {
		return false, fmt.Sprintf("%d tenant shards of %d", n, tenants)
	}
	lo, hi := math.MaxInt, 0
	for _, node := range cl.Nodes {
		if node.Health == api.NodeRemoved || dead[node.ID] {
			continue
		}
		lo, hi = min(lo, node.Replicas), max(hi, node.Replicas)
	}
	if hi-lo > max(1, int(math.Ceil(0.1*float64(hi)))) {
		return false, fmt.Sprintf("replicas a node from %d to %d", lo, hi)
	}
	return true, ""
}

// waitBalanced waits until the placement is balanced (without the dead
// nodes) and returns how long it took.
func (p *poller) waitBalanced(b *testing.B, tenants int, dead map[uint64]bool, limit time.Duration) time.Duration {
	start := time.Now()
	why := "no answer"
	for time.Since(start) < limit {
		if cl, ok := p.cluster(); ok {
			p.record(cl)
			var done bool
			if done, why = balanced(cl, tenants, dead); done {
				return time.Since(start)
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	b.Fatalf("placement not balanced after %v: %s", limit, why)
	return 0
}

// record keeps a sample of replicas per node and the moves seen.
func (p *poller) record(cl api.Cluster) {
	s := sample{at: time.Now(), replicas: map[uint64]int{}}
	for _, node := range cl.Nodes {
		if node.Health != api.NodeRemoved {
			s.replicas[node.ID] = node.Replicas
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.samples = append(p.samples, s)
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	for _, sh := range cl.Shards {
		if sh.Move != nil && sh.Move.To != 0 {
			p.seen[fmt.Sprintf("%d/%d", sh.ShardID, sh.Move.To)] = true
		}
	}
}

// moves is how many replica moves (to a node) the poller has seen.
func (p *poller) moves() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.seen)
}

// sample records the placement every d until the returned func is called.
func (p *poller) sample(d time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if cl, ok := p.cluster(); ok {
					p.record(cl)
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// plot writes replicas per node over time, from the join on.
func (p *poller) plot(file string, from, killed time.Time) error {
	p.mu.Lock()
	samples := slices.Clone(p.samples)
	p.mu.Unlock()
	pl := plot.New()
	pl.Title.Text = "Tenant shard replicas per node: a node joins, then one dies"
	pl.X.Label.Text = fmt.Sprintf("seconds since the join (a node killed at %.0f s)", killed.Sub(from).Seconds())
	pl.Y.Label.Text = "replicas"
	nodes := map[uint64]plotter.XYs{}
	for _, s := range samples {
		if s.at.Before(from) {
			continue
		}
		for id, n := range s.replicas {
			nodes[id] = append(nodes[id], plotter.XY{X: s.at.Sub(from).Seconds(), Y: float64(n)})
		}
	}
	ids := make([]uint64, 0, len(nodes))
	for id := range nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i, id := range ids {
		l, err := plotter.NewLine(nodes[id])
		if err != nil {
			return err
		}
		l.Color = color.RGBA{R: uint8(40 + 20*i), G: uint8(200 - 15*i), B: uint8(90 + 15*i), A: 0xff}
		pl.Add(l)
		pl.Legend.Add("node "+strconv.FormatUint(id, 10), l)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return pl.Save(18*vg.Centimeter, 10*vg.Centimeter, file)
}

// workload runs, in each of its tenants, a farm of two members, a
// master-standby pair and a writer, through the SDK.
type workload struct {
	c       *proctest.Cluster
	tenants int
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	members []*sdk.Member

	mu      sync.Mutex
	since   time.Time
	ops     int
	failed  int
	events  map[string][]sdk.RoleChange // master-standby role changes, by tenant
	tags    map[string]string           // instance -> session tag at the mark
	lastErr error
}

func startWorkload(b *testing.B, c *proctest.Cluster, tenants int) *workload {
	ctx, cancel := context.WithCancel(context.Background())
	w := &workload{c: c, tenants: tenants, cancel: cancel, events: map[string][]sdk.RoleChange{}}
	var addrs []string
	for _, s := range c.Servers {
		addrs = append(addrs, s.API)
	}
	var log *slog.Logger
	if file := bench.String("RAFTING_SCALE_SDK_LOG", ""); file != "" {
		f, err := os.Create(file)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		log = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for i := range tenants {
		name := tenantName(i)
		opts := []sdk.Option{sdk.WithServers(addrs...), sdk.WithTenant(name), sdk.WithToken(tenantToken(i))}
		if log != nil {
			opts = append(opts, sdk.WithLogger(log.With("tenant", name)))
		}
		join := func(inst sdk.Instance, more ...sdk.Option) {
			jctx, jcancel := context.WithTimeout(ctx, time.Minute)
			defer jcancel()
			m, err := sdk.Join(jctx, inst, append(slices.Clone(opts), more...)...)
			if err != nil {
				b.Fatalf("%s: join %s/%s: %v", name, inst.Service, inst.ID, err)
			}
			w.members = append(w.members, m)
		}
		for _, id := range []string{"f1", "f2"} {
			join(sdk.Instance{Service: "farm", ID: id, Address: "10.0.0.1:80"})
		}
		for _, id := range []string{"m1", "m2"} {
			join(sdk.Instance{Service: "ms", ID: id, Address: "10.0.0.2:80", Mode: sdk.MasterStandby},
				sdk.WithRoleChange(func(rc sdk.RoleChange) {
					w.mu.Lock()
					w.events[name] = append(w.events[name], rc)
					w.mu.Unlock()
				}))
		}
		cl, err := sdk.Connect(ctx, opts...)
		if err != nil {
			b.Fatalf("%s: connect: %v", name, err)
		}
		w.wg.Go(func() {
			defer cl.Close()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := cl.Put(pctx, "scale/n", []byte(strconv.Itoa(n)))
				pcancel()
				if ctx.Err() != nil {
					return
				}
				w.mu.Lock()
				w.ops++
				if err != nil {
					w.failed++
					w.lastErr = err
				}
				w.mu.Unlock()
			}
		})
	}
	return w
}

// mark starts a measured phase: counts from zero, session tags as they are.
func (w *workload) mark() {
	tags := w.sessionTags()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.since, w.ops, w.failed, w.tags, w.lastErr = time.Now(), 0, 0, tags, nil
}

// sessionTags is each workload instance's session tag, read from the
// servers.
func (w *workload) sessionTags() map[string]string {
	tags := map[string]string{}
	for i := range w.tenants {
		for _, svc := range []string{"farm", "ms"} {
			body := w.c.Must(1, tenantToken(i), http.MethodGet, "/v1/tenants/"+tenantName(i)+"/services/"+svc+"?consistent=true", nil)
			var r api.ServiceResponse
			if json.Unmarshal(body, &r) == nil {
				for _, in := range r.Instances {
					tags[tenantName(i)+"/"+svc+"/"+in.ID] = in.SessionTag
				}
			}
		}
	}
	return tags
}

// phase is what the workload saw since the mark.
type phase struct {
	ops, failed, expired, decreases int
	gaps                            []time.Duration // times a service had no master
	lastErr                         error
}

func (r phase) longest() time.Duration {
	if len(r.gaps) == 0 {
		return 0
	}
	return slices.Max(r.gaps)
}

func (r phase) p99() time.Duration {
	if len(r.gaps) == 0 {
		return 0
	}
	return time.Duration(bench.Pct(r.gaps, 99) * float64(time.Millisecond))
}

func (w *workload) result() phase {
	now := w.sessionTags()
	w.mu.Lock()
	defer w.mu.Unlock()
	r := phase{ops: w.ops, failed: w.failed, lastErr: w.lastErr}
	for k, tag := range w.tags {
		if now[k] != tag {
			r.expired++
		}
	}
	for _, m := range w.members {
		select {
		case <-m.Done():
			r.failed++ // a member that ended by itself
		default:
		}
	}
	for _, evs := range w.events {
		gaps, decreases := masterGaps(evs, w.since)
		r.gaps = append(r.gaps, gaps...)
		r.decreases += decreases
	}
	return r
}

// masterGaps are the stretches after since in which no member of a
// master-standby service was master (one that had a master before), and
// how many times a master's token was lower than the one before it.
func masterGaps(evs []sdk.RoleChange, since time.Time) (gaps []time.Duration, decreases int) {
	evs = slices.Clone(evs)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].At.Before(evs[j].At) })
	masters := map[*sdk.Member]bool{}
	var last uint64
	var noneFrom time.Time
	had := false
	for _, e := range evs {
		was := len(masters) > 0
		if e.Role == sdk.Master {
			masters[e.Member] = true
			if e.Token < last {
				decreases++
			}
			last = max(last, e.Token)
		} else {
			delete(masters, e.Member)
		}
		switch now := len(masters) > 0; {
		case was && !now:
			noneFrom = e.At
		case !was && now && had && !noneFrom.IsZero() && e.At.After(since):
			gaps = append(gaps, e.At.Sub(maxTime(noneFrom, since)))
		}
		had = had || len(masters) > 0
	}
	return gaps, decreases
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// stop ends the workload: every member leaves.
func (w *workload) stop() {
	w.cancel()
	w.wg.Wait()
	var wg sync.WaitGroup
	for _, m := range w.members {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			m.Leave(ctx)
		})
	}
	wg.Wait()
}
