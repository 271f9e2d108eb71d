package server_test

import (
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
