package peers

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// TestEtcd runs every workload of the etcd target briefly against a real
// 3-member cluster (skipped when etcd is not installed).
func TestEtcd(t *testing.T) {
	ver, ok := etcdInstalled()
	if !ok {
		t.Skip("etcd is not installed (no runnable etcd on PATH or /usr/bin/etcd): run scripts/install-peers.sh")
	}
	t.Logf("etcd %s", ver)
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 85*time.Second)
	defer cancel()
	tg := NewEtcd().(*Etcd)
	defer tg.Stop()
	dir := t.TempDir()

	def := ezSetting(t, tg, "default")
	if err := tg.Start(ctx, dir, def); err != nil {
		t.Fatal(err)
	}
	// The minimum lease TTL of a default server: a 1 s lease is raised to it.
	lr, err := tg.cli.Grant(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	tg.cli.Revoke(ctx, lr.ID)
	if want := etcdMinTTL(100*time.Millisecond, time.Second); time.Duration(lr.TTL)*time.Second != want {
		t.Errorf("default server granted TTL %d s for 1 s; etcdMinTTL says %v", lr.TTL, want)
	} else {
		t.Logf("default server: TTL 1 s granted as %d s", lr.TTL)
	}

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
		if l < tuned.Lease/3 || l > 3*tuned.Lease {
			t.Errorf("failover %v: implausible for a %v lease", l, tuned.Lease)
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

// TestEtcdLeaseArithmetic checks the server's minimum TTL and the client's
// keepalive period the settings rely on (no etcd needed).
func TestEtcdLeaseArithmetic(t *testing.T) {
	for _, c := range []struct {
		hb, el time.Duration
		want   time.Duration
	}{
		{100 * time.Millisecond, time.Second, 2 * time.Second},             // defaults: 15 × 100 ms = 1.5 s → 2 s
		{50 * time.Millisecond, 500 * time.Millisecond, time.Second},       // tuned: 15 × 50 ms = 750 ms → 1 s
		{100 * time.Millisecond, 600 * time.Millisecond, time.Second},      // 9 × 100 ms = 900 ms → 1 s
		{100 * time.Millisecond, 2000 * time.Millisecond, 3 * time.Second}, // 30 × 100 ms = 3 s
	} {
		if got := etcdMinTTL(c.hb, c.el); got != c.want {
			t.Errorf("etcdMinTTL(%v, %v) = %v, want %v", c.hb, c.el, got, c.want)
		}
	}
	for ttl, want := range map[int64]time.Duration{1: 500 * time.Millisecond, 2: time.Second, 3: 1500 * time.Millisecond, 60: 20500 * time.Millisecond} {
		if got := etcdKeepalive(ttl); got != want {
			t.Errorf("etcdKeepalive(%d) = %v, want %v", ttl, got, want)
		}
	}
	for _, s := range NewEtcd().Settings() {
		if min := etcdMinTTL(ezMillis(s.Server["heartbeat-interval"]), ezMillis(s.Server["election-timeout"])); s.Lease < min {
			t.Errorf("setting %s: TTL %v below the server's minimum %v", s.Name, s.Lease, min)
		}
	}
}

func ezMillis(v string) time.Duration {
	n, _ := strconv.Atoi(v)
	return time.Duration(n) * time.Millisecond
}
