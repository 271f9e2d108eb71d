package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// Helpers of the red-team tests of the client stream.

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// statuses counts the results of reqs [from, to] by status.
func (s *tstream) statuses(from, to uint64) map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int]int{}
	for r := from; r <= to; r++ {
		for _, f := range s.results[r] {
			out[f.Status]++
		}
	}
	return out
}

func (s *tstream) waitResults(from, to uint64, timeout time.Duration) {
	s.t.Helper()
	s.wait(timeout, fmt.Sprintf("results %d..%d", from, to), func([]recvFrame, bool) bool {
		for r := from; r <= to; r++ {
			if len(s.results[r]) == 0 {
				return false
			}
		}
		return true
	})
}

// TestRedTeamStreamCrossTenant: a tenant's stream reaches nothing of
// another tenant: not its stream, sessions (attach, keepalive,
// close_session), services (watch, put_instance with a path in the
// name), and a watch of the same service name sees only its own tenant's.
func TestRedTeamStreamCrossTenant(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tokA := c.CreateTenant("acme", generous)
	tokB := c.CreateTenant("other", generous)
	c.WaitTenantLeader("acme")
	c.WaitTenantLeader("other")
	sessB := "sess-other-0123456789abcdef"
	if r := c.Do(1, tokB, http.MethodPut, "/v1/tenants/other/sessions/"+sessB, api.SessionRequest{TTLMs: 60000}); r.Status != http.StatusCreated {
		t.Fatalf("open other's session = %d %s", r.Status, r.Body)
	}
	if r := c.Do(1, tokB, http.MethodPut, "/v1/tenants/other/services/web/instances/secret", api.RegisterRequest{Address: "10.9.9.9:1"}); r.Status != http.StatusCreated {
		t.Fatalf("register = %d %s", r.Status, r.Body)
	}

	// acme's token on other's stream, and no token at all.
	for _, tok := range []string{tokA, ""} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+c.Addr(1)+"/v1/tenants/other/stream", strings.NewReader(`{"type":"ping","req":1}`+"\n"))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := h2cClient(0).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("token %.6q opened other's stream: %d %s", tok, resp.StatusCode, b)
		}
	}

	s := openStream(t, h2cClient(0), c.Addr(1), "acme", tokA)
	s.send(api.ClientFrame{Type: api.FrameAttach, Req: 1, Session: sessB})
	s.send(api.ClientFrame{Type: api.FrameKeepalive, Req: 2, Sessions: []api.KeepaliveItem{{ID: sessB}}})
	s.send(api.ClientFrame{Type: api.FrameCloseSession, Req: 3, ID: sessB})
	s.send(api.ClientFrame{Type: api.FrameWatch, Req: 4, W: 1, Service: "../other/services/web"})
	s.send(api.ClientFrame{Type: api.FramePutInstance, Req: 5, Service: "../../other/services/web", ID: "x", Body: json.RawMessage(`{"address":"a:1"}`)})
	s.send(api.ClientFrame{Type: api.FrameDeleteInstance, Req: 6, Service: "web", ID: "../../../other/services/web/instances/secret"})
	s.send(api.ClientFrame{Type: api.FrameWatch, Req: 7, W: 2, Service: "web"})
	// REST's answer to acme closing a session it does not have.
	restClose := c.Do(1, tokA, http.MethodDelete, "/v1/tenants/acme/sessions/"+sessB, nil).Status
	for req, want := range map[uint64]int{1: 404, 3: restClose, 4: 400, 5: 400, 6: 400, 7: 200} {
		if r := s.result(req); r.Status != want {
			t.Errorf("req %d = %d %s, want %d", req, r.Status, r.Body, want)
		}
	}
	var ka api.KeepaliveResults
	if err := json.Unmarshal(s.result(2).Body, &ka); err != nil || len(ka.Sessions) != 1 || ka.Sessions[0].Status != 404 {
		t.Errorf("keepalive of other's session = %s", s.result(2).Body)
	}
	s.wait(5*time.Second, "the snapshot", func(fs []recvFrame, _ bool) bool {
		for _, f := range fs {
			if f.f.Type == api.FrameSnapshot {
				if len(f.f.Instances) != 0 {
					t.Errorf("acme's watch of web shows other's instances: %s", f.raw)
				}
				return true
			}
		}
		return false
	})
	if r := c.Do(1, tokB, http.MethodPut, "/v1/tenants/other/sessions/"+sessB+"/keepalive", nil); r.Status != http.StatusOK {
		t.Errorf("other's session after acme's frames = %d %s", r.Status, r.Body)
	}
	if r := c.Do(1, tokB, http.MethodGet, "/v1/tenants/other/services/web", nil); !strings.Contains(string(r.Body), "secret") {
		t.Errorf("other's instance after acme's frames: %s", r.Body)
	}
}

// TestRedTeamStreamCleanup: streams reset by their client in every state
// (watching, attached, writes running and waiting, a half-sent frame,
// never sending at all) leave no goroutine of a stream or feed behind, and
// the per-tenant stream count returns to 0 (a tenant at max_sessions can
// open again).
func TestRedTeamStreamCleanup(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	q := generous
	q.MaxSessions = 6
	q.WritesPerSecond = 1 // writes held by the tarpit: ops running and pending
	tok := c.CreateTenant("acme", q)
	c.WaitTenantLeader("acme")
	a := c.Server(1).API()
	client := h2cClient(0) // every stream on one connection
	var streams []*tstream
	for i := range 6 {
		s := openStream(t, client, c.Addr(1), "acme", tok)
		streams = append(streams, s)
		switch i {
		case 0:
			s.send(api.ClientFrame{Type: api.FrameWatch, Req: 1, W: 1, Service: "web"})
			s.result(1)
		case 1:
			s.openSession(1, "sess-cleanup-0123456789", api.SessionRequest{TTLMs: 60000})
			s.send(api.ClientFrame{Type: api.FrameAttach, Req: 2, Session: "sess-cleanup-0123456789"})
			s.result(2)
		case 2:
			var b strings.Builder
			for r := 1; r <= 500; r++ {
				fmt.Fprintf(&b, `{"type":"put_instance","req":%d,"service":"web","id":"i%d","body":{"address":"a:1"}}`+"\n", r, r)
			}
			s.send(strings.TrimSuffix(b.String(), "\n"))
		case 3:
			// Half a frame: no newline.
			if _, err := s.pw.Write([]byte(`{"type":"put_instance","req":1,"service":"web","id":"` + strings.Repeat("y", 300<<10))); err != nil {
				t.Fatal(err)
			}
		case 4:
			s.pause() // reads nothing
			for r := uint64(1); r <= 300; r++ {
				s.send(api.ClientFrame{Type: api.FramePing, Req: r})
			}
		case 5: // sends nothing
		}
	}
	// Over the cap.
	t.Logf("open streams before the 7th: %d", a.OpenStreams())
	for i, s := range streams {
		fs := s.snapshotFrames()
		t.Logf("stream %d ended %v, %d frames, last %v", i, s.endedNow(), len(fs), fs[max(0, len(fs)-1):])
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+c.Addr(1)+"/v1/tenants/acme/stream", strings.NewReader(""))
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err := client.Do(req); err == nil {
		if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusConflict {
			b := make([]byte, 300)
			n, _ := resp.Body.Read(b)
			t.Errorf("a 7th stream at max_sessions 6 = %d %s", resp.StatusCode, b[:n])
		}
		resp.Body.Close()
	}
	time.Sleep(500 * time.Millisecond)
	for _, s := range streams {
		s.close()
	}
	servertest.Eventually(t, 15*time.Second, "streams and their goroutines gone", func() bool {
		if a.OpenStreams() != 0 {
			return false
		}
		buf := make([]byte, 16<<20)
		buf = buf[:runtime.Stack(buf, true)]
		return !strings.Contains(string(buf), "(*clientStream)") && !strings.Contains(string(buf), "(*feed).run")
	})
	// The tenant may open max_sessions streams again.
	for range 6 {
		s := openStream(t, client, c.Addr(1), "acme", tok)
		s.send(api.ClientFrame{Type: api.FramePing, Req: 1})
		s.result(1)
	}
}
