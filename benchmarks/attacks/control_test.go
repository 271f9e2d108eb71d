package attacks

import (
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/benchmarks/internal/bench"
	"github.com/rafting/rafting/internal/proctest"
)

// The control phase: the attacker paused, processes outside Rafting burn
// the CPU the attack cost — the servers' CPU beyond what they spent with
// the victim alone, at the servers' priority (nice 0), and the attacker's
// own, at its nice — while the victim is measured as in the other phases.
// The victim's p99 under that load, against its p99 alone, is what the
// same CPU taken from this machine's two cores does to it whoever takes
// it; the attack's ratio beside it shows how much of the attack's is that.

// burnEnv, when set in the environment ("<share of a core>"), makes this
// test binary a burner: it busy-loops that share of a core (above 1: over
// that many threads) until SIGTERM, and then prints the CPU it used.
const burnEnv = "RAFTING_BURN"

// burnPeriod is the longest a burner's thread spins or sleeps at once,
// burnCatchUp the most CPU it is ever behind its share.
const (
	burnPeriod  = 5 * time.Millisecond
	burnCatchUp = 50 * time.Millisecond
)

// threadCPU is the calling OS thread's CPU time.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runBurnerProcess is the burner process's main.
func runBurnerProcess(v string) int {
	share, err := strconv.ParseFloat(v, 64)
	if err != nil || share <= 0 || share > 64 {
		fmt.Fprintln(os.Stderr, "burner: bad share", v)
		return 2
	}
	threads := int(math.Ceil(share))
	runtime.GOMAXPROCS(threads + 1)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	done := make(chan struct{})
	var wg sync.WaitGroup
	perThread := share / float64(threads)
	for range threads {
		wg.Go(func() {
			// Each thread keeps its own CPU time (RUSAGE_THREAD) at
			// perThread of the time since it started: it spins while it
			// is behind, a period at most, and sleeps a period when it is
			// not. A thread the scheduler held back catches up at most
			// burnCatchUp: a backlog is not burned all at once.
			runtime.LockOSThread()
			start, cpu0 := time.Now(), threadCPU()
			for {
				select {
				case <-done:
					return
				default:
				}
				behind := time.Duration(perThread*float64(time.Since(start))) - (threadCPU() - cpu0)
				if behind <= 0 {
					time.Sleep(burnPeriod)
					continue
				}
				if behind > burnCatchUp {
					cpu0 += behind - burnCatchUp // forgiven
					behind = burnCatchUp
				}
				end := time.Now().Add(min(behind, burnPeriod))
				for time.Now().Before(end) {
				}
			}
		})
	}
	fmt.Println("ready")
	<-stop
	close(done)
	wg.Wait()
	return 0
}

// burner is a running burner process.
type burner struct {
	p     *proctest.Proc
	start time.Duration // its CPU when it was ready
}

// startChild starts this test binary (as a burner, the attacker or the
// connection control's listener, by envv) at nice, and waits up to wait
// for the first line it prints; the test's cleanup kills it by PID if it
// still runs.
func startChild(tb testing.TB, name string, envv []string, nice int, wait time.Duration) *proctest.Proc {
	tb.Helper()
	var p *proctest.Proc
	if nice != 0 {
		p = proctest.Start(tb, name, "nice", envv, "-n", fmt.Sprint(nice), os.Args[0], "-test.run=^$")
	} else {
		p = proctest.Start(tb, name, os.Args[0], envv, "-test.run=^$")
	}
	deadline := time.After(wait)
	for len(p.Lines()) == 0 {
		select {
		case <-p.Exited():
			tb.Fatalf("the %s exited: %s", name, p.Stderr())
		case <-deadline:
			tb.Fatalf("the %s was not ready in %v: %s", name, wait, p.Stderr())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return p
}

// startBurner starts a burner of share of a core at nice (nil when share
// is too small to burn).
func startBurner(tb testing.TB, share float64, nice int) *burner {
	tb.Helper()
	if share < 0.01 {
		return nil
	}
	p := startChild(tb, "burner", []string{burnEnv + "=" + strconv.FormatFloat(share, 'f', 3, 64)}, nice, 30*time.Second)
	c, _ := bench.Usage(p.PID())
	return &burner{p: p, start: c}
}

// stop ends the burner and returns the CPU it burned since it was ready.
func (b *burner) stop() time.Duration {
	if b == nil {
		return 0
	}
	c, _ := bench.Usage(b.p.PID())
	b.p.Stop(10 * time.Second)
	return c - b.start
}

// controlShares is what the control phase burns, in shares of a core: the
// servers' CPU beyond alone and the attacker's, as measured so far.
func (o *outcome) controlShares(cpuAlone, cpuAttack, cpuAttacker, wallAlone, wallAttack time.Duration) (servers, attackerShare float64) {
	if wallAlone <= 0 || wallAttack <= 0 {
		return 0, 0
	}
	servers = cpuAttack.Seconds()/wallAttack.Seconds() - cpuAlone.Seconds()/wallAlone.Seconds()
	return max(0, servers), cpuAttacker.Seconds() / wallAttack.Seconds()
}

// controlNote is the control's line of a pattern's report.
func (o *outcome) controlNote() string {
	if len(o.control.reads) == 0 {
		return "no control phase"
	}
	return fmt.Sprintf("read %s ms (%.2f×), write %s ms (%.2f×); burned %.0f %% at nice 0 + %.0f %% at nice %d (meant %.0f + %.0f)",
		ms(o.control.reads), o.ratio(o.alone.reads, o.control.reads), ms(o.control.writes), o.ratio(o.alone.writes, o.control.writes),
		o.burnedServers, o.burnedAttacker, o.nice, o.meantServers, o.meantAttacker)
}

// controlCell is the control's cell of the summary table.
func (o *outcome) controlCell(alone, control []time.Duration) string {
	if len(control) == 0 {
		return "—"
	}
	return fmt.Sprintf("%s ms (%.2f×)", ms(control), o.ratio(alone, control))
}

// verdict says, from the controls, what decides the pattern's ratios: for
// each over its target, "the CPU" when the CPU control's ratio is within
// 1.5× of it, "the machine's (kernel's connection work)" when the
// connection control's is (conncontrol_test.go), else "more than the CPU"
// ("… or the connections" where a connection control ran).
func (o *outcome) verdict() string {
	if len(o.control.reads) == 0 && len(o.connRun.victim.reads) == 0 {
		return ""
	}
	var parts []string
	for _, k := range []struct {
		name                  string
		alone, att, ctl, conn []time.Duration
	}{{"read", o.alone.reads, o.attacked.reads, o.control.reads, o.connRun.victim.reads},
		{"write", o.alone.writes, o.attacked.writes, o.control.writes, o.connRun.victim.writes}} {
		a := o.ratio(k.alone, k.att)
		if a <= o.target() {
			continue
		}
		within := func(ctl []time.Duration) bool { return len(ctl) > 0 && o.ratio(k.alone, ctl) >= a/1.5 }
		switch cpu, conn := within(k.ctl), within(k.conn); {
		case cpu && conn:
			parts = append(parts, k.name+": the CPU, and the machine's (kernel's connection work)")
		case cpu:
			parts = append(parts, k.name+": the CPU")
		case conn:
			parts = append(parts, k.name+": the machine's (kernel's connection work)")
		case len(k.conn) > 0:
			parts = append(parts, k.name+": more than the CPU or the connections")
		default:
			parts = append(parts, k.name+": more than the CPU")
		}
	}
	return strings.Join(parts, ", ")
}
