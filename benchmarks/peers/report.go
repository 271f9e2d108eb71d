package peers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// Results is one run of BenchmarkPeers: everything the report shows. It is
// saved as JSON beside the plots, so the report can be written again
// without running anything.
type Results struct {
	Date     time.Time         `json:"date"`
	Took     time.Duration     `json:"took_ns"`
	Command  string            `json:"command"`
	Quick    bool              `json:"quick"`
	Machine  Machine           `json:"machine"`
	Versions map[string]string `json:"versions"` // go, rafting, etcd, zookeeper
	Systems  []string          `json:"systems"`  // rafting first
	Notes    []string          `json:"notes,omitempty"`
	// Why explains, per target key, why Rafting misses it when it does.
	Why map[string]string `json:"why,omitempty"`
	// How says, per system and workload family (register, propagation,
	// kvput, kvwatch, handover, idle) or, where a workload of a family
	// differs, per workload key (idle-clients), how the system does it.
	How       map[string]map[string]string `json:"how,omitempty"`
	Workloads []*Workload                  `json:"workloads"`
}

// Machine is where the run happened.
type Machine struct {
	CPU      string `json:"cpu"`
	Cores    int    `json:"cores"`
	RAMBytes int64  `json:"ram_bytes"`
	Kernel   string `json:"kernel,omitempty"`
}

// Kind says which figures a workload has.
type Kind string

const (
	KindThroughput Kind = "throughput" // ops/s, and each op's latency
	KindLatency    Kind = "latency"    // p50/p99 of the samples
	KindIdle       Kind = "idle"       // CPU and memory
)

// Target keys: which of the targets a workload decides.
const (
	TargetRegister         = "register"          // ≥ 1.0× ZooKeeper's and ≥ 1.5× etcd's throughput (issue 14)
	TargetPropagation      = "propagation"       // p50 ≤ etcd's, p99 ≤ 0.8× etcd's (issue 14)
	TargetHandover         = "handover"          // p50 and p99 no slower than either peer
	TargetFailoverDefaults = "failover-defaults" // p50 and p99 ≥ 20× faster than the fastest peer
	TargetFailoverSame     = "failover-same"     // p50 and p99 no slower than either peer
	TargetKVPut            = "kvput"             // ≥ 1.0× the better peer's throughput
	TargetKVWatch          = "kvwatch"           // p99 ≤ 0.8× etcd's
	// Idle cost, servers' CPU ≤ the lower peer's and RSS ≤ etcd's, in
	// each of two shapes: many instances on each of a few connections,
	// and a connection and session per client of a few instances.
	TargetIdle        = "idle"
	TargetIdleClients = "idle-clients"
)

// targetGoals are the targets' goals, as the report states them.
var targetGoals = map[string]string{
	TargetRegister:         "registration throughput ≥ 1.0× ZooKeeper's and ≥ 1.5× etcd's",
	TargetPropagation:      "membership propagation to 100 watchers: p50 ≤ etcd's and p99 ≤ 0.8× etcd's",
	TargetHandover:         "graceful handover no slower than either peer (p50 and p99)",
	TargetFailoverDefaults: "crash failover at defaults ≥ 20× faster than the fastest peer at its defaults (p50 and p99)",
	TargetFailoverSame:     "crash failover at the same lease no slower than either peer (p50 and p99)",
	TargetKVPut:            "configuration put throughput ≥ 1.0× the better peer's",
	TargetKVWatch:          "configuration change to 100 watchers: p99 ≤ 0.8× etcd's",
	TargetIdle:             "idle cost, instances over 10 client connections: servers' CPU ≤ the lower peer's and RSS ≤ etcd's",
	TargetIdleClients:      "idle cost, a connection and session per client of 10 instances: servers' CPU ≤ the lower peer's and RSS ≤ etcd's",
}

// Workload is one workload's runs, one per system.
type Workload struct {
	Key    string `json:"key"` // a file name: register-32, failover-tuned, idle
	Kind   Kind   `json:"kind"`
	Title  string `json:"title"`
	Params string `json:"params"` // what ran, in words
	Target string `json:"target,omitempty"`
	Runs   []*Run `json:"runs"`
}

// Run is one system's result of one workload.
type Run struct {
	System  string        `json:"system"`
	Setting string        `json:"setting,omitempty"`
	Lease   time.Duration `json:"lease_ns,omitempty"`
	Note    string        `json:"note,omitempty"`
	NotRun  string        `json:"not_run,omitempty"` // why there is no figure
	Ops     int           `json:"ops,omitempty"`
	Elapsed time.Duration `json:"elapsed_ns,omitempty"`
	Stats   *Stats        `json:"stats,omitempty"`
	// LatenciesUs are the samples in µs (at most maxKept of them, evenly
	// taken from the sorted sample when there were more; Stats come from
	// all of them).
	LatenciesUs []int64   `json:"latencies_us,omitempty"`
	Idle        *IdleCost `json:"idle,omitempty"`
	Took        string    `json:"took,omitempty"`
	// Background is set when the run overlapped other runs.
	Background bool `json:"background,omitempty"`
	// ServerCPU and ClientCPU are the CPU the servers (all three) and the
	// benchmark's process (the clients) used while a throughput workload
	// was measured, in % of one core.
	ServerCPU float64 `json:"server_cpu_pct,omitempty"`
	ClientCPU float64 `json:"client_cpu_pct,omitempty"`
}

// Stats summarise a sample.
type Stats struct {
	N    int           `json:"n"`
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
}

// maxKept bounds the samples a run keeps in the JSON.
const maxKept = 20000

// NewRun records a sample.
func NewRun(system string, s Sample) *Run {
	r := &Run{System: system, Ops: s.Ops, Elapsed: s.Elapsed}
	if len(s.Latencies) == 0 {
		return r
	}
	sorted := slices.Clone(s.Latencies)
	slices.Sort(sorted)
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	r.Stats = &Stats{N: len(sorted), P50: Pct(sorted, 50), P99: Pct(sorted, 99), Max: sorted[len(sorted)-1],
		Mean: sum / time.Duration(len(sorted))}
	keep := sorted
	if len(sorted) > maxKept {
		keep = make([]time.Duration, maxKept)
		for i := range keep {
			keep[i] = sorted[i*(len(sorted)-1)/(maxKept-1)]
		}
	}
	r.LatenciesUs = make([]int64, len(keep))
	for i, d := range keep {
		r.LatenciesUs[i] = d.Microseconds()
	}
	return r
}

// Latencies are the kept samples.
func (r *Run) Latencies() []time.Duration {
	out := make([]time.Duration, len(r.LatenciesUs))
	for i, us := range r.LatenciesUs {
		out[i] = time.Duration(us) * time.Microsecond
	}
	return out
}

// OK reports whether the run has figures.
func (r *Run) OK() bool { return r != nil && r.NotRun == "" }

// Pct is the p-th percentile of d (nearest rank); d need not be sorted.
func Pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := d
	if !slices.IsSorted(d) {
		s = slices.Clone(d)
		slices.Sort(s)
	}
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

// Throughput is operations per second.
func (r *Run) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// Family is the workload's family: its key up to a dash (register-32 →
// register; failover-tuned → failover).
func (w *Workload) Family() string {
	f, _, _ := strings.Cut(w.Key, "-")
	return f
}

// Run returns the system's run of w, or nil.
func (w *Workload) Run(system string) *Run {
	for _, r := range w.Runs {
		if r.System == system {
			return r
		}
	}
	return nil
}

// metric is one row of a workload's table.
type metric struct {
	name    string
	higher  bool // higher is better
	noRatio bool
	// optional rows are left out when no run has a value (results saved
	// before the row was measured).
	optional bool
	value    func(*Run) (float64, bool)
	format   func(float64) string
}

func latencyMetric(name string, f func(*Stats) time.Duration) metric {
	return metric{name: name, value: func(r *Run) (float64, bool) {
		if !r.OK() || r.Stats == nil {
			return 0, false
		}
		return float64(f(r.Stats)), true
	}, format: func(v float64) string { return FormatDuration(time.Duration(v)) }}
}

func (w *Workload) metrics() []metric {
	p50 := latencyMetric("p50", func(s *Stats) time.Duration { return s.P50 })
	p99 := latencyMetric("p99", func(s *Stats) time.Duration { return s.P99 })
	mx := latencyMetric("max", func(s *Stats) time.Duration { return s.Max })
	switch w.Kind {
	case KindThroughput:
		p50.name, p99.name = "latency p50", "latency p99"
		return []metric{{name: "ops/s", higher: true, value: func(r *Run) (float64, bool) {
			return r.Throughput(), r.OK() && r.Elapsed > 0
		}, format: func(v float64) string { return fmt.Sprintf("%.0f", v) }}, p50, p99,
			{name: "servers' CPU (% of one core)", noRatio: true, value: func(r *Run) (float64, bool) {
				return r.ServerCPU, r.OK() && r.ServerCPU > 0
			}, format: func(v float64) string { return fmt.Sprintf("%.0f %%", v) }},
			{name: "servers' CPU per operation", value: func(r *Run) (float64, bool) {
				return r.ServerCPU / 100 * float64(time.Second) / r.Throughput(), r.OK() && r.ServerCPU > 0 && r.Throughput() > 0
			}, format: func(v float64) string { return fmt.Sprintf("%.0f µs", v/float64(time.Microsecond)) }},
			{name: "clients' CPU (% of one core)", noRatio: true, value: func(r *Run) (float64, bool) {
				return r.ClientCPU, r.OK() && r.ClientCPU > 0
			}, format: func(v float64) string { return fmt.Sprintf("%.0f %%", v) }},
		}
	case KindIdle:
		count := func(v float64) string { return thousands(int(v)) }
		return []metric{
			{name: "instances held", noRatio: true, value: func(r *Run) (float64, bool) {
				return idleField(r, func(c *IdleCost) float64 { return float64(c.Instances) })
			}, format: count},
			{name: "client connections", noRatio: true, optional: true, value: func(r *Run) (float64, bool) {
				v, ok := idleField(r, func(c *IdleCost) float64 { return float64(c.Clients) })
				return v, ok && v > 0
			}, format: count},
			{name: "sessions (etcd: leases)", noRatio: true, optional: true, value: func(r *Run) (float64, bool) {
				v, ok := idleField(r, func(c *IdleCost) float64 { return float64(c.Sessions) })
				return v, ok && v > 0
			}, format: count},
			{name: "servers' CPU (% of one core, 3 members)", value: func(r *Run) (float64, bool) {
				return idleField(r, func(c *IdleCost) float64 { return c.CPUPct })
			}, format: func(v float64) string { return fmt.Sprintf("%.1f %%", v) }},
			{name: "servers' RSS (3 members)", value: func(r *Run) (float64, bool) {
				return idleField(r, func(c *IdleCost) float64 { return float64(c.RSSBytes) })
			}, format: func(v float64) string { return fmt.Sprintf("%.0f MiB", v/(1<<20)) }},
			{name: "clients' CPU (% of one core, not counted above)", noRatio: true, optional: true, value: func(r *Run) (float64, bool) {
				v, ok := idleField(r, func(c *IdleCost) float64 { return c.ClientCPUPct })
				return v, ok && v > 0
			}, format: func(v float64) string { return fmt.Sprintf("%.1f %%", v) }},
		}
	}
	return []metric{p50, p99, mx}
}

func idleField(r *Run, f func(*IdleCost) float64) (float64, bool) {
	if !r.OK() || r.Idle == nil {
		return 0, false
	}
	return f(r.Idle), true
}

// Advantage is how many times better a is than b for a metric (higher or
// lower is better): above 1, a is better.
func Advantage(a, b float64, higherBetter bool) float64 {
	if higherBetter {
		a, b = b, a
	}
	if a <= 0 {
		if b <= 0 {
			return 1
		}
		return math.Inf(1)
	}
	return b / a
}

// FormatRatio prints a ratio as "2.3×".
func FormatRatio(x float64) string {
	switch {
	case math.IsInf(x, 1):
		return "∞"
	case x >= 100:
		return fmt.Sprintf("%.0f×", x)
	case x >= 10:
		return fmt.Sprintf("%.1f×", x)
	default:
		return fmt.Sprintf("%.2f×", x)
	}
}

// FormatDuration prints a latency with three significant digits or so.
func FormatDuration(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1f ms", ms)
	case ms < 100_000:
		return fmt.Sprintf("%.2f s", ms/1000)
	default:
		return fmt.Sprintf("%.0f s", ms/1000)
	}
}

// Status of a target.
type Status string

const (
	Met          Status = "met"
	Missed       Status = "missed"
	NotEvaluated Status = "not evaluated"
)

// Verdict is one target's outcome.
type Verdict struct {
	Target   string
	Workload string // the workload's key
	Goal     string
	Measured string
	Status   Status
}

// Verdict decides w's target, if it has one.
func (w *Workload) Verdict(peers []string) (Verdict, bool) {
	v := Verdict{Target: w.Target, Workload: w.Key, Goal: targetGoals[w.Target]}
	if v.Goal == "" {
		return v, false
	}
	if w.Target == TargetKVWatch || w.Target == TargetPropagation {
		peers = []string{"etcd"} // the goal names etcd only
	}
	raft := w.Run("rafting")
	var missing []string
	if !raft.OK() {
		missing = append(missing, "rafting")
	}
	var ps []*Run
	for _, p := range peers {
		if r := w.Run(p); r.OK() {
			ps = append(ps, r)
		} else {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		v.Status, v.Measured = NotEvaluated, strings.Join(missing, ", ")+" not run"
		return v, true
	}
	ok := true
	var parts []string
	switch w.Target {
	case TargetRegister:
		for _, p := range ps {
			x, want := raft.Throughput()/p.Throughput(), map[string]float64{"zookeeper": 1.0, "etcd": 1.5}[p.System]
			ok = ok && x >= want
			parts = append(parts, fmt.Sprintf("%.0f vs %s %.0f ops/s: %s (≥ %.1f×)", raft.Throughput(), p.System, p.Throughput(), FormatRatio(x), want))
		}
	case TargetKVPut:
		best := slices.MaxFunc(ps, func(a, b *Run) int { return cmpFloat(a.Throughput(), b.Throughput()) })
		x := raft.Throughput() / best.Throughput()
		ok = x >= 1.0
		parts = append(parts, fmt.Sprintf("%.0f vs %s %.0f ops/s: %s", raft.Throughput(), best.System, best.Throughput(), FormatRatio(x)))
	case TargetPropagation:
		etcd := ps[0]
		ok = raft.Stats.P50 <= etcd.Stats.P50 && float64(raft.Stats.P99) <= 0.8*float64(etcd.Stats.P99)
		parts = append(parts, fmt.Sprintf("p50 %s vs %s %s; p99 %s vs %s: %s %s's", FormatDuration(raft.Stats.P50), etcd.System,
			FormatDuration(etcd.Stats.P50), FormatDuration(raft.Stats.P99), FormatDuration(etcd.Stats.P99),
			FormatRatio(float64(raft.Stats.P99)/float64(etcd.Stats.P99)), etcd.System))
	case TargetHandover, TargetFailoverSame:
		for _, p := range ps {
			ok = ok && raft.Stats.P50 <= p.Stats.P50 && raft.Stats.P99 <= p.Stats.P99
			parts = append(parts, fmt.Sprintf("p50 %s / p99 %s vs %s %s / %s", FormatDuration(raft.Stats.P50), FormatDuration(raft.Stats.P99),
				p.System, FormatDuration(p.Stats.P50), FormatDuration(p.Stats.P99)))
		}
	case TargetKVWatch:
		etcd := ps[0]
		ok = float64(raft.Stats.P99) <= 0.8*float64(etcd.Stats.P99)
		parts = append(parts, fmt.Sprintf("p99 %s vs %s %s: %s %s's", FormatDuration(raft.Stats.P99), etcd.System,
			FormatDuration(etcd.Stats.P99), FormatRatio(float64(raft.Stats.P99)/float64(etcd.Stats.P99)), etcd.System))
	case TargetIdle, TargetIdleClients:
		return idleVerdict(v, raft, ps), true
	case TargetFailoverDefaults:
		for _, q := range []struct {
			name string
			f    func(*Stats) time.Duration
		}{{"p50", func(s *Stats) time.Duration { return s.P50 }}, {"p99", func(s *Stats) time.Duration { return s.P99 }}} {
			fastest := slices.MinFunc(ps, func(a, b *Run) int { return cmpFloat(float64(q.f(a.Stats)), float64(q.f(b.Stats))) })
			x := Advantage(float64(q.f(raft.Stats)), float64(q.f(fastest.Stats)), false)
			ok = ok && x >= 20
			parts = append(parts, fmt.Sprintf("%s %s vs %s %s: %s", q.name, FormatDuration(q.f(raft.Stats)), fastest.System,
				FormatDuration(q.f(fastest.Stats)), FormatRatio(x)))
		}
	}
	v.Measured = strings.Join(parts, "; ")
	v.Status = Missed
	if ok {
		v.Status = Met
	}
	return v, true
}

// idleVerdict decides an idle-cost target: Rafting's servers' CPU ≤ the
// lower of the peers' and its RSS ≤ etcd's. The runs must have held the
// same instances: Rafting holding fewer than a peer misses; a peer holding
// fewer than Rafting (it could not hold them all) leaves the target not
// evaluated, its figures being of a lighter load.
func idleVerdict(v Verdict, raft *Run, ps []*Run) Verdict {
	rc := raft.Idle
	if rc == nil {
		v.Status, v.Measured = NotEvaluated, "rafting has no idle figures"
		return v
	}
	var fewer []string
	for _, p := range ps {
		switch pc := p.Idle; {
		case pc == nil:
			v.Status, v.Measured = NotEvaluated, p.System+" has no idle figures"
			return v
		case rc.Instances < pc.Instances:
			v.Status = Missed
			v.Measured = fmt.Sprintf("rafting held %s instances, %s %s", thousands(rc.Instances), p.System, thousands(pc.Instances))
			return v
		case pc.Instances < rc.Instances:
			fewer = append(fewer, fmt.Sprintf("%s held %s of %s instances", p.System, thousands(pc.Instances), thousands(rc.Instances)))
		}
	}
	if len(fewer) > 0 {
		v.Status, v.Measured = NotEvaluated, strings.Join(fewer, ", ")
		return v
	}
	lower := slices.MinFunc(ps, func(a, b *Run) int { return cmpFloat(a.Idle.CPUPct, b.Idle.CPUPct) })
	ok := rc.CPUPct <= lower.Idle.CPUPct
	parts := []string{fmt.Sprintf("CPU %.1f %% vs %s %.1f %%", rc.CPUPct, lower.System, lower.Idle.CPUPct)}
	if i := slices.IndexFunc(ps, func(r *Run) bool { return r.System == "etcd" }); i >= 0 {
		e := ps[i].Idle
		ok = ok && rc.RSSBytes <= e.RSSBytes
		parts = append(parts, fmt.Sprintf("RSS %.0f MiB vs etcd %.0f MiB", float64(rc.RSSBytes)/(1<<20), float64(e.RSSBytes)/(1<<20)))
	}
	v.Measured = strings.Join(parts, "; ")
	v.Status = Missed
	if ok {
		v.Status = Met
	}
	return v
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Verdicts are the run's targets, in workload order; register's two client
// counts make one target, met only if both are.
func (res *Results) Verdicts() []Verdict {
	peers := res.peers()
	var out []Verdict
	for _, w := range res.Workloads {
		v, ok := w.Verdict(peers)
		if !ok {
			continue
		}
		if i := slices.IndexFunc(out, func(o Verdict) bool { return o.Target == v.Target }); i >= 0 {
			o := &out[i]
			o.Measured += fmt.Sprintf("; %s: %s", w.Key, v.Measured)
			o.Workload += ", " + w.Key
			o.Status = worse(o.Status, v.Status)
			continue
		}
		if w.Target == TargetRegister {
			v.Measured = w.Key + ": " + v.Measured
		}
		out = append(out, v)
	}
	return out
}

func worse(a, b Status) Status {
	rank := map[Status]int{Met: 0, Missed: 1, NotEvaluated: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func (res *Results) peers() []string {
	var p []string
	for _, s := range res.Systems {
		if s != "rafting" {
			p = append(p, s)
		}
	}
	return p
}

// DisplayName is how the report names a system.
func DisplayName(system string) string {
	switch system {
	case "rafting":
		return "Rafting"
	case "etcd":
		return "etcd"
	case "zookeeper":
		return "ZooKeeper"
	}
	return system
}

// Table writes w's Markdown table: a row per metric, a column per system,
// then Rafting's advantage over each peer.
func (w *Workload) Table(systems []string) string {
	var b strings.Builder
	peers := slices.DeleteFunc(slices.Clone(systems), func(s string) bool { return s == "rafting" })
	b.WriteString("| |")
	for _, s := range systems {
		b.WriteString(" " + DisplayName(s) + " |")
	}
	for _, p := range peers {
		b.WriteString(" Rafting vs " + DisplayName(p) + " |")
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---|", len(systems)+len(peers)))
	b.WriteString("\n")
	if w.Kind == KindLatency && w.hasSettings() {
		b.WriteString("| setting |")
		for _, s := range systems {
			r := w.Run(s)
			switch {
			case r == nil || r.Setting == "":
				b.WriteString(" — |")
			case r.Lease > 0:
				fmt.Fprintf(&b, " %s, lease %s |", r.Setting, FormatLease(r.Lease))
			default:
				fmt.Fprintf(&b, " %s |", r.Setting)
			}
		}
		b.WriteString(strings.Repeat(" |", len(peers)))
		b.WriteString("\n")
	}
	for _, m := range w.metrics() {
		if m.optional && !slices.ContainsFunc(w.Runs, func(r *Run) bool { _, ok := m.value(r); return ok }) {
			continue
		}
		fmt.Fprintf(&b, "| %s |", m.name)
		vals := map[string]float64{}
		for _, s := range systems {
			r := w.Run(s)
			v, ok := 0.0, false
			if r != nil {
				v, ok = m.value(r)
			}
			switch {
			case ok:
				vals[s] = v
				fmt.Fprintf(&b, " %s |", m.format(v))
			case r != nil && r.NotRun != "":
				b.WriteString(" not run |")
			default:
				b.WriteString(" — |")
			}
		}
		rv, rok := vals["rafting"]
		for _, p := range peers {
			pv, pok := vals[p]
			if rok && pok && !m.noRatio && w.comparable("rafting", p) {
				fmt.Fprintf(&b, " %s |", FormatRatio(Advantage(rv, pv, m.higher)))
			} else {
				b.WriteString(" — |")
			}
		}
		b.WriteString("\n")
	}
	if w.Kind != KindIdle {
		b.WriteString("| samples |")
		for _, s := range systems {
			if r := w.Run(s); r.OK() && r.Stats != nil {
				fmt.Fprintf(&b, " %d |", r.Stats.N)
			} else {
				b.WriteString(" — |")
			}
		}
		b.WriteString(strings.Repeat(" |", len(peers)))
		b.WriteString("\n")
	}
	return b.String()
}

// comparable reports whether two systems' runs of w measured the same
// thing: for idle cost, the same number of instances.
func (w *Workload) comparable(a, b string) bool {
	ra, rb := w.Run(a), w.Run(b)
	if w.Kind != KindIdle || ra == nil || rb == nil || ra.Idle == nil || rb.Idle == nil {
		return true
	}
	return ra.Idle.Instances == rb.Idle.Instances
}

func (w *Workload) hasSettings() bool {
	for _, r := range w.Runs {
		if r.Setting != "" {
			return true
		}
	}
	return false
}

// FormatLease prints a lease: "1 s", "200 ms".
func FormatLease(d time.Duration) string {
	if d >= time.Second && d%(100*time.Millisecond) == 0 {
		return strings.TrimSuffix(fmt.Sprintf("%.1f", d.Seconds()), ".0") + " s"
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

// Markdown is the report: the section RESULTS.md keeps between the
// markers, plots referenced under plotDir (relative to RESULTS.md).
func (res *Results) Markdown(plotDir string, plots map[string]string) string {
	var b strings.Builder
	b.WriteString("## Rafting vs etcd vs ZooKeeper (issues 6, 14 and 20)\n\n")
	fmt.Fprintf(&b, "`%s` — %s, took %s%s.\n\n", res.Command, res.Date.Format("2006-01-02 15:04 MST"),
		res.Took.Round(time.Second), map[bool]string{true: " (**quick mode**: fewer rounds, shorter phases)", false: ""}[res.Quick])
	fmt.Fprintf(&b, "Machine: %s, %d cores, %.1f GiB RAM", res.Machine.CPU, res.Machine.Cores, float64(res.Machine.RAMBytes)/(1<<30))
	if res.Machine.Kernel != "" {
		fmt.Fprintf(&b, ", Linux %s", res.Machine.Kernel)
	}
	b.WriteString(". Versions:")
	for i, k := range []string{"go", "rafting", "etcd", "zookeeper"} {
		if v, ok := res.Versions[k]; ok {
			sep := ","
			if i == 0 {
				sep = ""
			}
			fmt.Fprintf(&b, "%s %s %s", sep, map[string]string{"go": "Go", "rafting": "Rafting", "etcd": "etcd", "zookeeper": "ZooKeeper"}[k], v)
		}
	}
	b.WriteString(".\n\n")
	for _, n := range res.Notes {
		b.WriteString(n + "\n\n")
	}

	b.WriteString("### Targets\n\n| target | measured (Rafting vs peer) | |\n|---|---|---|\n")
	for _, v := range res.Verdicts() {
		mark := map[Status]string{Met: "**met**", Missed: "**missed**", NotEvaluated: "not evaluated"}[v.Status]
		fmt.Fprintf(&b, "| %s | %s | %s |\n", v.Goal, v.Measured, mark)
	}
	for _, v := range res.Verdicts() {
		if why := res.Why[v.Target]; v.Status == Missed && why != "" {
			fmt.Fprintf(&b, "\n**Why Rafting misses “%s”.** %s\n", v.Goal, why)
		}
	}
	b.WriteString("\n“Rafting vs X” columns: how many times better Rafting is (higher throughput; lower latency, CPU, memory); below 1× Rafting is worse.\n\n")

	for _, w := range res.Workloads {
		fmt.Fprintf(&b, "### %s\n\n%s\n\n", w.Title, w.Params)
		b.WriteString(w.Table(res.Systems))
		b.WriteString("\n")
		if v, ok := w.Verdict(res.peers()); ok {
			fmt.Fprintf(&b, "Target: %s — %s.\n\n", v.Goal, map[Status]string{Met: "**met**", Missed: "**missed**", NotEvaluated: "not evaluated"}[v.Status])
		}
		var notes []string
		for _, s := range res.Systems {
			r := w.Run(s)
			switch {
			case r == nil:
			case r.NotRun != "":
				notes = append(notes, fmt.Sprintf("- %s: not run: %s", DisplayName(s), oneLine(r.NotRun)))
			default:
				n := r.Note
				h, ok := res.How[s][w.Key]
				if !ok {
					h = res.How[s][w.Family()]
				}
				if h != "" && !strings.HasPrefix(n, h) {
					n = strings.TrimSuffix(h+". "+n, ". ")
				}
				if r.Background {
					n = strings.TrimSpace(n + " (ran concurrently with other runs: see the notes at the top)")
				}
				if n != "" {
					notes = append(notes, fmt.Sprintf("- %s: %s", DisplayName(s), n))
				}
			}
		}
		if len(notes) > 0 {
			b.WriteString(strings.Join(notes, "\n") + "\n\n")
		}
		if f, ok := plots[w.Key]; ok {
			fmt.Fprintf(&b, "![%s](%s/%s)\n\n", w.Title, plotDir, f)
		}
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// Markers delimit the peers section of RESULTS.md.
const (
	BeginMarker = "<!-- peers:begin -->"
	EndMarker   = "<!-- peers:end -->"
)

// ReplaceSection puts section between the markers of doc, or appends the
// markers and the section at the end when doc has none. Nothing outside the
// markers changes.
func ReplaceSection(doc, section string) (string, error) {
	i := strings.Index(doc, BeginMarker)
	j := strings.Index(doc, EndMarker)
	switch {
	case i < 0 && j < 0:
		sep := "\n"
		if !strings.HasSuffix(doc, "\n") && doc != "" {
			sep = "\n\n"
		}
		return doc + sep + BeginMarker + "\n" + section + EndMarker + "\n", nil
	case i < 0 || j < i:
		return "", errors.New("RESULTS.md: peers markers out of order")
	}
	return doc[:i+len(BeginMarker)] + "\n" + section + doc[j:], nil
}

// WriteSection rewrites the peers section of the file at path.
func WriteSection(path, section string) error {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	out, err := ReplaceSection(string(b), section)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(out), 0o644)
}

// SaveJSON writes res to path.
func (res *Results) SaveJSON(path string) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if err := enc.Encode(res); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// Complete adds each of want's workloads that res lacks (results saved
// before it was measured) with a run per system that says so, after the
// last workload of its family; a workload res has that has no target gets
// want's (targets set since). want's runs are not read.
func (res *Results) Complete(want []*Workload) {
	for _, w := range want {
		if i := slices.IndexFunc(res.Workloads, func(h *Workload) bool { return h.Key == w.Key }); i >= 0 {
			if h := res.Workloads[i]; h.Target == "" {
				h.Target = w.Target
			}
			continue
		}
		add := &Workload{Key: w.Key, Kind: w.Kind, Title: w.Title, Params: w.Params, Target: w.Target}
		for _, s := range res.Systems {
			add.Runs = append(add.Runs, &Run{System: s, NotRun: "not in this run: its results were saved before the workload was added"})
		}
		at := len(res.Workloads)
		for i, h := range res.Workloads {
			if h.Family() == w.Family() {
				at = i + 1
			}
		}
		res.Workloads = slices.Insert(res.Workloads, at, add)
	}
}

// LoadResults reads what SaveJSON wrote.
func LoadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &res, nil
}
