package election

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// record is a subscriber's callback that keeps what it was told.
type record struct {
	mu  sync.Mutex
	got []int
}

func (r *record) fn(c int) { r.mu.Lock(); r.got = append(r.got, c); r.mu.Unlock() }

func (r *record) all() []int { r.mu.Lock(); defer r.mu.Unlock(); return slices.Clone(r.got) }

// TestNotifierOrder: each subscriber gets its first state, then every
// change published after it subscribed, in order; none after stop; Run
// delivers what was queued before Close, then returns.
func TestNotifierOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := NewNotifier[int]()
		go n.Run()
		var a, b record
		stopA, ok := n.Subscribe(a.fn, 0)
		if !ok {
			t.Fatal("Subscribe refused on an open Notifier")
		}
		n.Publish(1)
		n.Subscribe(b.fn, 1)
		n.Publish(2)
		synctest.Wait()
		stopA()
		n.Publish(3)
		n.Close()
		n.Publish(4) // after Close: dropped
		<-n.Quiet()
		if got := a.all(); !slices.Equal(got, []int{0, 1, 2}) {
			t.Errorf("a got %v, want [0 1 2]", got)
		}
		if got := b.all(); !slices.Equal(got, []int{1, 2, 3}) {
			t.Errorf("b got %v, want [1 2 3]", got)
		}
		if _, ok := n.Subscribe(b.fn, 9); ok {
			t.Error("Subscribe on a closed Notifier queued its first state")
		}
	})
}

// TestNotifierBlockingCallback: a callback that blocks holds back the
// later ones but never Publish, and Quiet waits for it.
func TestNotifierBlockingCallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := NewNotifier[int]()
		go n.Run()
		release := make(chan struct{})
		var r record
		n.Subscribe(func(c int) {
			if c == 1 {
				<-release
			}
			r.fn(c)
		}, 0)
		n.Publish(1)
		synctest.Wait() // the callback blocks on 1
		for i := 2; i <= 100; i++ {
			n.Publish(i) // never waits for it
		}
		n.Close()
		select {
		case <-n.Quiet():
			t.Fatal("Quiet before the blocked callback returned")
		case <-time.After(time.Hour):
		}
		close(release)
		<-n.Quiet()
		got := r.all()
		if len(got) != 101 || !slices.IsSorted(got) {
			t.Errorf("got %d changes (sorted %v), want 0..100 in order", len(got), slices.IsSorted(got))
		}
	})
}
