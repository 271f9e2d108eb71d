package httpapi

import (
	"container/list"
	"context"
	"fmt"
	"testing"
	"time"
)

// TestPacingTurns: a marked address's new connections go on at its
// tenant's rate, a second's worth at once, in one schedule for all the
// tenant's addresses; a turn past the connection's deadline is not taken;
// the mark runs out; an address not marked goes on at once.
func TestPacingTurns(t *testing.T) {
	p := pacing{marks: map[string]paceMark{}, next: map[string]time.Time{}}
	now := time.Unix(1000, 0)
	far := now.Add(time.Minute)
	if at, paced := p.turn("10.0.0.1", now, far); paced || !at.Equal(now) {
		t.Fatalf("an address never marked: %v %v, want now, not paced", at, paced)
	}
	p.mark("10.0.0.1", "mallory", 10, now)
	p.mark("10.0.0.2", "mallory", 10, now)
	p.mark("10.0.0.3", "bob", 0, now) // unlimited: nothing to pace at
	for i := range 10 {
		host := fmt.Sprintf("10.0.0.%d", 1+i%2)
		if at, paced := p.turn(host, now, far); !paced || !at.Equal(now) {
			t.Fatalf("turn %d within the banked second: %v %v, want now, paced", i, at, paced)
		}
	}
	for i := range 5 {
		want := now.Add(time.Duration(i) * 100 * time.Millisecond)
		if at, _ := p.turn("10.0.0.2", now, far); !at.Equal(want) {
			t.Fatalf("turn %d past the second's worth: at %v, want %v", i, at.Sub(now), want.Sub(now))
		}
	}
	if at, paced := p.turn("10.0.0.1", now, now.Add(100*time.Millisecond)); !paced || !at.IsZero() {
		t.Fatalf("a turn (at 500 ms) past its deadline (100 ms): %v %v, want zero, paced", at, paced)
	}
	if at, _ := p.turn("10.0.0.1", now, far); !at.Equal(now.Add(500 * time.Millisecond)) {
		t.Fatalf("the turn refused for its deadline was taken: next at %v, want 500ms", at.Sub(now))
	}
	if _, paced := p.turn("10.0.0.3", now, far); paced {
		t.Fatal("an address of a tenant with no rate was paced")
	}
	later := now.Add(PaceMark + time.Second)
	if at, paced := p.turn("10.0.0.1", later, far); paced || !at.Equal(later) {
		t.Fatalf("after its mark ran out: %v %v, want at once", at, paced)
	}
}

// TestPacingSharedAddresses: an address from which a connection is open
// as another identity (a tenant, an admin token) is never marked — a NAT's,
// a proxy's, a node's — and a mark goes when one authenticates.
func TestPacingSharedAddresses(t *testing.T) {
	counts := &connCounts{perAddr: map[string]*list.List{}, perTenant: map[string]int{}, byAddr: map[string]map[string]int{},
		pacing: pacing{marks: map[string]paceMark{}, next: map[string]time.Time{}}}
	conn := func(host string) (*limitedConn, context.Context) {
		lc := &limitedConn{counts: counts, host: host}
		counts.mu.Lock()
		counts.total++
		counts.unauth++
		counts.mu.Unlock()
		return lc, context.WithValue(context.Background(), connKey{}, lc)
	}
	now := time.Unix(1000, 0)
	paced := func(host string) bool {
		_, p := counts.pacing.turn(host, now, now.Add(time.Minute))
		return p
	}
	victim, _ := conn("10.0.0.1")
	victim.authenticated("victim")
	mallory, ctx := conn("10.0.0.1")
	mallory.authenticated("mallory")
	markPaced(ctx, "mallory", 10, now)
	if paced("10.0.0.1") {
		t.Fatal("an address with another tenant's connection open was marked")
	}
	counts.mu.Lock()
	counts.closeLocked(victim)
	counts.mu.Unlock()
	markPaced(ctx, "mallory", 10, now)
	if !paced("10.0.0.1") {
		t.Fatal("an address with only the refused tenant's connections open was not marked")
	}
	admin, _ := conn("10.0.0.1")
	admin.authenticated("") // an admin token
	if paced("10.0.0.1") {
		t.Fatal("the mark stayed when a connection from the address authenticated as another identity")
	}
	markPaced(ctx, "mallory", 10, now)
	if paced("10.0.0.1") {
		t.Fatal("marked again while the admin's connection is open")
	}
}

// TestPacingBounds: marks from more addresses than maxPaceMarks make room
// rather than grow.
func TestPacingBounds(t *testing.T) {
	p := &pacing{marks: map[string]paceMark{}, next: map[string]time.Time{}}
	now := time.Unix(1000, 0)
	for i := range maxPaceMarks + 100 {
		p.mark(fmt.Sprintf("10.2.%d.%d", i/256, i%256), "mallory", 10, now.Add(time.Duration(i)))
	}
	if n := len(p.marks); n > maxPaceMarks || p.held.Load() != int64(n) {
		t.Fatalf("%d marks (counted %d), want at most %d", n, p.held.Load(), maxPaceMarks)
	}
	if _, paced := p.turn(fmt.Sprintf("10.2.%d.%d", (maxPaceMarks+99)/256, (maxPaceMarks+99)%256), now, now.Add(time.Minute)); !paced {
		t.Fatal("the newest mark was dropped to make room")
	}
}
