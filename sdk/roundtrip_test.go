package sdk_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestTransport runs svc.Transport against real HTTP servers registered as
// real members of a one-node cluster, a service each.
func TestTransport(t *testing.T) {
	c := sdktest.StartWith(t, sdktest.Options{Nodes: 1})
	cl := c.Connect(t)
	t.Run("PicksPerRequest", func(t *testing.T) { testTransportPicks(t, c, cl) })
	t.Run("InFlightUntilBodyEnds", func(t *testing.T) { testTransportInFlight(t, c, cl) })
	t.Run("RetriesOnceWhenSafe", func(t *testing.T) { testTransportRetries(t, c, cl) })
	t.Run("DialErrorRetriedAnyMethod", func(t *testing.T) { testTransportDialError(t, c, cl) })
	t.Run("5xxCountsAgainstInstance", func(t *testing.T) { testTransport5xx(t, c, cl) })
	t.Run("NoEndpoints", func(t *testing.T) { testTransportNoEndpoints(t, cl) })
}

// backend is a real HTTP server that records what it served.
type backend struct {
	id   string
	addr string
	mu   sync.Mutex
	seen []string // each request's X-Seq, Host and body: "seq host body"
}

// serve starts a backend whose handler h runs after the request is
// recorded; nil answers 200 with the backend's ID.
func serve(t *testing.T, id string, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{id: id}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.seen = append(b.seen, r.Header.Get("X-Seq")+" "+r.Host+" "+string(body))
		b.mu.Unlock()
		w.Header().Set("X-Instance", id)
		if h != nil {
			h(w, r)
			return
		}
		io.WriteString(w, id)
	}))
	t.Cleanup(srv.Close)
	b.addr = srv.Listener.Addr().String()
	return b
}

func (b *backend) requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.seen...)
}

// sawSeq reports whether the backend received the request numbered seq.
func (b *backend) sawSeq(seq int) bool {
	for _, s := range b.requests() {
		if n, _, _ := bytes.Cut([]byte(s), []byte(" ")); string(n) == strconv.Itoa(seq) {
			return true
		}
	}
	return false
}

// farmOf joins each backend as an instance of service and returns the
// Client's view of it, which has them all (a consistent first read).
func farmOf(t *testing.T, c *sdktest.Cluster, cl *sdk.Client, name string, bs ...*backend) *sdk.Service {
	t.Helper()
	for _, b := range bs {
		c.Join(t, sdk.Instance{Service: name, ID: b.id, Address: b.addr})
	}
	svc := service(t, cl, name)
	c.WaitEndpoints(t, svc, len(bs))
	return svc
}

// transport returns svc's Transport of p on a base transport of its own,
// whose connections the test's cleanup closes.
func transport(t *testing.T, svc *sdk.Service, p balancer.Policy) (*sdk.Transport, *http.Client) {
	tr := svc.Transport(p)
	tr.Base = &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return tr, &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, hc *http.Client, url string, seq int) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Seq", strconv.Itoa(seq))
	return hc.Do(req)
}

// testTransportPicks: each request goes to the instance picked for it,
// with the instance's address as Host unless the caller set one.
func testTransportPicks(t *testing.T, c *sdktest.Cluster, cl *sdk.Client) {
	bs := []*backend{serve(t, "a", nil), serve(t, "b", nil), serve(t, "c", nil)}
	svc := farmOf(t, c, cl, "spread", bs...)
	_, hc := transport(t, svc, balancer.RoundRobin())
	got := map[string]int{}
	for i := range 30 {
		resp, err := get(t, hc, "http://spread/who", i)
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got[string(body)]++
	}
	for _, b := range bs {
		if got[b.id] != 10 {
			t.Errorf("instance %s answered %d of 30 round-robin requests, want 10 (all: %v)", b.id, got[b.id], got)
		}
		for _, s := range b.requests() {
			if _, host, _ := bytes.Cut([]byte(s), []byte(" ")); !bytes.HasPrefix(host, []byte(b.addr+" ")) {
				t.Errorf("instance %s saw Host %q, want its address %s", b.id, host, b.addr)
			}
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "http://spread/who", nil)
	req.Host = "orders.internal"
	req.Header.Set("X-Seq", "99")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, b := range bs {
		for _, s := range b.requests() {
			if bytes.HasPrefix([]byte(s), []byte("99 ")) && s != "99 orders.internal " {
				t.Errorf("request with Host set: instance %s saw %q, want Host orders.internal", b.id, s)
			}
		}
	}
}

// testTransportInFlight: LeastLoaded counts a request in flight until its
// body is read to the end or closed, and picks around it meanwhile.
func testTransportInFlight(t *testing.T, c *sdktest.Cluster, cl *sdk.Client) {
	release := make(chan struct{})
	slow := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/empty" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		io.WriteString(w, "head ")
		w.(http.Flusher).Flush()
		if r.URL.Path == "/hold" {
			<-release
		}
		io.WriteString(w, "tail")
	}
	svc := farmOf(t, c, cl, "inflight", serve(t, "x", slow), serve(t, "y", slow))
	tr, hc := transport(t, svc, balancer.LeastLoaded())
	inFlight := func() int64 { return tr.Balancer().Stats().InFlight }

	held, err := get(t, hc, "http://inflight/hold", 0)
	if err != nil {
		t.Fatal(err)
	}
	if n := inFlight(); n != 1 {
		t.Fatalf("InFlight with one body unread = %d, want 1", n)
	}
	holder := held.Header.Get("X-Instance")
	for i := range 10 { // each read to its end, not closed: done at EOF
		resp, err := get(t, hc, "http://inflight/quick", i+1)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("X-Instance"); got == holder {
			t.Errorf("request %d went to %s, which holds a request in flight; LeastLoaded should pick the other", i+1, got)
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
		if n := inFlight(); n != 1 {
			t.Errorf("InFlight after a body read to EOF (not closed) = %d, want 1 (the held one)", n)
		}
		resp.Body.Close()
	}
	held.Body.Close() // closed before its end: done too
	close(release)
	if n := inFlight(); n != 0 {
		t.Errorf("InFlight after the held body was closed unread = %d, want 0", n)
	}
	resp, err := get(t, hc, "http://inflight/empty", 20) // 204: no body, done at once
	if err != nil {
		t.Fatal(err)
	}
	if n := inFlight(); n != 0 {
		t.Errorf("InFlight after a 204 (no body), before Close = %d, want 0", n)
	}
	resp.Body.Close()
	st := tr.Balancer().Stats()
	var picked, finished uint64
	for _, e := range st.Endpoints {
		picked, finished = picked+e.Picked, finished+e.Finished
	}
	if picked != 12 || finished != 12 {
		t.Errorf("Picked %d, Finished %d, want 12 and 12: every request ended once", picked, finished)
	}
}

// testTransportRetries: a connection reset after the request was sent is
// retried once on another instance for GET, PUT and a POST with an
// Idempotency-Key (its body sent again), never for a plain POST.
func testTransportRetries(t *testing.T, c *sdktest.Cluster, cl *sdk.Client) {
	reset := func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.(*net.TCPConn).SetLinger(0) // an RST, as a crashed process's kernel sends
			conn.Close()
		}
	}
	tests := []struct {
		name, method string
		key          bool // an Idempotency-Key header
		retried      bool
	}{
		{"GET", http.MethodGet, false, true},
		{"PUT", http.MethodPut, false, true},
		{"POST with Idempotency-Key", http.MethodPost, true, true},
		{"POST", http.MethodPost, false, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "retry" + strconv.Itoa(i)
			bad, good := serve(t, name+"-reset", reset), serve(t, name+"-good", nil)
			svc := farmOf(t, c, cl, name, bad, good)
			tr, hc := transport(t, svc, balancer.RoundRobin())
			for seq := range 4 { // round robin: some picked the resetting instance first
				body := "body-" + strconv.Itoa(seq)
				req, _ := http.NewRequest(tt.method, "http://"+name+"/x", bytes.NewReader([]byte(body)))
				req.Header.Set("X-Seq", strconv.Itoa(seq))
				if tt.key {
					req.Header.Set("Idempotency-Key", "k"+strconv.Itoa(seq))
				}
				resp, err := hc.Do(req)
				first := bad.sawSeq(seq)
				switch {
				case err == nil:
					resp.Body.Close()
					if first && !tt.retried {
						t.Errorf("request %d: %s reset by %s, then answered: retried, want not", seq, tt.method, bad.id)
					}
					if !good.sawSeq(seq) {
						t.Errorf("request %d answered, but not by %s", seq, good.id)
					}
				case tt.retried || !first:
					t.Errorf("request %d: %v, want an answer (retried on %s)", seq, err, good.id)
				case good.sawSeq(seq):
					t.Errorf("request %d: %s reached %s too after the reset: retried, want not", seq, tt.method, good.id)
				}
			}
			resets := len(bad.requests())
			if resets == 0 {
				t.Errorf("%s received none of 4 round-robin requests, want some", bad.id)
			}
			for _, s := range good.requests() {
				if seq, rest, _ := bytes.Cut([]byte(s), []byte(" ")); !bytes.HasSuffix(rest, []byte(" body-"+string(seq))) {
					t.Errorf("%s received %q: the body was not sent again whole", good.id, s)
				}
			}
			st := tr.Balancer().Stats()
			if st.InFlight != 0 {
				t.Errorf("InFlight after every request ended = %d, want 0", st.InFlight)
			}
			for _, e := range st.Endpoints {
				if e.ID == bad.id && e.Failures != int64(resets) {
					t.Errorf("%s: %d failures in a row, want %d (each reset counted)", e.ID, e.Failures, resets)
				}
			}
		})
	}
}

// testTransportDialError: an instance whose port refuses connections costs
// no request, a POST included: nothing was sent, so it goes to another.
func testTransportDialError(t *testing.T, c *sdktest.Cluster, cl *sdk.Client) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := &backend{id: "dead", addr: l.Addr().String()}
	l.Close() // a crashed process's port: refused
	good := serve(t, "alive", nil)
	svc := farmOf(t, c, cl, "dial", dead, good)
	_, hc := transport(t, svc, balancer.RoundRobin())
	for seq := range 4 {
		resp, err := hc.Post("http://dial/x", "text/plain", bytes.NewReader([]byte("b")))
		if err != nil {
			t.Fatalf("POST %d: %v, want it sent to %s after the refused dial", seq, err, good.id)
		}
		resp.Body.Close()
	}
	if n := len(good.requests()); n != 4 {
		t.Errorf("%s received %d of 4 POSTs, want 4", good.id, n)
	}
}

// testTransport5xx: 5xx answers are returned, not retried, and count
// against their instance until it is ejected.
func testTransport5xx(t *testing.T, c *sdktest.Cluster, cl *sdk.Client) {
	fail := func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }
	svc := farmOf(t, c, cl, "fivexx", serve(t, "sick", fail), serve(t, "well", nil))
	tr, hc := transport(t, svc, balancer.RoundRobin())
	codes := map[int]int{}
	for seq := range 4 * balancer.EjectAfter {
		resp, err := get(t, hc, "http://fivexx/x", seq)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	// Round robin: sick answers every other request until its
	// EjectAfter-th failure in a row ejects it; then well answers all.
	if codes[503] != balancer.EjectAfter || codes[200] != 3*balancer.EjectAfter {
		t.Errorf("statuses %v, want %d × 503 (then ejected) and %d × 200", codes, balancer.EjectAfter, 3*balancer.EjectAfter)
	}
	if st := tr.Balancer().Stats(); st.Ejected != 1 {
		t.Errorf("Stats().Ejected = %d, want 1 (sick): %+v", st.Ejected, st)
	}
}

// testTransportNoEndpoints: no instance to pick is ErrNoEndpoints.
func testTransportNoEndpoints(t *testing.T, cl *sdk.Client) {
	svc := service(t, cl, "nobody")
	_, hc := transport(t, svc, nil)
	_, err := hc.Get("http://nobody/")
	if !errors.Is(err, sdk.ErrNoEndpoints) {
		t.Errorf("Get with no instance: %v, want ErrNoEndpoints", err)
	}
}
