package benchmarks

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
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// BenchmarkRegister measures, on a 3-node loopback cluster (one process,
// production RTT 50 ms): register latency through a follower and through
// the leader, register → visible on a blocking query at another node, and
// register throughput with 32 concurrent clients. Run it with
//
//	cd benchmarks && go test -run '^$' -bench Register -benchtime 1x
func BenchmarkRegister(b *testing.B) {
	c := servertest.Start(b, servertest.Options{RTT: 50 * time.Millisecond, Dir: bench.Dir(b), Configure: func(cfg *config.Config) {
		cfg.LogDB = "small"
	}})
	tok := c.CreateTenant("bench", api.Quotas{RequestsPerSecond: 1_000_000, Burst: 1_000_000, WritesPerSecond: 1_000_000,
		MaxInstances: 100_000})
	leader := c.WaitTenantLeader("bench")
	follower, other := leader%3+1, (leader+1)%3+1
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}

	put := func(node int, id, addr string) (uint64, error) {
		body, _ := json.Marshal(api.RegisterRequest{Address: addr})
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v1/tenants/bench/services/web/instances/%s", c.Addr(node), id), bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			return 0, fmt.Errorf("register: %d %s", resp.StatusCode, b)
		}
		var r api.RegisterResponse
		return r.Index, json.Unmarshal(b, &r)
	}

	// Warm up connections and the shard.
	for i := 0; i < 200; i++ {
		if _, err := put(follower, fmt.Sprintf("warm-%d", i%10), fmt.Sprintf("10.1.0.%d:80", i)); err != nil {
			b.Fatal(err)
		}
	}

	latency := func(node int, n int) []time.Duration {
		out := make([]time.Duration, 0, n)
		for i := 0; i < n; i++ {
			start := time.Now()
			if _, err := put(node, fmt.Sprintf("lat-%d", i%50), fmt.Sprintf("10.2.%d.%d:80", node, i)); err != nil {
				b.Fatal(err)
			}
			out = append(out, time.Since(start))
		}
		return out
	}
	viaFollower := latency(follower, 1000)
	viaLeader := latency(leader, 1000)

	// Register on one node, a blocking query waits on another.
	visible := make([]time.Duration, 0, 500)
	var index uint64
	{
		// A consistent read: the index covers every write made so far, so
		// the first blocking query waits for the first measured write.
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/v1/tenants/bench/services/web?consistent=true", c.Addr(other)), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var s api.ServiceResponse
		_ = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		index = s.Index
	}
	for i := 0; i < 500; i++ {
		woke := make(chan uint64, 1)
		ready := make(chan struct{})
		go func(after uint64) {
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet,
				fmt.Sprintf("http://%s/v1/tenants/bench/services/web?index=%d&wait=10s", c.Addr(other), after), nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			close(ready)
			resp, err := client.Do(req)
			if err != nil {
				woke <- 0
				return
			}
			var s api.ServiceResponse
			_ = json.NewDecoder(resp.Body).Decode(&s)
			resp.Body.Close()
			woke <- s.Index
		}(index)
		<-ready
		time.Sleep(2 * time.Millisecond) // the query is parked
		start := time.Now()
		wrote, err := put(follower, "vis", fmt.Sprintf("10.3.0.%d:80", i))
		if err != nil {
			b.Fatal(err)
		}
		got := <-woke
		visible = append(visible, time.Since(start))
		if got < wrote {
			b.Fatalf("blocking query answered index %d below the write's %d", got, wrote)
		}
		index = got
	}

	// Throughput: 32 clients, 5 s, spread over the three nodes.
	var ops atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(5 * time.Second)
	errs := make(chan error, 32)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				if _, err := put(w%3+1, fmt.Sprintf("tp-%d-%d", w, i%20), fmt.Sprintf("10.4.%d.%d:80", w, i%250)); err != nil {
					errs <- err
					return
				}
				ops.Add(1)
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.ReportMetric(bench.Pct(viaFollower, 50), "follower-p50-ms")
	b.ReportMetric(bench.Pct(viaFollower, 99), "follower-p99-ms")
	b.ReportMetric(bench.Pct(viaLeader, 50), "leader-p50-ms")
	b.ReportMetric(bench.Pct(viaLeader, 99), "leader-p99-ms")
	b.ReportMetric(bench.Pct(visible, 50), "visible-p50-ms")
	b.ReportMetric(bench.Pct(visible, 99), "visible-p99-ms")
	b.ReportMetric(float64(ops.Load())/5, "register-ops/s")
}
