package sdk

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// TestSharedReadyWaitsWithoutSpinning: a member waiting for its Client's
// shared session to be attached, the session being open already, waits
// on what is still to come. It spun before (its select took the closed
// open channel again and again): a Client's members joining together
// burned a core until the stream attached.
func TestSharedReadyWaitsWithoutSpinning(t *testing.T) {
	s := sessionWithID("s1")
	close(s.open) // open, not yet attached
	k := &Member{done: make(chan struct{}), sess: s}
	ss := &sharedSession{k: k}

	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	before := cpu()
	if err := ss.ready(ctx, "s1"); err == nil {
		t.Fatal("ready before the session attached")
	}
	if used := cpu() - before; used > 30*time.Millisecond {
		t.Errorf("waiting 300 ms for the attach took %v of CPU: it spins", used)
	}

	// Attached: ready answers at once.
	done := make(chan error, 1)
	go func() { done <- ss.ready(context.Background(), "s1") }()
	k.mu.Lock()
	s.attached = true
	close(s.attach)
	k.mu.Unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ready after the attach: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ready did not see the attach")
	}
}
