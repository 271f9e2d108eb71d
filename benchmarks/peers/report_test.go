package peers

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func ms(v ...float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x * float64(time.Millisecond))
	}
	return out
}

func TestPct(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    int
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {1, time.Millisecond}, {0, time.Millisecond}} {
		if got := Pct(d, c.p); got != c.want {
			t.Errorf("Pct(1..100 ms, %d) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Pct(ms(7), 99); got != 7*time.Millisecond {
		t.Errorf("Pct of one sample = %v", got)
	}
	if got := Pct(nil, 50); got != 0 {
		t.Errorf("Pct(nil) = %v", got)
	}
	// Three samples: p99 is the largest, p50 the middle one.
	if got := Pct(ms(3, 1, 2), 50); got != 2*time.Millisecond {
		t.Errorf("p50 of 3 = %v", got)
	}
}

func TestNewRunKeepsStatsOfEverySample(t *testing.T) {
	n := maxKept*2 + 7
	var lat []time.Duration
	for i := range n {
		lat = append(lat, time.Duration(n-i)*time.Microsecond)
	}
	r := NewRun("rafting", Sample{Ops: n, Elapsed: 2 * time.Second, Latencies: lat})
	if r.Stats.N != n || r.Stats.Max != time.Duration(n)*time.Microsecond || r.Stats.P50 != Pct(lat, 50) {
		t.Errorf("stats %+v", r.Stats)
	}
	if len(r.LatenciesUs) != maxKept || r.LatenciesUs[0] != 1 || r.LatenciesUs[maxKept-1] != int64(n) {
		t.Errorf("kept %d samples from %d to %d", len(r.LatenciesUs), r.LatenciesUs[0], r.LatenciesUs[len(r.LatenciesUs)-1])
	}
	if got := r.Throughput(); math.Abs(got-float64(n)/2) > 1e-9 {
		t.Errorf("throughput %v", got)
	}
	if (&Run{Ops: 5}).Throughput() != 0 {
		t.Error("throughput without elapsed time")
	}
}

func TestAdvantage(t *testing.T) {
	for _, c := range []struct {
		a, b   float64
		higher bool
		want   float64
	}{
		{10, 20, false, 2},   // Rafting 10 ms, peer 20 ms: 2× better
		{40, 20, false, 0.5}, // slower: below 1
		{300, 100, true, 3},  // 300 ops/s vs 100
		{100, 400, true, 0.25},
		{0, 5, false, math.Inf(1)},
		{0, 0, false, 1},
	} {
		if got := Advantage(c.a, c.b, c.higher); got != c.want {
			t.Errorf("Advantage(%v, %v, %v) = %v, want %v", c.a, c.b, c.higher, got, c.want)
		}
	}
	if FormatRatio(2.345) != "2.35×" || FormatRatio(41.2) != "41.2×" || FormatRatio(250) != "250×" || FormatRatio(math.Inf(1)) != "∞" {
		t.Error(FormatRatio(2.345), FormatRatio(41.2), FormatRatio(250))
	}
}

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		420 * time.Microsecond:   "0.42 ms",
		12345 * time.Microsecond: "12.3 ms",
		1234 * time.Millisecond:  "1.23 s",
		40123 * time.Millisecond: "40.12 s",
		123 * time.Second:        "123 s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for d, want := range map[time.Duration]string{time.Second: "1 s", 60 * time.Second: "60 s", 1500 * time.Millisecond: "1.5 s",
		200 * time.Millisecond: "200 ms", 400 * time.Millisecond: "400 ms"} {
		if got := FormatLease(d); got != want {
			t.Errorf("FormatLease(%v) = %q, want %q", d, got, want)
		}
	}
}

// latRun is a run whose samples are the given milliseconds.
func latRun(system string, v ...float64) *Run {
	return NewRun(system, Sample{Ops: len(v), Latencies: ms(v...)})
}

// tputRun is a run of ops operations in one second.
func tputRun(system string, ops int) *Run {
	return NewRun(system, Sample{Ops: ops, Elapsed: time.Second, Latencies: ms(1)})
}

var systems = []string{"rafting", "etcd", "zookeeper"}

func status(t *testing.T, w *Workload) Status {
	t.Helper()
	v, ok := w.Verdict([]string{"etcd", "zookeeper"})
	if !ok {
		t.Fatalf("%s has no target", w.Key)
	}
	return v.Status
}

func TestVerdicts(t *testing.T) {
	reg := func(r, e, z int) *Workload {
		return &Workload{Key: "register-32", Kind: KindThroughput, Target: TargetRegister,
			Runs: []*Run{tputRun("rafting", r), tputRun("etcd", e), tputRun("zookeeper", z)}}
	}
	// ≥ 1.5× etcd's and ≥ 1.0× ZooKeeper's: exactly both meets.
	if s := status(t, reg(1500, 1000, 1500)); s != Met {
		t.Errorf("register 1500 vs etcd 1000, zookeeper 1500: %s", s)
	}
	if s := status(t, reg(1499, 1000, 300)); s != Missed {
		t.Errorf("register 1499 vs etcd 1000: %s", s)
	}
	if s := status(t, reg(1500, 100, 1501)); s != Missed {
		t.Errorf("register 1500 vs zookeeper 1501: %s", s)
	}

	prop := func(r, e, z float64) *Workload {
		return &Workload{Key: "propagation", Kind: KindLatency, Target: TargetPropagation,
			Runs: []*Run{latRun("rafting", 1, r), latRun("etcd", 1, e), latRun("zookeeper", 1, z)}}
	}
	// Against etcd only: p50 ≤ etcd's, p99 ≤ 0.8× etcd's; ZooKeeper's
	// figures do not count.
	if s := status(t, prop(8, 10, 1)); s != Met {
		t.Errorf("propagation p99 8 vs etcd 10: %s", s)
	}
	if s := status(t, prop(8.1, 10, 100)); s != Missed {
		t.Errorf("propagation p99 8.1 vs etcd 10: %s", s)
	}

	hand := func(r, e []float64) *Workload {
		return &Workload{Key: "handover", Kind: KindLatency, Target: TargetHandover,
			Runs: []*Run{latRun("rafting", r...), latRun("etcd", e...), latRun("zookeeper", 50, 60)}}
	}
	if s := status(t, hand([]float64{2, 3}, []float64{2, 3})); s != Met { // "no slower": a tie meets
		t.Errorf("handover tie: %s", s)
	}
	if s := status(t, hand([]float64{1, 9}, []float64{2, 8})); s != Missed { // p50 better, p99 worse
		t.Errorf("handover p99 worse: %s", s)
	}

	// At defaults: ≥ 20× the *fastest* peer, at p50 and at p99.
	def := func(r []float64, e, z float64) *Workload {
		return &Workload{Key: "failover-default", Kind: KindLatency, Target: TargetFailoverDefaults,
			Runs: []*Run{latRun("rafting", r...), latRun("etcd", e, e), latRun("zookeeper", z, z)}}
	}
	if s := status(t, def([]float64{900, 1000}, 60000, 20000)); s != Met {
		t.Errorf("defaults 0.9/1 s vs 20 s: %s", s)
	}
	if s := status(t, def([]float64{900, 1100}, 60000, 20000)); s != Missed { // p99 20 s / 1.1 s < 20
		t.Errorf("defaults p99 1.1 s vs 20 s: %s", s)
	}
	v, _ := def([]float64{900, 1000}, 60000, 20000).Verdict([]string{"etcd", "zookeeper"})
	if !strings.Contains(v.Measured, "zookeeper") || strings.Contains(v.Measured, "etcd") {
		t.Errorf("defaults should compare with the fastest peer only: %s", v.Measured)
	}

	same := &Workload{Key: "failover-same-lease", Kind: KindLatency, Target: TargetFailoverSame,
		Runs: []*Run{latRun("rafting", 800, 900), latRun("etcd", 1000, 1400), {System: "zookeeper", NotRun: "java missing"}}}
	if s := status(t, same); s != NotEvaluated {
		t.Errorf("a peer not run: %s", s)
	}
	if _, ok := (&Workload{Key: "failover-tuned"}).Verdict(nil); ok {
		t.Error("failover-tuned has no target")
	}

	kvput := func(r, e, z int) *Workload {
		w := reg(r, e, z)
		w.Key, w.Target = "kvput-32", TargetKVPut
		return w
	}
	if s := status(t, kvput(1000, 1000, 900)); s != Met { // exactly 1.0× the better peer
		t.Errorf("kv put 1000 vs 1000: %s", s)
	}
	if s := status(t, kvput(999, 400, 1000)); s != Missed {
		t.Errorf("kv put 999 vs 1000: %s", s)
	}

	// The watch goal names etcd only: ZooKeeper, run or not, decides nothing.
	kvwatch := func(r, e float64, z *Run) *Workload {
		return &Workload{Key: "kvwatch", Kind: KindLatency, Target: TargetKVWatch,
			Runs: []*Run{latRun("rafting", 1, r), latRun("etcd", 1, e), z}}
	}
	if s := status(t, kvwatch(8, 10, latRun("zookeeper", 1, 2))); s != Met { // exactly 0.8×
		t.Errorf("kv watch 8 vs 10: %s", s)
	}
	if s := status(t, kvwatch(8.1, 10, &Run{System: "zookeeper", NotRun: "no java"})); s != Missed {
		t.Errorf("kv watch 8.1 vs 10: %s", s)
	}
	v, _ = kvwatch(20, 10, latRun("zookeeper", 1, 2)).Verdict([]string{"etcd", "zookeeper"})
	if v.Status != Missed || !strings.Contains(v.Measured, "2.00× etcd's") || strings.Contains(v.Measured, "zookeeper") {
		t.Errorf("kv watch 20 vs 10: %+v", v)
	}

	// Idle cost: servers' CPU ≤ the lower peer's, RSS ≤ etcd's (ZooKeeper's
	// RSS decides nothing), in each shape.
	idle := func(target string, r, e, z IdleCost) *Workload {
		return &Workload{Key: target, Kind: KindIdle, Target: target,
			Runs: []*Run{{System: "rafting", Idle: &r}, {System: "etcd", Idle: &e}, {System: "zookeeper", Idle: &z}}}
	}
	cost := func(n int, cpu float64, mib int64) IdleCost {
		return IdleCost{Instances: n, CPUPct: cpu, RSSBytes: mib << 20}
	}
	for _, c := range []struct {
		name    string
		r, e, z IdleCost
		want    Status
	}{
		{"a tie with the lower peer and etcd", cost(100, 3, 200), cost(100, 3, 200), cost(100, 9, 100), Met},
		{"CPU above the lower peer (ZooKeeper)", cost(100, 3, 100), cost(100, 9, 200), cost(100, 2.9, 900), Missed},
		{"RSS above etcd's, below ZooKeeper's", cost(100, 1, 201), cost(100, 9, 200), cost(100, 9, 900), Missed},
		{"Rafting held fewer", cost(50, 1, 10), cost(100, 9, 200), cost(100, 9, 900), Missed},
		{"a peer held fewer", cost(100, 1, 10), cost(100, 9, 200), cost(50, 9, 900), NotEvaluated},
	} {
		for _, target := range []string{TargetIdle, TargetIdleClients} {
			if s := status(t, idle(target, c.r, c.e, c.z)); s != c.want {
				t.Errorf("%s, %s: %s, want %s", target, c.name, s, c.want)
			}
		}
	}
	v, _ = idle(TargetIdle, cost(100, 3, 100), cost(100, 9, 200), cost(100, 2.5, 900)).Verdict([]string{"etcd", "zookeeper"})
	if want := "CPU 3.0 % vs zookeeper 2.5 %; RSS 100 MiB vs etcd 200 MiB"; v.Measured != want {
		t.Errorf("idle measured %q, want %q", v.Measured, want)
	}
	v, _ = idle(TargetIdleClients, cost(500, 1, 10), cost(1000, 9, 200), cost(1000, 9, 900)).Verdict([]string{"etcd", "zookeeper"})
	if !strings.Contains(v.Measured, "rafting held 500 instances, etcd 1,000") {
		t.Errorf("idle, Rafting held fewer: %q", v.Measured)
	}
	// A system that could not hold the clients at all is not run: the
	// target is not evaluated, the run not failed.
	noZK := idle(TargetIdleClients, cost(100, 1, 10), cost(100, 9, 200), IdleCost{})
	noZK.Runs[2] = &Run{System: "zookeeper", NotRun: "with 1,000 clients × 10 instances: too many sessions"}
	if s := status(t, noZK); s != NotEvaluated {
		t.Errorf("idle with zookeeper not run: %s", s)
	}

	// Results.Verdicts folds register-32 and register-128 into one target.
	r32, r128 := reg(3000, 1000, 1000), reg(1000, 1000, 1000)
	r128.Key = "register-128"
	res := &Results{Systems: systems, Workloads: []*Workload{r32, r128, prop(4, 6, 9)}}
	vs := res.Verdicts()
	if len(vs) != 2 || vs[0].Target != TargetRegister || vs[0].Status != Missed || !strings.Contains(vs[0].Measured, "register-128") {
		t.Errorf("verdicts %+v", vs)
	}
	if vs[1].Status != Met {
		t.Errorf("propagation verdict %+v", vs[1])
	}
	// …and keeps the two idle shapes' targets apart.
	res = &Results{Systems: systems, Workloads: []*Workload{idle(TargetIdle, cost(100, 1, 10), cost(100, 9, 200), cost(100, 9, 900)),
		idle(TargetIdleClients, cost(100, 9, 10), cost(100, 2, 200), cost(100, 9, 900))}}
	vs = res.Verdicts()
	if len(vs) != 2 || vs[0].Target != TargetIdle || vs[0].Status != Met || vs[1].Target != TargetIdleClients || vs[1].Status != Missed {
		t.Errorf("idle verdicts %+v", vs)
	}
}

func TestIdleShape(t *testing.T) {
	many := IdleShape{Clients: 10, PerClient: 1000}
	procs := IdleShape{Clients: 1000, PerClient: 10, PerSession: true}
	if many.Instances() != 10000 || procs.Instances() != 10000 {
		t.Errorf("Instances() = %d, %d, want 10000", many.Instances(), procs.Instances())
	}
	// Half as many instances: on each connection, or half as many clients
	// (processes) of as many instances each.
	if got, want := many.half(), (IdleShape{Clients: 10, PerClient: 500}); got != want {
		t.Errorf("half() = %v, want %v", got, want)
	}
	if got, want := procs.half(), (IdleShape{Clients: 500, PerClient: 10, PerSession: true}); got != want {
		t.Errorf("half() = %v, want %v", got, want)
	}
	if got := procs.String(); got != "1,000 clients × 10 instances" {
		t.Errorf("String() = %q", got)
	}
	// The plans: both shapes, 10,000 instances each (1,000 in the quick
	// mode), their own keys and targets.
	for _, c := range []struct {
		quick   bool
		clients []int
		titles  []string
	}{
		{false, []int{10, 1000}, []string{"Idle cost, 10,000 live instances over 10 client connections", "Idle cost, 10,000 live instances over 1,000 clients with a session each"}},
		{true, []int{10, 100}, []string{"Idle cost, 1,000 live instances over 10 client connections", "Idle cost, 1,000 live instances over 100 clients with a session each"}},
	} {
		p := newPlan(c.quick)
		ws := p.idleWorkloads()
		if len(ws) != 2 || len(p.idle) != 2 {
			t.Fatalf("quick %v: %d idle workloads", c.quick, len(ws))
		}
		for i, w := range ws {
			key, target := []string{"idle", "idle-clients"}[i], []string{TargetIdle, TargetIdleClients}[i]
			if w.Key != key || w.Target != target || w.Kind != KindIdle || w.Title != c.titles[i] || p.idle[i].Clients != c.clients[i] {
				t.Errorf("quick %v: idle workload %d: %+v of %v", c.quick, i, w, p.idle[i])
			}
			if w.Family() != "idle" {
				t.Errorf("%s: family %q", w.Key, w.Family())
			}
		}
		if !strings.Contains(ws[1].Params, "half as many clients") || !strings.Contains(ws[0].Params, "half as many instances") {
			t.Errorf("quick %v: params %q, %q", c.quick, ws[0].Params, ws[1].Params)
		}
	}
}

// savedBeforeShapes is an idle workload as results.json held it before the
// second idle shape: no target, no clients, sessions or clients' CPU.
const savedBeforeShapes = `{"systems":["rafting","etcd","zookeeper"],"workloads":[
{"key":"handover","kind":"latency","title":"Graceful handover","params":"p","target":"handover","runs":[{"system":"rafting","stats":{"n":1,"p50_ns":1000000,"p99_ns":1000000,"max_ns":1000000,"mean_ns":1000000}}]},
{"key":"idle","kind":"idle","title":"Idle cost, 10,000 live instances","params":"10,000 instances registered","runs":[
{"system":"rafting","idle":{"Instances":10000,"CPUPct":14.532942329364278,"RSSBytes":436666368},"took":"34.71s"},
{"system":"etcd","idle":{"Instances":10000,"CPUPct":10.975247492088256,"RSSBytes":264278016},"took":"32.525s"},
{"system":"zookeeper","idle":{"Instances":10000,"CPUPct":19.199647047128437,"RSSBytes":1052762112},"took":"1m9.461s"}]},
{"key":"failover-default","kind":"latency","title":"Crash failover","params":"p","target":"failover-defaults","runs":[]}]}`

func TestResultsSavedBeforeTheSecondIdleShape(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.json")
	if err := os.WriteFile(path, []byte(savedBeforeShapes), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := LoadResults(path)
	if err != nil {
		t.Fatal(err)
	}
	res.How = how
	res.Complete(newPlan(false).idleWorkloads())
	res.Complete(newPlan(false).idleWorkloads()) // twice: nothing more
	var keys []string
	for _, w := range res.Workloads {
		keys = append(keys, w.Key)
	}
	if got, want := strings.Join(keys, " "), "handover idle idle-clients failover-default"; got != want {
		t.Fatalf("workloads %s, want %s", got, want)
	}
	old, added := res.Workloads[1], res.Workloads[2]
	if old.Target != TargetIdle || old.Title != "Idle cost, 10,000 live instances" || old.Params != "10,000 instances registered" {
		t.Errorf("saved idle workload: %+v (the target is new, what ran is kept)", old)
	}
	if added.Target != TargetIdleClients || len(added.Runs) != 3 || added.Runs[0].OK() {
		t.Errorf("missing workload: %+v", added)
	}
	vs := res.Verdicts()
	byTarget := map[string]Verdict{}
	for _, v := range vs {
		byTarget[v.Target] = v
	}
	if v := byTarget[TargetIdle]; v.Status != Missed || v.Measured != "CPU 14.5 % vs etcd 11.0 %; RSS 416 MiB vs etcd 252 MiB" {
		t.Errorf("saved idle verdict %+v", v)
	}
	if v := byTarget[TargetIdleClients]; v.Status != NotEvaluated || v.Measured != "rafting, etcd, zookeeper not run" {
		t.Errorf("missing idle verdict %+v", v)
	}
	md := res.Markdown("peers-plots", nil)
	for _, want := range []string{
		"| servers' CPU (% of one core, 3 members) | 14.5 % | 11.0 % | 19.2 % | 0.76× | 1.32× |",
		"### Idle cost, 10,000 live instances over 1,000 clients with a session each",
		"| servers' CPU (% of one core, 3 members) | not run | not run | not run | — | — |",
		"- etcd: not run: not in this run: its results were saved before the workload was added",
		// Each shape its own how: the family's for idle, the key's for idle-clients.
		"- Rafting: " + how["rafting"]["idle"] + "\n",
		"- ZooKeeper: " + how["zookeeper"]["idle"] + "\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "| client connections") {
		t.Errorf("report with a client connections row and none measured:\n%s", md)
	}
	// The how of idle-clients shows under a run of it.
	added.Runs[0] = &Run{System: "rafting", Idle: &IdleCost{Instances: 10000, Clients: 1000, Sessions: 10000, CPUPct: 9, RSSBytes: 1 << 30}}
	if md := res.Markdown("peers-plots", nil); !strings.Contains(md, "- Rafting: "+how["rafting"]["idle-clients"]+"\n") {
		t.Errorf("report lacks Rafting's idle-clients how:\n%s", md)
	}
}

func TestTable(t *testing.T) {
	w := &Workload{Key: "failover-tuned", Kind: KindLatency, Title: "Crash failover, tuned",
		Runs: []*Run{latRun("rafting", 200, 220), latRun("etcd", 1000, 1100), {System: "zookeeper", NotRun: "no java"}}}
	w.Runs[0].Setting, w.Runs[0].Lease = "tuned", 200*time.Millisecond
	w.Runs[1].Setting, w.Runs[1].Lease = "tuned", time.Second
	tab := w.Table(systems)
	for _, want := range []string{
		"| | Rafting | etcd | ZooKeeper | Rafting vs etcd | Rafting vs ZooKeeper |",
		"| setting | tuned, lease 200 ms | tuned, lease 1 s | — | | |",
		"| p50 | 200.0 ms | 1.00 s | not run | 5.00× | — |",
		"| p99 | 220.0 ms | 1.10 s | not run | 5.00× | — |",
		"| samples | 2 | 2 | — | | |",
	} {
		if !strings.Contains(tab, want+"\n") {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	idle := &Workload{Key: "idle", Kind: KindIdle, Runs: []*Run{
		{System: "rafting", Idle: &IdleCost{Instances: 10, CPUPct: 2, RSSBytes: 100 << 20}},
		{System: "etcd", Idle: &IdleCost{Instances: 10, CPUPct: 4, RSSBytes: 50 << 20}},
	}}
	tab = idle.Table(systems)
	for _, want := range []string{"| instances held | 10 | 10 | — | — | — |", "| servers' CPU (% of one core, 3 members) | 2.0 % | 4.0 % | — | 2.00× | — |",
		"| servers' RSS (3 members) | 100 MiB | 50 MiB | — | 0.50× | — |"} {
		if !strings.Contains(tab, want+"\n") {
			t.Errorf("idle table lacks %q:\n%s", want, tab)
		}
	}
	if strings.Contains(tab, "samples") {
		t.Errorf("idle table with samples:\n%s", tab)
	}
	// Results saved before clients, sessions and the clients' CPU were
	// measured: no such rows.
	for _, row := range []string{"client connections", "sessions", "clients' CPU"} {
		if strings.Contains(tab, "| "+row) {
			t.Errorf("idle table without %s has its row:\n%s", row, tab)
		}
	}
	idle.Runs[0].Idle.Clients, idle.Runs[0].Idle.Sessions, idle.Runs[0].Idle.ClientCPUPct = 1000, 10000, 35
	idle.Runs[1].Idle.Clients, idle.Runs[1].Idle.Sessions = 1000, 1000
	tab = idle.Table(systems)
	for _, want := range []string{"| client connections | 1,000 | 1,000 | — | — | — |", "| sessions (etcd: leases) | 10,000 | 1,000 | — | — | — |",
		"| clients' CPU (% of one core, not counted above) | 35.0 % | — | — | — | — |"} {
		if !strings.Contains(tab, want+"\n") {
			t.Errorf("idle table lacks %q:\n%s", want, tab)
		}
	}
	// Different instance counts: no ratio.
	idle.Runs[0].Idle.Instances = 5
	if tab := idle.Table(systems); !strings.Contains(tab, "| servers' CPU (% of one core, 3 members) | 2.0 % | 4.0 % | — | — | — |\n") {
		t.Errorf("idle table, different counts:\n%s", tab)
	}
	reg := &Workload{Key: "register-32", Kind: KindThroughput, Runs: []*Run{tputRun("rafting", 3000), tputRun("etcd", 1000)}}
	if tab := reg.Table(systems); !strings.Contains(tab, "| ops/s | 3000 | 1000 | — | 3.00× | — |\n") {
		t.Errorf("throughput table:\n%s", tab)
	}
}

func TestReplaceSection(t *testing.T) {
	doc := "# Results\n\nsomething else\n"
	out, err := ReplaceSection(doc, "one\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := doc + "\n" + BeginMarker + "\none\n" + EndMarker + "\n"; out != want {
		t.Errorf("appended:\n%q\nwant\n%q", out, want)
	}
	again, err := ReplaceSection(out+"after\n", "two\nlines\n")
	if err != nil {
		t.Fatal(err)
	}
	if want := doc + "\n" + BeginMarker + "\ntwo\nlines\n" + EndMarker + "\nafter\n"; again != want {
		t.Errorf("replaced:\n%q\nwant\n%q", again, want)
	}
	if _, err := ReplaceSection(EndMarker+"\n"+BeginMarker+"\n", "x\n"); err == nil {
		t.Error("markers out of order: no error")
	}
	if _, err := ReplaceSection(BeginMarker+"\n", "x\n"); err == nil {
		t.Error("no end marker: no error")
	}
}

func sampleResults() *Results {
	def := &Workload{Key: "failover-default", Kind: KindLatency, Title: "Crash failover, defaults", Target: TargetFailoverDefaults,
		Runs: []*Run{latRun("rafting", 800, 900, 1000), latRun("etcd", 60000), latRun("zookeeper", 40000)}}
	for _, r := range def.Runs {
		r.Setting, r.Lease = "default", time.Second
	}
	return &Results{
		Date: time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC), Took: 17 * time.Minute, Command: "make bench-peers",
		Machine: Machine{CPU: "Test CPU", Cores: 2, RAMBytes: 24 << 30}, Versions: map[string]string{"go": "go1.26", "etcd": "3.4.23"},
		Systems: systems,
		How:     map[string]map[string]string{"rafting": {"register": "REST PUTs", "idle": "SDK members"}},
		Workloads: []*Workload{
			{Key: "register-32", Kind: KindThroughput, Title: "Registration, 32 clients", Target: TargetRegister,
				Runs: []*Run{tputRun("rafting", 3000), tputRun("etcd", 1000), tputRun("zookeeper", 1500)}},
			def,
			{Key: "idle", Kind: KindIdle, Title: "Idle", Runs: []*Run{
				{System: "rafting", Idle: &IdleCost{Instances: 10, CPUPct: 2, RSSBytes: 100 << 20}, Note: "held 10 of 20"},
				{System: "etcd", NotRun: "its cluster did not start: etcd: not found"},
				{System: "zookeeper", Idle: &IdleCost{Instances: 10, CPUPct: 1, RSSBytes: 500 << 20}}}},
		},
	}
}

func TestMarkdownJSONAndPlots(t *testing.T) {
	res := sampleResults()
	dir := t.TempDir()
	path := filepath.Join(dir, "results.json")
	if err := res.SaveJSON(path); err != nil {
		t.Fatal(err)
	}
	back, err := LoadResults(path)
	if err != nil {
		t.Fatal(err)
	}
	plots, err := WritePlots(back, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"register-32", "failover-default", "idle"} {
		b, err := os.ReadFile(filepath.Join(dir, plots[k]))
		if err != nil || len(b) < 8 || string(b[1:4]) != "PNG" {
			t.Errorf("plot %s: %v", k, err)
		}
	}
	md := back.Markdown("peers-plots", plots)
	if md != res.Markdown("peers-plots", plots) {
		t.Error("the report from the JSON differs from the original's")
	}
	for _, want := range []string{
		"`make bench-peers` — 2026-11-26 03:00 UTC, took 17m0s.",
		"Machine: Test CPU, 2 cores, 24.0 GiB RAM.",
		"| registration throughput ≥ 1.5× the better peer's | register-32: 3000 vs zookeeper 1500 ops/s: 2.00× | **met** |",
		"p50 900.0 ms vs zookeeper 40.00 s: 44.4×; p99 1.00 s vs zookeeper 40.00 s: 40.0× | **met** |",
		"- etcd: not run: its cluster did not start: etcd: not found",
		"- Rafting: REST PUTs\n",
		"- Rafting: SDK members. held 10 of 20\n",
		"![Crash failover, defaults](peers-plots/failover-default.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	rm := filepath.Join(dir, "RESULTS.md")
	os.WriteFile(rm, []byte("# Benchmarks\n\nkept\n"), 0o644)
	if err := WriteSection(rm, md); err != nil {
		t.Fatal(err)
	}
	if err := WriteSection(rm, md); err != nil { // twice: one section
		t.Fatal(err)
	}
	b, _ := os.ReadFile(rm)
	if !strings.HasPrefix(string(b), "# Benchmarks\n\nkept\n") || strings.Count(string(b), BeginMarker) != 1 || !strings.Contains(string(b), md) {
		t.Errorf("RESULTS.md:\n%s", b)
	}
}

// idleOnly is a Target whose Idle holds at most max instances; nothing
// else of it is called.
type idleOnly struct {
	Target
	max   int
	tried []IdleShape
}

func (f *idleOnly) Idle(ctx context.Context, s IdleShape, d time.Duration) (IdleCost, error) {
	f.tried = append(f.tried, s)
	if s.Instances() > f.max {
		return IdleCost{}, fmt.Errorf("%d sessions lost", s.Instances()-f.max)
	}
	return IdleCost{Instances: s.Instances(), Clients: s.Clients, CPUPct: 1, RSSBytes: 1 << 20}, nil
}

// A system that cannot hold the shape is measured with half as many
// clients (or instances per connection), down to a quarter, and says so;
// below that its run is not run, with every attempt's error. The run
// itself never fails.
func TestIdleRunHalves(t *testing.T) {
	p := newPlan(false)
	procs := IdleShape{Clients: 1000, PerClient: 10, PerSession: true}
	restarts := 0
	restart := func() error { restarts++; return nil }
	f := &idleOnly{max: 5000}
	r, err := p.idleRun(context.Background(), "etcd", procs, f, restart)
	if err != nil {
		t.Fatal(err)
	}
	if r.Idle.Instances != 5000 || r.Idle.Clients != 500 || restarts != 1 {
		t.Errorf("held %+v after %d restarts, want 500 clients", r.Idle, restarts)
	}
	if want := "**Could not hold 1,000 clients × 10 instances on this machine** (with 1,000 clients × 10 instances: 5000 sessions lost); the figures are with 500 clients × 10 instances"; r.Note != want {
		t.Errorf("note %q, want %q", r.Note, want)
	}
	f, restarts = &idleOnly{max: 100}, 0
	if _, err = p.idleRun(context.Background(), "etcd", procs, f, restart); err == nil || !strings.Contains(err.Error(), "with 250 clients × 10 instances: 2400 sessions lost") {
		t.Errorf("err = %v", err)
	}
	if len(f.tried) != 3 || restarts != 2 {
		t.Errorf("tried %v with %d restarts, want 1,000, 500 and 250 clients", f.tried, restarts)
	}
	// Many instances per connection: the connections stay.
	f = &idleOnly{max: 2500}
	if r, err = p.idleRun(context.Background(), "zookeeper", IdleShape{Clients: 10, PerClient: 1000}, f, restart); err != nil || r.Idle.Clients != 10 || r.Idle.Instances != 2500 {
		t.Errorf("many per connection: %+v, %v", r, err)
	}
}
