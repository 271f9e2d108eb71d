package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// BenchmarkPropagation: 100 watchers of one service (10 instances) on a
// three-node in-process cluster, spread over the nodes alike in both runs:
// over client streams (each its own HTTP/2 connection, as 100 SDK Clients
// would hold) and over blocking queries (HTTP/1.1, a long poll per watcher,
// as the SDK makes them today). Each iteration changes one instance
// through the leader and measures, from the write's answer, when each
// watcher has the change: p50/p99 per watcher, and of the slowest of the
// 100 per change, in ms.
//
//	go test -run '^$' -bench Propagation -benchtime 200x ./server/httpapi/
func BenchmarkPropagation(b *testing.B) {
	const watchers = 100
	c := servertest.Start(b, servertest.Options{})
	tok := c.CreateTenant("bench", api.Quotas{RequestsPerSecond: 1_000_000, Burst: 1_000_000, WritesPerSecond: 1_000_000})
	leader := c.WaitTenantLeader("bench")
	for i := range 10 {
		c.Do(leader, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/bench/services/prop/instances/p%d", i), api.RegisterRequest{Address: "192.0.2.1:80"})
	}
	changes := 0 // every change a new address, across runs: a write that changes nothing moves no index
	run := func(b *testing.B, start func(ctx context.Context, node int, seen *seenLog)) {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		logs := make([]*seenLog, watchers)
		for i := range logs {
			logs[i] = &seenLog{changed: make(chan struct{}, 1)}
			wg.Add(1)
			go func() {
				defer wg.Done()
				start(ctx, 1+i%3, logs[i])
			}()
		}
		// Every watcher has the service before the first change.
		var svc api.ServiceResponse
		c.Do(leader, tok, http.MethodGet, "/v1/tenants/bench/services/prop?consistent=true", nil).JSON(b, &svc)
		for _, l := range logs {
			l.waitFor(b, svc.ModifyIndex)
		}
		var each, all []time.Duration
		b.ResetTimer()
		for n := range b.N {
			changes++
			r := c.Do(leader, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/bench/services/prop/instances/p%d", n%10),
				api.RegisterRequest{Address: fmt.Sprintf("10.%d.%d.%d:80", changes/62500%250, changes/250%250, changes%250)})
			t0 := time.Now()
			var rr api.RegisterResponse
			if r.Status != http.StatusOK {
				b.Fatalf("update = %d %s", r.Status, r.Body)
			}
			r.JSON(b, &rr)
			var worst time.Duration
			for _, l := range logs {
				d := max(0, l.waitFor(b, rr.Index).Sub(t0))
				each = append(each, d)
				worst = max(worst, d)
			}
			all = append(all, worst)
		}
		b.StopTimer()
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		b.ReportMetric(ms(pctl(each, 50)), "p50-watcher-ms")
		b.ReportMetric(ms(pctl(each, 99)), "p99-watcher-ms")
		b.ReportMetric(ms(pctl(all, 50)), "p50-all-ms")
		b.ReportMetric(ms(pctl(all, 99)), "p99-all-ms")
	}

	b.Run("stream", func(b *testing.B) {
		run(b, func(ctx context.Context, node int, seen *seenLog) {
			streamWatcher(ctx, b, h2cClient(0), c.Addr(node), tok, seen)
		})
	})
	b.Run("blocking", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
		run(b, func(ctx context.Context, node int, seen *seenLog) {
			blockingWatcher(ctx, b, client, c.Addr(node), tok, seen)
		})
	})
}

// seenLog is when one watcher got each index.
type seenLog struct {
	mu      sync.Mutex
	seen    []seenAt // the latest, oldest first
	changed chan struct{}
}

type seenAt struct {
	index uint64
	at    time.Time
}

func (l *seenLog) add(index uint64) {
	now := time.Now()
	l.mu.Lock()
	l.seen = append(l.seen, seenAt{index, now})
	if len(l.seen) > 256 {
		l.seen = slices.Delete(l.seen, 0, 128)
	}
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// waitFor returns when the watcher first held index or a later one.
func (l *seenLog) waitFor(b *testing.B, index uint64) time.Time {
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		for _, s := range l.seen {
			if s.index >= index {
				l.mu.Unlock()
				return s.at
			}
		}
		l.mu.Unlock()
		select {
		case <-l.changed:
		case <-deadline:
			b.Fatalf("a watcher did not get index %d in 10s", index)
		}
	}
}

// streamWatcher watches prop on a client stream, as an SDK Client would.
func streamWatcher(ctx context.Context, b *testing.B, client *http.Client, addr, tok string, seen *seenLog) {
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/tenants/bench/stream", pr)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	defer resp.Body.Close()
	go func() {
		_, _ = pw.Write([]byte(`{"type":"watch","req":1,"w":1,"service":"prop"}` + "\n"))
		<-ctx.Done()
		pw.CloseWithError(ctx.Err())
	}()
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return
		}
		var f struct {
			Type  string `json:"type"`
			Index uint64 `json:"index"`
		}
		if json.Unmarshal(line, &f) == nil && (f.Type == api.FrameSnapshot || f.Type == api.FrameChanges) {
			seen.add(f.Index)
		}
	}
}

// blockingWatcher watches prop with blocking queries, as the SDK does
// without the stream.
func blockingWatcher(ctx context.Context, b *testing.B, client *http.Client, addr, tok string, seen *seenLog) {
	var index uint64
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
			fmt.Sprintf("http://%s/v1/tenants/bench/services/prop?index=%d&wait=60000", addr, index), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			continue
		}
		var svc api.ServiceResponse
		err = json.NewDecoder(resp.Body).Decode(&svc)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			continue
		}
		index = svc.ModifyIndex
		seen.add(index)
	}
}

func pctl(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, (len(s)*p+99)/100-1)]
}

// BenchmarkKeepalive: renewing 1,000 sessions on the tenant leader of a
// three-node in-process cluster, in one keepalive frame on a client stream
// against 1,000 REST keepalives (HTTP/1.1, 32 at a time, as the SDK sends
// them today). Reported per session renewed: the process's CPU (servers
// and client together) in µs.
//
//	go test -run '^$' -bench Keepalive -benchtime 20x ./server/httpapi/
func BenchmarkKeepalive(b *testing.B) {
	const sessions = 1000
	c := servertest.Start(b, servertest.Options{})
	tok := c.CreateTenant("bench", api.Quotas{RequestsPerSecond: 1_000_000, Burst: 1_000_000, WritesPerSecond: 1_000_000, MaxSessions: 100_000})
	leader := c.WaitTenantLeader("bench")
	var items []api.KeepaliveItem
	for i := range sessions {
		id := fmt.Sprintf("sess-bench-ka-%08d", i)
		if r := c.Do(leader, tok, http.MethodPut, "/v1/tenants/bench/sessions/"+id, api.SessionRequest{TTLMs: 60000}); r.Status != http.StatusCreated {
			b.Fatalf("open session = %d %s", r.Status, r.Body)
		}
		items = append(items, api.KeepaliveItem{ID: id})
	}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	report := func(b *testing.B, used time.Duration) {
		b.ReportMetric(float64(used.Microseconds())/float64(b.N*sessions), "cpu-µs/session")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("stream", func(b *testing.B) {
		s := openStream(b, h2cClient(0), c.Addr(leader), "bench", tok)
		b.ResetTimer()
		start := cpu()
		for n := range b.N {
			frame, _ := json.Marshal(api.ClientFrame{Type: api.FrameKeepalive, Req: uint64(1 + n), Sessions: items})
			s.send(frame)
			r := s.result(uint64(1 + n))
			if r.Status != http.StatusOK {
				b.Fatalf("keepalive = %d", r.Status)
			}
		}
		report(b, cpu()-start)
	})
	// One session a frame, each answered before the next is sent: an
	// idle Client's keepalive, which has no other session to share its
	// round with.
	b.Run("stream-single", func(b *testing.B) {
		s := openStream(b, h2cClient(0), c.Addr(leader), "bench", tok)
		b.ResetTimer()
		start := cpu()
		req := uint64(0)
		for range b.N {
			for _, it := range items {
				req++
				frame, _ := json.Marshal(api.ClientFrame{Type: api.FrameKeepalive, Req: req, Sessions: []api.KeepaliveItem{it}})
				s.send(frame)
				if r := s.result(req); r.Status != http.StatusOK {
					b.Fatalf("keepalive = %d", r.Status)
				}
			}
		}
		report(b, cpu()-start)
	})
	b.Run("rest", func(b *testing.B) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		b.ResetTimer()
		start := cpu()
		for range b.N {
			var wg sync.WaitGroup
			next := make(chan string)
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for id := range next {
						req, _ := http.NewRequest(http.MethodPut, "http://"+c.Addr(leader)+"/v1/tenants/bench/sessions/"+id+"/keepalive", http.NoBody)
						req.Header.Set("Authorization", "Bearer "+tok)
						resp, err := client.Do(req)
						if err != nil {
							b.Error(err)
							continue
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			for _, it := range items {
				next <- it.ID
			}
			close(next)
			wg.Wait()
		}
		report(b, cpu()-start)
	})
}

// BenchmarkKVPut: 32 clients each write their own 20 keys in turn, one
// write in flight each, on a three-node in-process cluster: as put_kv
// frames on a client stream each (as SDK Clients send them), and as REST
// PUTs (HTTP/1.1, a kept connection each). Reported: writes a second, and
// the process's CPU (three servers and the clients) per write in µs —
// what a profile of it splits between HTTP, JSON, Raft and the log.
//
//	go test -run '^$' -bench KVPut -benchtime 4000x ./server/httpapi/
func BenchmarkKVPut(b *testing.B) {
	const clients = 32
	c := servertest.Start(b, servertest.Options{})
	tok := c.CreateTenant("bench", api.Quotas{RequestsPerSecond: 1_000_000, Burst: 1_000_000, WritesPerSecond: 1_000_000})
	leader := c.WaitTenantLeader("bench")
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	value := strings.Repeat("v", 100)
	run := func(b *testing.B, put func(client, n int)) {
		var wg sync.WaitGroup
		per := (b.N + clients - 1) / clients
		b.ResetTimer()
		start, t0 := cpu(), time.Now()
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := range per {
					put(i, n)
				}
			}()
		}
		wg.Wait()
		elapsed, used := time.Since(t0), cpu()-start
		b.StopTimer()
		b.ReportMetric(float64(clients*per)/elapsed.Seconds(), "writes/s")
		b.ReportMetric(float64(used.Microseconds())/float64(clients*per), "cpu-µs/write")
		b.ReportMetric(0, "ns/op")
	}
	b.Run("stream", func(b *testing.B) {
		streams := make([]*tstream, clients)
		for i := range streams {
			streams[i] = openStream(b, h2cClient(0), c.Addr(leader), "bench", tok)
		}
		body, _ := json.Marshal(api.KVPutRequest{Text: &value})
		run(b, func(i, n int) {
			s := streams[i]
			req := uint64(n + 1)
			s.send(api.ClientFrame{Type: api.FramePutKV, Req: req, Key: fmt.Sprintf("bench/c%d/k%d", i, n%20), Body: body})
			if r := s.result(req); r.Status >= 300 {
				b.Errorf("put_kv = %d %s", r.Status, r.Body)
			}
		})
	})
	b.Run("rest", func(b *testing.B) {
		clientsHTTP := make([]*http.Client, clients)
		for i := range clientsHTTP {
			clientsHTTP[i] = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		}
		run(b, func(i, n int) {
			req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/v1/tenants/bench/kv/bench/r%d/k%d", c.Addr(leader), i, n%20), strings.NewReader(value))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := clientsHTTP[i].Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 300 {
				b.Errorf("PUT = %d", resp.StatusCode)
			}
		})
	})
}
