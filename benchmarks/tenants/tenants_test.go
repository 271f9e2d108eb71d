// Package tenants measures what a tenant costs: a 3-node cluster of real
// `rafting server` processes, N tenants created (default 1,000), then each
// process's idle CPU and resident memory, against the same cluster with no
// tenant.
//
//	cd benchmarks && go test -run '^$' -bench Tenants -benchtime 1x -timeout 60m ./tenants/
//
// RAFTING_BENCH_TENANTS sets N; RAFTING_BENCH_QUIESCE=0 runs --quiesce=false;
// RAFTING_BENCH_RTT sets --rtt (default 50ms).
package tenants

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/benchmarks/internal/bench"
	"github.com/rafting/rafting/internal/proctest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.Cleanup() // the binaries it built
	os.Exit(code)
}

// idle measures each process's CPU share (% of one core) and RSS over d.
func idle(servers []*proctest.Server, d time.Duration) (cpuPct []float64, rssMB []float64) {
	before := make([]time.Duration, len(servers))
	for i, s := range servers {
		before[i], _ = bench.Usage(s.Proc.PID())
	}
	time.Sleep(d)
	for i, s := range servers {
		c, rss := bench.Usage(s.Proc.PID())
		cpuPct = append(cpuPct, 100*float64(c-before[i])/float64(d))
		rssMB = append(rssMB, float64(rss)/1024)
	}
	return cpuPct, rssMB
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func BenchmarkTenants(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("RAFTING_BENCH_TENANTS")); err == nil && v > 0 {
		n = v
	}
	o := proctest.Options{Dir: bench.Dir(b)}
	if v := os.Getenv("RAFTING_BENCH_RTT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("RAFTING_BENCH_RTT: %v", err)
		}
		o.RTT = d
	}
	if os.Getenv("RAFTING_BENCH_QUIESCE") == "0" {
		o.Args = append(o.Args, "--quiesce=false")
	}
	procs := proctest.StartClusterWith(b, o).Servers
	time.Sleep(2 * time.Second)
	baseCPU, baseRSS := idle(procs, 10*time.Second)

	client := &http.Client{Timeout: 60 * time.Second}
	start := time.Now()
	var next atomic.Int64
	var lat []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				body, _ := json.Marshal(api.CreateTenantRequest{Name: fmt.Sprintf("t%04d", i), Secret: strings.Repeat("s", 30)})
				for {
					req, _ := http.NewRequest(http.MethodPost, "http://"+procs[i%3].API+"/v1/tenants", bytes.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+proctest.AdminToken)
					t0 := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						errs <- err
						return
					}
					rb, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK {
						mu.Lock()
						lat = append(lat, time.Since(t0))
						mu.Unlock()
						break
					}
					if e := api.Decode(resp.StatusCode, rb, ""); !e.Code.Retryable() {
						errs <- e
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	created := time.Since(start)
	time.Sleep(15 * time.Second) // settle; quiesce needs 10 election timeouts of silence
	cpu, rss := idle(procs, 10*time.Second)

	b.ReportMetric(created.Seconds(), "create-all-s")
	b.ReportMetric(bench.Pct(lat, 50), "create-p50-ms")
	b.ReportMetric(bench.Pct(lat, 99), "create-p99-ms")
	b.ReportMetric(mean(baseCPU), "idle-cpu-0-tenants-%core/node")
	b.ReportMetric(mean(cpu), "idle-cpu-%core/node")
	b.ReportMetric(mean(baseRSS), "rss-0-tenants-MB/node")
	b.ReportMetric(mean(rss), "rss-MB/node")
	b.ReportMetric((mean(cpu)-mean(baseCPU))/float64(n), "cpu-%core/tenant/node")
	b.ReportMetric((mean(rss)-mean(baseRSS))*1024/float64(n), "rss-KB/tenant/node")
}
