package httpapi

import (
	"net"
	"testing"
	"time"
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
