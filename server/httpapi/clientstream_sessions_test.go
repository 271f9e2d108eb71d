package httpapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

var generous = api.Quotas{WritesPerSecond: 100000, RequestsPerSecond: 100000, Burst: 100000, MaxInstances: 10000}

func sessionID(prefix string, i int) string { return fmt.Sprintf("sess-%s-%08d", prefix, i) }

// openSessionFrame opens a session on the stream and fails unless created.
func (s *tstream) openSession(req uint64, id string, body api.SessionRequest) {
	s.t.Helper()
	b, _ := json.Marshal(body)
	s.send(api.ClientFrame{Type: api.FrameOpenSession, Req: req, ID: id, Body: b})
	if r := s.result(req); r.Status != http.StatusCreated {
		s.t.Fatalf("open_session %s = %d %s", id, r.Status, r.Body)
	}
}

// TestClientStreamKeepaliveBatch: one keepalive frame for many sessions is
// answered per session, in order, with what REST's keepalive answers each:
// the promise (lease_ms) for live ones, not_attached for a master session
// whose stream is not attached, session_expired for an ended one,
// not_found for an unknown one; attached, the master session is renewed
// and its mastership arrives as an event.
func TestClientStreamKeepaliveBatch(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", generous)
	leader := c.WaitTenantLeader("acme")
	s := openStream(t, h2cClient(0), c.Addr(leader), "acme", tok)

	const n = 60
	var items []api.KeepaliveItem
	lease := map[string]int64{}
	for i := range n {
		id := sessionID("ka", i)
		l := int64(0)
		if i%2 == 0 {
			l = 1000
		}
		s.openSession(uint64(1+i), id, api.SessionRequest{TTLMs: 5000, LeaseMs: l})
		lease[id] = l
		items = append(items, api.KeepaliveItem{ID: id})
	}
	detached, ended, unknown := sessionID("ka-detached", 0), sessionID("ka-ended", 0), sessionID("ka-unknown", 0)
	s.openSession(100, detached, api.SessionRequest{TTLMs: 5000, LeaseMs: 1000})
	reg, _ := json.Marshal(api.RegisterRequest{Address: "m:1", Mode: api.ModeMasterStandby, Session: detached})
	s.send(api.ClientFrame{Type: api.FramePutInstance, Req: 101, Service: "batch", ID: "b1", Body: reg})
	if r := s.result(101); r.Status != http.StatusCreated {
		t.Fatalf("register = %d %s", r.Status, r.Body)
	}
	s.openSession(102, ended, api.SessionRequest{TTLMs: 5000})
	s.send(api.ClientFrame{Type: api.FrameCloseSession, Req: 103, ID: ended})
	if r := s.result(103); r.Status != http.StatusNoContent {
		t.Fatalf("close_session = %d %s", r.Status, r.Body)
	}
	special := []struct {
		id     string
		status int
		code   api.Code
	}{{detached, 409, api.CodeNotAttached}, {ended, 404, api.CodeSessionExpired}, {unknown, 404, api.CodeNotFound}}
	for _, sp := range special {
		items = append(items, api.KeepaliveItem{ID: sp.id})
	}

	keepalive := func(req uint64, items []api.KeepaliveItem) []api.KeepaliveAnswer {
		t.Helper()
		s.send(api.ClientFrame{Type: api.FrameKeepalive, Req: req, Sessions: items})
		r := s.result(req)
		var kr api.KeepaliveResults
		if err := json.Unmarshal(r.Body, &kr); err != nil || r.Status != http.StatusOK || len(kr.Sessions) != len(items) {
			t.Fatalf("keepalive = %d %s (%v)", r.Status, r.Body, err)
		}
		return kr.Sessions
	}
	start := time.Now()
	answers := keepalive(200, items)
	t.Logf("one keepalive frame for %d sessions answered in %v", len(items), time.Since(start))
	for i := range n {
		var kr api.KeepaliveResponse
		if err := json.Unmarshal(answers[i].Body, &kr); err != nil || answers[i].Status != http.StatusOK {
			t.Fatalf("session %d = %d %s", i, answers[i].Status, answers[i].Body)
		}
		if id := items[i].ID; kr.LeaseMs != lease[id] || kr.TTLMs != 5000 || kr.Term == 0 || kr.Index == 0 {
			t.Errorf("session %s = %+v, want lease_ms %d ttl_ms 5000", id, kr, lease[id])
		}
		// REST answers the same session the same.
		if i%10 == 0 {
			r := c.Do(leader, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+items[i].ID+"/keepalive", nil)
			var rk api.KeepaliveResponse
			r.JSON(t, &rk)
			if r.Status != http.StatusOK || rk.LeaseMs != kr.LeaseMs || rk.TTLMs != kr.TTLMs || rk.Term != kr.Term {
				t.Errorf("REST keepalive of %s = %d %s, stream %+v", items[i].ID, r.Status, r.Body, kr)
			}
		}
	}
	for k, sp := range special {
		a := answers[n+k]
		e := api.Decode(a.Status, a.Body, "")
		r := c.Do(leader, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+sp.id+"/keepalive", nil)
		if a.Status != sp.status || e.Code != sp.code || r.Status != sp.status || r.Err().Code != sp.code {
			t.Errorf("keepalive of %s: stream %d %s, REST %d %s, want %d %s", sp.id, a.Status, a.Body, r.Status, r.Body, sp.status, sp.code)
		}
	}

	// Attached, a master session is renewed, and its mastership comes as
	// an event with its tag.
	master := sessionID("ka-master", 0)
	s.openSession(299, master, api.SessionRequest{TTLMs: 5000, LeaseMs: 1000})
	s.send(api.ClientFrame{Type: api.FrameAttach, Req: 300, Session: master})
	r := s.result(300)
	var ar api.AttachResponse
	if err := json.Unmarshal(r.Body, &ar); err != nil || r.Status != http.StatusOK || ar.SessionTag != api.SessionTag(master) || ar.Term == 0 {
		t.Fatalf("attach = %d %s", r.Status, r.Body)
	}
	reg, _ = json.Marshal(api.RegisterRequest{Address: "m:1", Mode: api.ModeMasterStandby, Session: master})
	s.send(api.ClientFrame{Type: api.FramePutInstance, Req: 302, Service: "jobs", ID: "m1", Body: reg})
	if r := s.result(302); r.Status != http.StatusCreated {
		t.Fatalf("register = %d %s", r.Status, r.Body)
	}
	s.wait(10*time.Second, "the master event", func(fs []recvFrame, _ bool) bool {
		for _, f := range fs {
			if f.f.Type == api.EventMaster && f.f.SessionTag == ar.SessionTag && f.f.Master.Master != nil && f.f.Service == "jobs" {
				return true
			}
		}
		return false
	})
	a := keepalive(301, []api.KeepaliveItem{{ID: master}})[0]
	var kr api.KeepaliveResponse
	if err := json.Unmarshal(a.Body, &kr); err != nil || a.Status != http.StatusOK || kr.LeaseMs != 1000 || len(kr.Masters) != 1 || kr.Masters[0].Instance != "m1" {
		t.Fatalf("keepalive of the attached master session = %d %s", a.Status, a.Body)
	}

	// The other writes answer as REST does: a policy, a resign under the
	// holder's own session (a stale token is 409), a removal, the end of a
	// session.
	pol, _ := json.Marshal(api.PolicyRequest{ColdStart: &api.ColdStart{MinReady: 1}})
	stale, _ := json.Marshal(api.ResignRequest{Instance: "m1", FencingToken: kr.Masters[0].FencingToken + 1})
	resign, _ := json.Marshal(api.ResignRequest{Instance: "m1", FencingToken: kr.Masters[0].FencingToken})
	standby, _ := json.Marshal(api.RegisterRequest{Address: "m:2", Mode: api.ModeMasterStandby, Session: detached})
	for _, tt := range []struct {
		f    api.ClientFrame
		want int
	}{
		{api.ClientFrame{Type: api.FramePutInstance, Req: 399, Service: "jobs", ID: "m2", Body: standby}, http.StatusCreated},
		{api.ClientFrame{Type: api.FrameSetPolicy, Req: 400, Service: "jobs", Body: pol}, http.StatusOK},
		{api.ClientFrame{Type: api.FrameResign, Req: 401, Service: "jobs", Body: stale, Session: master, Seq: 1}, http.StatusConflict},
		{api.ClientFrame{Type: api.FrameResign, Req: 402, Service: "jobs", Body: resign, Session: master, Seq: 2}, http.StatusOK},
		{api.ClientFrame{Type: api.FrameDeleteInstance, Req: 403, Service: "jobs", ID: "m1", Session: master, Seq: 3}, http.StatusNoContent},
		{api.ClientFrame{Type: api.FrameDeleteInstance, Req: 404, Service: "jobs", ID: "m1"}, http.StatusNoContent},
		{api.ClientFrame{Type: api.FrameCloseSession, Req: 405, ID: master}, http.StatusNoContent},
	} {
		s.send(tt.f)
		if r := s.result(tt.f.Req); r.Status != tt.want {
			t.Errorf("%s = %d %s, want %d", tt.f.Type, r.Status, r.Body, tt.want)
		}
	}
	s.wait(10*time.Second, "the master session's end", func(fs []recvFrame, _ bool) bool {
		return slices.ContainsFunc(fs, func(f recvFrame) bool { return f.f.Type == api.EventExpired && f.f.SessionTag == ar.SessionTag })
	})
}

// TestClientStreamAttachDropGrace: a session attached on a stream the
// client closes ends after drop_grace, not its TTL; one attached on a
// stream the server closes (moved) keeps its TTL.
func TestClientStreamAttachDropGrace(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", generous)
	leader := c.WaitTenantLeader("acme")
	client := h2cClient(0)

	attachWithInstance := func(s *tstream, id, inst string, ttl int64) {
		t.Helper()
		s.openSession(1, id, api.SessionRequest{TTLMs: ttl, DropGraceMs: 300})
		reg, _ := json.Marshal(api.RegisterRequest{Address: "a:1", Session: id})
		s.send(api.ClientFrame{Type: api.FramePutInstance, Req: 2, Service: "web", ID: inst, Body: reg})
		if r := s.result(2); r.Status != http.StatusCreated {
			t.Fatalf("register = %d %s", r.Status, r.Body)
		}
		s.send(api.ClientFrame{Type: api.FrameAttach, Req: 3, Session: id})
		if r := s.result(3); r.Status != http.StatusOK {
			t.Fatalf("attach = %d %s", r.Status, r.Body)
		}
	}
	present := func(inst string) bool {
		var svc api.ServiceResponse
		c.Do(leader, tok, http.MethodGet, "/v1/tenants/acme/services/web", nil).JSON(t, &svc)
		for _, in := range svc.Instances {
			if in.ID == inst {
				return true
			}
		}
		return false
	}

	// The client closes its side: drop_grace.
	s := openStream(t, client, c.Addr(leader), "acme", tok)
	attachWithInstance(s, sessionID("dg-client", 0), "w-client", 20000)
	start := time.Now()
	s.pw.Close()
	servertest.Eventually(t, 10*time.Second, "the session to end after drop_grace", func() bool { return !present("w-client") })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the session ended %v after the client closed its stream; drop_grace is 300ms, the TTL 20s", d)
	} else {
		t.Logf("the session ended %v after the client closed its stream (drop_grace 300ms)", d)
	}

	// The client resets the stream (a crash): drop_grace too.
	s = openStream(t, client, c.Addr(leader), "acme", tok)
	attachWithInstance(s, sessionID("dg-reset", 0), "w-reset", 20000)
	start = time.Now()
	s.cancel()
	s.pw.CloseWithError(errors.New("crash")) // the transport resets the stream once its body read fails
	servertest.Eventually(t, 10*time.Second, "the session to end after drop_grace", func() bool { return !present("w-reset") })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the session ended %v after the client reset its stream", d)
	}

	// The server ends the stream: moved, and the session keeps its TTL.
	s = openStream(t, client, c.Addr(leader), "acme", tok)
	attachWithInstance(s, sessionID("dg-server", 0), "w-server", 4000)
	start = time.Now()
	c.Server(leader).API().CloseStreams(time.Second)
	s.wait(5*time.Second, "moved, then the end", func(fs []recvFrame, ended bool) bool {
		return ended && len(fs) > 0 && fs[len(fs)-1].f.Type == api.FrameMoved && fs[len(fs)-1].f.SessionTag == ""
	})
	time.Sleep(1500 * time.Millisecond)
	if !present("w-server") {
		t.Fatalf("a session attached on a stream the server closed ended within %v: drop_grace started", time.Since(start))
	}
	servertest.Eventually(t, 10*time.Second, "the session to end at its TTL", func() bool { return !present("w-server") })
}

// TestClientStreamMovedFromFollower: on a follower, session work is
// answered 503 naming the leader, after `moved` (with the session's tag for
// an attach); a watch is served there.
func TestClientStreamMovedFromFollower(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", generous)
	leader := c.WaitTenantLeader("acme")
	follower := leader%3 + 1
	id := sessionID("moved", 0)
	if r := c.Do(leader, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+id, api.SessionRequest{TTLMs: 5000}); r.Status != http.StatusCreated {
		t.Fatalf("open session = %d %s", r.Status, r.Body)
	}
	s := openStream(t, h2cClient(0), c.Addr(follower), "acme", tok)
	notLeader := func(req uint64) {
		t.Helper()
		r := s.result(req)
		e := api.Decode(r.Status, r.Body, "")
		if r.Status != http.StatusServiceUnavailable || e.Code != api.CodeUnavailable || e.Leader != c.Addr(leader) {
			t.Errorf("req %d on a follower = %d %s, want 503 naming the leader %s", req, r.Status, r.Body, c.Addr(leader))
		}
	}
	s.send(api.ClientFrame{Type: api.FrameAttach, Req: 1, Session: id})
	notLeader(1)
	s.send(api.ClientFrame{Type: api.FrameKeepalive, Req: 2, Sessions: []api.KeepaliveItem{{ID: id}}})
	r := s.result(2)
	var kr api.KeepaliveResults
	if err := json.Unmarshal(r.Body, &kr); err != nil || len(kr.Sessions) != 1 || kr.Sessions[0].Status != http.StatusServiceUnavailable {
		t.Errorf("keepalive on a follower = %d %s", r.Status, r.Body)
	}
	s.openSessionRefused(3, sessionID("moved", 1))
	notLeader(3)
	var movedTagged, moved int
	for _, f := range s.snapshotFrames() {
		if f.f.Type != api.FrameMoved {
			continue
		}
		if len(f.f.Servers) == 0 || f.f.Servers[0] != c.Addr(leader) {
			t.Errorf("moved %s does not name the leader %s first", f.raw, c.Addr(leader))
		}
		if f.f.SessionTag == api.SessionTag(id) {
			movedTagged++
		} else if f.f.SessionTag == "" {
			moved++
		}
	}
	if movedTagged != 1 || moved != 2 {
		t.Errorf("moved frames: %d for the attach, %d untagged; want 1 and 2", movedTagged, moved)
	}
	// A watch is a follower's to serve.
	s.send(api.ClientFrame{Type: api.FrameWatch, Req: 4, W: 1, Service: "web"})
	if r := s.result(4); r.Status != http.StatusOK {
		t.Fatalf("watch on a follower = %d %s", r.Status, r.Body)
	}
	s.wait(5*time.Second, "the snapshot", func(fs []recvFrame, _ bool) bool {
		return fs[len(fs)-1].f.Type == api.FrameSnapshot
	})
	if s.endedNow() {
		t.Fatal("the stream ended")
	}
}

func (s *tstream) openSessionRefused(req uint64, id string) {
	s.send(api.ClientFrame{Type: api.FrameOpenSession, Req: req, ID: id})
}

// TestClientStreamRevokedToken: a stream lives on while its token is
// valid, a rotated-out one included while it is honoured, and ends with an
// error frame once it is not.
func TestClientStreamRevokedToken(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", generous)
	s := openStream(t, h2cClient(0), c.Addr(2), "acme", tok)
	rotate := func(previousMs int64) {
		t.Helper()
		r := c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/tenants/acme/token", api.RotateTokenRequest{PreviousValidMs: &previousMs})
		if r.Status != http.StatusOK && r.Status != http.StatusCreated {
			t.Fatalf("rotate = %d %s", r.Status, r.Body)
		}
	}
	rotate(60000) // the stream's token is the previous one now, honoured for a minute
	time.Sleep(1500 * time.Millisecond)
	s.send(`{"type":"ping","req":1}`)
	s.result(1)
	if s.endedNow() {
		t.Fatal("a stream with a rotated-out token that is still honoured ended")
	}
	start := time.Now()
	rotate(0) // the stream's token is no longer kept at all
	s.wait(10*time.Second, "an unauthorized error frame, then the end", func(fs []recvFrame, ended bool) bool {
		last := fs[len(fs)-1].f
		return ended && last.Type == api.FrameError && last.Error != nil && last.Error.Code == api.CodeUnauthorized
	})
	t.Logf("the stream ended %v after its token was revoked", time.Since(start))
}

// TestClientStreamWritePipeline: many writes sent without waiting are each
// answered exactly once, and all applied.
func TestClientStreamWritePipeline(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", generous)
	leader := c.WaitTenantLeader("acme")
	s := openStream(t, h2cClient(0), c.Addr(leader%3+1), "acme", tok)
	const n = 1500
	start := time.Now()
	for i := range n {
		b, _ := json.Marshal(api.RegisterRequest{Address: fmt.Sprintf("10.1.%d.%d:80", i/256, i%256)})
		s.send(api.ClientFrame{Type: api.FramePutInstance, Req: uint64(1 + i), Service: "web", ID: fmt.Sprintf("p%05d", i), Body: b})
	}
	s.wait(60*time.Second, "every result", func([]recvFrame, bool) bool { return len(s.results) >= n })
	elapsed := time.Since(start)
	s.mu.Lock()
	for i := range n {
		rs := s.results[uint64(1+i)]
		if len(rs) != 1 || rs[0].Status != http.StatusCreated {
			t.Errorf("req %d answered %d times: %s", i+1, len(rs), s.rawResults(uint64(1+i)))
		}
	}
	if len(s.results) != n {
		t.Errorf("%d results for %d requests", len(s.results), n)
	}
	s.mu.Unlock()
	var svc api.ServiceResponse
	c.Do(leader, tok, http.MethodGet, "/v1/tenants/acme/services/web?consistent=true", nil).JSON(t, &svc)
	if len(svc.Instances) != n {
		t.Fatalf("%d instances registered, want %d", len(svc.Instances), n)
	}
	t.Logf("%d pipelined registrations on one stream (through a follower) in %v: %.0f/s", n, elapsed, n/elapsed.Seconds())
}

// TestClientStreamQuotas: watches count against max_watchers, attached
// sessions against max_sessions, and opening a stream once against
// requests_per_second.
func TestClientStreamQuotas(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{MaxWatchers: 2, MaxSessions: 2, RequestsPerSecond: 1000, Burst: 1000, WritesPerSecond: 1000})
	leader := c.WaitTenantLeader("acme")
	client := h2cClient(0)
	s := openStream(t, client, c.Addr(leader), "acme", tok)
	for w := uint64(1); w <= 3; w++ {
		s.send(api.ClientFrame{Type: api.FrameWatch, Req: w, W: w, Service: "web"})
	}
	ok, refused := 0, 0
	for req := uint64(1); req <= 3; req++ {
		r := s.result(req)
		switch e := api.Decode(r.Status, r.Body, ""); {
		case r.Status == http.StatusOK:
			ok++
		case e.Code == api.CodeQuotaExceeded && e.Quota == "max_watchers":
			refused++
		default:
			t.Errorf("watch = %d %s", r.Status, r.Body)
		}
	}
	if ok != 2 || refused != 1 {
		t.Errorf("3 watches with max_watchers 2: %d open, %d refused", ok, refused)
	}
	var unwatched uint64
	for w := uint64(1); w <= 3; w++ {
		if r := s.result(w); r.Status == http.StatusOK {
			unwatched = w
			break
		}
	}
	s.send(api.ClientFrame{Type: api.FrameUnwatch, Req: 4, W: unwatched})
	s.result(4)
	s.send(api.ClientFrame{Type: api.FrameWatch, Req: 5, W: 9, Service: "web"})
	if r := s.result(5); r.Status != http.StatusOK {
		t.Errorf("a watch after an unwatch = %d %s", r.Status, r.Body)
	}

	// Two sessions (max_sessions 2), both attached here: a third
	// attachment (the first session's, on another stream) is refused.
	for i := range 2 {
		s.openSession(uint64(10+i), sessionID("quota", i), api.SessionRequest{TTLMs: 5000})
		s.send(api.ClientFrame{Type: api.FrameAttach, Req: uint64(20 + i), Session: sessionID("quota", i)})
		if r := s.result(uint64(20 + i)); r.Status != http.StatusOK {
			t.Fatalf("attach = %d %s", r.Status, r.Body)
		}
	}
	s2 := openStream(t, client, c.Addr(leader), "acme", tok)
	s2.send(api.ClientFrame{Type: api.FrameAttach, Req: 1, Session: sessionID("quota", 0)})
	if r := s2.result(1); api.Decode(r.Status, r.Body, "").Quota != "max_sessions" {
		t.Errorf("a third attachment with max_sessions 2 = %d %s", r.Status, r.Body)
	}

	// A tenant holds at most max_sessions streams on a node.
	req, _ := http.NewRequest(http.MethodPost, "http://"+c.Addr(leader)+"/v1/tenants/acme/stream", http.NoBody)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("a third stream with max_sessions 2 = %d", resp.StatusCode)
	}
	s2.close()
	s.close()

	// Opening a stream counts against requests_per_second, and so does
	// each write (as REST's do, besides their write rate), watch, ping and
	// bad frame; keepalives and attaches count in their lane.
	rtok := c.CreateTenant("rate", api.Quotas{RequestsPerSecond: 1, Burst: 16, WritesPerSecond: 1000})
	rs := openStream(t, client, c.Addr(leader), "rate", rtok) // 1
	// 2 to 11:
	for i := range 10 {
		b, _ := json.Marshal(api.RegisterRequest{Address: "a:1"})
		rs.send(api.ClientFrame{Type: api.FramePutInstance, Req: uint64(1 + i), Service: "web", ID: fmt.Sprintf("r%d", i), Body: b})
		if r := rs.result(uint64(1 + i)); r.Status != http.StatusCreated {
			t.Fatalf("write = %d %s", r.Status, r.Body)
		}
	}
	rs.send(api.ClientFrame{Type: api.FrameWatch, Req: 20, W: 1, Service: "web"}) // 12
	rs.result(20)
	var limited int
	for i := range 6 { // 13 to 18: the 17th and 18th are refused
		rs.send(api.ClientFrame{Type: api.FramePing, Req: uint64(30 + i)})
		if r := rs.result(uint64(30 + i)); r.Status == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited < 1 || limited > 2 {
		t.Errorf("%d of 6 pings refused after a stream, 10 writes and a watch, with burst 16", limited)
	}
	req, _ = http.NewRequest(http.MethodPost, "http://"+c.Addr(leader)+"/v1/tenants/rate/stream", http.NoBody)
	req.Header.Set("Authorization", "Bearer "+rtok)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a stream opened past the tenant's rate = %d, want 429", resp.StatusCode)
	}
}

func (s *tstream) rawResults(req uint64) (out []string) {
	for _, f := range s.frames {
		if f.f.Type == api.FrameResult && f.f.Req == req {
			out = append(out, f.raw)
		}
	}
	return out
}
