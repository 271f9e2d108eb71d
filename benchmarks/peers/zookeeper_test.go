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

	def := settingOf(t, tg, "default")
	start := time.Now()
	if err := tg.Start(ctx, dir, def); err != nil {
		t.Fatal(err)
	}
	t.Logf("start (%s) with at most %v warm-up: %v (warm-up register steps: %.0f ops/s)", def.Name, tg.Warmup,
		time.Since(start).Round(time.Millisecond), tg.warmupRates)

	checkWorkloads(t, ctx, tg, dir, 3*settingOf(t, tg, "tuned").Lease+time.Second)

	if err := tg.Stop(); err != nil {
		t.Error(err)
	}
	checkClean(t, base)
}
