package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/servertest"
)

// sess drives one session through the REST API as a client would.
type sess struct {
	t      *testing.T
	c      *servertest.Cluster
	tok    string
	tenant string
	id     string
}

func openSession(t *testing.T, c *servertest.Cluster, tok, tenant, id string, req api.SessionRequest) *sess {
	t.Helper()
	s := &sess{t: t, c: c, tok: tok, tenant: tenant, id: id}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := c.Do(1, tok, http.MethodPut, s.path(""), req)
		if r.Status == http.StatusCreated || r.Status == http.StatusOK {
			return s
		}
		if e := r.Err(); e == nil || !e.Code.Retryable() || time.Now().After(deadline) {
			t.Fatalf("open session: %d %s", r.Status, r.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *sess) path(suffix string) string {
	return fmt.Sprintf("/v1/tenants/%s/sessions/%s%s", s.tenant, s.id, suffix)
}

// keepalive sends a keepalive to node (retrying 503s on any node until ok)
// and returns the moment it was sent and the answer.
func (s *sess) keepalive(node int) (time.Time, api.KeepaliveResponse) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sent := time.Now()
		r, err := s.c.DoErr(context.Background(), node, s.tok, http.MethodPut, s.path("/keepalive"), nil, nil)
		if err == nil && r.Status == http.StatusOK {
			var ka api.KeepaliveResponse
			r.JSON(s.t, &ka)
			return sent, ka
		}
		if err == nil {
			if e := r.Err(); e == nil || !e.Code.Retryable() {
				s.t.Fatalf("keepalive on node %d: %d %s", node, r.Status, r.Body)
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("keepalive on node %d: no success in 20s (last: %v)", node, err)
		}
		node = node%len(s.c.Addrs()) + 1
		if s.c.Server(node) == nil {
			node = node%len(s.c.Addrs()) + 1
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stream is an attached session stream.
type stream struct {
	cancel context.CancelFunc
	events chan api.StreamEvent
	done   chan struct{}
}

// attach attaches the session's stream on node, which must lead the shard.
func (s *sess) attach(node int) *stream {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.c.Addr(node)+s.path("/stream"), nil)
	req.Header.Set("Authorization", "Bearer "+s.tok)
	resp, err := s.c.Client.Do(req)
	if err != nil {
		cancel()
		s.t.Fatalf("attach: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		s.t.Fatalf("attach: %d", resp.StatusCode)
	}
	st := &stream{cancel: cancel, events: make(chan api.StreamEvent, 1024), done: make(chan struct{})}
	first := make(chan api.StreamEvent, 1)
	go func() {
		defer close(st.done)
		defer close(st.events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		n := 0
		for sc.Scan() {
			var ev api.StreamEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				s.t.Errorf("stream line %q: %v", sc.Text(), err)
				return
			}
			if n == 0 {
				first <- ev
			}
			n++
			st.events <- ev // buffered; tests read them
		}
	}()
	select {
	case ev := <-first:
		if ev.Type != api.EventHeartbeat {
			cancel()
			s.t.Fatalf("attach on node %d: first event %+v, want a heartbeat (not the leader?)", node, ev)
		}
	case <-time.After(10 * time.Second):
		cancel()
		s.t.Fatal("attach: no first heartbeat")
	}
	return st
}

// closeByClient closes the stream from the client side (as a crash would).
func (st *stream) closeByClient() {
	st.cancel()
	<-st.done
}

// instanceGone waits until the session's instance disappears from node's
// replica and returns when that was observed.
func instanceGone(t *testing.T, c *servertest.Cluster, node int, tenant, svc, id string, timeout time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if tr, ok := c.Server(node).Node().Tenant(tenant); ok {
			found := false
			for _, in := range tr.SM.Service(svc).Instances {
				found = found || in.ID == id
			}
			if !found {
				return time.Now()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s still registered after %v", id, timeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func present(c *servertest.Cluster, node int, tenant, svc, id string) bool {
	tr, ok := c.Server(node).Node().Tenant(tenant)
	if !ok {
		return false
	}
	for _, in := range tr.SM.Service(svc).Instances {
		if in.ID == id {
			return true
		}
	}
	return false
}

const sid = "sess-0123456789abcdef"

// TestSessionExpiresAfterTTL: a session that stops sending keepalives loses
// its instances after its TTL, and not before.
func TestSessionExpiresAfterTTL(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	s := openSession(t, c, tok, "acme", sid, api.SessionRequest{TTLMs: 3000})
	register(t, c, 2, tok, "acme", "web", "w1", api.RegisterRequest{Address: "a:1", Session: sid})
	servertest.Eventually(t, 5*time.Second, "node 3 to apply the registration", func() bool { return present(c, 3, "acme", "web", "w1") })
	sent, ka := s.keepalive(2) // forwarded if node 2 does not lead
	if ka.LeaseMs != 0 || ka.TTLMs != 3000 {
		t.Fatalf("keepalive answer %+v", ka)
	}
	gone := instanceGone(t, c, 3, "acme", "web", "w1", 10*time.Second)
	if lived := gone.Sub(sent); lived < 3000*time.Millisecond || lived > 4500*time.Millisecond {
		t.Fatalf("instance removed %v after the last keepalive was sent, want within [3s, 4.5s]", lived)
	}
	r := c.Do(1, tok, http.MethodPut, s.path("/keepalive"), nil)
	if e := r.Err(); e == nil || e.Code != api.CodeSessionExpired {
		t.Fatalf("keepalive of an expired session = %d %s, want 404 session_expired", r.Status, r.Body)
	}
}

// TestClientClosedStream: a session whose stream the client closes ends
// after max(drop_grace, last promise), not after its TTL.
func TestClientClosedStream(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	s := openSession(t, c, tok, "acme", sid, api.SessionRequest{TTLMs: 10000, LeaseMs: 1000})
	register(t, c, 1, tok, "acme", "db", "d1", api.RegisterRequest{Address: "a:1", Mode: api.ModeMasterStandby, Session: sid})
	leader := c.WaitTenantLeader("acme")

	// A master-seeking session renews only with its stream attached.
	r := c.Do(leader, tok, http.MethodPut, s.path("/keepalive"), nil)
	if e := r.Err(); e == nil || e.Code != api.CodeNotAttached {
		t.Fatalf("keepalive without a stream = %d %s, want 409 not_attached", r.Status, r.Body)
	}
	st := s.attach(leader)
	sent, ka := s.keepalive(leader)
	if ka.LeaseMs != 1000 || len(ka.Masters) != 1 || ka.Masters[0].Service != "db" {
		t.Fatalf("keepalive answer %+v, want lease 1000 and the db mastership", ka)
	}
	st.closeByClient()
	closed := time.Now()
	gone := instanceGone(t, c, leader, "acme", "db", "d1", 5*time.Second)
	promise := sent.Add(time.Duration(ka.LeaseMs) * time.Millisecond)
	if gone.Before(promise) {
		t.Fatalf("session ended %v before its promise", promise.Sub(gone))
	}
	want := promise
	if g := closed.Add(500 * time.Millisecond); g.After(want) {
		want = g
	}
	if late := gone.Sub(want); late > 400*time.Millisecond {
		t.Fatalf("session ended %v after max(promise, close + drop_grace), want within 400ms", late)
	}
}

// TestServerClosedStream: a stream the server closes (a graceful leader
// stop sends `moved`) starts no drop_grace: the session outlives it.
func TestServerClosedStream(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	s := openSession(t, c, tok, "acme", sid, api.SessionRequest{TTLMs: 5000, LeaseMs: 1000})
	register(t, c, 1, tok, "acme", "db", "d1", api.RegisterRequest{Address: "a:1", Mode: api.ModeMasterStandby, Session: sid})
	leader := c.WaitTenantLeader("acme")
	st := s.attach(leader)
	s.keepalive(leader)
	observer := leader%3 + 1
	c.StopNode(leader) // graceful: moved first
	var moved bool
	for ev := range st.events {
		moved = moved || ev.Type == api.EventMoved
	}
	<-st.done
	if !moved {
		t.Fatal("the stream ended without a moved event")
	}
	// No reattach for 2 s: longer than drop_grace and the lease.
	time.Sleep(2 * time.Second)
	if !present(c, observer, "acme", "db", "d1") {
		t.Fatal("the session expired after a server-side stream close")
	}
	next := c.WaitTenantLeader("acme")
	st2 := s.attach(next)
	defer st2.closeByClient()
	s.keepalive(next)
}

// TestPromiseSurvivesLeaderCrash: the leader crashes right after answering
// a keepalive (before any Renew could commit): no session is expired before
// its promise, and a dead session keeps its countdown (no fresh TTL).
func TestPromiseSurvivesLeaderCrash(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	s := openSession(t, c, tok, "acme", sid, api.SessionRequest{TTLMs: 3000, LeaseMs: 1000})
	register(t, c, 1, tok, "acme", "db", "d1", api.RegisterRequest{Address: "a:1", Mode: api.ModeMasterStandby, Session: sid})
	leader := c.WaitTenantLeader("acme")
	st := s.attach(leader)
	sent, ka := s.keepalive(leader)
	c.AbortNode(leader)
	st.closeByClient()
	observer := leader%3 + 1
	promise := sent.Add(time.Duration(ka.LeaseMs) * time.Millisecond)
	gone := instanceGone(t, c, observer, "acme", "db", "d1", 10*time.Second)
	if gone.Before(promise) {
		t.Fatalf("session expired %v before its promise", promise.Sub(gone))
	}
	// The new leader resumes the session's countdown: at most the TTL
	// from the keepalive plus the failover, not a fresh TTL from takeover.
	if lived := gone.Sub(sent); lived > 3000*time.Millisecond+2500*time.Millisecond {
		t.Fatalf("session lived %v after its last keepalive", lived)
	}
}

// TestCountdownResumesAfterLeaderChange: a session dying when the leader
// changes keeps its remaining countdown (recorded by Renew) instead of a
// fresh TTL (etcd-io/etcd#9395).
func TestCountdownResumesAfterLeaderChange(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	s := openSession(t, c, tok, "acme", sid, api.SessionRequest{TTLMs: 8000})
	register(t, c, 1, tok, "acme", "web", "w1", api.RegisterRequest{Address: "a:1", Session: sid})
	sent, _ := s.keepalive(1)
	leader := c.WaitTenantLeader("acme")
	// Let the countdown fall behind and be recorded (Renew every second).
	servertest.Eventually(t, 10*time.Second, "a renew recording the countdown", func() bool {
		info, _ := c.Server(leader).Node().Tenant("acme")
		si, _ := info.SM.Session(sid)
		return si.RemainingMs < 5000
	})
	observer := leader%3 + 1
	c.AbortNode(leader)
	c.WaitTenantLeader("acme")
	gone := instanceGone(t, c, observer, "acme", "web", "w1", 20*time.Second)
	lived := gone.Sub(sent)
	if lived < 8*time.Second {
		t.Fatalf("session lived %v, less than its TTL", lived)
	}
	// A fresh TTL from the takeover would give >= ~4 s + 8 s.
	if lived > 11*time.Second {
		t.Fatalf("session lived %v after its last keepalive: the countdown restarted", lived)
	}
}

// TestStaleExpireRejected: a deposed leader's Expire, arriving after the new
// leader's barrier, never removes a session the new leader renewed.
func TestStaleExpireRejected(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	s := openSession(t, c, tok, "acme", sid, api.SessionRequest{TTLMs: 5000})
	register(t, c, 1, tok, "acme", "web", "w1", api.RegisterRequest{Address: "a:1", Session: sid})
	leader := c.WaitTenantLeader("acme")
	tr, _ := c.Server(leader).Node().Tenant("acme")
	oldTerm, _ := tr.Sessions.Term()
	c.StopNode(leader)
	next := c.WaitTenantLeader("acme")
	s.keepalive(next)
	nt, _ := c.Server(next).Node().Tenant("acme")
	newTerm, _ := nt.Sessions.Term()
	if newTerm <= oldTerm {
		t.Fatalf("term %d after %d", newTerm, oldTerm)
	}
	// The old leader's late Expire, through Raft like any proposal.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o, err := nt.Propose(ctx, fsm.Encode(fsm.OpExpire, fsm.Expire{Term: oldTerm, NowMs: time.Now().UnixMilli(), IDs: []string{sid}}))
	if err != nil {
		t.Fatal(err)
	}
	if o.Code != api.CodeConflict || !strings.Contains(o.Message, "barrier term") {
		t.Fatalf("stale expire outcome %+v, want rejected by the term guard", o)
	}
	if !present(c, next, "acme", "web", "w1") {
		t.Fatal("a stale expire removed a renewed session")
	}
}

// TestSelfPreservation: when most sessions stop renewing at once with no
// stream close to explain it, the expiry waits one TTL (and is logged).
func TestSelfPreservation(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	var first time.Time
	for i := 0; i < 4; i++ {
		id := fmt.Sprintf("sess-%016d", i)
		s := openSession(t, c, tok, "acme", id, api.SessionRequest{TTLMs: 3000})
		register(t, c, 1, tok, "acme", "web", fmt.Sprintf("w%d", i), api.RegisterRequest{Address: "a:1", Session: id})
		if sent, _ := s.keepalive(1); i == 0 {
			first = sent
		}
	}
	// The sessions' deadlines are spread by how long the set-up took; the
	// first one to fall due starts the hold for all of them.
	gone := instanceGone(t, c, 1, "acme", "web", "w0", 15*time.Second)
	if lived := gone.Sub(first); lived < 6*time.Second {
		t.Fatalf("4 of 4 sessions went silent; the first expired %v after its keepalive, want held back one TTL (>= 6s)", lived)
	}
}

// TestKeepaliveForwarded: a follower forwards keepalives to the leader and
// names it in X-Rafting-Leader.
func TestKeepaliveForwarded(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	openSession(t, c, tok, "acme", sid, api.SessionRequest{})
	leader := c.WaitTenantLeader("acme")
	follower := leader%3 + 1
	// A leader change meanwhile answers 503 (retry); the success names the leader.
	var r *servertest.Response
	servertest.Eventually(t, 10*time.Second, "a forwarded keepalive", func() bool {
		r = c.Do(follower, tok, http.MethodPut, "/v1/tenants/acme/sessions/"+sid+"/keepalive", nil)
		if e := r.Err(); e != nil && !e.Code.Retryable() {
			t.Fatalf("keepalive on a follower = %d %s", r.Status, r.Body)
		}
		return r.Status == http.StatusOK
	})
	leader = c.WaitTenantLeader("acme")
	if r.Header.Get(api.HeaderLeader) != c.Addr(leader) {
		t.Fatalf("forwarded keepalive names leader %q, want %s", r.Header.Get(api.HeaderLeader), c.Addr(leader))
	}
	// The stream is served by the leader only: a follower says moved.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := c.Do(follower, tok, http.MethodGet, "/v1/tenants/acme/sessions/"+sid+"/stream", nil)
		var ev api.StreamEvent
		if err := json.Unmarshal(r.Body, &ev); err != nil || ev.Type != api.EventMoved || ev.Leader != c.Addr(leader) {
			t.Errorf("stream on a follower = %s, want one moved line naming the leader", r.Body)
		}
	}()
	wg.Wait()
}

// TestKeepaliveShowsInstances: a keepalive answer lists the state of every
// instance registered under the session, as of its index: an operator's
// drain (a registration without the session) shows in the next answer. The
// session's stream is told at once, of the drain and of a removal by
// someone else, and not of the session's own writes.
func TestKeepaliveShowsInstances(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{})
	s := openSession(t, c, tok, "acme", sid, api.SessionRequest{TTLMs: 10000})
	register(t, c, 1, tok, "acme", "web", "w1", api.RegisterRequest{Address: "a:1", Session: sid})
	reg := register(t, c, 1, tok, "acme", "api", "a1", api.RegisterRequest{Address: "a:2", Session: sid, State: api.StateStarting})
	leader := c.WaitTenantLeader("acme")
	st := s.attach(leader)
	defer st.closeByClient()
	_, ka := s.keepalive(leader)
	want := []api.HeldInstance{{Service: "api", Instance: "a1", State: api.StateStarting}, {Service: "web", Instance: "w1", State: api.StateReady}}
	if !slices.Equal(ka.Instances, want) || ka.Index < reg.Index {
		t.Fatalf("keepalive answer %+v, want %+v at index >= %d", ka, want, reg.Index)
	}
	drained := register(t, c, 2, tok, "acme", "web", "w1", api.RegisterRequest{Address: "a:1", State: api.StateDraining})
	_, ka = s.keepalive(leader)
	want[1].State = api.StateDraining
	if !slices.Equal(ka.Instances, want) || ka.Index < drained.Index {
		t.Fatalf("after an operator's drain: %+v, want %+v at index >= %d", ka, want, drained.Index)
	}
	register(t, c, 1, tok, "acme", "api", "a1", api.RegisterRequest{Address: "a:2", Session: sid}) // its own write: no event
	if r := c.Do(2, tok, http.MethodDelete, "/v1/tenants/acme/services/api/instances/a1", nil); r.Status != http.StatusNoContent {
		t.Fatalf("operator delete = %d %s", r.Status, r.Body)
	}
	var got []api.HeldInstance
	timeout := time.After(5 * time.Second)
	for len(got) < 2 {
		select {
		case ev := <-st.events:
			if ev.Type == api.EventInstance {
				if ev.Instance == nil || ev.Index < drained.Index {
					t.Fatalf("instance event %+v", ev)
				}
				got = append(got, *ev.Instance)
			}
		case <-timeout:
			t.Fatalf("stream events of the session's instances: %+v, want the drain and the removal", got)
		}
	}
	if wantEv := []api.HeldInstance{{Service: "web", Instance: "w1", State: api.StateDraining}, {Service: "api", Instance: "a1"}}; !slices.Equal(got, wantEv) {
		t.Fatalf("stream events %+v, want %+v", got, wantEv)
	}
}
