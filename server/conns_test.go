package server_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// closedSoon reports whether the server closes c within d (a read ends).
func closedSoon(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	ne, timeout := err.(net.Error)
	return err != nil && !(timeout && ne.Timeout())
}

// TestConnectionLimits: connections that never authenticate are capped per
// source address and closed after the auth timeout, so idle connections
// cannot take the node's file descriptors; a client that authenticates
// keeps its connection.
func TestConnectionLimits(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) {
		cfg.MaxUnauthenticatedPerAddress = 20
		cfg.AuthTimeout = time.Second
	}})
	tok := c.CreateTenant("acme", api.Quotas{})
	var idle []net.Conn
	defer func() {
		for _, conn := range idle {
			conn.Close()
		}
	}()
	for i := range 21 {
		conn, err := net.Dial("tcp", c.Addr(1))
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, conn)
		if i == 20 && !closedSoon(conn, 300*time.Millisecond) {
			t.Fatal("a 21st idle connection from one address was kept open, over the limit of 20")
		}
	}
	if !closedSoon(idle[0], 3*time.Second) {
		t.Fatal("an idle connection that never authenticated outlived the auth timeout")
	}
	// An authenticated client keeps its connection past the timeout.
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	get := func() (reused bool) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+c.Addr(1)+"/v1/tenants/acme/services", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
		}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body) // a drained body lets the connection be reused
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("an authenticated request = %d", resp.StatusCode)
		}
		return reused
	}
	get()
	time.Sleep(1500 * time.Millisecond)
	if !get() {
		t.Fatal("an authenticated connection was closed at the auth timeout")
	}
}

// TestReadTimeoutAndHeaders: a request must be read within ReadTimeout — a
// client cannot trickle a body forever — while a blocking query waits
// longer than that; every answer names its request (X-Request-Id) and is
// not to be cached.
func TestReadTimeoutAndHeaders(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) { cfg.ReadTimeout = time.Second }})
	tok := c.CreateTenant("acme", api.Quotas{})
	// A body trickled one byte every 300 ms: cut off at the read timeout.
	conn, err := net.Dial("tcp", c.Addr(1))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /v1/tenants/acme/services/web/instances/w1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 100\r\n\r\n", tok)
	start := time.Now()
	for time.Since(start) < 5*time.Second {
		if _, err := conn.Write([]byte(" ")); err != nil {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a trickled body was read for %v, past the 1 s read timeout", d)
	}
	// A blocking query outlives the read timeout.
	var s api.ServiceResponse
	r := c.Do(1, tok, http.MethodGet, "/v1/tenants/acme/services/web", nil)
	r.JSON(t, &s)
	start = time.Now()
	r = c.Do(1, tok, http.MethodGet, fmt.Sprintf("/v1/tenants/acme/services/web?index=%d&wait=2s", s.Index), nil)
	if r.Status != http.StatusOK || time.Since(start) < 1500*time.Millisecond {
		t.Fatalf("a 2 s blocking query with a 1 s read timeout = %d after %v", r.Status, time.Since(start))
	}
	if r.Header.Get("X-Request-Id") == "" || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("answer headers %v, want X-Request-Id and Cache-Control: no-store", r.Header)
	}
}
