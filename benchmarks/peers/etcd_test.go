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

	def := settingOf(t, tg, "default")
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

	checkWorkloads(t, ctx, tg, dir, 3*settingOf(t, tg, "tuned").Lease)

	if err := tg.Stop(); err != nil {
		t.Error(err)
	}
	checkClean(t, base)
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
