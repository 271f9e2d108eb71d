package httpapi

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestRedTeam4PacedConnectionsOutliveClose: red team 4, finding 5. Close
// closes the connections the waiter holds, the parked ones and those in
// ready, but not those waiting for their pacing turn: each one's timer
// hands it on after Close (handOnNow → handBack), where handBack's select
// finds both ready (room in its buffer) and closing ready, and picks one
// at random: about half the connections whose turn comes after Close are
// put in ready, which nothing reads or drains any more. Without an auth
// timer (AuthTimeout 0) nothing ever closes them: their descriptors leak
// for the life of the process (an embedding program, or a node stopped
// and started again in-process as servertest does); with one, they are
// held until it fires.
//
// Measured: of 40 paced connections (10 a second, from a marked address),
// those still open 4 s after the listener was closed, 200 ms in.
func TestRedTeam4PacedConnectionsOutliveClose(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Limit(inner, ConnLimits{MaxTotal: 1000}).(*limitedListener)
	defer l.Close()
	l.c.pacing.mark("127.0.0.2", "mallory", 10, time.Now())
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	var conns []net.Conn
	for range 40 {
		c, err := d.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		conns = append(conns, c)
	}
	time.Sleep(200 * time.Millisecond)
	l.Close()
	time.Sleep(4 * time.Second) // every turn past (the last at 3 s)
	open := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			open++
		}
	}
	t.Logf("%d of the 40 paced connections still open 4 s after the listener was closed", open)
	if open > 0 {
		t.Errorf("%d connections still open (held by the node) 4 s after its listener was closed", open)
	}
}
