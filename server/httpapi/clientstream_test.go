package httpapi_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// TestClientStreamProtocols: the API port serves REST over HTTP/1.1 and
// over HTTP/2 with prior knowledge (h2c), and the client stream over h2c;
// with TLS, h2 is chosen by ALPN and HTTP/1.1 still answers.
func TestClientStreamProtocols(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("acme", api.Quotas{})
	get := func(client *http.Client, url string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		var b json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&b)
		return resp, b
	}
	url := "http://" + c.Addr(1) + "/v1/tenants/acme/services/web"
	for _, tt := range []struct {
		name   string
		client *http.Client
		major  int
	}{
		{"HTTP/1.1", &http.Client{Timeout: 10 * time.Second}, 1},
		{"h2c prior knowledge", h2cClient(0), 2},
	} {
		resp, b := get(tt.client, url)
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != tt.major || resp.Header.Get(api.HeaderIndex) == "" {
			t.Errorf("%s: GET service = %d %s over %s, want 200 over HTTP/%d", tt.name, resp.StatusCode, b, resp.Proto, tt.major)
		}
	}
	s := openStream(t, h2cClient(0), c.Addr(1), "acme", tok)
	if s.resp.ProtoMajor != 2 || s.resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("stream answered over %s with %q", s.resp.Proto, s.resp.Header.Get("Content-Type"))
	}
	s.send(`{"type":"ping","req":1}`)
	if r := s.result(1); r.Status != http.StatusNoContent {
		t.Fatalf("ping = %+v", r)
	}

	t.Run("TLS", func(t *testing.T) {
		dir := t.TempDir()
		ca := servertest.NewCA(t, dir, "cluster")
		tc := servertest.Start(t, servertest.Options{Nodes: 1, Configure: func(cfg *config.Config) { ca.Secure(t, cfg) }})
		pool, err := server.LoadCA(ca.File)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			client *http.Client
			proto  string
		}{
			{tlsH2Client(&tls.Config{RootCAs: pool}), "HTTP/2.0"},
			{&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool},
				TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}, "HTTP/1.1"},
		} {
			resp, err := tt.client.Get("https://" + tc.Addr(1) + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Proto != tt.proto {
				t.Errorf("GET /healthz over TLS = %d %s, want 200 %s", resp.StatusCode, resp.Proto, tt.proto)
			}
		}
	})
}

// TestClientStreamBadFrames: a frame that is wrong gets a result with the
// REST error (400 naming the field) and the stream goes on; a frame that
// is not JSON, or one over 1 MiB, ends the stream with an error frame.
func TestClientStreamBadFrames(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("acme", api.Quotas{})
	c.WaitTenantLeader("acme")
	client := h2cClient(0)
	s := openStream(t, client, c.Addr(1), "acme", tok)
	tests := []struct {
		frame string
		req   uint64
		field string
	}{
		{`{"type":"put_instance","req":1,"service":"web","id":"w1","body":{"address":"a:1","colour":"red"}}`, 1, "colour"},
		{`{"type":"put_instance","req":2,"service":"bad name","id":"w1","body":{"address":"a:1"}}`, 2, "service"},
		{`{"type":"put_instance","req":3,"service":"web","id":"w1"}`, 3, "body"},
		{`{"type":"put_instance","req":4,"service":"web","id":"w1","w":3,"body":{"address":"a:1"}}`, 4, "w"},
		{`{"type":"watch","req":5,"service":"web"}`, 5, "w"},
		{`{"type":"keepalive","req":6,"sessions":[{"id":"short"}]}`, 6, "sessions[0].id"},
		{`{"type":"frobnicate","req":7}`, 7, "type"},
		{`{"type":"watch","req":8,"w":"x","service":"web"}`, 8, "w"},
		{`{"type":"watch","w":1,"service":"web"}`, 0, "req"},
		{`[1,2]`, 0, "frame"},
		{`{"type":"delete_instance","req":9,"service":"web","id":"w1","seq":3}`, 9, "seq"},
		{`{"type":"attach","req":10,"session":"x"}`, 10, "session"},
		{`{"type":"open_session","req":11,"id":"sess-bad-frames-0001","body":{"ttl_ms":-1}}`, 11, "ttl_ms"},
	}
	for i, tt := range tests {
		s.send(tt.frame)
		var r api.ServerFrame
		if tt.req == 0 {
			s.wait(5*time.Second, "a result for req 0", func(fs []recvFrame, _ bool) bool {
				n := 0
				for _, f := range fs {
					if f.f.Type == api.FrameResult && f.f.Req == 0 {
						n++
						r = f.f
					}
				}
				return n == countReq0(tests[:i+1])
			})
		} else {
			r = s.result(tt.req)
		}
		e := api.Decode(r.Status, r.Body, "")
		if r.Status != http.StatusBadRequest || e.Code != api.CodeBadRequest || !strings.HasPrefix(e.Message, tt.field+": ") {
			t.Errorf("%s = %d %s, want 400 naming %q", tt.frame, r.Status, r.Body, tt.field)
		}
	}
	// The stream lives on, and nothing was registered.
	s.send(`{"type":"ping","req":100}`)
	s.result(100)
	var svc api.ServiceResponse
	c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/services/web", nil).JSON(t, &svc)
	if len(svc.Instances) != 0 {
		t.Fatalf("a refused frame registered %v", svc.Instances)
	}

	fatal := []struct {
		name  string
		frame []byte
		code  api.Code
	}{
		{"not JSON", []byte(`{"type":"ping",`), api.CodeBadRequest},
		{"two values", []byte(`{"type":"ping"} {"type":"ping"}`), api.CodeBadRequest},
		{"over 1 MiB", []byte(`{"type":"ping","x":"` + strings.Repeat("x", api.MaxFrameBytes) + `"}`), api.CodeTooLarge},
	}
	for _, tt := range fatal {
		s := openStream(t, client, c.Addr(1), "acme", tok)
		s.send(tt.frame)
		s.wait(10*time.Second, tt.name+": an error frame, then the end", func(fs []recvFrame, ended bool) bool { return ended })
		fs := s.snapshotFrames()
		last := fs[len(fs)-1].f
		if last.Type != api.FrameError || last.Error == nil || last.Error.Code != tt.code {
			t.Errorf("%s: last frame %s, want an error %s", tt.name, fs[len(fs)-1].raw, tt.code)
		}
	}
}

func countReq0(tests []struct {
	frame string
	req   uint64
	field string
}) int {
	n := 0
	for _, tt := range tests {
		if tt.req == 0 {
			n++
		}
	}
	return n
}

// TestClientStreamWatch: a watch on a follower gets its result, a snapshot,
// then changes in index order that never skip one, under a burst of
// registrations, updates and removals from several writers: every frame's
// index is above the last, every write is in the first frame at or above
// its index, and the content at every index both saw equals what REST's
// blocking queries answered at that index.
func TestClientStreamWatch(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	tok := c.CreateTenant("acme", api.Quotas{WritesPerSecond: 100000, RequestsPerSecond: 100000, Burst: 100000})
	leader := c.WaitTenantLeader("acme")
	follower := leader%3 + 1
	if r := c.Do(leader, tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/seed", api.RegisterRequest{Address: "s:1"}); r.Status != http.StatusCreated {
		t.Fatalf("seed = %d %s", r.Status, r.Body)
	}
	s := openStream(t, h2cClient(0), c.Addr(follower), "acme", tok)
	s.send(api.ClientFrame{Type: api.FrameWatch, Req: 1, W: 7, Service: "web"})
	r := s.result(1)
	var wr api.WatchResponse
	if err := json.Unmarshal(r.Body, &wr); err != nil || r.Status != http.StatusOK || !wr.Snapshot || wr.W != 7 {
		t.Fatalf("watch = %+v %s", r, r.Body)
	}

	// REST's view, by blocking queries on the leader, at every index they see.
	var restMu sync.Mutex
	rest := map[uint64]api.ServiceResponse{}
	stopRest := make(chan struct{})
	var restWG sync.WaitGroup
	restWG.Add(1)
	go func() {
		defer restWG.Done()
		var index uint64
		for {
			select {
			case <-stopRest:
				return
			default:
			}
			resp := c.Do(leader, tok, http.MethodGet, fmt.Sprintf("/v1/tenants/acme/services/web?index=%d&wait=1s", index), nil)
			var svc api.ServiceResponse
			if resp.Status != http.StatusOK {
				continue
			}
			resp.JSON(t, &svc)
			restMu.Lock()
			rest[svc.ModifyIndex] = svc
			restMu.Unlock()
			index = svc.ModifyIndex
		}
	}()

	const writers, each = 6, 40
	type write struct {
		id      string
		index   uint64
		removed uint64 // the index it was removed at, 0 if never
	}
	var mu sync.Mutex
	var writes []write
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%d-%d", g, i)
				r := c.Do(1+(g%3), tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/"+id,
					api.RegisterRequest{Address: fmt.Sprintf("10.0.%d.%d:80", g, i), Meta: map[string]string{"n": fmt.Sprint(i)}})
				var rr api.RegisterResponse
				if r.Status != http.StatusCreated {
					t.Errorf("register %s = %d %s", id, r.Status, r.Body)
					return
				}
				r.JSON(t, &rr)
				w := write{id: id, index: rr.Index}
				if i%5 == 4 { // every fifth is removed again
					d := c.Do(1+(g%3), tok, http.MethodDelete, "/v1/tenants/acme/services/web/instances/"+id, nil)
					if d.Status != http.StatusNoContent {
						t.Errorf("deregister %s = %d", id, d.Status)
						return
					}
					// The removal's index: at least the next one.
					w.removed = rr.Index + 1
				}
				mu.Lock()
				writes = append(writes, w)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var final api.ServiceResponse
	c.Do(leader, tok, http.MethodGet, "/v1/tenants/acme/services/web?consistent=true", nil).JSON(t, &final)
	s.wait(20*time.Second, "the watch to reach the last write", func(fs []recvFrame, _ bool) bool {
		return len(fs) > 0 && fs[len(fs)-1].f.Index >= final.ModifyIndex
	})
	close(stopRest)
	restWG.Wait()

	// Replay the watch's frames.
	var st svcState
	states := map[uint64]*svcState{}
	var indexes []uint64
	snapshots := 0
	for _, rf := range s.snapshotFrames() {
		if rf.f.W != 7 || (rf.f.Type != api.FrameSnapshot && rf.f.Type != api.FrameChanges) {
			continue
		}
		if rf.f.Type == api.FrameSnapshot {
			snapshots++
		}
		st.apply(t, rf.f)
		cp := st
		cp.inst = maps.Clone(st.inst)
		states[st.index] = &cp
		indexes = append(indexes, st.index)
	}
	if snapshots != 1 {
		t.Errorf("the watch got %d snapshots, want 1", snapshots)
	}
	if diff := st.same(final); diff != "" {
		t.Fatalf("the watch's last state differs from REST's at %d: %s", final.ModifyIndex, diff)
	}
	// Every write is in the first frame at or above its index.
	for _, w := range writes {
		i, _ := slices.BinarySearch(indexes, w.index)
		if i == len(indexes) {
			t.Fatalf("no frame at or after %s's index %d", w.id, w.index)
		}
		at := states[indexes[i]]
		_, present := at.inst[w.id]
		removed := w.removed != 0 && w.removed <= indexes[i]
		if !present && !removed {
			t.Errorf("%s registered at %d is missing from the frame at %d", w.id, w.index, indexes[i])
		}
	}
	// Where REST and the stream saw the same index, they saw the same service.
	restMu.Lock()
	defer restMu.Unlock()
	common := 0
	for index, svc := range rest {
		if st, ok := states[index]; ok {
			common++
			if diff := st.same(svc); diff != "" {
				t.Errorf("at index %d: %s", index, diff)
			}
		}
	}
	t.Logf("%d writes; the watch sent %d frames, REST's blocking queries saw %d indexes, %d in common",
		len(writes)*1, len(indexes), len(rest), common)
	if common == 0 {
		t.Errorf("REST and the stream saw no index in common")
	}
}

// TestClientStreamCurl: curl watches a service on the stream, as DESIGN.md
// says an operator can: the frame sent as the request body, then the
// result, the snapshot and the changes as they come.
func TestClientStreamCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl")
	}
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	tok := c.CreateTenant("acme", api.Quotas{})
	c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/w1", api.RegisterRequest{Address: "a:1"})
	cmd := exec.Command(curl, "-sS", "--http2-prior-knowledge", "-N", "--max-time", "3", "-H", "Authorization: Bearer "+tok,
		"--data-binary", `{"type":"watch","req":1,"w":1,"service":"web"}`+"\n", "http://"+c.Addr(1)+"/v1/tenants/acme/stream")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	c.Do(1, tok, http.MethodPut, "/v1/tenants/acme/services/web/instances/w2", api.RegisterRequest{Address: "a:2"})
	_ = cmd.Wait() // curl ends at --max-time: the stream lives while it watches
	for _, want := range []string{`"type":"result","req":1,"status":200`, `"type":"snapshot","w":1`, `"type":"changes","w":1`, `"id":"w2"`} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("curl's output lacks %s:\n%s", want, out.String())
		}
	}
}
