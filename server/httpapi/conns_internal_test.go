package httpapi

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
)

// TestOldestUnauthenticatedMakesRoom: when the unauthenticated
// connections are all taken, a new one is admitted and the oldest waiting
// one of the address holding the most is closed, unless the new one's own
// address holds as many: a few addresses' idle or churned connections
// cannot keep other clients out, nor push out their slow connections.
// An authenticated connection is never closed for it.
func TestOldestUnauthenticatedMakesRoom(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Limit(inner, ConnLimits{MaxUnauthenticated: 3})
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() (client, server net.Conn) {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Write([]byte("G")) // a request begun: handed on (Accept) only then
		select {
		case s := <-accepted:
			return c, s
		case <-time.After(2 * time.Second):
			t.Fatal("not accepted")
		}
		return nil, nil
	}
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		ne, ok := err.(net.Error)
		return err != nil && !(ok && ne.Timeout())
	}
	_, authed := dial()
	authed.(*limitedConn).authenticated("acme")
	// Three from 127.0.0.1 fill the unauthenticated slots.
	c1, _ := dial()
	c2, _ := dial()
	c3, _ := dial()
	// A fourth from 127.0.0.1: refused, its address holds the most.
	c4, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	if !closed(c4) {
		t.Fatal("a fourth connection from the address that holds every slot was admitted")
	}
	// One from another address: admitted, and 127.0.0.1's oldest, c1,
	// makes room.
	other, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.Write([]byte("G"))
	select {
	case <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("a connection from another address was not accepted")
	}
	if !closed(c1) {
		t.Fatal("the heaviest address's oldest connection was kept when another address came over the limit")
	}
	for i, c := range []net.Conn{c2, c3, other} {
		if closed(c) {
			t.Fatalf("connection %d was closed", i+2)
		}
	}
}

// TestHeldUntilReadable: a connection is handed on (Accept) once it has
// bytes to read; until then it counts in the limits and its auth timeout
// runs. One that hangs up having sent nothing is closed and counted out
// without ever reaching the server, and closing the listener closes the
// ones it still holds.
func TestHeldUntilReadable(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Limit(inner, ConnLimits{MaxUnauthenticated: 10, AuthTimeout: time.Second})
	l := ln.(*limitedListener)
	if l.w == nil {
		t.Skip("no waiter on this platform: connections are handed on as accepted")
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	total := func() int {
		l.c.mu.Lock()
		defer l.c.mu.Unlock()
		return l.c.total
	}
	waitTotal := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); total() != want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("connections counted: %d, want %d", total(), want)
			}
		}
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	silent, hangsUp, speaks := dial(), dial(), dial()
	waitTotal(3)
	select {
	case c := <-accepted:
		t.Fatalf("a connection that sent nothing was handed on (%v)", c.RemoteAddr())
	case <-time.After(200 * time.Millisecond):
	}
	speaks.Write([]byte("GET"))
	select {
	case c := <-accepted:
		if c.RemoteAddr().String() != speaks.LocalAddr().String() {
			t.Fatalf("handed on %v, want the one that spoke, %v", c.RemoteAddr(), speaks.LocalAddr())
		}
		b := make([]byte, 3)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "GET" {
			t.Fatalf("read %q, %v from the connection handed on; want its bytes", b, err)
		}
		defer c.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("a connection that sent bytes was not handed on")
	}
	hangsUp.Close()
	waitTotal(2)
	start := time.Now()
	silent.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatal("read bytes from the server on a silent connection")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a held connection outlived its auth timeout")
	}
	t.Logf("a held silent connection closed %v after it was first read", time.Since(start).Round(time.Millisecond))
	waitTotal(0) // the one handed on never authenticated either

	late := dial()
	waitTotal(1)
	ln.Close()
	late.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := late.Read(make([]byte, 1)); err == nil {
		t.Fatal("read bytes from the server")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a held connection was left open when the listener closed")
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("Accept on a closed listener succeeded")
	}
}

// TestParkedAnswer: a parked refusal's answer, encoded by hand, is the
// response writeError makes: status, headers, body, and Connection: close
// when it ends the connection.
func TestParkedAnswer(t *testing.T) {
	refusal := &api.Error{Code: api.CodeRateLimited, Message: "acme: requests_per_second exceeded", RetryAfter: 1500 * time.Millisecond}
	h := http.Header{}
	h.Set(HeaderRequestID, "r-1")
	want := httptest.NewRecorder()
	want.Header().Set(HeaderRequestID, "r-1")
	writeError(want, refusal)
	for _, ends := range []bool{false, true} {
		b := encodeAnswer(h, refusal, ends)
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
		if err != nil {
			t.Fatalf("encodeAnswer(ends %v) = %q: %v", ends, b, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want.Code || !bytes.Equal(body, want.Body.Bytes()) {
			t.Fatalf("encodeAnswer(ends %v) = %d %s, want %d %s", ends, resp.StatusCode, body, want.Code, want.Body.Bytes())
		}
		for _, k := range []string{"Retry-After", "Content-Type", HeaderRequestID} {
			if resp.Header.Get(k) != want.Header().Get(k) || resp.Header.Get(k) == "" {
				t.Fatalf("encodeAnswer(ends %v): %s = %q, want %q", ends, k, resp.Header.Get(k), want.Header().Get(k))
			}
		}
		if resp.Close != ends {
			t.Fatalf("encodeAnswer(ends %v): the answer ends the connection: %v", ends, resp.Close)
		}
	}
}

// TestHeldSilentTimeout: without an auth timeout (or a longer one), a
// held connection that sends nothing is closed after silentTimeout, as
// net/http's ReadHeaderTimeout closed it when it read from it at once.
func TestHeldSilentTimeout(t *testing.T) {
	defer func(d time.Duration) { silentTimeout = d }(silentTimeout)
	silentTimeout = 300 * time.Millisecond
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Limit(inner, ConnLimits{})
	if ln.(*limitedListener).w == nil {
		t.Skip("no waiter on this platform")
	}
	defer ln.Close()
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read bytes from the server")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("a silent held connection with no auth timeout was open after 3 s (silentTimeout %v)", silentTimeout)
	}
	t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
}
