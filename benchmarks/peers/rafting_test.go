package peers

import (
	"context"
	"path/filepath"
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

	if err := tg.Start(ctx, dir, sets["default"]); err != nil {
		t.Fatal(err)
	}
	first := tg.(*rafting).PIDs()
	checkWorkloads(t, ctx, tg, dir, raftingTTL) // a failover: at most a session's TTL
	// checkWorkloads started a second cluster, which replaced the first.
	for _, pid := range first {
		if pidAlive(pid) {
			t.Errorf("server %d of the first cluster still runs after the second Start", pid)
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
