package attacks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/benchmarks/internal/bench"
	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/internal/restclient"
)

const (
	attacker = "mallory"
	victim   = "victim"
	// The victim's workload, open loop.
	victimWrites = 20 // registrations a second
	victimReads  = 20 // reads a second
	victimKAs    = 5  // keepalives a second, through a follower of its shard
	victimFresh  = 2  // reads a second, each on a new connection
	// fillers are created between mallory and the victim so that their
	// shards share a Dragonboat worker (16 of each kind: shard ID mod 16).
	fillers = 15
)

// env is one cluster with the attacker's and the victim's tenants.
type env struct {
	tb      testing.TB
	c       *proctest.Cluster
	addrs   []string
	mallory api.Tenant
	victim  api.Tenant
	client  *http.Client // the victim's: kept connections from 127.0.0.1
}

// createTenant creates a tenant through any node, retrying what may be
// retried (internal/restclient); its secret comes from its name, so a
// create retried after a lost answer gets the tenant, not a conflict.
func createTenant(c *proctest.Cluster, name string, q api.Quotas) (api.Tenant, error) {
	rc := restclient.Client{Token: proctest.AdminToken, Retry: restclient.For(60*time.Second, 100*time.Millisecond)}
	for _, s := range c.Servers {
		rc.Servers = append(rc.Servers, "http://"+s.API)
	}
	var t api.Tenant
	if err := rc.Do(context.Background(), http.MethodPost, "/v1/tenants", api.CreateTenantRequest{Name: name, Quotas: q, Secret: proctest.Secret(name)}, &t); err != nil {
		return api.Tenant{}, fmt.Errorf("create %s: %w", name, err)
	}
	return t, nil
}

// startEnv starts three servers (with more flags args) and creates
// mallory (with quotas q), the fillers and the victim.
func startEnv(tb testing.TB, q api.Quotas, args ...string) *env {
	tb.Helper()
	c := proctest.StartClusterWith(tb, proctest.Options{Servers: 3, RTT: 50 * time.Millisecond, Dir: bench.Dir(tb), Args: args})
	e := &env{tb: tb, c: c, addrs: strings.Split(c.Addrs(), ","),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	var err error
	if e.mallory, err = createTenant(c, attacker, q); err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, fillers)
	for i := range fillers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := createTenant(c, fmt.Sprintf("filler-%02d", i), api.Quotas{}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	if e.victim, err = createTenant(c, victim, api.Quotas{}); err != nil {
		tb.Fatal(err)
	}
	if e.victim.ShardID%16 != e.mallory.ShardID%16 {
		tb.Logf("the victim's shard %d and mallory's %d do not share a Dragonboat worker", e.victim.ShardID, e.mallory.ShardID)
	}
	c.TenantLeader(attacker)
	c.TenantLeader(victim)
	return e
}

func (e *env) url(node int, path string) string { return "http://" + e.addrs[node%len(e.addrs)] + path }

// applied is the highest applied index of tenant's shard over the nodes
// (0 when none answers).
func (e *env) applied(tenant string) uint64 {
	var hi uint64
	for _, s := range e.c.Servers {
		code, b, err := e.c.Call(s.ID, proctest.AdminToken, http.MethodGet, "/v1/cluster", nil)
		if err != nil || code != http.StatusOK {
			continue
		}
		var cl api.Cluster
		if json.Unmarshal(b, &cl) != nil {
			continue
		}
		for _, sh := range cl.Shards {
			if sh.Tenant == tenant {
				hi = max(hi, sh.Applied)
			}
		}
	}
	return hi
}

// settledApplied waits until tenant's applied index has not moved for a
// second (for up to 6 s) and returns it. A new shard applies an entry or
// two of its own in its first second.
func (e *env) settledApplied(tenant string) uint64 {
	last, still := e.applied(tenant), 0
	for range 24 {
		time.Sleep(250 * time.Millisecond)
		a := e.applied(tenant)
		if a != last {
			last, still = a, 0
			continue
		}
		if still++; still == 4 {
			break
		}
	}
	return last
}

// streams is the number of mallory's session streams the nodes hold
// (rafting_session_streams, from their leaders).
func (e *env) streams() int64 {
	var n int64
	for _, s := range e.c.Servers {
		code, b, err := e.c.Call(s.ID, proctest.AdminToken, http.MethodGet, "/metrics", nil)
		if err != nil || code != http.StatusOK {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		prefix := `rafting_session_streams{tenant="` + attacker + `"} `
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				var f float64
				fmt.Sscan(v, &f)
				n += int64(f)
			}
		}
	}
	return n
}

// openVictimSession opens the victim's session whose keepalives go
// through a follower; it returns its ID and that follower (0-based).
func (e *env) openVictimSession() (string, int) {
	e.tb.Helper()
	id := "victim-session-" + randomID()
	e.c.Must(1, e.victim.Token, http.MethodPut, "/v1/tenants/"+victim+"/sessions/"+id, api.SessionRequest{TTLMs: 15000})
	leader := e.c.TenantLeader(victim) // 1-based
	return id, leader % len(e.addrs)   // the next node: a follower
}

// victimResult is what the victim measured in one or more phases.
type victimResult struct {
	reads, writes, kas, fresh []time.Duration
	sent, failed              map[string]int // by operation: read, write, keepalive, fresh
	errs                      map[string]int // failures by operation and status or error
	slow                      []string       // operations over 100 ms: when, what, where, how long
	ops                       []victimOp     // every operation, for RAFTING_ATTACKS_OPS
}

// victimOp is one of the victim's operations: when it went out, from the
// start of its phase's measured window, what it was and how long it took.
type victimOp struct {
	at, took time.Duration
	kind     string
}

func newVictimResult() victimResult {
	return victimResult{sent: map[string]int{}, failed: map[string]int{}, errs: map[string]int{}}
}

func (r *victimResult) add(o victimResult) {
	r.reads = append(r.reads, o.reads...)
	r.writes = append(r.writes, o.writes...)
	r.kas = append(r.kas, o.kas...)
	r.fresh = append(r.fresh, o.fresh...)
	for k, v := range o.sent {
		r.sent[k] += v
	}
	for k, v := range o.failed {
		r.failed[k] += v
	}
	for k, v := range o.errs {
		r.errs[k] += v
	}
	r.slow = append(r.slow, o.slow...)
	r.ops = append(r.ops, o.ops...)
}

// runVictim runs the victim's workload for d.
func (e *env) runVictim(ctx context.Context, d time.Duration, session string, kaNode int) victimResult {
	r := newVictimResult()
	var mu sync.Mutex
	var wg sync.WaitGroup
	began := time.Now()
	op := func(kind string, node int, method, path string, body []byte, fresh bool) {
		defer wg.Done()
		c := e.client
		if fresh {
			c = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		}
		var rd io.Reader = http.NoBody
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(ctx, method, e.url(node, path), rd)
		req.Header.Set("Authorization", "Bearer "+e.victim.Token)
		start := time.Now()
		resp, err := c.Do(req)
		status := 0
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			status = resp.StatusCode
		}
		took := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		r.ops = append(r.ops, victimOp{at: start.Sub(began), took: took, kind: kind})
		r.sent[kind]++
		if err != nil || status >= 300 {
			r.failed[kind]++
			what := fmt.Sprint(status)
			if err != nil {
				what = errClass(err)
			}
			r.errs[kind+" "+what]++
			return
		}
		switch kind {
		case "read":
			r.reads = append(r.reads, took)
		case "write":
			r.writes = append(r.writes, took)
		case "keepalive":
			r.kas = append(r.kas, took)
		case "fresh":
			r.fresh = append(r.fresh, took)
		}
		if took > 100*time.Millisecond {
			r.slow = append(r.slow, fmt.Sprintf("%s %s %s %v", start.Format("15:04:05.000"), kind, e.addrs[node%len(e.addrs)], took.Round(time.Millisecond)))
		}
	}
	// The operations go out at their times, open loop: one that is late
	// (this process was not scheduled) goes out at once, so every phase
	// sends the same operations.
	type event struct {
		at   time.Duration
		kind int // 0 read or write, 1 keepalive, 2 fresh read
	}
	var events []event
	for _, k := range []struct {
		kind, per int
	}{{0, victimWrites + victimReads}, {1, victimKAs}, {2, victimFresh}} {
		step := time.Second / time.Duration(k.per)
		for at := step / 2; at < d; at += step {
			events = append(events, event{at, k.kind})
		}
	}
	sort.Slice(events, func(i, j int) bool { return events[i].at < events[j].at })
	start := began
	i, j := 0, 0
	for _, ev := range events {
		if wait := time.Until(start.Add(ev.at)); wait > 0 {
			time.Sleep(wait)
		}
		switch {
		case ev.kind == 0 && i%2 == 0:
			body, _ := json.Marshal(api.RegisterRequest{Address: fmt.Sprintf("10.9.%d.%d:80", i%200, i%250)})
			wg.Add(1)
			go op("write", i/2, http.MethodPut, fmt.Sprintf("/v1/tenants/%s/services/orders/instances/o-%d", victim, i/2%50), body, false)
			i++
		case ev.kind == 0:
			wg.Add(1)
			go op("read", i/2, http.MethodGet, "/v1/tenants/"+victim+"/services/orders", nil, false)
			i++
		case ev.kind == 1 && session != "":
			wg.Add(1)
			go op("keepalive", kaNode, http.MethodPut, "/v1/tenants/"+victim+"/sessions/"+session+"/keepalive", nil, false)
		case ev.kind == 2:
			wg.Add(1)
			go op("fresh", j, http.MethodGet, "/v1/tenants/"+victim+"/services/orders", nil, true)
			j++
		}
	}
	if wait := time.Until(start.Add(d)); wait > 0 {
		time.Sleep(wait)
	}
	wg.Wait()
	return r
}

// openFiles is how many files process pid has open (-1: unknown).
func openFiles(pid int) int {
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(fds)
}

// quiet waits (up to 10 s) until the paused attacker process pid holds at
// most 16 more open files than it did when it was ready (fds): its
// connections are closed. It returns how long it waited.
func quiet(pid, fds int) time.Duration {
	start := time.Now()
	for time.Since(start) < 10*time.Second {
		if n := openFiles(pid); n <= fds+16 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// usage is what the servers hold at one moment.
type usage struct {
	rssMB []float64 // per server
	fds   []int     // per server
	dirMB float64   // the three data dirs
}

func (e *env) usage() usage {
	var u usage
	for _, s := range e.c.Servers {
		_, rss := bench.Usage(s.Proc.PID())
		u.rssMB = append(u.rssMB, float64(rss)/1024)
		u.fds = append(u.fds, openFiles(s.Proc.PID()))
		u.dirMB += dirMB(s.Dir)
	}
	return u
}

// dirMB is the size of the files under dir: the bytes written, not the
// blocks allocated (the LogDB preallocates each WAL file, 17.6 MB, whatever
// is written to it).
func dirMB(dir string) float64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			n += info.Size()
		}
		return nil
	})
	return float64(n) / (1 << 20)
}

// peaks keeps each server's highest RSS and open files, the data dirs'
// largest size and mallory's most streams, in the phase being sampled.
type peaks struct {
	rssMB   []float64
	fds     []int
	dirMB   float64
	streams int64
}

func (p *peaks) take(u usage) {
	if p.rssMB == nil {
		p.rssMB, p.fds = make([]float64, len(u.rssMB)), make([]int, len(u.fds))
	}
	for i := range u.rssMB {
		p.rssMB[i] = max(p.rssMB[i], u.rssMB[i])
		p.fds[i] = max(p.fds[i], u.fds[i])
	}
	p.dirMB = max(p.dirMB, u.dirMB)
}

// sampler samples the servers' usage every 250 ms into the peaks of the
// current phase.
type sampler struct {
	mu     sync.Mutex
	state  int   // pre (before the first attack), alone or attacked
	pre    peaks // the victim alone, before any attack
	alone  peaks
	attack peaks
	stop   chan struct{}
	done   chan struct{}
}

func (e *env) sample(withStreams bool) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			u := e.usage()
			var st int64 = -1
			if withStreams && i%4 == 0 {
				st = e.streams()
			}
			s.mu.Lock()
			p := []*peaks{&s.pre, &s.alone, &s.attack}[s.state]
			p.take(u)
			p.streams = max(p.streams, st)
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// The sampler's states.
const (
	pre = iota
	alone
	attacked
)

func (s *sampler) set(state int) {
	s.mu.Lock()
	s.state = state
	s.mu.Unlock()
}

func (s *sampler) end() {
	close(s.stop)
	<-s.done
}

// startAttacker starts the attacker process (under nice) and waits until
// it is ready; it starts paused.
func startAttacker(tb testing.TB, cfg attackConfig, nice int) *proctest.Proc {
	tb.Helper()
	js, _ := json.Marshal(cfg)
	return startChild(tb, "attacker", []string{attackEnv + "=" + string(js)}, nice, 2*time.Minute)
}

// stopAttacker ends the attacker and returns its tally.
func stopAttacker(tb testing.TB, f *proctest.Proc) attackResult {
	tb.Helper()
	f.Signal(syscall.SIGTERM)
	select {
	case <-f.Exited():
	case <-time.After(30 * time.Second):
		f.Kill()
	}
	var res attackResult
	lines := f.Lines()
	if len(lines) == 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &res) != nil {
		tb.Fatalf("the attacker printed no tally: %q\n%s", lines, f.Stderr())
	}
	return res
}

// registerMany registers n instances of service for tenant tok with meta
// of metaBytes, from 32 workers over the nodes, retrying refusals of rate.
func (e *env) registerMany(tok, tenant, service string, n, metaBytes int) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	body := registerBody(strings.Repeat("v", metaBytes-1), "")
	next := make(chan int)
	go func() {
		for i := range n {
			next <- i
		}
		close(next)
	}()
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				url := e.url(w+i, fmt.Sprintf("/v1/tenants/%s/services/%s/instances/i-%d", tenant, service, i))
				deadline := time.Now().Add(2 * time.Minute)
				for {
					st, _, err := do(context.Background(), c, http.MethodPut, url, tok, body)
					if err == nil && st < 300 {
						break
					}
					if err == nil && st != http.StatusTooManyRequests && st != http.StatusServiceUnavailable && st != http.StatusGatewayTimeout {
						mu.Lock()
						first = cmpErr(first, fmt.Errorf("register %s: %d", url, st))
						mu.Unlock()
						break
					}
					if time.Now().After(deadline) {
						mu.Lock()
						first = cmpErr(first, fmt.Errorf("register %s: %d %v, still after 2 minutes", url, st, err))
						mu.Unlock()
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// profile takes a CPU profile of every server over the next phase into
// s.pprof (pattern-<id>-node<n>-cycle<c>.pprof) when it is set, and an
// execution trace into s.trace (….trace) when that is; the returned func
// waits for them. `go tool pprof` merges the profiles given together;
// `go tool trace` reads a trace: where a request waited while the server's
// CPU was idle (scheduler latency, blocking, syscalls).
func (e *env) profile(s scale, id string, cycle int) func() {
	secs := max(1, int(s.phase/time.Second))
	var wg sync.WaitGroup
	for _, want := range []struct{ dir, path, ext string }{
		{s.pprof, "/debug/pprof/profile", "pprof"},
		{s.trace, "/debug/pprof/trace", "trace"},
	} {
		if want.dir == "" {
			continue
		}
		for _, srv := range e.c.Servers {
			wg.Go(func() {
				code, b, err := e.c.Call(srv.ID, proctest.AdminToken, http.MethodGet, fmt.Sprintf("%s?seconds=%d", want.path, secs), nil)
				if err != nil || code != http.StatusOK {
					e.tb.Logf("%s of node %d: %d %v", want.ext, srv.ID, code, err)
					return
				}
				name := filepath.Join(want.dir, fmt.Sprintf("pattern-%s-node%d-cycle%d.%s", id, srv.ID, cycle, want.ext))
				if err := os.WriteFile(name, b, 0o644); err != nil {
					e.tb.Log(err)
				}
			})
		}
	}
	return wg.Wait
}
