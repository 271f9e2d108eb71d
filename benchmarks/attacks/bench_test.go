package attacks

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/benchmarks/internal/bench"
)

// scale is a run's size: the knobs, or quick mode's.
type scale struct {
	quick               bool
	cycles              int
	phase, settle, warm time.Duration
	nice                int
	conns               int    // patterns 4 and 5
	instances           int    // pattern 6
	rps                 int    // mallory's requests_per_second and burst (writes_per_second half); 0: the defaults
	control             bool   // a control phase each cycle (control_test.go)
	pprof               string // a directory for the servers' CPU profiles under attack ("": none)
	trace               string // a directory for the servers' execution traces under attack ("": none)
	ops                 string // a file the victim's every operation is appended to ("": none)
}

// traced appends r's operations to s.ops, one line each: pattern, cycle,
// phase, when it went out (ms from the start of the phase's measured
// window), what, and how long it took (ms). It returns r.
func (s scale) traced(tb testing.TB, pattern string, cycle int, phase string, r victimResult) victimResult {
	if s.ops == "" {
		return r
	}
	f, err := os.OpenFile(s.ops, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		tb.Fatalf("RAFTING_ATTACKS_OPS: %v", err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	for _, op := range r.ops {
		fmt.Fprintf(w, "%s %d %s %.1f %s %.3f\n", pattern, cycle, phase, op.at.Seconds()*1000, op.kind, op.took.Seconds()*1000)
	}
	if err := w.Flush(); err != nil {
		tb.Fatalf("RAFTING_ATTACKS_OPS: %v", err)
	}
	return r
}

// knobs reads the environment, failing tb on a knob set to no value.
func knobs(tb testing.TB) scale {
	tb.Helper()
	s := scale{quick: bench.MustInt(tb, "RAFTING_ATTACKS_QUICK", 0, 0) > 0}
	cycles, phase, warm, conns, instances := 15, 2*time.Second, 5*time.Second, 6000, 10000
	if s.quick {
		cycles, phase, warm, conns, instances = 3, time.Second, time.Second, 1500, 1000
	}
	s.cycles = bench.MustInt(tb, "RAFTING_ATTACKS_CYCLES", cycles, 1)
	s.phase = bench.MustDuration(tb, "RAFTING_ATTACKS_PHASE", phase)
	s.settle = bench.MustDuration(tb, "RAFTING_ATTACKS_SETTLE", 500*time.Millisecond)
	s.warm = warm
	s.nice = bench.MustInt(tb, "RAFTING_ATTACKS_NICE", 19, -20)
	s.conns = bench.MustInt(tb, "RAFTING_ATTACKS_CONNS", conns, 1)
	s.instances = bench.MustInt(tb, "RAFTING_ATTACKS_INSTANCES", instances, 1)
	s.rps = bench.MustInt(tb, "RAFTING_ATTACKS_RPS", 0, 0)
	s.control = bench.MustInt(tb, "RAFTING_ATTACKS_CONTROL", 1, 0) > 0
	s.pprof = os.Getenv("RAFTING_ATTACKS_PPROF")
	s.trace = os.Getenv("RAFTING_ATTACKS_TRACE")
	s.ops = os.Getenv("RAFTING_ATTACKS_OPS")
	for env, dir := range map[string]string{"RAFTING_ATTACKS_PPROF": s.pprof, "RAFTING_ATTACKS_TRACE": s.trace} {
		if dir == "" {
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatalf("%s: %v", env, err)
		}
	}
	return s
}

// pattern is one attack of issue 22 as the servers now meet it.
type pattern struct {
	id, title string
	twoX      bool       // target 2× (the attacker holds the machine's connections), else 1.2×
	quotas    api.Quotas // mallory's (zero: the defaults)
	config    func(s scale) attackConfig
	setup     func(tb testing.TB, e *env, s scale) // before the victim's first phase
	// listen, for the connection floods, is what a node's listener does
	// with the pattern's connections before any request: the connection
	// control's (conncontrol_test.go; nil: no connection control).
	listen *listenConfig
}

// bigMeta is pattern 6's meta per instance: within the default
// max_meta_bytes (4,096).
const bigMeta = 4000

var patterns = []pattern{
	{id: "1", title: "refused writes: 1 MB meta of '<', invalid weights",
		config: func(scale) attackConfig { return attackConfig{Conns: 16} }},
	{id: "2", title: "keepalives, attaches for random sessions via every node",
		config: func(scale) attackConfig { return attackConfig{Conns: 64} }},
	{id: "3", title: "streams for each of 5 sessions (max_sessions 5)", quotas: api.Quotas{MaxSessions: 5},
		config: func(s scale) attackConfig {
			return attackConfig{Sessions: 5, Conns: map[bool]int{false: 500, true: 100}[s.quick]}
		}},
	{id: "4", title: "idle unauthenticated connections, one address", twoX: true, listen: unauthenticatedLimits(),
		config: func(s scale) attackConfig { return attackConfig{Conns: s.conns, Addresses: 1} }},
	{id: "4b", title: "idle unauthenticated connections, 64 addresses", twoX: true, listen: unauthenticatedLimits(),
		config: func(scale) attackConfig { return attackConfig{Conns: 15000, Addresses: 64} }},
	{id: "5", title: "over-rate reads from thousands of connections (rate 100/s)", quotas: api.Quotas{RequestsPerSecond: 100, Burst: 100},
		listen: authenticatedHold,
		config: func(s scale) attackConfig { return attackConfig{Conns: s.conns, Addresses: max(1, s.conns/8)} }},
	{id: "6", title: "one service of many instances × 4 KB meta read by 8 connections",
		config: func(scale) attackConfig { return attackConfig{Conns: 8, Service: "big", MetaBytes: bigMeta} },
		setup: func(tb testing.TB, e *env, s scale) {
			start := time.Now()
			if err := e.registerMany(e.mallory.Token, attacker, "big", s.instances, bigMeta); err != nil {
				tb.Fatal(err)
			}
			fmt.Printf("pattern 6: %d instances with %d bytes of meta registered in %v\n", s.instances, bigMeta, time.Since(start).Round(time.Millisecond))
		}},
	{id: "7", title: "made-up tokens from 150,000 source addresses", twoX: true,
		config: func(scale) attackConfig { return attackConfig{Conns: 64, Addresses: 150000} }},
	{id: "8", title: "refused writes (4,097 B meta) at the default write rate",
		config: func(scale) attackConfig { return attackConfig{Conns: 64, Rate: 1500} }},
	{id: "8b", title: "writes refused when applied (4 KB meta, unknown session), same rate",
		config: func(scale) attackConfig { return attackConfig{Conns: 64, Rate: 1500} }},
}

// outcome is what one pattern's run measured.
type outcome struct {
	p                                pattern
	alone, attacked, control         victimResult
	base                             peaks // the victim alone before any attack (warm-up and first phase)
	end                              usage // a second after the attacker ended
	peakAlone, peakAttack            peaks
	res                              attackResult
	logAlone, logAttack              uint64 // entries mallory's shard applied in the victim's alone phases, in the attacked ones
	aloneTime, attackTime            time.Duration
	cpuAlone, cpuAttack, cpuAttacker float64 // % of a core: the servers' in each side; the attacker's
	cpuControl                       float64 // % of a core: the servers' in the control phases
	// The control phases' burners, % of a core: what they burned, what
	// they were meant to (the servers' CPU beyond alone, the attacker's).
	burnedServers, burnedAttacker, meantServers, meantAttacker float64
	nice                                                       int
	loadavg                                                    string
	quietWait                                                  time.Duration // waiting for the paused attacker's connections to close
	connRun                                                    connRun       // the connection control's phases (conncontrol_test.go)
}

func (o *outcome) ratio(alone, attacked []time.Duration) float64 {
	return bench.Pct(attacked, 99) / bench.Pct(alone, 99)
}

func (o *outcome) target() float64 {
	if o.p.twoX {
		return 2
	}
	return 1.2
}

// accepted is how many of the attacker's writes were accepted.
func (o *outcome) accepted() int64 {
	return o.res.Counts["PUT 200"] + o.res.Counts["PUT 201"]
}

// answerMB is pattern 6's answer size.
func (o *outcome) answerMB() float64 {
	if n := o.res.Counts["GET 200"]; n > 0 {
		return float64(o.res.Counts["answer bytes"]) / float64(n) / (1 << 20)
	}
	return 0
}

// unknown is how many of the attacker's writes had no answer (abandoned
// when its phase ended, cut, timed out, 504): each may have been applied.
func (o *outcome) unknown() int64 {
	return o.res.Counts["PUT abandoned"] + o.res.Counts["PUT cut"] + o.res.Counts["PUT timeout"] + o.res.Counts["PUT 504"]
}

// extraEntries is what mallory's shard applied under the attack beyond
// its accepted writes, those of unknown outcome, and its rate while paused
// (session renewals).
func (o *outcome) extraEntries() float64 {
	rate := float64(o.logAlone) / o.aloneTime.Seconds()
	return max(0, float64(o.logAttack)-float64(o.accepted()+o.unknown())-rate*o.attackTime.Seconds())
}

func (o *outcome) rssGrowth() float64 {
	g := 0.0
	for i := range o.base.rssMB {
		g = max(g, o.peakAttack.rssMB[i]-o.base.rssMB[i])
	}
	return g
}

func (o *outcome) rssBound() float64 { return 64 + 2*o.answerMB() }

func (o *outcome) dirGrowth() float64 { return max(o.peakAttack.dirMB, o.end.dirMB) - o.base.dirMB }

func (o *outcome) dirBound() float64 {
	return 32 + 3*float64(o.accepted()+o.unknown())*bigMeta/(1<<20)
}

// misses lists the targets the run missed (empty: it met them all).
func (o *outcome) misses() []string {
	var m []string
	if r := o.ratio(o.alone.reads, o.attacked.reads); r > o.target() {
		m = append(m, fmt.Sprintf("read p99 %.2f×", r))
	}
	if r := o.ratio(o.alone.writes, o.attacked.writes); r > o.target() {
		m = append(m, fmt.Sprintf("write p99 %.2f×", r))
	}
	if f := failed(o.attacked); f > failed(o.alone) {
		m = append(m, fmt.Sprintf("%d victim requests failed", f))
	}
	if g := o.rssGrowth(); g > o.rssBound() {
		m = append(m, fmt.Sprintf("RSS +%.0f MB", g))
	}
	if g := o.dirGrowth(); g > o.dirBound() {
		m = append(m, fmt.Sprintf("data +%.0f MB", g))
	}
	if x := o.extraEntries(); x > 3 {
		m = append(m, fmt.Sprintf("%.0f refused writes in the log", x))
	}
	return m
}

func failed(r victimResult) int {
	n := 0
	for _, v := range r.failed {
		n += v
	}
	return n
}

func sent(r victimResult) int {
	n := 0
	for _, v := range r.sent {
		n += v
	}
	return n
}

// counts formats the attacker's tally as rates, most frequent first.
func (o *outcome) counts(limit int) string {
	parts := rates(o.res.Counts, o.res.Secs, limit)
	for k, v := range o.res.Counts {
		if strings.HasPrefix(k, "max ") {
			parts = append(parts, fmt.Sprintf("%s %d", k, v))
		}
	}
	if mb := o.answerMB(); mb > 0 {
		parts = append(parts, fmt.Sprintf("answer %.1f MB", mb))
	}
	if o.p.id == "3" {
		parts = append(parts, fmt.Sprintf("servers' max streams %d", o.peakAttack.streams))
	}
	return strings.Join(parts, " · ")
}

// rates formats a tally of secs as rates, most frequent first (limit:
// at most that many, 0 all), leaving out its maxima and answer bytes.
func rates(counts map[string]int64, secs float64, limit int) []string {
	type kv struct {
		k string
		v int64
	}
	var l []kv
	for k, v := range counts {
		if strings.HasPrefix(k, "max ") || k == "answer bytes" || v == 0 {
			continue
		}
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
	var parts []string
	for i, x := range l {
		if limit > 0 && i == limit {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, fmt.Sprintf("%s %s/s", x.k, rate(float64(x.v)/secs)))
	}
	return parts
}

func rate(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func ms(d []time.Duration) string {
	v := bench.Pct(d, 99)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func ints(v []int) string {
	return fmt.Sprint(slices.Max(v))
}

// row is the pattern's line of the summary table.
func (o *outcome) row() string {
	met := "**yes**"
	if m := o.misses(); len(m) > 0 {
		met = "no: " + strings.Join(m, ", ")
	}
	maxRSS := func(v []float64) float64 { return slices.Max(v) }
	if v := o.verdict(); v != "" {
		met += " (" + v + ")"
	}
	return fmt.Sprintf("| %s | %s | %s → %s ms (%.2f×) | %s → %s ms (%.2f×) | %s / %s | %.0f + %.0f %% | %s | %s → %s ms | %d / %d | %.0f → %.0f %% | %.0f → %.0f | %s → %s | %+.1f | %s | %.0f (%d accepted, %d unknown) | %s |",
		o.p.id, o.p.title,
		ms(o.alone.reads), ms(o.attacked.reads), o.ratio(o.alone.reads, o.attacked.reads),
		ms(o.alone.writes), ms(o.attacked.writes), o.ratio(o.alone.writes, o.attacked.writes),
		o.controlCell(o.alone.reads, o.control.reads), o.controlCell(o.alone.writes, o.control.writes),
		o.burnedServers, o.burnedAttacker, o.connCell(),
		ms(o.alone.kas), ms(o.attacked.kas),
		failed(o.alone), failed(o.attacked), o.cpuAlone, o.cpuAttack,
		maxRSS(o.base.rssMB), maxRSS(o.peakAttack.rssMB), ints(o.base.fds), ints(o.peakAttack.fds),
		o.dirGrowth(), o.counts(4), math.Round(o.extraEntries()), o.accepted(), o.unknown(), met)
}

const tableHead = "| # | attack | victim read p99 alone → attacked | victim write p99 alone → attacked | control: victim read / write p99 under the attack's CPU from outside | control's CPU burned (nice 0 + attacker's nice, of a core) | connection control: victim read / write p99 under the attack's connections from outside | victim forwarded keepalive p99 | victim failed alone / attacked | servers' CPU alone → attacked (of a core) | RSS MB (most of a server) before → peak attacked | open files (most) before → peak | data dirs MB | attacker's requests (per s of attack) | refused writes in the log (its writes: accepted, unknown) | targets met |\n" +
	"|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"

var (
	resultsMu sync.Mutex
	results   []*outcome
)

// serverCPU is the three servers' CPU time.
func (e *env) serverCPU() (t time.Duration) {
	for _, s := range e.c.Servers {
		c, _ := bench.Usage(s.Proc.PID())
		t += c
	}
	return t
}

func loadavg() string {
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) != nil {
		return "?"
	}
	f := func(v uint64) float64 { return float64(v) / 65536 }
	return fmt.Sprintf("%.2f %.2f %.2f", f(si.Loads[0]), f(si.Loads[1]), f(si.Loads[2]))
}

// runPattern runs one pattern on a cluster of its own.
func runPattern(b *testing.B, p pattern, s scale) *outcome {
	q := p.quotas
	if s.rps > 0 {
		q.RequestsPerSecond, q.Burst, q.WritesPerSecond = int64(s.rps), int64(s.rps), int64(max(1, s.rps/2))
	}
	var args []string
	if s.pprof != "" || s.trace != "" {
		args = append(args, "--pprof")
	}
	e := startEnv(b, q, args...)
	if p.setup != nil {
		p.setup(b, e, s)
	}
	session, kaNode := e.openVictimSession()
	ctx := context.Background()
	e.runVictim(ctx, s.warm, session, kaNode) // warm up

	cfg := p.config(s)
	cfg.Pattern, cfg.Addrs, cfg.Token, cfg.Tenant, cfg.Victim = p.id, e.addrs, e.mallory.Token, attacker, victim
	f := startAttacker(b, cfg, s.nice)
	o := &outcome{p: p, alone: newVictimResult(), attacked: newVictimResult(), control: newVictimResult(), loadavg: loadavg(), nice: s.nice}
	attackerFds := openFiles(f.PID())
	smp := e.sample(p.id == "3")
	var cpuAlone, cpuAttack, cpuAttacker, cpuControl time.Duration
	var wallAlone, wallAttack, wallControl time.Duration
	var burnedServers, burnedAttacker, meantServers, meantAttacker time.Duration
	a := e.applied(attacker)
	var opens []int64 // the attacked phases' connections by paceSlot, summed: the connection control's pace
	for cycle := range s.cycles {
		t0, c0 := time.Now(), e.serverCPU()
		o.alone.add(s.traced(b, p.id, cycle, "alone", e.runVictim(ctx, s.phase, session, kaNode)))
		cpuAlone, wallAlone = cpuAlone+e.serverCPU()-c0, wallAlone+time.Since(t0)
		a1 := e.applied(attacker)
		o.logAlone += a1 - a
		o.aloneTime += time.Since(t0)

		t1 := time.Now()
		smp.set(attacked)
		f.Signal(syscall.SIGUSR2)
		time.Sleep(s.settle)
		t2, c2 := time.Now(), e.serverCPU()
		fc2, _ := bench.Usage(f.PID())
		prof := e.profile(s, p.id, cycle)
		o.attacked.add(s.traced(b, p.id, cycle, "attacked", e.runVictim(ctx, s.phase, session, kaNode)))
		cpuAttack, wallAttack = cpuAttack+e.serverCPU()-c2, wallAttack+time.Since(t2)
		prof()
		fc3, _ := bench.Usage(f.PID())
		cpuAttacker += fc3 - fc2
		lines := len(f.Lines())
		f.Signal(syscall.SIGUSR1)
		for i, n := range phaseOpens(b, f, lines) {
			if i == len(opens) {
				opens = append(opens, 0)
			}
			opens[i] += n
		}
		o.quietWait += quiet(f.PID(), attackerFds)
		time.Sleep(s.settle)
		smp.set(alone)
		a = e.applied(attacker)
		o.logAttack += a - a1
		o.attackTime += time.Since(t1)

		if s.control {
			// The CPU of the attack so far, burned from outside.
			srv, att := o.controlShares(cpuAlone, cpuAttack, cpuAttacker, wallAlone, wallAttack)
			bs, ba := startBurner(b, srv, 0), startBurner(b, att, s.nice)
			time.Sleep(s.settle)
			t3, c3 := time.Now(), e.serverCPU()
			o.control.add(s.traced(b, p.id, cycle, "control", e.runVictim(ctx, s.phase, session, kaNode)))
			wall := time.Since(t3)
			cpuControl, wallControl = cpuControl+e.serverCPU()-c3, wallControl+wall
			burnedServers, burnedAttacker = burnedServers+bs.stop(), burnedAttacker+ba.stop()
			meantServers += time.Duration(srv * float64(wall))
			meantAttacker += time.Duration(att * float64(wall))
			time.Sleep(s.settle)
			a = e.applied(attacker) // the control's entries are the victim's and the paused tenant's
		}
		if s.control && p.listen != nil {
			// The attack's connections so far, opened outside Rafting.
			e.connControl(b, &o.connRun, p, cfg, pace(opens, cycle+1), s, cycle, session, kaNode)
			time.Sleep(s.settle)
			a = e.applied(attacker)
		}
	}
	o.res = stopAttacker(b, f)
	time.Sleep(time.Second)
	smp.end()
	o.end = e.usage()
	o.base, o.peakAlone, o.peakAttack = smp.pre, smp.alone, smp.attack
	pct := func(cpu, wall time.Duration) float64 { return 100 * cpu.Seconds() / wall.Seconds() }
	o.cpuAlone, o.cpuAttack, o.cpuAttacker = pct(cpuAlone, wallAlone), pct(cpuAttack, wallAttack), pct(cpuAttacker, wallAttack)
	if wallControl > 0 {
		// The burners ran over the control's victim phase and its
		// settling: their CPU is taken over their own time, approximately
		// the phase's plus a settle.
		burnWall := wallControl + time.Duration(s.cycles)*s.settle
		o.cpuControl = pct(cpuControl, wallControl)
		o.burnedServers, o.burnedAttacker = pct(burnedServers, burnWall), pct(burnedAttacker, burnWall)
		o.meantServers, o.meantAttacker = pct(meantServers, wallControl), pct(meantAttacker, wallControl)
	}
	return o
}

// report prints what the run measured (on stdout: a benchmark's log is cut
// to ten lines) and reports its metrics.
func (o *outcome) report(b *testing.B) {
	logf := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	logf("pattern %s: %s", o.p.id, o.p.title)
	logf("  victim alone: %d sent, %d failed %v; under attack: %d sent, %d failed %v", sent(o.alone), failed(o.alone), o.alone.errs, sent(o.attacked), failed(o.attacked), o.attacked.errs)
	logf("  victim p99 alone / attacked: read %s / %s ms, write %s / %s ms, forwarded keepalive %s / %s ms, new-connection read %s / %s ms",
		ms(o.alone.reads), ms(o.attacked.reads), ms(o.alone.writes), ms(o.attacked.writes), ms(o.alone.kas), ms(o.attacked.kas), ms(o.alone.fresh), ms(o.attacked.fresh))
	logf("  victim operations over 100 ms alone: %q", o.alone.slow)
	logf("  victim operations over 100 ms attacked: %q", o.attacked.slow)
	logf("  servers: RSS MB before any attack %.0f, peak alone %.0f, peak attacked %.0f, end %.0f; open files before %v, peak alone %v, peak attacked %v, end %v",
		o.base.rssMB, o.peakAlone.rssMB, o.peakAttack.rssMB, o.end.rssMB, o.base.fds, o.peakAlone.fds, o.peakAttack.fds, o.end.fds)
	logf("  data dirs MB (bytes in files): before any attack %.1f, peak attacked %.1f, end %.1f (bound +%.0f); RSS growth %.0f MB (bound %.0f)",
		o.base.dirMB, o.peakAttack.dirMB, o.end.dirMB, o.dirBound(), o.rssGrowth(), o.rssBound())
	logf("  servers' CPU alone %.0f %%, attacked %.0f %% of a core; attacker %.0f %% (nice); load average at the start %s; waited %v for the paused attacker's connections to close",
		o.cpuAlone, o.cpuAttack, o.cpuAttacker, o.loadavg, o.quietWait.Round(time.Millisecond))
	logf("  control (the attack's CPU burned outside Rafting, attacker paused): victim p99 %s; servers' CPU %.0f %%",
		o.controlNote(), o.cpuControl)
	if o.p.listen != nil {
		logf("  connection control (the attack's connections opened, held and closed outside Rafting, attacker paused): victim p99 %s", o.connNote())
	}
	if v := o.verdict(); v != "" {
		logf("  over the target because of: %s", v)
	}
	logf("  attacker, %.1f s of attack: %s", o.res.Secs, o.counts(0))
	logf("  mallory's shard applied %d entries in %.1f s alone, %d in %.1f s attacked; %d writes accepted, %d of unknown outcome; beyond them: %.1f",
		o.logAlone, o.aloneTime.Seconds(), o.logAttack, o.attackTime.Seconds(), o.accepted(), o.unknown(), o.extraEntries())
	if m := o.misses(); len(m) > 0 {
		logf("  MISSED: %s", strings.Join(m, "; "))
	}
	b.ReportMetric(bench.Pct(o.alone.reads, 99), "read-p99-alone-ms")
	b.ReportMetric(bench.Pct(o.attacked.reads, 99), "read-p99-attacked-ms")
	b.ReportMetric(bench.Pct(o.alone.writes, 99), "write-p99-alone-ms")
	b.ReportMetric(bench.Pct(o.attacked.writes, 99), "write-p99-attacked-ms")
	b.ReportMetric(o.ratio(o.alone.reads, o.attacked.reads), "read-p99-ratio")
	b.ReportMetric(o.ratio(o.alone.writes, o.attacked.writes), "write-p99-ratio")
	if len(o.control.reads) > 0 {
		b.ReportMetric(o.ratio(o.alone.reads, o.control.reads), "read-p99-control-ratio")
		b.ReportMetric(o.ratio(o.alone.writes, o.control.writes), "write-p99-control-ratio")
	}
	if c := o.connRun.victim; len(c.reads) > 0 {
		b.ReportMetric(o.ratio(o.alone.reads, c.reads), "read-p99-conncontrol-ratio")
		b.ReportMetric(o.ratio(o.alone.writes, c.writes), "write-p99-conncontrol-ratio")
	}
	b.ReportMetric(float64(failed(o.attacked)), "victim-failed")
	b.ReportMetric(o.rssGrowth(), "rss-growth-MB")
	b.ReportMetric(float64(slices.Max(o.peakAttack.fds)), "open-files-peak")
	b.ReportMetric(o.dirGrowth(), "data-growth-MB")
	b.ReportMetric(o.extraEntries(), "refused-in-log")
}

func BenchmarkAttacks(b *testing.B) {
	s := knobs(b)
	start, load := time.Now().UTC(), loadavg()
	for _, p := range patterns {
		b.Run(p.id, func(b *testing.B) {
			o := runPattern(b, p, s)
			o.report(b)
			resultsMu.Lock()
			results = append(results, o)
			resultsMu.Unlock()
		})
	}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 {
		return
	}
	var t strings.Builder
	fmt.Fprintf(&t, "attack suite, %s UTC to %s UTC, quick=%v, %d cycles of %v a side, attacker nice %d; load average %s at the start, %s at the end\n",
		start.Format("2006-01-02 15:04:05"), time.Now().UTC().Format("15:04:05"), s.quick, s.cycles, s.phase, s.nice, load, loadavg())
	t.WriteString(tableHead + "\n")
	for _, o := range results {
		t.WriteString(o.row() + "\n")
	}
	fmt.Print(t.String())
	results = nil
}
