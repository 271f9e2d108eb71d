package peers

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestZooKeeper runs every workload of the ZooKeeper target briefly against
// a real 3-member ensemble (skipped when ZooKeeper is not installed).
func TestZooKeeper(t *testing.T) {
	ver, ok := zkInstalled()
	if !ok {
		t.Skip("ZooKeeper is not installed (no " + zkJar + " or no java): run scripts/install-peers.sh")
	}
	t.Logf("zookeeper %s", ver)
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 85*time.Second)
	defer cancel()
	tg := NewZooKeeper().(*ZooKeeper)
	tg.Warmup = 2 * time.Second
	defer tg.Stop()
	dir := t.TempDir()

	def := ezSetting(t, tg, "default")
	start := time.Now()
	if err := tg.Start(ctx, dir, def); err != nil {
		t.Fatal(err)
	}
	t.Logf("start (%s) with at most %v warm-up: %v (warm-up register steps: %.0f ops/s)", def.Name, tg.Warmup,
		time.Since(start).Round(time.Millisecond), tg.warmupRates)

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
		if l < tuned.Lease/3 || l > 3*tuned.Lease+time.Second {
			t.Errorf("failover %v: implausible for a %v session", l, tuned.Lease)
		}
	}
	t.Logf("failover (%s): %s", tuned.Name, ezSummary(fo))

	idle, err := tg.Idle(ctx, 200, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if idle.RSSBytes <= 0 || idle.Instances != 200 {
		t.Errorf("idle: %+v", idle)
	}
	t.Logf("idle 200 instances (%s): CPU %.1f%% of a core, RSS %.1f MiB", tuned.Name, idle.CPUPct, float64(idle.RSSBytes)/(1<<20))

	if err := tg.Stop(); err != nil {
		t.Error(err)
	}
	ezCheckClean(t, base)
}
