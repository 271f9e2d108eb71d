package tenants

import (
	"fmt"
	"strings"
	"testing"
)

// TestAllowInOverflowStaysInItsGroup proves that a group past its cap of
// buckets spends only an overflow bucket of its own: every other group's
// new keys still get full buckets of their own, however many keys the
// first one mints. Before, the session lane was one capped set (262,144
// keys in all), and past the cap the new keys of every tenant shared one
// bucket, so one tenant's keys could take every other tenant's lane.
func TestAllowInOverflowStaysInItsGroup(t *testing.T) {
	l := NewLimiters(0)
	const maxKeys = 100
	for i := range 10 * maxKeys {
		if ok, _ := l.AllowIn("mallory", maxKeys, fmt.Sprintf("mallory:%d", i), 1, 1, t0); !ok && i < maxKeys {
			t.Fatalf("mallory's key %d, within its cap, refused its first call", i)
		}
	}
	if n, want := l.LenIn("mallory"), maxKeys; n != want {
		t.Errorf("LenIn(mallory) = %d, want %d", n, want)
	}
	if n := l.Len(); n > maxKeys+1 {
		t.Errorf("Len() = %d, want at most mallory's cap and its overflow bucket (%d)", n, maxKeys+1)
	}
	if ok, _ := l.AllowIn("mallory", maxKeys, "mallory:new", 1, 1, t0); ok {
		t.Error("mallory's key past its cap had a full bucket: its overflow bucket is spent")
	}
	for i := range maxKeys {
		if ok, _ := l.AllowIn("victim", maxKeys, fmt.Sprintf("victim:%d", i), 1, 1, t0); !ok {
			t.Fatalf("victim's key %d refused its first call: mallory's keys took its bucket", i)
		}
	}
}

// TestEvictFreesGroupRoom proves that Evict drops buckets still in use
// and gives their room in the group back: a group at its cap whose keys
// are evicted makes buckets of its own again.
func TestEvictFreesGroupRoom(t *testing.T) {
	l := NewLimiters(0)
	const maxKeys = 10
	for i := range maxKeys {
		l.AllowIn("acme", maxKeys, fmt.Sprintf("old:%d", i), 1, 1, t0)
	}
	if n := l.Evict(func(key string) bool { return strings.HasPrefix(key, "old:") }); n != maxKeys {
		t.Fatalf("Evict() = %d, want %d", n, maxKeys)
	}
	if n := l.LenIn("acme"); n != 0 {
		t.Fatalf("LenIn(acme) = %d after evicting them all, want 0", n)
	}
	for i := range maxKeys {
		if ok, _ := l.AllowIn("acme", maxKeys, fmt.Sprintf("new:%d", i), 1, 1, t0); !ok {
			t.Fatalf("new key %d refused: the evicted keys still held the group's room", i)
		}
	}
	// The idle sweep gives the room back as well.
	if n := l.Sweep(t0.Add(DefaultIdleTimeout + 2*usedGranularity)); n != maxKeys {
		t.Fatalf("Sweep() = %d, want %d", n, maxKeys)
	}
	if n := l.LenIn("acme"); n != 0 {
		t.Fatalf("LenIn(acme) = %d after the sweep, want 0", n)
	}
}
