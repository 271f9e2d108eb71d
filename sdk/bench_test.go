package sdk_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// BenchmarkPropagation: 100 Clients watch one service on a three-node
// in-process cluster; each iteration joins one instance and measures the
// time from Join returning to every Client's cache holding it (and each
// Client's own latency). The service keeps 10 instances: the instance
// joined 10 iterations earlier leaves between measurements. Reported:
// p50/p99 of both, in ms.
//
//	go test -run '^$' -bench Propagation -benchtime 200x ./sdk/
func BenchmarkPropagation(b *testing.B) {
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
	for i := range clients {
		cl := c.Connect(b)
		svc, err := cl.Service(ctx, "prop")
		if err != nil {
			b.Fatal(err)
		}
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
			members[0].Leave(ctx)
			members = members[1:]
			time.Sleep(50 * time.Millisecond) // let the leave reach every client
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
