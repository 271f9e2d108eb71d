// Package noisy measures tenant isolation under a noisy neighbour: tenant B
// runs a steady register/query workload while tenant A floods at 10× its
// rate limit from many connections.
//
//	cd benchmarks && go test -run '^$' -bench Noisy -benchtime 1x ./noisy/
package noisy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/benchmarks/internal/bench"
	"github.com/rafting/rafting/server/servertest"
)

const (
	phase   = 10 * time.Second
	bRate   = 100 // tenant B: operations per second (half writes, half reads), open loop
	aLimit  = 100 // tenant A: requests_per_second per node
	aFlood  = 10  // A sends 10× its cluster-wide limit
	aConns  = 64
	servers = 3
)

type result struct {
	lat  []time.Duration
	sent int
	ok   int
}

// steady runs B's open-loop workload for d: every 1/bRate it starts an
// operation (register or read, alternating, round-robin over the nodes).
func steady(ctx context.Context, c *servertest.Cluster, client *http.Client, tok string, d time.Duration) result {
	var mu sync.Mutex
	var r result
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / bRate)
	defer tick.Stop()
	end := time.After(d)
	for i := 0; ; i++ {
		select {
		case <-end:
			wg.Wait()
			return r
		case <-tick.C:
		}
		r.sent++
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			node := i%servers + 1
			var req *http.Request
			if i%2 == 0 {
				body, _ := json.Marshal(api.RegisterRequest{Address: fmt.Sprintf("10.9.%d.%d:80", i%200, i%250)})
				req, _ = http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("http://%s/v1/tenants/bravo/services/orders/instances/o-%d", c.Addr(node), i%50), bytes.NewReader(body))
			} else {
				req, _ = http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/v1/tenants/bravo/services/orders", c.Addr(node)), nil)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 300 {
				mu.Lock()
				r.ok++
				r.lat = append(r.lat, time.Since(start))
				mu.Unlock()
			}
		}(i)
	}
}

// flood runs A: aConns connections sending as fast as the target rate.
func flood(ctx context.Context, c *servertest.Cluster, tok string, total, limited *atomic.Int64) {
	rate := aFlood * aLimit * servers // requests per second over the cluster
	per := time.Second * time.Duration(aConns) / time.Duration(rate)
	var wg sync.WaitGroup
	for w := 0; w < aConns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
			defer client.CloseIdleConnections()
			tick := time.NewTicker(per)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				node := (w+i)%servers + 1
				var req *http.Request
				if i%2 == 0 {
					body, _ := json.Marshal(api.RegisterRequest{Address: "10.8.0.1:80"})
					req, _ = http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("http://%s/v1/tenants/alpha/services/spam/instances/s-%d", c.Addr(node), (w*1000+i)%100), bytes.NewReader(body))
				} else {
					req, _ = http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/v1/tenants/alpha/services/spam", c.Addr(node)), nil)
				}
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				total.Add(1)
				if resp.StatusCode == http.StatusTooManyRequests {
					limited.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
}

func BenchmarkNoisyNeighbour(b *testing.B) {
	c := servertest.Start(b, servertest.Options{RTT: 50 * time.Millisecond, Dir: bench.Dir(b)})
	alpha := c.CreateTenant("alpha", api.Quotas{RequestsPerSecond: aLimit, Burst: aLimit, WritesPerSecond: aLimit})
	bravo := c.CreateTenant("bravo", api.Quotas{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	ctx := context.Background()
	steady(ctx, c, client, bravo, 2*time.Second) // warm up
	base := steady(ctx, c, client, bravo, phase)

	fctx, stop := context.WithCancel(ctx)
	var total, limited atomic.Int64
	done := make(chan struct{})
	go func() { flood(fctx, c, alpha, &total, &limited); close(done) }()
	time.Sleep(time.Second) // the flood reaches its rate
	noisy := steady(ctx, c, client, bravo, phase)
	stop()
	<-done

	b.ReportMetric(bench.Pct(base.lat, 50), "B-base-p50-ms")
	b.ReportMetric(bench.Pct(base.lat, 99), "B-base-p99-ms")
	b.ReportMetric(bench.Pct(noisy.lat, 50), "B-noisy-p50-ms")
	b.ReportMetric(bench.Pct(noisy.lat, 99), "B-noisy-p99-ms")
	b.ReportMetric(bench.Pct(noisy.lat, 99)/bench.Pct(base.lat, 99), "B-p99-ratio")
	b.ReportMetric(100*float64(noisy.ok)/float64(noisy.sent), "B-completed-%")
	b.ReportMetric(float64(total.Load())/(phase.Seconds()+1), "A-req/s")
	b.ReportMetric(100*float64(limited.Load())/float64(max(total.Load(), 1)), "A-429-%")
}
