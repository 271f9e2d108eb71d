package httpapi

import (
	"net"
	"testing"
	"time"
)

// TestOldestUnauthenticatedMakesRoom: when the unauthenticated
// connections are all taken, a new one is admitted and the oldest waiting
// one is closed: idle connections from many addresses cannot keep new
// clients out. An authenticated connection is never closed for it.
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
	authed.(*limitedConn).authenticated()
	c1, _ := dial()
	c2, _ := dial()
	c3, _ := dial()
	c4, _ := dial() // the fourth unauthenticated: c1, the oldest, makes room
	if !closed(c1) {
		t.Fatal("the oldest unauthenticated connection was kept when a new one came over the limit")
	}
	for i, c := range []net.Conn{c2, c3, c4} {
		if closed(c) {
			t.Fatalf("connection %d was closed", i+2)
		}
	}
}
