package peers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ezChildren lists the live child processes of this test process.
func ezChildren() []string {
	me := os.Getpid()
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "status"))
		if err != nil {
			continue
		}
		var name string
		ppid := -1
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Name:"); ok {
				name = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(l, "PPid:"); ok {
				ppid, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if ppid == me {
			out = append(out, fmt.Sprintf("%s (pid %s)", name, filepath.Base(d)))
		}
	}
	return out
}

// ezCheckClean fails t if a child process remains or the goroutines do not
// return to about base within a few seconds.
func ezCheckClean(t *testing.T, base int) {
	t.Helper()
	if c := ezChildren(); len(c) > 0 {
		t.Errorf("child processes remain after Stop: %v", c)
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

// ezSetting returns the setting named name.
func ezSetting(t *testing.T, tg Target, name string) Setting {
	t.Helper()
	i := slices.IndexFunc(tg.Settings(), func(s Setting) bool { return s.Name == name })
	if i < 0 {
		t.Fatalf("%s has no setting %q", tg.Name(), name)
	}
	return tg.Settings()[i]
}

// ezSummary is "n=…, p50 …, p99 …, max …" of a sample.
func ezSummary(s Sample) string {
	if len(s.Latencies) == 0 {
		return "n=0"
	}
	l := slices.Clone(s.Latencies)
	slices.Sort(l)
	q := func(p float64) time.Duration { return l[min(len(l)-1, int(p*float64(len(l))))] }
	return fmt.Sprintf("n=%d p50 %v p99 %v max %v", len(l), q(0.50).Round(10*time.Microsecond),
		q(0.99).Round(10*time.Microsecond), l[len(l)-1].Round(10*time.Microsecond))
}

// ezWorkloads runs the short form of every workload after the default
// setting started: register, propagation, kv put, kv watch, handover, then failover and
// idle under the tuned setting. A failover sample may take up to three
// leases plus slack.
func ezWorkloads(t *testing.T, ctx context.Context, tg Target, dir string, slack time.Duration) {
	t.Helper()
	reg, err := tg.Register(ctx, 4, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if reg.Ops == 0 {
		t.Fatal("register: no operations")
	}
	t.Logf("register 4 clients: %d ops in %v (%.0f/s), %s", reg.Ops, reg.Elapsed.Round(time.Millisecond),
		float64(reg.Ops)/reg.Elapsed.Seconds(), ezSummary(reg))

	prop, err := tg.Propagation(ctx, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(prop.Latencies) != 15 {
		t.Errorf("propagation: %d latencies, want 15", len(prop.Latencies))
	}
	t.Logf("propagation 5 watchers × 3: %s", ezSummary(prop))

	put, err := tg.KVPut(ctx, 4, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if put.Ops == 0 {
		t.Fatal("kv put: no operations")
	}
	t.Logf("kv put 4 clients: %d ops in %v (%.0f/s), %s", put.Ops, put.Elapsed.Round(time.Millisecond),
		float64(put.Ops)/put.Elapsed.Seconds(), ezSummary(put))

	kvw, err := tg.KVWatch(ctx, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvw.Latencies) != 15 {
		t.Errorf("kv watch: %d latencies, want 15", len(kvw.Latencies))
	}
	t.Logf("kv watch 5 watchers × 3: %s", ezSummary(kvw))

	ho, err := tg.Handover(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(ho.Latencies) != 2 {
		t.Errorf("handover: %d latencies, want 2", len(ho.Latencies))
	}
	t.Logf("handover: %s", ezSummary(ho))

	tuned := ezSetting(t, tg, "tuned")
	if err := tg.Start(ctx, dir, tuned); err != nil {
		t.Fatal(err)
	}
	fo, err := tg.Failover(ctx, tuned, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(fo.Latencies) != 2 {
		t.Errorf("failover: %d latencies, want 2", len(fo.Latencies))
	}
	for _, l := range fo.Latencies {
		if l < tuned.Lease/3 || l > 3*tuned.Lease+slack {
			t.Errorf("failover %v: implausible for a %v lease", l, tuned.Lease)
		}
	}
	t.Logf("failover (%s): %s", tuned.Name, ezSummary(fo))

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
		if idle.RSSBytes <= 0 || idle.Instances != 200 || idle.Clients != clients || idle.Sessions != sessions || idle.ClientCPUPct < 0 {
			t.Errorf("idle %v: %+v, want %d clients, %d sessions", shape, idle, clients, sessions)
		}
		t.Logf("idle %v (%s): CPU %.1f%% of a core, RSS %.1f MiB, clients' CPU %.1f%%", shape, tuned.Name, idle.CPUPct, float64(idle.RSSBytes)/(1<<20), idle.ClientCPUPct)
	}
}
