package chaos

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/internal/proctest"
)

var (
	runCampaign = flag.Bool("chaos", false, "run the fault campaign: real processes (make chaos, make chaos-quick)")
	scenarios   = flag.Int("chaos.scenarios", 4, "how many seeded scenarios to run")
	firstSeed   = flag.Uint64("chaos.seed", 0, "the first scenario's seed (0: drawn from the clock); the others follow it")
	phase       = flag.Duration("chaos.phase", DefaultPhase, "how long each scenario's faults run")
	controls    = flag.String("chaos.controls", "all", "negative controls to run: all, none, or names, comma-separated")
	outDir      = flag.String("chaos.out", "", "where failing scenarios are saved (default: rafting-chaos under the temp dir)")
	verbose     = flag.Bool("chaos.v", false, "print every scenario's timeline")
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	proctest.Cleanup()
	os.Exit(code)
}

// TestChaos is the fault campaign: seeded scenarios of real processes
// under faults, every checker on each, then the negative controls. It
// prints one line per scenario and one summary line:
//
//	chaos: N scenarios, M faults, K operations, V violations
func TestChaos(t *testing.T) {
	if !*runCampaign {
		t.Skip("the fault campaign runs with -chaos: make chaos or make chaos-quick")
	}
	seed := *firstSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano()/1000) % 1_000_000_000
	}
	out := *outDir
	if out == "" {
		out = filepath.Join(os.TempDir(), "rafting-chaos")
	}
	opts := Options{}
	if *verbose {
		opts.Log = func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	}
	fmt.Printf("seeds %d..%d (rerun one: %s); failing runs are saved under %s\n", seed, seed+uint64(*scenarios)-1,
		strings.Replace(Rerun(Plan{Phase: *phase}), "SEED=0", "SEED=n", 1), out)
	var (
		mu    sync.Mutex // the totals, the table and stdout, shared by the parallel scenarios
		total struct{ scenarios, faults, ops, violations int }
	)
	type row struct {
		scenarios, injected int
		violations          map[string]int // by checker, in the scenarios that had this fault
	}
	table := map[Kind]*row{}
	for _, k := range Kinds() {
		table[k] = &row{violations: map[string]int{}}
	}
	// Scenarios run -test.parallel at a time (make chaos: 2); each t.Run
	// group returns when all of its scenarios are done.
	t.Run("scenarios", func(t *testing.T) {
		for i := range *scenarios {
			plan := NewPlan(seed+uint64(i), *phase)
			t.Run(fmt.Sprintf("seed=%d", plan.Seed), func(t *testing.T) {
				t.Parallel()
				r := Run(t, plan, opts)
				var saved string
				if len(r.Violations) > 0 {
					saved = r.Save(out)
				}
				mu.Lock()
				defer mu.Unlock()
				total.scenarios++
				total.faults += r.Faults
				total.ops += r.Operations
				total.violations += len(r.Violations)
				for k, n := range r.Injected {
					table[k].scenarios++
					table[k].injected += n
					for _, v := range r.Violations {
						table[k].violations[v.Checker]++
					}
				}
				via := ""
				if plan.Stream {
					via = ", client stream"
				}
				fmt.Printf("seed %d: %d servers, %d tenants%s, %d faults, %d operations, %d violations (%v)\n",
					plan.Seed, plan.Servers, plan.Tenants, via, r.Faults, r.Operations, len(r.Violations), r.Took.Round(time.Second))
				shown := map[string]int{}
				for _, v := range r.Violations {
					if shown[v.Checker+v.Tenant]++; shown[v.Checker+v.Tenant] <= 5 {
						fmt.Printf("  %v\n", v)
						t.Errorf("%v", v)
					}
				}
				for k, n := range shown {
					if n > 5 {
						fmt.Printf("  (%s: %d more)\n", k, n-5)
					}
				}
				if saved != "" {
					fmt.Printf("  saved to %s; rerun: %s\n", saved, Rerun(plan))
				}
			})
		}
	})
	if *scenarios >= len(Kinds()) {
		fmt.Printf("\n| fault | scenarios | injected | %s |\n|---|--:|--:|%s\n", strings.Join(checkers, " | "), strings.Repeat("--:|", len(checkers)))
		for _, k := range Kinds() {
			r := table[k]
			if r.injected == 0 {
				t.Errorf("no scenario injected a %v fault", k)
			}
			var vs []string
			for _, c := range checkers {
				vs = append(vs, fmt.Sprint(r.violations[c]))
			}
			fmt.Printf("| %v | %d | %d | %s |\n", k, r.scenarios, r.injected, strings.Join(vs, " | "))
		}
		fmt.Println()
	}
	t.Run("controls", func(t *testing.T) {
		for _, c := range selectedControls(t) {
			t.Run(c.String(), func(t *testing.T) {
				t.Parallel()
				r := Run(t, ControlPlan(c, seed), Options{Control: c, Log: opts.Log})
				var caught, also []Violation
				for _, v := range r.Violations {
					if v.Checker == c.Checker() {
						caught = append(caught, v)
					} else {
						also = append(also, v)
					}
				}
				var saved string
				if len(caught) == 0 {
					saved = r.Save(out)
				}
				mu.Lock()
				defer mu.Unlock()
				for _, v := range also {
					fmt.Printf("  control %s: also %v\n", c, v)
				}
				if len(caught) == 0 {
					fmt.Printf("control %s: NOT caught by the %s checker\n", c, c.Checker())
					t.Errorf("negative control %s: the %s checker caught nothing; saved to %s; rerun: make chaos CONTROL=%s SEED=%d",
						c, c.Checker(), saved, c, seed)
					return
				}
				fmt.Printf("control %s: caught by the %s checker (%d violations), e.g. %s\n", c, c.Checker(), len(caught), firstLine(caught[0].Detail))
			})
		}
	})
	fmt.Printf("chaos: %d scenarios, %d faults, %d operations, %d violations\n", total.scenarios, total.faults, total.ops, total.violations)
}

// checkers are the checkers' names, as violations give them.
var checkers = []string{"safety", "linearizability", "durability", "watch", "convergence", "clock", "liveness"}

func selectedControls(t *testing.T) []Control {
	switch *controls {
	case "all":
		return Controls()
	case "none", "":
		return nil
	}
	var cs []Control
	for _, name := range strings.Split(*controls, ",") {
		i := slices.IndexFunc(Controls(), func(c Control) bool { return c.String() == name })
		if i < 0 {
			t.Fatalf("unknown control %q", name)
		}
		cs = append(cs, Controls()[i])
	}
	return cs
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
