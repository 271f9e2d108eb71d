package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/goleak"

	"github.com/rafting/rafting/api"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newClient(t *testing.T, servers ...string) *Client {
	t.Helper()
	c, err := New(Config{Servers: servers, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func host(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func writeErr(w http.ResponseWriter, status int, body string, header ...string) {
	for i := 0; i+1 < len(header); i += 2 {
		w.Header().Set(header[i], header[i+1])
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

// TestRetryAfter: a 429's retry_after_ms is waited for before the retry,
// however short the backoff.
func TestRetryAfter(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			writeErr(w, 429, `{"error":{"code":"rate_limited","message":"slow down","retry_after_ms":300}}`, "Retry-After", "1")
			return
		}
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := newClient(t, host(srv))
	start := time.Now()
	_, err := c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/x", Retry: &Retry{Base: time.Millisecond, Cap: 2 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || n.Load() != 2 {
		t.Fatalf("retried after %v with %d requests, want >= 300ms and 2", d, n.Load())
	}
}

// TestRetrySameBody: writes answered 503 or 504 are retried with the same
// body; the Authorization header is sent every time.
func TestRetrySameBody(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b)+"|"+r.Header.Get("Authorization"))
		n := len(bodies)
		mu.Unlock()
		switch n {
		case 1:
			writeErr(w, 503, `{"error":{"code":"unavailable","message":"no leader","retry_after_ms":1}}`)
		case 2:
			writeErr(w, 504, `{"error":{"code":"timeout","message":"outcome unknown","retry_after_ms":1}}`)
		default:
			w.WriteHeader(201)
		}
	}))
	defer srv.Close()
	c := newClient(t, host(srv))
	resp, err := c.Do(context.Background(), Request{Method: http.MethodPut, Path: "/x", Body: []byte(`{"a":1}`), Retry: &Retry{Base: time.Millisecond}})
	if err != nil || resp.Status != 201 {
		t.Fatalf("Do() = %v, %v", resp, err)
	}
	for _, b := range bodies {
		if b != `{"a":1}|Bearer tok` {
			t.Fatalf("attempts sent %q", bodies)
		}
	}
	if len(bodies) != 3 {
		t.Fatalf("%d attempts, want 3", len(bodies))
	}
}

// TestNoRetry: 4xx answers other than 429 are final and match their
// sentinels; without a Retry, one attempt.
func TestNoRetry(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		writeErr(w, 409, `{"error":{"code":"quota_exceeded","message":"max_instances","quota":"max_instances","limit":1,"used":1}}`)
	}))
	defer srv.Close()
	c := newClient(t, host(srv))
	_, err := c.Do(context.Background(), Request{Method: http.MethodPut, Path: "/x", Retry: &Retry{Base: time.Millisecond}})
	var ae *api.Error
	if !errors.Is(err, api.ErrQuotaExceeded) || !errors.As(err, &ae) || ae.Limit != 1 || n.Load() != 1 {
		t.Fatalf("Do() = %v after %d attempts, want one quota_exceeded", err, n.Load())
	}
}

// TestBreaker: a server failing every request is skipped once its breaker
// trips; requests go to the healthy one.
func TestBreaker(t *testing.T) {
	var bad, good atomic.Int32
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bad.Add(1)
		writeErr(w, 500, `{"error":{"code":"internal","message":"boom"}}`)
	}))
	defer sick.Close()
	fine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		good.Add(1)
		w.Write([]byte(`{}`))
	}))
	defer fine.Close()
	c := newClient(t, host(sick), host(fine))
	for range 20 {
		// Always prefer the sick one, as a sticky watch would.
		c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/x", Server: host(sick)})
	}
	if bad.Load() != breakerTrip || good.Load() != 20-breakerTrip {
		t.Fatalf("sick server got %d requests, healthy %d; want the breaker to trip after %d", bad.Load(), good.Load(), breakerTrip)
	}
}

// TestNetErrorMovesOn: no answer from one server: the retry goes to
// another, and the error matches api.ErrUnavailable.
func TestNetErrorMovesOn(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := host(dead)
	dead.Close()
	fine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) }))
	defer fine.Close()
	c := newClient(t, deadAddr, host(fine))
	resp, err := c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/x", Server: deadAddr, Retry: &Retry{Base: time.Millisecond}})
	if err != nil || resp.Server != host(fine) {
		t.Fatalf("Do() = %v, %v", resp, err)
	}
	only := newClient(t, deadAddr)
	_, err = only.Do(context.Background(), Request{Method: http.MethodGet, Path: "/x"})
	var ne *NetError
	if !errors.Is(err, api.ErrUnavailable) || !errors.As(err, &ne) || !Retryable(err) {
		t.Fatalf("no answer: %v, want a retryable NetError matching ErrUnavailable", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = only.Do(ctx, Request{Method: http.MethodGet, Path: "/x", Retry: &Retry{Base: time.Millisecond}})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("retries until the deadline: %v, want the deadline joined with the last error", err)
	}
	// The ctx runs out just as an attempt finds every breaker open (the
	// attempt does not try the ctx): the deadline is still the error.
	for range breakerTrip {
		only.Do(context.Background(), Request{Method: http.MethodGet, Path: "/x"})
	}
	ended, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	defer cancel()
	_, err = only.Do(ended, Request{Method: http.MethodGet, Path: "/x", Retry: &Retry{Base: time.Millisecond}})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNoServer) {
		t.Fatalf("deadline met with every breaker open: %v, want the deadline joined with ErrNoServer", err)
	}
}

// TestLeaderHint: a 503 naming the leader sends the retry there.
func TestLeaderHint(t *testing.T) {
	var leaderHits atomic.Int32
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaderHits.Add(1)
		w.Write([]byte(`{}`))
	}))
	defer leader.Close()
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, 503, `{"error":{"code":"unavailable","message":"not here","retry_after_ms":1}}`, api.HeaderLeader, host(leader))
	}))
	defer follower.Close()
	third := httptest.NewServer(http.NotFoundHandler())
	defer third.Close()
	c := newClient(t, host(follower), host(third))
	resp, err := c.Do(context.Background(), Request{Method: http.MethodPut, Path: "/k", Server: host(follower), Retry: &Retry{Base: time.Millisecond}})
	if err != nil || resp.Server != host(leader) || leaderHits.Load() != 1 {
		t.Fatalf("Do() = %v, %v; want the retry on the named leader", resp, err)
	}
}

func TestJitter(t *testing.T) {
	j := NewJitter(10*time.Millisecond, 80*time.Millisecond)
	for n := range 8 {
		limit := min(80*time.Millisecond, (10*time.Millisecond)<<n)
		if d := j.NextBackOff(); d < 0 || d > limit {
			t.Fatalf("wait %d = %v, want within [0, %v]", n, d, limit)
		}
	}
	j.SetFloor(time.Second)
	if d := j.NextBackOff(); d != time.Second {
		t.Fatalf("wait with a floor = %v, want 1s", d)
	}
	if d := j.NextBackOff(); d > 80*time.Millisecond {
		t.Fatalf("the floor outlived one wait: %v", d)
	}
	// Full jitter spreads: 1000 draws from [0, 80ms] are not all alike.
	low := 0
	for range 1000 {
		if j.NextBackOff() < 40*time.Millisecond {
			low++
		}
	}
	if low < 400 || low > 600 {
		t.Fatalf("%d of 1000 waits below half the cap, want about 500", low)
	}
	j.MaxElapsed = time.Nanosecond
	j.Reset()
	time.Sleep(time.Millisecond)
	if d := j.NextBackOff(); d != backoff.Stop {
		t.Fatalf("past MaxElapsed: %v, want Stop", d)
	}
}

// TestStreamToNamedServer: a stream attach to a server named as the leader
// goes there even while its breaker is open (it failed while it was down);
// without a name, open breakers are skipped.
func TestStreamToNamedServer(t *testing.T) {
	var up atomic.Bool
	var streams atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			writeErr(w, 500, `{"error":{"code":"internal","message":"down"}}`)
			return
		}
		streams.Add(1)
		w.Write([]byte(`{"type":"heartbeat"}` + "\n"))
	}))
	defer srv.Close()
	c := newClient(t, host(srv))
	for range breakerTrip {
		c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/x"})
	}
	if c.breaker(host(srv)).State().String() != "open" {
		t.Fatalf("breaker %v, want open", c.breaker(host(srv)).State())
	}
	up.Store(true)
	if _, _, err := c.Stream(context.Background(), "", "/s"); !errors.Is(err, ErrNoServer) {
		t.Fatalf("Stream without a name = %v, want ErrNoServer (the only breaker is open)", err)
	}
	resp, used, err := c.Stream(context.Background(), host(srv), "/s")
	if err != nil || used != host(srv) || streams.Load() != 1 {
		t.Fatalf("Stream to the named server = %v on %q (%d streams), want it attached", err, used, streams.Load())
	}
	resp.Body.Close()
}

// TestPlaintextStaysOnLoopback: a plain-HTTP Client never sends to a
// server that is not loopback, whether configured, learnt from a server
// list or named as the leader; Insecure or TLS lifts the rule.
func TestPlaintextStaysOnLoopback(t *testing.T) {
	const remote = "192.0.2.1:7070" // TEST-NET-1: a dial there would hang
	if _, err := New(Config{Servers: []string{"127.0.0.1:1", remote}, Token: "tok"}); !errors.Is(err, ErrPlaintext) {
		t.Fatalf("New with a remote plain-HTTP server = %v, want ErrPlaintext", err)
	}
	for _, cfg := range []Config{{Insecure: true}, {TLS: &tls.Config{}}} {
		cfg.Servers, cfg.Token = []string{remote}, "tok"
		c, err := New(cfg)
		if err != nil {
			t.Fatalf("New(insecure %v, TLS %v) = %v", cfg.Insecure, cfg.TLS != nil, err)
		}
		c.Close()
	}

	var n, streams atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/s" {
			streams.Add(1)
			return
		}
		if n.Add(1) == 1 {
			writeErr(w, 503, `{"error":{"code":"unavailable","message":"not the leader"}}`, api.HeaderLeader, remote)
			return
		}
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := newClient(t, host(srv))
	if !c.AddServers([]string{remote, "[::1]:9"}) || !slices.Equal(c.Servers(), []string{host(srv), "[::1]:9"}) {
		t.Fatalf("AddServers took %v, want only the loopback one", c.Servers())
	}
	c = newClient(t, host(srv))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/x", Retry: &Retry{Base: time.Millisecond, Cap: 2 * time.Millisecond}})
	if err != nil || resp.Server != host(srv) || n.Load() != 2 {
		t.Fatalf("Do after a remote leader hint = %v from %v (%d requests), want the retry on the loopback server", err, resp, n.Load())
	}
	r, used, err := c.Stream(ctx, remote, "/s")
	if err != nil || used != host(srv) || streams.Load() != 1 {
		t.Fatalf("Stream named %s = %v on %q, want it on the loopback server", remote, err, used)
	}
	r.Body.Close()
}
