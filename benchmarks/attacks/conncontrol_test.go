package attacks

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/benchmarks/internal/bench"
	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/server/config"
)

// The connection control, for the connection floods (4, 4b, 5): the
// attacker paused, the attack's connections are opened, held and closed
// outside Rafting, against a listener of the control's own, while the
// victim runs against the servers as in the other phases. The CPU control
// cannot tell the kernel's work on the connections (accepts, handshakes,
// closes: softirq work a nice value does not weigh) from Rafting's: its
// burners do no networking. This control does that network work and
// nothing of Rafting's; a ratio it reproduces is the machine's.
//
// What makes it the same work, and fair:
//   - The same connections: the pattern's source addresses
//     (floodSource) and as many connections by each moment of the phase as
//     the attacker opened in its attacked phases so far (their mean, by
//     paceSlot since the phase began, counted by the attacker's gate): the
//     attacker's burst at each resume, then its steady reconnections.
//     Paced, not as fast as it goes: without the servers' work to slow it
//     the dialer would open pattern 5's thousands in the settle before the
//     victim is measured, and the control would understate the attack.
//   - The same closes: the listener does what a node's listener does
//     before any request arrives (server/httpapi's Limit, at
//     config.DefaultConfig's limits for the unauthenticated patterns 4 and
//     4b): it accepts, reads nothing, closes a connection past the
//     per-address or total cap as it is accepted (evicting the heaviest
//     address's oldest when the total is full and the new one's address is
//     lighter), and closes one held past the auth timeout. Pattern 5's
//     connections authenticate with their first request, so it holds
//     them all. The dialer holds each as the attacker's idle workers do,
//     until the listener closes it or the phase ends.
//   - The same number of accepting processes: one listener process per
//     node, so that under CFS the accepts get the three servers' share of
//     a loaded machine, not one process's.
//   - The same priorities: the listener at nice 0, as the servers run;
//     the dialer (this test binary as an attacker of pattern "conns") at
//     the attacker's nice. Loopback delivers a SYN, its SYN-ACK and ACK in
//     softirq on the sender's side, so most of the handshake is charged
//     where the attacker's connects run, whatever its nice, as in the
//     attack.
//   - Nothing else: no requests, no TLS, no burner (the CPU control
//     burns the attack's CPU; the servers' share of it includes their
//     accepts and closes, which this control does itself), and no
//     goroutine for a held connection (a connection and a timer, as the
//     server's waiter holds it).
//
// If the victim's p99 under the attack comes from Rafting's handling of the
// connections (its listener's bookkeeping, net/http, the refusals), this
// control shows a much lower ratio than the attack, and the verdict says
// "more than the CPU or the connections".

// listenEnv, when set in the environment (a listenConfig in JSON), makes
// this test binary one of the connection control's listeners (one a
// node): it listens on loopback, prints listeningLine and its address, holds and closes what
// it accepts as listenConfig says until SIGTERM, and then prints its tally
// as JSON.
const listenEnv = "RAFTING_LISTEN"

// listeningLine prefixes the listener's first line: its address.
const listeningLine = "listening "

// listenConfig is what a node's listener does with connections before
// any request: its caps on them (0: none), from one source address and in
// total, and how long it holds one (0: until the client closes it).
type listenConfig struct {
	PerAddress int           `json:"per_address"`
	Total      int           `json:"total"`
	Timeout    time.Duration `json:"timeout"`
}

// unauthenticatedLimits is what a node at its defaults does with
// connections that never send a request (patterns 4 and 4b).
func unauthenticatedLimits() *listenConfig {
	c := config.DefaultConfig()
	return &listenConfig{PerAddress: c.MaxUnauthenticatedPerAddress, Total: c.MaxUnauthenticated, Timeout: c.AuthTimeout}
}

// authenticatedHold is what a node does with connections that make a
// request with a valid token at once (pattern 5): it holds them.
var authenticatedHold = &listenConfig{}

// runListenerProcess is the connection control's listener's main.
func runListenerProcess(v string) int {
	var cfg listenConfig
	if err := json.Unmarshal([]byte(v), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "listener: bad config", v, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	h := &holder{cfg: cfg, perAddr: map[string]*list.List{}, t: &tally{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "listener:", err)
		return 1
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		h.serve(ln)
	}()
	fmt.Println(listeningLine + ln.Addr().String())
	<-ctx.Done()
	ln.Close()
	<-served
	h.closeAll()
	b, _ := json.Marshal(h.t.snapshot())
	fmt.Println(string(b))
	return 0
}

// holder is the listener's connections and what it did with them.
type holder struct {
	cfg     listenConfig
	t       *tally
	mu      sync.Mutex
	held    int
	perAddr map[string]*list.List // held connections by source address, oldest first
}

// heldConn is a connection the listener holds.
type heldConn struct {
	c     net.Conn
	host  string
	elem  *list.Element // nil once it is let go
	timer *time.Timer
}

// serve accepts until ln is closed, waiting on a temporary error as the
// server's listener does.
func (h *holder) serve(ln net.Listener) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			h.t.add("accept error", 1)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		h.t.add("accepts", 1)
		h.admit(c)
	}
}

// admit holds c or closes it, as server/httpapi's connCounts.admit does
// with an unauthenticated connection.
func (h *holder) admit(c net.Conn) {
	host := c.RemoteAddr().(*net.TCPAddr).IP.String()
	h.mu.Lock()
	mine := h.perAddr[host]
	refuse := h.cfg.PerAddress > 0 && mine != nil && mine.Len() >= h.cfg.PerAddress
	var evict *heldConn
	if !refuse && h.cfg.Total > 0 && h.held >= h.cfg.Total {
		var heaviest *list.List
		for _, q := range h.perAddr {
			if heaviest == nil || q.Len() > heaviest.Len() {
				heaviest = q
			}
		}
		if heaviest == nil || mine != nil && mine.Len() >= heaviest.Len() {
			refuse = true
		} else {
			evict = heaviest.Front().Value.(*heldConn)
			h.dropLocked(evict)
		}
	}
	if refuse {
		h.mu.Unlock()
		c.Close()
		h.t.add("closed at accept", 1)
		return
	}
	hc := &heldConn{c: c, host: host}
	if mine == nil {
		mine = list.New()
		h.perAddr[host] = mine
	}
	hc.elem = mine.PushBack(hc)
	h.held++
	h.t.max("max held", int64(h.held))
	if h.cfg.Timeout > 0 {
		hc.timer = time.AfterFunc(h.cfg.Timeout, func() {
			if h.drop(hc) {
				hc.c.Close()
				h.t.add("closed at the timeout", 1)
			}
		})
	}
	h.mu.Unlock()
	h.t.add("accepted", 1)
	if evict != nil {
		evict.c.Close()
		h.t.add("evicted", 1)
	}
}

// drop lets hc go; false when it was already let go.
func (h *holder) drop(hc *heldConn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dropLocked(hc)
}

func (h *holder) dropLocked(hc *heldConn) bool {
	if hc.elem == nil {
		return false
	}
	q := h.perAddr[hc.host]
	q.Remove(hc.elem)
	if q.Len() == 0 {
		delete(h.perAddr, hc.host)
	}
	hc.elem = nil
	h.held--
	if hc.timer != nil {
		hc.timer.Stop()
	}
	return true
}

// closeAll closes every connection held.
func (h *holder) closeAll() {
	h.mu.Lock()
	var all []*heldConn
	for _, q := range h.perAddr {
		for e := q.Front(); e != nil; e = e.Next() {
			all = append(all, e.Value.(*heldConn))
		}
	}
	for _, hc := range all {
		h.dropLocked(hc)
	}
	h.mu.Unlock()
	for _, hc := range all {
		hc.c.Close()
	}
}

// connect is the connection control's dialer (attack pattern "conns"): in
// each phase it opens pattern cfg.Of's connections — from the source
// address of its cfg.Conns workers in turn over cfg.Addresses, to cfg.Addrs
// in turn — as many by each moment of the phase as cfg.Pace allows, and
// holds each as idle holds an attacker's (until the listener closes it or
// the phase ends). It sends nothing.
func connect(cfg attackConfig, g *gate, t *tally) {
	var wg sync.WaitGroup
	defer wg.Wait()
	cum := make([]float64, len(cfg.Pace)+1) // cum[k]: the connections by slot k
	for k, n := range cfg.Pace {
		cum[k+1] = cum[k] + n
	}
	allowed := func(el time.Duration) int {
		k := int(el / paceSlot)
		if k >= len(cfg.Pace) {
			return int(cum[len(cfg.Pace)])
		}
		return int(cum[k] + cfg.Pace[k]*float64(el%paceSlot)/float64(paceSlot))
	}
	for {
		pctx, ok := g.phase()
		if !ok {
			return
		}
		start := time.Now()
		for i := 0; pctx.Err() == nil; {
			if i >= allowed(time.Since(start)) {
				sleep(pctx, time.Millisecond)
				continue
			}
			d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: floodSource(cfg.Of, i%max(cfg.Conns, 1), cfg.Addresses)}}
			addr := cfg.Addrs[i%len(cfg.Addrs)]
			t.add("dialed", 1)
			wg.Go(func() { idle(pctx, g, d, addr, t) })
			i++
		}
	}
}

// connRun is what the connection control phases did, over all of them.
type connRun struct {
	victim                 victimResult
	dialer                 attackResult // its opens summed over the phases
	listener               map[string]int64
	wall                   time.Duration // the victim's measured windows
	dialerCPU, listenerCPU time.Duration // over those windows
}

// connControl runs one connection control phase for pattern p (whose
// attacker is told cfg): the attacker paused, the listener (nice 0) and
// the dialer (at s.nice) start, the dialer resumes and opens at pace,
// and after the settle the victim is measured for a phase.
func (e *env) connControl(tb testing.TB, r *connRun, p pattern, cfg attackConfig, pace []float64, s scale, cycle int, session string, kaNode int) {
	tb.Helper()
	if r.victim.sent == nil {
		r.victim = newVictimResult()
	}
	js, _ := json.Marshal(p.listen)
	var lns []*proctest.Proc
	var addrs []string
	for range e.addrs {
		ln := startChild(tb, "listener", []string{listenEnv + "=" + string(js)}, 0, 30*time.Second)
		lns = append(lns, ln)
		addrs = append(addrs, strings.TrimPrefix(ln.Lines()[0], listeningLine))
	}
	cpu := func() (t time.Duration) {
		for _, ln := range lns {
			c, _ := bench.Usage(ln.PID())
			t += c
		}
		return t
	}
	d := startAttacker(tb, attackConfig{Pattern: "conns", Of: p.id, Addrs: addrs, Conns: cfg.Conns, Addresses: cfg.Addresses, Pace: pace}, s.nice)
	d.Signal(syscall.SIGUSR2)
	time.Sleep(s.settle)
	t0 := time.Now()
	l0 := cpu()
	d0, _ := bench.Usage(d.PID())
	r.victim.add(s.traced(tb, p.id, cycle, "connections", e.runVictim(context.Background(), s.phase, session, kaNode)))
	l1 := cpu()
	d1, _ := bench.Usage(d.PID())
	r.wall += time.Since(t0)
	r.dialerCPU += d1 - d0
	r.listenerCPU += l1 - l0
	res := stopAttacker(tb, d)
	if r.listener == nil {
		r.listener = map[string]int64{}
	}
	for _, ln := range lns {
		ln.Stop(10 * time.Second)
		var lt map[string]int64
		if lines := ln.Lines(); len(lines) < 2 || json.Unmarshal([]byte(lines[len(lines)-1]), &lt) != nil {
			tb.Fatalf("the listener printed no tally: %q\n%s", lines, ln.Stderr())
		}
		for k, v := range lt {
			if strings.HasPrefix(k, "max ") {
				r.listener[k] = max(r.listener[k], v) // a node's most
			} else {
				r.listener[k] += v
			}
		}
	}
	r.dialer.add(res)
}

// add sums o into r: counts, time, opens and phases.
func (r *attackResult) add(o attackResult) {
	if r.Counts == nil {
		r.Counts = map[string]int64{}
	}
	for k, v := range o.Counts {
		if strings.HasPrefix(k, "max ") {
			r.Counts[k] = max(r.Counts[k], v)
		} else {
			r.Counts[k] += v
		}
	}
	r.Secs += o.Secs
	for len(r.Opens) < len(o.Opens) {
		r.Opens = append(r.Opens, 0)
	}
	for i, n := range o.Opens {
		r.Opens[i] += n
	}
	r.Phases += o.Phases
}

// perPhase is the connections opened a phase, and of them in its first d.
func (r *attackResult) perPhase(d time.Duration) (all, first float64) {
	if r.Phases == 0 {
		return 0, 0
	}
	for i, n := range r.Opens {
		all += float64(n)
		if time.Duration(i)*paceSlot < d {
			first += float64(n)
		}
	}
	return all / float64(r.Phases), first / float64(r.Phases)
}

// pace is the mean of the attacked phases' opens so far (sum over
// phases), the dialer's pace.
func pace(sum []int64, phases int) []float64 {
	p := make([]float64, len(sum))
	for i, n := range sum {
		p[i] = float64(n) / float64(max(phases, 1))
	}
	return p
}

// connCell is the connection control's cell of the summary table.
func (o *outcome) connCell() string {
	r := &o.connRun
	if len(r.victim.reads) == 0 {
		return "—"
	}
	return o.controlCell(o.alone.reads, r.victim.reads) + " / " + o.controlCell(o.alone.writes, r.victim.writes)
}

// phaseOpens waits (up to 10 s) for the line the attacker f prints when it
// pauses, past its first n lines, and returns the phase's connections by
// paceSlot since it began.
func phaseOpens(tb testing.TB, f *proctest.Proc, n int) []int64 {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		lines := f.Lines()
		for _, l := range lines[min(n, len(lines)):] {
			if v, ok := strings.CutPrefix(l, opensLine); ok {
				var opens []int64
				if err := json.Unmarshal([]byte(v), &opens); err != nil {
					tb.Fatalf("the attacker's opens line %q: %v", l, err)
				}
				return opens
			}
		}
	}
	tb.Fatalf("the attacker printed no opens line in 10 s after it was paused: %q", f.Lines())
	return nil
}

// connNote is the connection control's line of a pattern's report.
func (o *outcome) connNote() string {
	r := &o.connRun
	if len(r.victim.reads) == 0 {
		return "no connection control phase"
	}
	phases := float64(max(r.dialer.Phases, 1))
	aAll, aFirst := o.res.perPhase(time.Second)
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / r.wall.Seconds() }
	var lt []string
	for _, k := range []string{"accepts", "accepted", "closed at accept", "evicted", "closed at the timeout", "accept error"} {
		if v := r.listener[k]; v > 0 {
			lt = append(lt, fmt.Sprintf("%s %.0f", k, float64(v)/phases))
		}
	}
	return fmt.Sprintf("read %s ms (%.2f×), write %s ms (%.2f×); dialed %.0f a phase at the pace of the attack's opens (%.0f a phase, %.0f in its first second); dialer: %s; listeners a phase: %s, a node's most held %d; CPU: listener %.0f %% at nice 0 + dialer %.0f %% at nice %d (the attack: servers +%.0f %%, attacker %.0f %%)",
		ms(r.victim.reads), o.ratio(o.alone.reads, r.victim.reads), ms(r.victim.writes), o.ratio(o.alone.writes, r.victim.writes),
		float64(r.dialer.Counts["dialed"])/phases, aAll, aFirst, strings.Join(rates(r.dialer.Counts, r.dialer.Secs, 0), " · "), strings.Join(lt, ", "), r.listener["max held"],
		pct(r.listenerCPU), pct(r.dialerCPU), o.nice, o.cpuAttack-o.cpuAlone, o.cpuAttacker)
}
