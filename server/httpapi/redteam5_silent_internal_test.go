package httpapi

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestRedTeam5RestedClosedBySilentTimer: red team 5, finding 2. acceptLoop
// gives every held connection a silent timer (silentTimeout from its
// accept, 10 s) that closes it if the waiter still holds it then. A
// connection back from a parked answer (rest) is held by the same waiter
// again: when its rest falls across that mark — refused within 10 s of
// its accept, as the first requests of a client over its rate are, and
// its client waiting the answer's Retry-After before its next request —
// the old timer finds it held and closes it, ≈ 10 s after its accept
// instead of restIdle (2 min) after its answer. An honest client's next
// request then races the close: a POST (not retried by Go's transport,
// nor by most clients) written as the node closes the connection fails.
// The closure also keeps the limitedConn reachable meanwhile. The silent
// timer is set only when AuthTimeout is 0 or above silentTimeout (the
// default, 5 s, sets none): a node configured so.
//
// Measured (silentTimeout shortened to 300 ms): an authenticated
// connection rested 100 ms after its accept, checked 400 ms later (well
// within restIdle): is it still open?
func TestRedTeam5RestedClosedBySilentTimer(t *testing.T) {
	inner, l := heldListener(t, 300*time.Millisecond, ConnLimits{MaxTotal: 100})
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("G"))
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	lc := sc.(*limitedConn)
	lc.Read(make([]byte, 1))
	if !lc.authenticated("alice") {
		t.Fatal("not authenticated")
	}
	time.Sleep(100 * time.Millisecond) // its request refused and parked meanwhile
	l.rest(lc)                         // as parking.release does once the parked answer is written
	time.Sleep(400 * time.Millisecond) // the client waits its Retry-After
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err = c.Read(make([]byte, 1))
	open := errors.Is(err, os.ErrDeadlineExceeded)
	t.Logf("rested connection 400 ms after its rest (restIdle %v): open %v (read: %v)", restIdle, open, err)
	if !open {
		t.Errorf("a rested, authenticated connection was closed by its accept-time silent timer %v after its rest, not restIdle (%v)",
			400*time.Millisecond, restIdle)
	}
}
