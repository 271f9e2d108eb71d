package sdk_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// BenchmarkPropagation: 100 Clients watch one service on a three-node
// in-process cluster; each iteration joins one instance and measures the
// time from Join returning to every Client's cache holding it (and each
// Client's own latency). The service keeps 10 instances: the instance
// joined 10 iterations earlier leaves between measurements. Reported:
// p50/p99 of both, in ms. The Clients use blocking queries
// (WithClientStream(false)); BenchmarkPropagationStream, the client stream.
//
//	go test -run '^$' -bench Propagation -benchtime 200x ./sdk/
func BenchmarkPropagation(b *testing.B) { benchPropagation(b, sdk.WithClientStream(false)) }

// benchPropagation is BenchmarkPropagation with the watching Clients'
// options (stream_bench_test.go: on the client stream).
func benchPropagation(b *testing.B, opts ...sdk.Option) {
	const clients = 100
	// Every change re-issues 100 blocking queries: far above the default
	// 1,000 requests a second per node, which this benchmark does not
	// measure.
	c := sdktest.StartWith(b, sdktest.Options{Quotas: api.Quotas{RequestsPerSecond: 1_000_000, Burst: 1_000_000}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// One iteration's instance: which Clients have seen it, and when.
	type round struct {
		id   string
		seen []atomic.Int64 // unix nanos, 0 until seen
		left atomic.Int32
		done chan struct{}
	}
	var cur atomic.Pointer[round]
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var svcs []*sdk.Service
	for i := range clients {
		cl := c.Connect(b, opts...)
		svc, err := cl.Service(ctx, "prop")
		if err != nil {
			b.Fatal(err)
		}
		svcs = append(svcs, svc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for snap := range svc.Watch(ctx) {
				now := time.Now().UnixNano()
				r := cur.Load()
				if r == nil {
					continue
				}
				if _, ok := snap.Instance(r.id); ok && r.seen[i].CompareAndSwap(0, now) && r.left.Add(-1) == 0 {
					close(r.done)
				}
			}
		}()
	}
	joiner := c.Connect(b)
	var all, each []time.Duration
	var members []*sdk.Member
	b.ResetTimer()
	for n := range b.N {
		if len(members) == 10 {
			b.StopTimer()
			gone := members[0].ID()
			members[0].Leave(ctx)
			members = members[1:]
			eventually(b, 10*time.Second, "the leave to reach every client", func() bool {
				for _, svc := range svcs {
					if _, ok := svc.Snapshot().Instance(gone); ok {
						return false
					}
				}
				return true
			})
			b.StartTimer()
		}
		r := &round{id: fmt.Sprintf("p%d", n), seen: make([]atomic.Int64, clients), done: make(chan struct{})}
		r.left.Store(clients)
		cur.Store(r)
		m, err := joiner.Join(ctx, sdk.Instance{Service: "prop", ID: r.id, Address: "10.0.0.1:80"}, sdk.WithDrainDelay(0))
		if err != nil {
			b.Fatal(err)
		}
		members = append(members, m)
		t0 := time.Now()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			b.Fatalf("instance %s reached %d of %d clients in 10s", r.id, clients-int(r.left.Load()), clients)
		}
		var worst time.Duration
		for i := range r.seen {
			d := max(0, time.Duration(r.seen[i].Load()-t0.UnixNano()))
			each = append(each, d)
			worst = max(worst, d)
		}
		all = append(all, worst)
	}
	b.StopTimer()
	if testing.Verbose() {
		b.Logf("all: %v", all)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(pct(all, 50)), "p50-all-ms")
	b.ReportMetric(ms(pct(all, 99)), "p99-all-ms")
	b.ReportMetric(ms(pct(each, 50)), "p50-client-ms")
	b.ReportMetric(ms(pct(each, 99)), "p99-client-ms")
	joiner.Close() // its members leave before the clients watching them close
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, (len(s)*p+99)/100-1)]
}

// BenchmarkIdleFarm: 2,000 farm members (200 on each of 10 Clients) stay
// joined to a three-node in-process cluster and do nothing else for 10 s;
// reported: the process's CPU (servers and members together) in % of one
// core, and per member. What an idle member costs is its keepalives (every
// TTL/3), its stream's heartbeats and the leader's expiry loop.
//
//	go test -run '^$' -bench IdleFarm -benchtime 1x ./sdk/
func BenchmarkIdleFarm(b *testing.B) {
	const clients, each = 10, 200
	c := sdktest.StartWith(b, sdktest.Options{Quotas: api.Quotas{RequestsPerSecond: 1_000_000, Burst: 1_000_000,
		WritesPerSecond: 1_000_000, MaxInstances: 100_000, MaxSessions: 100_000}})
	ctx := context.Background()
	g, gctx := errgroup.WithContext(ctx)
	for k := range clients {
		cl := c.Connect(b)
		g.Go(func() error {
			for i := range each {
				if _, err := cl.Join(gctx, sdk.Instance{Service: "idle", ID: fmt.Sprintf("i-%d-%d", k, i), Address: "10.0.0.1:80"}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the joins' own work is done
	b.ResetTimer()
	var cpu time.Duration
	var wall time.Duration
	for range b.N {
		cpu0, t0 := processCPU(b), time.Now()
		time.Sleep(10 * time.Second)
		cpu, wall = cpu+processCPU(b)-cpu0, wall+time.Since(t0)
	}
	b.StopTimer()
	pct := 100 * cpu.Seconds() / wall.Seconds()
	b.ReportMetric(pct, "cpu-%core")
	b.ReportMetric(1e6*cpu.Seconds()/wall.Seconds()/(clients*each), "cpu-µs/member/s")
}

// processCPU is the user and system CPU this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
