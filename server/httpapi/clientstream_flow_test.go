package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/httpapi"
	"github.com/rafting/rafting/server/servertest"
)

// TestClientStreamSlowReader: a client that stops reading costs the server
// what its limits say and slows no other stream. Its watch, behind when
// it reads again, is sent resync; a stream whose queue stays full ends
// with moved; one that does not read at all is ended after WriteTimeout,
// and its attached session keeps its TTL (no drop_grace: the server ended
// it). Meanwhile a second stream's propagation latency is measured, alone
// and beside the stalled ones.
func TestClientStreamSlowReader(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	api1 := c.Server(1).API()
	api1.SetStreamLimits(httpapi.StreamLimits{QueueFrames: 16, StallClose: time.Second, WriteTimeout: 4 * time.Second,
		WatchLag: 300 * time.Millisecond, PingAfter: 200 * time.Millisecond})
	q := generous
	q.MaxMetaBytes = 8192
	tok := c.CreateTenant("acme", q)
	c.WaitTenantLeader("acme")
	big := strings.Repeat("x", 3000)
	var seq int
	var writeMu sync.Mutex
	// write registers an instance with 3 KB of meta; it returns the index
	// and when it was sent.
	write := func() (uint64, time.Time) {
		writeMu.Lock()
		seq++
		id := fmt.Sprintf("i%04d", seq)
		writeMu.Unlock()
		start := time.Now()
		r := c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/"+id, api.RegisterRequest{Address: "a:1", Meta: map[string]string{"b": big}})
		var rr api.RegisterResponse
		if r.Status != http.StatusCreated {
			t.Fatalf("register = %d %s", r.Status, r.Body)
		}
		r.JSON(t, &rr)
		return rr.Index, start
	}
	watch := func(s *tstream, w uint64, index uint64) {
		t.Helper()
		s.send(api.ClientFrame{Type: api.FrameWatch, Req: 1000 + w, W: w, Service: "web", Index: index})
		if r := s.result(1000 + w); r.Status != http.StatusOK {
			t.Fatalf("watch = %d %s", r.Status, r.Body)
		}
	}
	// latencies sends n writes and measures when s's watch w has each.
	latencies := func(s *tstream, w uint64, n int) []time.Duration {
		var out []time.Duration
		for range n {
			index, start := write()
			s.wait(10*time.Second, "the change", func(fs []recvFrame, _ bool) bool {
				for i := len(fs) - 1; i >= 0; i-- {
					if f := fs[i].f; f.W == w && f.Index >= index {
						out = append(out, fs[i].at.Sub(start))
						return true
					}
				}
				return false
			})
		}
		return out
	}

	b := openStream(t, h2cClient(0), c.Addr(1), "acme", tok)
	watch(b, 1, 0)
	alone := latencies(b, 1, 40)

	// A stops reading for good, with a session attached; C pauses; D
	// stops reading and sends requests.
	small := h2cClient(32 << 10)
	a := openStream(t, small, c.Addr(1), "acme", tok)
	sid := sessionID("slow", 0)
	a.openSession(1, sid, api.SessionRequest{TTLMs: 20000, DropGraceMs: 200})
	reg, _ := json.Marshal(api.RegisterRequest{Address: "s:1", Session: sid})
	a.send(api.ClientFrame{Type: api.FramePutInstance, Req: 2, Service: "owned", ID: "o1", Body: reg})
	a.result(2)
	a.send(api.ClientFrame{Type: api.FrameAttach, Req: 3, Session: sid})
	if r := a.result(3); r.Status != http.StatusOK {
		t.Fatalf("attach = %d %s", r.Status, r.Body)
	}
	watch(a, 1, 0)
	a.pause()
	cs := openStream(t, small, c.Addr(1), "acme", tok)
	watch(cs, 1, 0)
	cs.pause()
	d := openStream(t, small, c.Addr(1), "acme", tok)
	d.pause()
	go func() {
		for i := range 3000 {
			d.send(api.ClientFrame{Type: api.FramePing, Req: uint64(1 + i)})
		}
	}()
	aStalled := time.Now()

	beside := latencies(b, 1, 40)
	p := func(l []time.Duration, q float64) time.Duration {
		s := slices.Clone(l)
		slices.Sort(s)
		return s[int(q*float64(len(s)-1))]
	}
	t.Logf("a second stream's propagation: alone p50 %v p99 %v; beside three stalled streams p50 %v p99 %v",
		p(alone, .5), p(alone, .99), p(beside, .5), p(beside, .99))
	if p(beside, .5) > 3*p(alone, .5)+20*time.Millisecond {
		t.Errorf("stalled streams slowed another: p50 %v beside them, %v alone", p(beside, .5), p(alone, .5))
	}

	// C reads again: its watch fell behind (more than WatchLag) while its
	// window was full.
	time.Sleep(700 * time.Millisecond)
	cs.resume()
	cs.wait(10*time.Second, "resync", func(fs []recvFrame, _ bool) bool {
		for _, f := range fs {
			if f.f.Type == api.FrameResync && f.f.W == 1 {
				return true
			}
		}
		return false
	})
	var last uint64
	for _, f := range cs.snapshotFrames() {
		if f.f.W == 1 && (f.f.Type == api.FrameSnapshot || f.f.Type == api.FrameChanges) {
			last = f.f.Index
		}
	}
	watch(cs, 2, last) // again, from where it was: a snapshot, then changes
	cs.wait(10*time.Second, "a snapshot of the new watch", func(fs []recvFrame, _ bool) bool {
		return slices.ContainsFunc(fs, func(f recvFrame) bool { return f.f.Type == api.FrameSnapshot && f.f.W == 2 && f.f.Index > last })
	})
	// That snapshot (over 200 KB: written from the shared encoding, not
	// copied) holds what REST holds.
	var svc api.ServiceResponse
	c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/services/web", nil).JSON(t, &svc)
	for _, f := range cs.snapshotFrames() {
		if f.f.Type == api.FrameSnapshot && f.f.W == 2 {
			var st svcState
			st.apply(t, f.f)
			if len(f.raw) < 200<<10 || f.f.Index < svc.ModifyIndex {
				t.Fatalf("the snapshot is %d bytes at %d (REST: %d)", len(f.raw), f.f.Index, svc.ModifyIndex)
			}
			if diff := st.same(svc); diff != "" {
				t.Fatalf("the snapshot differs from REST: %s", diff)
			}
		}
	}

	// D's queue stayed full (for more than StallClose): moved, then the
	// end, once it reads again.
	time.Sleep(time.Until(aStalled.Add(2500 * time.Millisecond)))
	d.resume()
	d.wait(10*time.Second, "moved, then the end", func(fs []recvFrame, ended bool) bool {
		return ended && len(fs) > 0 && fs[len(fs)-1].f.Type == api.FrameMoved
	})
	if n := len(d.results); n >= 3000 {
		t.Errorf("a stream whose queue stayed full answered all %d requests", n)
	}

	// A never reads again: the server ends it after WriteTimeout, and its
	// session keeps its TTL.
	servertest.Eventually(t, 10*time.Second, "A's stream to end", func() bool {
		return api1.OpenStreams() == 2 // b and cs
	})
	ended := time.Since(aStalled)
	present := func() bool {
		var svc api.ServiceResponse
		c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/services/owned", nil).JSON(t, &svc)
		return len(svc.Instances) == 1
	}
	time.Sleep(time.Second)
	if !present() {
		t.Fatalf("the session attached on a stream the server ended (after %v) ended within a second: drop_grace started", ended)
	}
	t.Logf("a stream that stopped reading was ended %v after it stopped", ended)
}

// TestClientStreamMemory measures what an idle stream and a watch hold on
// the server: heap allocated under the server's frames (net/http's server
// side and this package; the in-process clients' own allocations are told
// apart by their frames) and goroutines. It fails when a stream holds more
// than 64 KiB or a watch more than 8 KiB of server heap.
func TestClientStreamMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("measures memory")
	}
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("acme", generous)
	c.WaitTenantLeader("acme")
	for i := range 10 {
		c.Do(1, tok, http.MethodPut, fmt.Sprintf("/v1/tenants/acme/services/web/instances/w%d", i), api.RegisterRequest{Address: "10.0.0.1:80"})
	}
	const streams, watches = 200, 5
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	server0, _ := serverHeap()
	g0 := runtime.NumGoroutine()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	client := h2cClient(0)
	var ss []*tstream
	for range streams {
		s := openStream(t, client, c.Addr(1), "acme", tok)
		s.send(`{"type":"ping","req":1}`)
		s.result(1)
		ss = append(ss, s)
	}
	server1, _ := serverHeap()
	g1 := runtime.NumGoroutine()
	runtime.ReadMemStats(&m1)
	for _, s := range ss {
		for w := uint64(1); w <= watches; w++ {
			s.send(api.ClientFrame{Type: api.FrameWatch, Req: 10 + w, W: w, Service: fmt.Sprintf("svc%d", w)})
		}
	}
	for _, s := range ss {
		for w := uint64(1); w <= watches; w++ {
			s.result(10 + w)
		}
	}
	server2, _ := serverHeap()
	g2 := runtime.NumGoroutine()
	perStream := float64(server1-server0) / streams
	perWatch := float64(server2-server1) / (streams * watches)
	t.Logf("server heap: %.1f KiB per idle stream, %.2f KiB per watch (of a service with 0 instances; a watch also holds "+
		"at most one view of its service, about the size of its REST answer); goroutines, both sides: %.1f per stream (stacks %.1f KiB), %.2f per watch",
		perStream/1024, perWatch/1024, float64(g1-g0)/streams, float64(int64(m1.StackInuse)-int64(m0.StackInuse))/streams/1024,
		float64(g2-g1)/(streams*watches))
	if perStream > 64<<10 || perWatch > 8<<10 {
		t.Errorf("a stream holds %.0f B and a watch %.0f B of server heap", perStream, perWatch)
	}
}

// serverHeap sums the heap in use that the server side allocated (a
// record whose stack has a server frame and no client frame), and the rest.
func serverHeap() (server, other int64) {
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+100)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			recs = recs[:n]
			break
		}
	}
	for _, r := range recs {
		isServer, isClient := false, false
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			fn := f.Function
			switch {
			case strings.Contains(fn, "httpapi_test") || strings.Contains(fn, "http2ClientConn") || strings.Contains(fn, "http2clientStream") ||
				strings.Contains(fn, "http2Transport") || strings.Contains(fn, "(*Transport)") || strings.Contains(fn, "persistConn"):
				isClient = true
			case strings.Contains(fn, "http2serverConn") || strings.Contains(fn, "http2responseWriter") || strings.Contains(fn, "server/httpapi.") ||
				strings.Contains(fn, "net/http.(*conn)") || strings.Contains(fn, "http2requestBody"):
				isServer = true
			}
			if !more {
				break
			}
		}
		if isServer && !isClient {
			server += r.InUseBytes()
		} else {
			other += r.InUseBytes()
		}
	}
	return server, other
}

// TestClientStreamStaleReplica: a watch on a replica cut off from the
// others (its peers gone) does not go on as if nothing changed: the
// stream ends with moved once the replica cannot confirm it is current.
func TestClientStreamStaleReplica(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", generous)
	c.WaitTenantLeader("acme")
	c.Server(3).API().SetStreamLimits(httpapi.StreamLimits{FreshEvery: time.Second})
	s := openStream(t, h2cClient(0), c.Addr(3), "acme", tok)
	s.send(api.ClientFrame{Type: api.FrameWatch, Req: 1, W: 1, Service: "web"})
	if r := s.result(1); r.Status != http.StatusOK {
		t.Fatalf("watch = %d %s", r.Status, r.Body)
	}
	time.Sleep(1500 * time.Millisecond)
	if s.endedNow() {
		t.Fatal("the stream of a current replica ended")
	}
	c.AbortNode(1)
	c.AbortNode(2)
	start := time.Now()
	s.wait(15*time.Second, "moved, then the end", func(fs []recvFrame, ended bool) bool {
		return ended && fs[len(fs)-1].f.Type == api.FrameMoved
	})
	t.Logf("a replica cut off ended its watch stream %v after its peers were gone", time.Since(start))
}
