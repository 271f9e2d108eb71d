// Package noisy measures tenant isolation under a noisy neighbour: tenant B
// runs a steady register/query workload while tenant A floods at 10× its
// rate limit from many connections.
//
// The servers are three `rafting server` processes; B's workload runs in the
// benchmark process and A's flood in a child process of its own, as it
// would from another client host: no client shares a Go runtime (heap, GC,
// scheduler) with a server or with the other tenant. All of them share this
// machine's two cores, which a flood from another host would not: the
// flood process's own CPU (building, sending and reading 550 requests a
// second) would compete with the servers and B for cores that A's client
// does not have in a deployment. So the flood process runs at nice 19 (all
// of its threads), RAFTING_NOISY_NICE=n sets another level and 0 none; the
// servers and B then get the CPU first, and A's achieved rate is reported
// either way.
//
// Phases alternate, B alone then B under the flood, RAFTING_NOISY_CYCLES
// times (default 15) of RAFTING_NOISY_PHASE each (default 2s). Short phases
// put the slow stretches of a shared host and disk (seconds to minutes
// long) on both sides alike, where long phases let one stretch decide the
// ratio. The flood process runs throughout and pauses between its phases
// (SIGUSR1 pauses, SIGUSR2 resumes): a paused connection sends nothing and
// a resumed one starts again at its own offset within one period, as at
// the start, so a resumption is the same spread stream as the rest of the
// flood, not a burst. Nothing is measured for half a second after each
// switch, while the requests A has in flight (429s are held up to 375 ms)
// are answered.
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
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/benchmarks/internal/bench"
	"github.com/rafting/rafting/internal/proctest"
)

const (
	bRate   = 100 // tenant B: operations per second (half writes, half reads), open loop
	aConns  = 64
	servers = 3
	// settle follows each switch of the flood, unmeasured: A's requests in
	// flight are answered (a 429 is held up to 375 ms) or reach the servers.
	settle = 500 * time.Millisecond
)

type result struct {
	lat  []time.Duration
	put  []time.Duration // registrations only: lat's writes
	sent int
	ok   int
	slow []string // operations over 50 ms: when, what, where, how long
}

func (r *result) add(o result) {
	r.lat = append(r.lat, o.lat...)
	r.put = append(r.put, o.put...)
	r.sent += o.sent
	r.ok += o.ok
	r.slow = append(r.slow, o.slow...)
}

// steady runs B's open-loop workload for d: every 1/bRate it starts an
// operation (register or read, alternating, round-robin over the nodes).
func steady(ctx context.Context, addrs []string, client *http.Client, tok string, d time.Duration) result {
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
			addr := addrs[i%len(addrs)]
			var req *http.Request
			if i%2 == 0 {
				body, _ := json.Marshal(api.RegisterRequest{Address: fmt.Sprintf("10.9.%d.%d:80", i%200, i%250)})
				req, _ = http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("http://%s/v1/tenants/bravo/services/orders/instances/o-%d", addr, i%50), bytes.NewReader(body))
			} else {
				req, _ = http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/v1/tenants/bravo/services/orders", addr), nil)
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
				took := time.Since(start)
				mu.Lock()
				r.ok++
				r.lat = append(r.lat, took)
				if req.Method == http.MethodPut {
					r.put = append(r.put, took)
				}
				if took > 50*time.Millisecond {
					r.slow = append(r.slow, fmt.Sprintf("%s %s %s %v", start.Format("15:04:05.000"), req.Method, addr, took.Round(time.Millisecond)))
				}
				mu.Unlock()
			}
		}(i)
	}
}

// floodEnv, when set in the environment (addresses|token), makes this test
// binary A's flood process: it prints "flooding" and floods, pauses on
// SIGUSR1 and resumes on SIGUSR2, and on SIGTERM prints its counts.
const floodEnv = "RAFTING_NOISY_FLOOD"

type floodCounts struct {
	Total   int64   `json:"total"`
	Limited int64   `json:"limited"`
	Secs    float64 `json:"secs"` // not paused
}

func TestMain(m *testing.M) {
	if v := os.Getenv(floodEnv); v != "" {
		var fk floodKnobs
		if err := json.Unmarshal([]byte(v), &fk); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		var total, limited atomic.Int64
		g := newGate()
		sw := make(chan os.Signal, 1)
		signal.Notify(sw, syscall.SIGUSR1, syscall.SIGUSR2)
		done := make(chan struct{})
		go func() {
			flood(ctx, fk, g, &total, &limited)
			close(done)
		}()
		fmt.Println("flooding")
		for flooding := true; flooding; {
			select {
			case sig := <-sw:
				g.set(sig == syscall.SIGUSR2)
			case <-done:
				flooding = false
			}
		}
		g.set(false)
		b, _ := json.Marshal(floodCounts{Total: total.Load(), Limited: limited.Load(), Secs: g.openFor.Seconds()})
		fmt.Println(string(b))
		return
	}
	code := m.Run()
	proctest.Cleanup() // the binaries it built
	os.Exit(code)
}

// gate holds A's connections while the flood is paused, and sums the time
// it was open.
type gate struct {
	mu      sync.Mutex
	open    chan struct{} // closed while the flood runs
	since   time.Time     // last opened
	openFor time.Duration // until it was last closed
}

func newGate() *gate {
	g := &gate{open: make(chan struct{}), since: time.Now()}
	close(g.open)
	return g
}

// wait returns a channel closed while the gate is open.
func (g *gate) wait() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

// set opens or closes the gate; setting it as it is changes nothing.
func (g *gate) set(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		if !open {
			g.open = make(chan struct{})
			g.openFor += time.Since(g.since)
		}
	default:
		if open {
			close(g.open)
			g.since = time.Now()
		}
	}
}

// floodKnobs is what the flood process is told, in $RAFTING_NOISY_FLOOD
// (JSON): whom to flood and how fast.
type floodKnobs struct {
	Addrs []string `json:"addrs"`
	Token string   `json:"token"`
	Rate  int      `json:"rate"` // requests per second over the cluster
}

// flood runs A: aConns connections sending at k.Rate while g is open.
func flood(ctx context.Context, k floodKnobs, g *gate, total, limited *atomic.Int64) {
	addrs, tok := k.Addrs, k.Token
	per := time.Second * time.Duration(aConns) / time.Duration(k.Rate)
	var wg sync.WaitGroup
	for w := 0; w < aConns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
			defer client.CloseIdleConnections()
			// Connections start their ticks spread over one period, when
			// the flood starts and when it resumes: together they would
			// send in bursts of aConns, which Raft commits in a few
			// batches, not as the steady stream of requests from
			// independent clients that a flood is.
			start := func() bool {
				select {
				case <-ctx.Done():
					return false
				case <-g.wait():
				}
				select {
				case <-ctx.Done():
					return false
				case <-time.After(per * time.Duration(w) / aConns):
					return true
				}
			}
			if !start() {
				return
			}
			tick := time.NewTicker(per)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				select {
				case <-g.wait():
				default: // paused: no ticks until it resumes
					tick.Stop()
					if !start() {
						return
					}
					tick.Reset(per)
				}
				addr := addrs[(w+i)%len(addrs)]
				var req *http.Request
				if i%2 == 0 {
					body, _ := json.Marshal(api.RegisterRequest{Address: "10.8.0.1:80"})
					req, _ = http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("http://%s/v1/tenants/alpha/services/spam/instances/s-%d", addr, (w*1000+i)%100), bytes.NewReader(body))
				} else {
					req, _ = http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/v1/tenants/alpha/services/spam", addr), nil)
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

// knobs are the benchmark's settings (bench's knobs), read once before
// anything starts; the flood process is told its share in floodKnobs.
type knobs struct {
	aRPS   int           // A's requests_per_second (and burst) per node: RAFTING_NOISY_A_RPS [100]
	aWPS   int           // A's writes_per_second per node: RAFTING_NOISY_A_WPS [aRPS/2: the flood is half writes]
	floodX int           // how many times its cluster-wide limit A sends: RAFTING_NOISY_FLOOD_X [10]
	nice   int           // the flood process's nice level: RAFTING_NOISY_NICE [19; 0 none]
	cycles int           // phases of B alone and B under the flood: RAFTING_NOISY_CYCLES [15]
	phase  time.Duration // each phase: RAFTING_NOISY_PHASE [2s]
}

func readKnobs(b *testing.B) knobs {
	b.Helper()
	k := knobs{aRPS: bench.MustInt(b, "RAFTING_NOISY_A_RPS", 100, 1)}
	k.aWPS = bench.MustInt(b, "RAFTING_NOISY_A_WPS", k.aRPS/2, 0)
	k.floodX = bench.MustInt(b, "RAFTING_NOISY_FLOOD_X", 10, 1)
	k.nice = bench.MustInt(b, "RAFTING_NOISY_NICE", 19, -20)
	k.cycles = bench.MustInt(b, "RAFTING_NOISY_CYCLES", 15, 1)
	k.phase = bench.MustDuration(b, "RAFTING_NOISY_PHASE", 2*time.Second)
	return k
}

// renice sets the nice level of every thread of process pid: on Linux a
// nice level is a thread's, and setpriority(PRIO_PROCESS, pid) sets only
// the main thread's.
func renice(b *testing.B, pid, nice int) {
	if nice == 0 {
		return
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, t := range tasks {
		if tid, err := strconv.Atoi(t.Name()); err == nil {
			_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice) // a thread may have ended
		}
	}
}

func BenchmarkNoisyNeighbour(b *testing.B) {
	k := readKnobs(b)
	c := proctest.StartCluster(b, servers, 50*time.Millisecond)
	addrs := strings.Split(c.Addrs(), ",")
	var alpha api.Tenant
	created := c.Must(1, proctest.AdminToken, http.MethodPost, "/v1/tenants", api.CreateTenantRequest{Name: "alpha",
		Quotas: api.Quotas{RequestsPerSecond: int64(k.aRPS), Burst: int64(k.aRPS), WritesPerSecond: int64(k.aWPS)}})
	if err := json.Unmarshal(created, &alpha); err != nil {
		b.Fatal(err)
	}
	bravo := c.CreateTenant("bravo")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	ctx := context.Background()
	steady(ctx, addrs, client, bravo, 2*time.Second) // warm up

	var base, noisy result
	// CPU of the three servers (and of the flood process) in each phase.
	serverCPU := func() (t time.Duration) {
		for _, s := range c.Servers {
			cpu, _ := bench.Usage(s.Proc.PID())
			t += cpu
		}
		return t
	}
	var baseCPU, noisyCPU, floodCPU, baseWall, noisyWall time.Duration
	fk, _ := json.Marshal(floodKnobs{Addrs: addrs, Token: alpha.Token, Rate: k.floodX * k.aRPS * len(addrs)})
	f := proctest.Start(b, "flood", os.Args[0], []string{floodEnv + "=" + string(fk)}, "-test.run=^$")
	for len(f.Lines()) == 0 { // "flooding": its signal handlers are set
		select {
		case <-f.Exited():
			b.Fatalf("the flood process exited: %s", f.Stderr())
		case <-time.After(10 * time.Millisecond):
		}
	}
	renice(b, f.PID(), k.nice)
	time.Sleep(time.Second)    // the flood reaches its rate
	renice(b, f.PID(), k.nice) // the threads it started meanwhile
	f.Signal(syscall.SIGUSR1)
	time.Sleep(settle)
	d := k.phase
	for range k.cycles {
		cpu0, t0 := serverCPU(), time.Now()
		base.add(steady(ctx, addrs, client, bravo, d))
		baseCPU, baseWall = baseCPU+serverCPU()-cpu0, baseWall+time.Since(t0)

		f.Signal(syscall.SIGUSR2)
		time.Sleep(settle)
		cpu0, t0 = serverCPU(), time.Now()
		fcpu0, _ := bench.Usage(f.PID())
		noisy.add(steady(ctx, addrs, client, bravo, d))
		noisyCPU, noisyWall = noisyCPU+serverCPU()-cpu0, noisyWall+time.Since(t0)
		fcpu1, _ := bench.Usage(f.PID())
		floodCPU += fcpu1 - fcpu0
		f.Signal(syscall.SIGUSR1)
		time.Sleep(settle)
	}
	f.Signal(syscall.SIGTERM)
	<-f.Exited()
	var counts floodCounts
	lines := f.Lines()
	if json.Unmarshal([]byte(lines[len(lines)-1]), &counts) != nil {
		b.Fatalf("the flood process printed no counts: %q\n%s", lines, f.Stderr())
	}

	b.Logf("B's operations over 50 ms alone: %q", base.slow)
	b.Logf("B's operations over 50 ms under the flood: %q", noisy.slow)
	b.ReportMetric(bench.Pct(base.lat, 50), "B-base-p50-ms")
	b.ReportMetric(bench.Pct(base.lat, 99), "B-base-p99-ms")
	b.ReportMetric(bench.Pct(noisy.lat, 50), "B-noisy-p50-ms")
	b.ReportMetric(bench.Pct(noisy.lat, 99), "B-noisy-p99-ms")
	b.ReportMetric(bench.Pct(noisy.lat, 99)/bench.Pct(base.lat, 99), "B-p99-ratio")
	b.ReportMetric(bench.Pct(base.put, 99), "B-base-write-p99-ms")
	b.ReportMetric(bench.Pct(noisy.put, 99), "B-noisy-write-p99-ms")
	b.ReportMetric(100*float64(noisy.ok)/float64(noisy.sent), "B-completed-%")
	b.ReportMetric(float64(counts.Total)/counts.Secs, "A-req/s")
	b.ReportMetric(100*float64(counts.Limited)/float64(max(counts.Total, 1)), "A-429-%")
	pct := func(cpu, wall time.Duration) float64 { return 100 * cpu.Seconds() / wall.Seconds() }
	b.ReportMetric(pct(baseCPU, baseWall), "servers-base-%core")
	b.ReportMetric(pct(noisyCPU, noisyWall), "servers-noisy-%core")
	b.ReportMetric(pct(floodCPU, noisyWall), "flood-process-%core")
	// What one of A's requests costs the servers, most of them rejected.
	b.ReportMetric(1e6*(noisyCPU.Seconds()/noisyWall.Seconds()-baseCPU.Seconds()/baseWall.Seconds())/(float64(counts.Total)/counts.Secs), "server-µs/A-request")
}
