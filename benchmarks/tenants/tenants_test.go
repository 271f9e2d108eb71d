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
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/benchmarks/internal/bench"
	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/internal/restclient"
)

func TestMain(m *testing.M) {
	code := m.Run()
	proctest.Cleanup() // the binaries it built
	os.Exit(code)
}

// pids are the servers' process IDs.
func pids(servers []*proctest.Server) []int {
	out := make([]int, len(servers))
	for i, s := range servers {
		out[i] = s.Proc.PID()
	}
	return out
}

func BenchmarkTenants(b *testing.B) {
	n := bench.MustInt(b, "RAFTING_BENCH_TENANTS", 1000, 1)
	o := proctest.Options{Dir: bench.Dir(b), RTT: bench.MustDuration(b, "RAFTING_BENCH_RTT", 0)}
	if !bench.MustBool(b, "RAFTING_BENCH_QUIESCE", true) {
		o.Args = append(o.Args, "--quiesce=false")
	}
	procs := proctest.StartClusterWith(b, o).Servers
	time.Sleep(2 * time.Second)
	baseCPU, baseRSS := bench.Idle(pids(procs), 10*time.Second)

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
				body, _ := json.Marshal(api.CreateTenantRequest{Name: fmt.Sprintf("t%04d", i), Secret: proctest.Secret(fmt.Sprintf("t%04d", i))})
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
	cpu, rss := bench.Idle(pids(procs), 10*time.Second)

	b.ReportMetric(created.Seconds(), "create-all-s")
	b.ReportMetric(bench.Pct(lat, 50), "create-p50-ms")
	b.ReportMetric(bench.Pct(lat, 99), "create-p99-ms")
	b.ReportMetric(bench.Mean(baseCPU), "idle-cpu-0-tenants-%core/node")
	b.ReportMetric(bench.Mean(cpu), "idle-cpu-%core/node")
	b.ReportMetric(bench.Mean(baseRSS), "rss-0-tenants-MB/node")
	b.ReportMetric(bench.Mean(rss), "rss-MB/node")
	b.ReportMetric((bench.Mean(cpu)-bench.Mean(baseCPU))/float64(n), "cpu-%core/tenant/node")
	b.ReportMetric((bench.Mean(rss)-bench.Mean(baseRSS))*1024/float64(n), "rss-KB/tenant/node")
}

// BenchmarkBackupRestore measures a backup and its restore at scale: N
// tenants (RAFTING_BENCH_TENANTS, default 1,000) with one permanent
// instance each on a cluster of three `rafting server` processes, then
// GET /v1/backup, a second cluster of three processes, and POST
// /v1/restore into it; every tenant's token and instance are checked on
// the new cluster.
//
//	cd benchmarks && go test -run '^$' -bench BackupRestore -benchtime 1x -timeout 60m ./tenants/
func BenchmarkBackupRestore(b *testing.B) {
	n := bench.MustInt(b, "RAFTING_BENCH_TENANTS", 1000, 1)
	src := proctest.StartClusterWith(b, proctest.Options{Dir: bench.Dir(b)})
	token := func(i int) string {
		name := fmt.Sprintf("t%04d", i)
		return "rft_" + name + "_" + proctest.Secret(name)
	}
	each(b, n, func(i int) error {
		name := fmt.Sprintf("t%04d", i)
		base := "http://" + src.Servers[i%3].API
		if err := call(base, proctest.AdminToken, http.MethodPost, "/v1/tenants", api.CreateTenantRequest{Name: name, Secret: proctest.Secret(name)}); err != nil {
			return err
		}
		return call(base, token(i), http.MethodPut, "/v1/tenants/"+name+"/services/web/instances/p1", api.RegisterRequest{Address: "10.0.0.1:80"})
	})

	long := &http.Client{Timeout: 30 * time.Minute}
	t0 := time.Now()
	backup := send(b, long, "http://"+src.Servers[0].API, http.MethodGet, "/v1/backup", nil)
	took := time.Since(t0)
	var bk api.Backup
	if err := json.Unmarshal(backup, &bk); err != nil || len(bk.Tenants) != n {
		b.Fatalf("backup: %d tenants (%v)", len(bk.Tenants), err)
	}

	for _, s := range src.Servers { // the cluster is lost: its CPU goes to the new one
		s.Proc.Stop(30 * time.Second)
	}
	dst := proctest.StartClusterWith(b, proctest.Options{Dir: bench.Dir(b)})
	t1 := time.Now()
	var res api.RestoreResponse
	if err := json.Unmarshal(send(b, long, "http://"+dst.Servers[1].API, http.MethodPost, "/v1/restore", backup), &res); err != nil || res.Tenants != n || res.Instances != n {
		b.Fatalf("restore: %+v (%v)", res, err)
	}
	restored := time.Since(t1)
	each(b, n, func(i int) error {
		url := "http://" + dst.Servers[i%3].API + fmt.Sprintf("/v1/tenants/t%04d/services/web?consistent=true", i)
		for deadline := time.Now().Add(time.Minute); ; {
			code, body, err := proctest.Call(http.MethodGet, url, token(i), nil)
			switch {
			case err == nil && code == http.StatusOK && strings.Contains(string(body), `"id":"p1"`):
				return nil
			case time.Now().After(deadline) || err == nil && (code == http.StatusOK || !api.Decode(code, body, "").Code.Retryable()):
				return fmt.Errorf("tenant t%04d on the restored cluster: %d %s %v", i, code, body, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	b.ReportMetric(took.Seconds(), "backup-s")
	b.ReportMetric(float64(len(backup))/1024, "backup-KB")
	b.ReportMetric(restored.Seconds(), "restore-s")
}

// each runs fn for 0..n-1 on 16 goroutines; the first error fails b.
func each(b *testing.B, n int, fn func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// call sends one admin or tenant request to server base, retrying what
// the API says may be retried, 100 ms apart for at most a minute.
func call(base, token, method, path string, body any) error {
	c := restclient.Client{Servers: []string{base}, Token: token, Retry: restclient.For(time.Minute, 100*time.Millisecond)}
	return c.Do(context.Background(), method, path, body, nil)
}

// send sends one admin request, once, with its own client (a backup or
// restore of many tenants takes longer than 30 s), and returns the body.
func send(b *testing.B, hc *http.Client, base, method, path string, body []byte) []byte {
	c := restclient.Client{Servers: []string{base}, Token: proctest.AdminToken, HTTP: hc, Retry: restclient.Tries(1, 0)}
	resp, err := c.Send(context.Background(), restclient.Request{Method: method, Path: path, Body: body})
	if err != nil {
		b.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.Body
}
