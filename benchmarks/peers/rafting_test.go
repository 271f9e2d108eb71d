package peers

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestRafting runs every workload of the Rafting target briefly, for real:
// a 3-server cluster, SDK clients, member processes.
//
//	cd benchmarks && go test -count=1 -run Rafting -v ./peers/
func TestRafting(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real clusters")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	tg := NewRafting()
	if tg.Name() != "rafting" {
		t.Fatalf("Name() = %q", tg.Name())
	}
	sets := map[string]Setting{}
	for _, s := range tg.Settings() {
		if s.Note == "" || s.Lease <= 0 {
			t.Errorf("setting %s: no note or lease", s.Name)
		}
		sets[s.Name] = s
	}
	for _, n := range []string{"default", "shortest-default-server", "tuned", "same-lease"} {
		if _, ok := sets[n]; !ok {
			t.Fatalf("no setting %q", n)
		}
	}
	defer tg.Stop()

	// Start twice: the second Start replaces the first cluster.
	if err := tg.Start(ctx, dir, sets["default"]); err != nil {
		t.Fatal(err)
	}
	first := tg.(*rafting).PIDs()
	if err := tg.Start(ctx, dir, sets["tuned"]); err != nil {
		t.Fatal(err)
	}
	for _, pid := range first {
		if pidAlive(pid) {
			t.Errorf("server %d of the first cluster still runs after the second Start", pid)
		}
	}

	s, err := tg.Register(ctx, 4, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("register: %d ops in %v, p50 %v", s.Ops, s.Elapsed, Pct(s.Latencies, 50))
	if s.Ops == 0 || len(s.Latencies) != s.Ops || s.Elapsed < time.Second {
		t.Errorf("register: %d ops, %d latencies, elapsed %v", s.Ops, len(s.Latencies), s.Elapsed)
	}

	s, err = tg.Propagation(ctx, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("propagation: p50 %v p99 %v", Pct(s.Latencies, 50), Pct(s.Latencies, 99))
	if len(s.Latencies) != 15 {
		t.Errorf("propagation: %d samples, want 15", len(s.Latencies))
	}

	s, err = tg.KVPut(ctx, 4, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kv put: %d ops in %v, p50 %v", s.Ops, s.Elapsed, Pct(s.Latencies, 50))
	if s.Ops == 0 || len(s.Latencies) != s.Ops || s.Elapsed < time.Second {
		t.Errorf("kv put: %d ops, %d latencies, elapsed %v", s.Ops, len(s.Latencies), s.Elapsed)
	}

	s, err = tg.KVWatch(ctx, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kv watch: p50 %v p99 %v", Pct(s.Latencies, 50), Pct(s.Latencies, 99))
	if len(s.Latencies) != 15 {
		t.Errorf("kv watch: %d samples, want 15", len(s.Latencies))
	}

	s, err = tg.Handover(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("handover: %v", s.Latencies)
	if len(s.Latencies) != 2 {
		t.Errorf("handover: %d samples, want 2", len(s.Latencies))
	}

	s, err = tg.Failover(ctx, sets["tuned"], 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("failover (tuned): %v", s.Latencies)
	if len(s.Latencies) != 2 {
		t.Errorf("failover: %d samples, want 2", len(s.Latencies))
	}
	for _, d := range s.Latencies {
		// At least the lease minus the margin, at most a TTL.
		if d < 100*time.Millisecond || d > 5*time.Second {
			t.Errorf("failover with a 200 ms lease took %v", d)
		}
	}

	for _, shape := range []IdleShape{{Clients: 10, PerClient: 20}, {Clients: 20, PerClient: 10, PerSession: true}} {
		c, err := tg.Idle(ctx, shape, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("idle %v: %+v", shape, c)
		// A Client is a session with PerSession, else a member is.
		sessions := 200
		if shape.PerSession {
			sessions = shape.Clients
		}
		if c.Instances != 200 || c.Clients != shape.Clients || c.Sessions != sessions || c.RSSBytes <= 0 || c.CPUPct < 0 {
			t.Errorf("idle %v: %+v", shape, c)
		}
	}

	pids := tg.(*rafting).PIDs()
	if err := tg.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := tg.Stop(); err != nil { // a second Stop is harmless
		t.Fatal(err)
	}
	for _, pid := range pids {
		if pidAlive(pid) {
			t.Errorf("server %d still runs after Stop", pid)
		}
	}
	if kids := childPIDs(); len(kids) > 0 {
		t.Errorf("child processes left: %v", kids)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "rafting-*"))
	if len(left) > 0 {
		t.Errorf("data directories left: %v", left)
	}
}

// pidAlive reports whether pid is a running (not zombie) process.
func pidAlive(pid int) bool {
	f, err := statFields(pid)
	return err == nil && len(f) > 0 && f[0] != "Z"
}

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
