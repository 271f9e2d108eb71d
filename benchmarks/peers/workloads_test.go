package peers

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// childPIDs are the live processes whose parent is this one.
func childPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f, err := statFields(pid); err == nil && len(f) > 1 && f[0] != "Z" && f[1] == me {
			out = append(out, pid)
		}
	}
	return out
}

// pidAlive reports whether pid is a running (not zombie) process.
func pidAlive(pid int) bool {
	f, err := statFields(pid)
	return err == nil && len(f) > 0 && f[0] != "Z"
}

// checkClean fails t if a child process remains or the goroutines do not
// return to about base within a few seconds.
func checkClean(t *testing.T, base int) {
	t.Helper()
	if kids := childPIDs(); len(kids) > 0 {
		var names []string
		for _, pid := range kids {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			names = append(names, fmt.Sprintf("%s (pid %d)", strings.TrimSpace(string(comm)), pid))
		}
		t.Errorf("child processes remain after Stop: %v", names)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutines: %d after, %d before:\n%s", n, base, buf)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settingOf returns tg's setting named name.
func settingOf(t *testing.T, tg Target, name string) Setting {
	t.Helper()
	i := slices.IndexFunc(tg.Settings(), func(s Setting) bool { return s.Name == name })
	if i < 0 {
		t.Fatalf("%s has no setting %q", tg.Name(), name)
	}
	return tg.Settings()[i]
}

// summary is "n=…, p50 …, p99 …, max …" of a sample.
func summary(s Sample) string {
	if len(s.Latencies) == 0 {
		return "n=0"
	}
	l := slices.Clone(s.Latencies)
	slices.Sort(l)
	q := func(p float64) time.Duration { return l[min(len(l)-1, int(p*float64(len(l))))] }
	return fmt.Sprintf("n=%d p50 %v p99 %v max %v", len(l), q(0.50).Round(10*time.Microsecond),
		q(0.99).Round(10*time.Microsecond), l[len(l)-1].Round(10*time.Microsecond))
}

// checkWorkloads runs the short form of every workload on tg, started
// with its default setting: register, propagation, kv put, kv watch,
// handover, then failover and idle under the tuned setting (a new
// cluster). A failover sample takes a third of the lease at least, and
// failoverMax at most.
func checkWorkloads(t *testing.T, ctx context.Context, tg Target, dir string, failoverMax time.Duration) {
	t.Helper()
	throughput := func(what string, s Sample, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if s.Ops == 0 || len(s.Latencies) != s.Ops || s.Elapsed < time.Second {
			t.Errorf("%s: %d ops, %d latencies, elapsed %v", what, s.Ops, len(s.Latencies), s.Elapsed)
		}
		t.Logf("%s: %d ops in %v (%.0f/s), %s", what, s.Ops, s.Elapsed.Round(time.Millisecond),
			float64(s.Ops)/s.Elapsed.Seconds(), summary(s))
	}
	latencies := func(what string, s Sample, err error, want int) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(s.Latencies) != want {
			t.Errorf("%s: %d latencies, want %d", what, len(s.Latencies), want)
		}
		t.Logf("%s: %s", what, summary(s))
	}
	reg, err := tg.Register(ctx, 4, time.Second)
	throughput("register 4 clients", reg, err)
	prop, err := tg.Propagation(ctx, 5, 3)
	latencies("propagation 5 watchers × 3", prop, err, 15)
	put, err := tg.KVPut(ctx, 4, time.Second)
	throughput("kv put 4 clients", put, err)
	kvw, err := tg.KVWatch(ctx, 5, 3)
	latencies("kv watch 5 watchers × 3", kvw, err, 15)
	ho, err := tg.Handover(ctx, 2)
	latencies("handover", ho, err, 2)

	tuned := settingOf(t, tg, "tuned")
	if err := tg.Start(ctx, dir, tuned); err != nil {
		t.Fatal(err)
	}
	fo, err := tg.Failover(ctx, tuned, 2)
	latencies("failover ("+tuned.Name+")", fo, err, 2)
	for _, l := range fo.Latencies {
		if l < tuned.Lease/3 || l > failoverMax {
			t.Errorf("failover %v: implausible for a %v lease", l, tuned.Lease)
		}
	}

	for _, shape := range []IdleShape{{Clients: 10, PerClient: 20}, {Clients: 20, PerClient: 10, PerSession: true}} {
		idle, err := tg.Idle(ctx, shape, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// ZooKeeper's session is its connection: a session per instance
		// is a client per instance.
		clients, sessions := shape.Clients, shape.Instances()
		if shape.PerSession {
			sessions = shape.Clients
		} else if tg.Name() == "zookeeper" {
			clients = sessions
		}
		if idle.RSSBytes <= 0 || idle.Instances != 200 || idle.Clients != clients || idle.Sessions != sessions || idle.CPUPct < 0 || idle.ClientCPUPct < 0 {
			t.Errorf("idle %v: %+v, want %d clients, %d sessions", shape, idle, clients, sessions)
		}
		t.Logf("idle %v (%s): CPU %.1f%% of a core, RSS %.1f MiB, clients' CPU %.1f%%", shape, tuned.Name, idle.CPUPct, float64(idle.RSSBytes)/(1<<20), idle.ClientCPUPct)
	}
}
