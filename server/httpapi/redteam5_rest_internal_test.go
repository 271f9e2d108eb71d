package httpapi

import (
	"net"
	"runtime"
	"testing"
	"time"
	"weak"
)

// TestRedTeam5RestTimersOutliveConnections: red team 5, finding 1. A
// connection given back from a parked answer (rest) gets a restIdle timer
// (2 minutes) that is stopped only when the waiter hands it on (handOn).
// When the client hangs up instead — the usual end of a refused client —
// the waiter closes it (hungUp → Close), but neither Close nor closeNow
// stops restTimer: the timer, its closure, the limitedConn and the closed
// *net.TCPConn under it stay live for the whole restIdle. The same holds
// for a rested connection closed by its auth timer or the listener's
// Close. An attacker whose refusals are parked (one answer per ParkGap a
// key: 250 a second per tenant or unauthenticated address) and who hangs
// up after each answer leaves restIdle × 250 ≈ 30,000 dead connections
// retained per key on the node at any time, freed only 2 minutes later:
// memory that grows with the number of keys the attacker drives, not
// with the connections it holds open.
//
// Measured: of 200 rested connections whose clients hung up (each closed
// by the waiter), how many limitedConns are still reachable after GC.
func TestRedTeam5RestTimersOutliveConnections(t *testing.T) {
	// The held connections' silent timers (acceptLoop) also keep each
	// limitedConn until they fire: shortened, so that they are out of the
	// measure.
	inner, l := heldListener(t, 100*time.Millisecond, ConnLimits{MaxTotal: 1000})
	const n = 200
	var refs []weak.Pointer[limitedConn]
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		c.Write([]byte("G"))
		sc, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		lc := sc.(*limitedConn)
		lc.Read(make([]byte, 1))
		l.rest(lc) // as parking.release does once the parked answer is written
		refs = append(refs, weak.Make(lc))
	}
	for _, c := range clients { // the refused clients hang up
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.c.mu.Lock()
		total := l.c.total
		l.c.mu.Unlock()
		if total == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still counted 5 s after their clients hung up", total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the silent timers past
	alive := 0
	for range 3 {
		runtime.GC()
	}
	for _, r := range refs {
		if r.Value() != nil {
			alive++
		}
	}
	t.Logf("%d of %d rested connections closed by their clients' hang-up still reachable after GC", alive, n)
	if alive > n/10 {
		t.Errorf("%d of %d closed rested connections retained (their restIdle timers, %v, are not stopped on Close)", alive, n, restIdle)
	}
}

// heldListener is a limited listener on loopback with its waiter (the
// test is skipped where there is none) and silentTimeout set to silent
// for the test; inner is the listener under it.
func heldListener(t *testing.T, silent time.Duration, lim ConnLimits) (net.Listener, *limitedListener) {
	t.Helper()
	old := silentTimeout
	silentTimeout = silent
	t.Cleanup(func() { silentTimeout = old })
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Limit(inner, lim).(*limitedListener)
	t.Cleanup(func() { l.Close() })
	if l.w == nil {
		t.Skip("no waiter on this platform")
	}
	return inner, l
}
