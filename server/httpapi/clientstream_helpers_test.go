package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
)

// h2cClient is an HTTP/2 client with prior knowledge (no TLS), as the SDK
// talks to a server without TLS. streamWindow, when > 0, is its receive
// window per stream: a client that stops reading stops the server's writes
// after that many bytes.
func h2cClient(streamWindow int) *http.Client {
	tr := &http.Transport{}
	p := &http.Protocols{}
	p.SetUnencryptedHTTP2(true)
	tr.Protocols = p
	if streamWindow > 0 {
		tr.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: streamWindow, MaxReceiveBufferPerConnection: 1 << 20}
	}
	return &http.Client{Transport: tr}
}

// recvFrame is a frame a test stream received.
type recvFrame struct {
	f   api.ServerFrame
	raw string
	at  time.Time
}

// tstream is a client stream opened by a test.
type tstream struct {
	t      testing.TB
	pw     *io.PipeWriter
	resp   *http.Response
	cancel context.CancelFunc
	body   *bufio.Reader // read by the test itself when manual

	writeMu sync.Mutex

	mu      sync.Mutex
	frames  []recvFrame
	results map[uint64][]api.ServerFrame
	ended   bool
	endErr  error
	changed chan struct{}
	paused  chan struct{} // while non-nil, the reader reads nothing more; closed to resume
}

// pause stops the background reader before its next read: the client
// stops reading, and its receive window fills.
func (s *tstream) pause() {
	s.mu.Lock()
	if s.paused == nil {
		s.paused = make(chan struct{})
	}
	s.mu.Unlock()
}

// resume lets the background reader go on.
func (s *tstream) resume() {
	s.mu.Lock()
	if s.paused != nil {
		close(s.paused)
		s.paused = nil
	}
	s.mu.Unlock()
}

// openStream opens a client stream on addr and reads it in the background.
func openStream(t testing.TB, client *http.Client, addr, tenant, token string) *tstream {
	t.Helper()
	s := openStreamManual(t, client, addr, tenant, token)
	go s.readAll()
	return s
}

// openStreamManual opens a client stream the test reads itself (s.body).
func openStreamManual(t testing.TB, client *http.Client, addr, tenant, token string) *tstream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/tenants/"+tenant+"/stream", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open stream on %s: %v", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("open stream on %s = %d %s", addr, resp.StatusCode, b)
	}
	s := &tstream{t: t, pw: pw, resp: resp, cancel: cancel, body: bufio.NewReaderSize(resp.Body, 16<<10),
		results: map[uint64][]api.ServerFrame{}, changed: make(chan struct{})}
	t.Cleanup(s.close)
	return s
}

// close resets the stream (the client's crash) and waits for the reader.
func (s *tstream) close() {
	s.resume()
	s.cancel()
	s.pw.CloseWithError(io.ErrClosedPipe)
	s.resp.Body.Close()
}

func (s *tstream) readAll() {
	for {
		s.mu.Lock()
		p := s.paused
		s.mu.Unlock()
		if p != nil {
			<-p
		}
		line, err := s.body.ReadBytes('\n')
		if err != nil && len(line) > 0 {
			// The stream ended within a frame: a server ending a stream
			// that stopped reading may have written part of one.
			s.t.Logf("the stream ended %d bytes into a frame", len(line))
		} else if len(line) > 0 {
			s.add(line)
		}
		if err != nil {
			s.mu.Lock()
			s.ended, s.endErr = true, err
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			return
		}
	}
}

func (s *tstream) add(line []byte) {
	var f api.ServerFrame
	if err := json.Unmarshal(line, &f); err != nil {
		s.t.Errorf("undecodable frame %q: %v", line, err)
		return
	}
	s.mu.Lock()
	s.frames = append(s.frames, recvFrame{f: f, raw: string(bytes.TrimSpace(line)), at: time.Now()})
	if f.Type == api.FrameResult {
		s.results[f.Req] = append(s.results[f.Req], f)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// send writes one frame (a value is encoded; []byte and string are sent as
// they are, a newline added).
func (s *tstream) send(v any) {
	s.t.Helper()
	var b []byte
	switch v := v.(type) {
	case []byte:
		b = v
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			s.t.Fatal(err)
		}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if _, err := s.pw.Write(append(b, '\n')); err != nil {
		s.t.Fatalf("send %.80s: %v", b, err)
	}
}

// wait waits until cond holds over the frames received (and whether the
// stream ended), up to timeout.
func (s *tstream) wait(timeout time.Duration, what string, cond func(frames []recvFrame, ended bool) bool) {
	s.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok := cond(s.frames, s.ended)
		ch := s.changed
		n := len(s.frames)
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			s.mu.Lock()
			last := s.frames[max(0, n-5):n]
			s.mu.Unlock()
			s.t.Fatalf("timed out after %v waiting for %s; last frames: %v", timeout, what, last)
		}
	}
}

// result waits for the result of req and fails on a second one.
func (s *tstream) result(req uint64) api.ServerFrame {
	s.t.Helper()
	s.wait(15*time.Second, fmt.Sprintf("the result of req %d", req), func([]recvFrame, bool) bool {
		return len(s.results[req]) > 0
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.results[req]); n != 1 {
		s.t.Fatalf("req %d answered %d times", req, n)
	}
	return s.results[req][0]
}

// snapshotFrames returns a copy of the frames received.
func (s *tstream) snapshotFrames() []recvFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.frames)
}

func (s *tstream) endedNow() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// svcState is a service as a client builds it from a watch's frames.
type svcState struct {
	index  uint64
	inst   map[string]api.Instance
	master *api.Master
	policy api.Policy
}

func (st *svcState) apply(t testing.TB, f api.ServerFrame) {
	t.Helper()
	switch f.Type {
	case api.FrameSnapshot:
		st.inst = map[string]api.Instance{}
		for _, in := range f.Instances {
			st.inst[in.ID] = in
		}
		st.master = f.Master.Master
		if f.Policy != nil {
			st.policy = *f.Policy
		}
	case api.FrameChanges:
		if st.inst == nil {
			t.Fatalf("changes at %d before a snapshot", f.Index)
		}
		for _, in := range f.Upsert {
			st.inst[in.ID] = in
		}
		for _, id := range f.Delete {
			if _, ok := st.inst[id]; !ok {
				t.Errorf("changes at %d delete %s, which the client does not hold", f.Index, id)
			}
			delete(st.inst, id)
		}
		if f.Master.Set {
			st.master = f.Master.Master
		}
		if f.Policy != nil {
			st.policy = *f.Policy
		}
	default:
		return
	}
	if f.Index <= st.index {
		t.Errorf("%s at index %d after index %d: a watch's index went backwards or stood still", f.Type, f.Index, st.index)
	}
	st.index = f.Index
}

// same reports whether the state equals a REST answer's content.
func (st *svcState) same(r api.ServiceResponse) string {
	got := slices.Sorted(maps.Keys(st.inst))
	var want []string
	for _, in := range r.Instances {
		want = append(want, in.ID)
		g, ok := st.inst[in.ID]
		if !ok {
			continue
		}
		a, _ := json.Marshal(g)
		b, _ := json.Marshal(in)
		if !bytes.Equal(a, b) {
			return fmt.Sprintf("instance %s: stream %s, REST %s", in.ID, a, b)
		}
	}
	if !slices.Equal(got, want) {
		return fmt.Sprintf("instances: stream %v, REST %v", got, want)
	}
	a, _ := json.Marshal(st.master)
	b, _ := json.Marshal(r.Master)
	if !bytes.Equal(a, b) {
		return fmt.Sprintf("master: stream %s, REST %s", a, b)
	}
	if st.policy != r.Policy {
		return fmt.Sprintf("policy: stream %+v, REST %+v", st.policy, r.Policy)
	}
	return ""
}

// tlsClient is an HTTP/2-over-TLS client (h2 by ALPN) trusting pool.
func tlsH2Client(cfg *tls.Config) *http.Client {
	tr := &http.Transport{TLSClientConfig: cfg}
	p := &http.Protocols{}
	p.SetHTTP2(true)
	tr.Protocols = p
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}
