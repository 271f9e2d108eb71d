package sdk

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
)

func answer(index uint64, instances ...api.Instance) *api.ServiceResponse {
	return &api.ServiceResponse{Index: index, ModifyIndex: index, Service: "s", Instances: instances}
}

func ready(id string) api.Instance {
	return api.Instance{ID: id, Address: id + ":1", State: api.StateReady, Weight: 100}
}

func draining(id string) api.Instance {
	in := ready(id)
	in.State = api.StateDraining
	return in
}

func pickedIDs(b *balancer.Balancer) []string {
	var out []string
	for _, e := range b.Endpoints() {
		out = append(out, e.ID)
	}
	slices.Sort(out)
	return out
}

// TestQuarantine: an answer removing more than half of the ready
// instances at once keeps them in balancers for the quarantine; drained
// instances, small removals and returning instances are applied at once.
func TestQuarantine(t *testing.T) {
	c := testClient()
	c.cfg.conn.quarantine = 10 * time.Second
	s := newService(c, "s")
	now := time.Now()
	if got := s.apply(answer(10, ready("a"), ready("b"), ready("c"), ready("d")), 0, now); got != applied {
		t.Fatalf("first fill: %v", got)
	}
	b := s.Balancer(nil)
	// One of four vanishes: applied at once.
	s.apply(answer(11, ready("a"), ready("b"), ready("c")), 0, now)
	s.rebuild()
	if got := pickedIDs(b); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("after a small removal the balancer holds %v", got)
	}
	// Two of three vanish at once: quarantined.
	s.apply(answer(12, ready("a")), 0, now)
	s.rebuild()
	snap := s.Snapshot()
	if got := ids(snap.Instances); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("the snapshot shows %v, want the truth [a]", got)
	}
	if !slices.Equal(snap.Quarantined, []string{"b", "c"}) {
		t.Fatalf("Quarantined = %v, want [b c]", snap.Quarantined)
	}
	if got := pickedIDs(b); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("during the quarantine the balancer holds %v, want [a b c]", got)
	}
	// b comes back (draining): it leaves the quarantine and the balancer.
	s.apply(answer(13, ready("a"), draining("b")), 0, now.Add(time.Second))
	s.rebuild()
	if got := pickedIDs(b); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("after b drained the balancer holds %v, want [a c]", got)
	}
	// An older answer is dropped.
	if got := s.apply(answer(5), 0, now); got != older || s.Index() != 13 {
		t.Fatalf("older answer: %v, index %d", got, s.Index())
	}
	// The quarantine ends.
	s.endQuarantine(now.Add(9 * time.Second))
	if len(s.Snapshot().Quarantined) != 1 {
		t.Fatal("the quarantine ended early")
	}
	s.endQuarantine(now.Add(10 * time.Second))
	s.rebuild()
	if got := pickedIDs(b); !slices.Equal(got, []string{"a"}) || len(s.Snapshot().Quarantined) != 0 {
		t.Fatalf("after the quarantine the balancer holds %v", got)
	}
	// A mass drain is intentional: applied at once.
	s.apply(answer(20, ready("a"), ready("b"), ready("c")), 0, now)
	s.apply(answer(21, ready("a"), draining("b"), draining("c")), 0, now)
	s.rebuild()
	if got := pickedIDs(b); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after a mass drain the balancer holds %v, want [a]", got)
	}
}

func ids(ins []api.Instance) []string {
	var out []string
	for _, in := range ins {
		out = append(out, in.ID)
	}
	return out
}

// TestDebounce: an isolated update rebuilds the balancers at once; the
// updates that follow it a few hundred microseconds apart make one more
// rebuild, after the quiet time; a long burst is cut every 25 quiet times.
func TestDebounce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testClient()
		c.cfg.conn.debounce = 2 * time.Millisecond
		c.cfg.conn.quarantine = 0
		s := newService(c, "s")
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.publish(ctx) }()
		defer func() { cancel(); <-done }()
		b := s.Balancer(nil)
		idx := uint64(1)
		update := func() {
			idx++
			ins := []api.Instance{ready("a"), ready(fmt.Sprint("i", idx))} // a new list every time
			s.apply(answer(idx, ins...), 0, time.Now())
		}
		update()
		synctest.Wait()
		if n := s.rebuilds.Load(); n != 1 {
			t.Fatalf("one update: %d rebuilds, want 1 at once", n)
		}
		time.Sleep(3 * time.Millisecond)
		for range 10 {
			update()
			time.Sleep(300 * time.Microsecond)
		}
		synctest.Wait()
		if n := s.rebuilds.Load(); n != 2 {
			t.Fatalf("during a burst: %d rebuilds, want 2 (its first update only)", n)
		}
		start := time.Now()
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if n := s.rebuilds.Load(); n != 3 {
			t.Fatalf("after a burst of 10: %d rebuilds, want 3 (one more)", n)
		}
		if got, want := len(b.Endpoints()), len(s.Snapshot().Instances); got != want || time.Since(start) > 2*time.Millisecond {
			t.Fatalf("the balancer holds %d endpoints, the snapshot %d", got, want)
		}
		// Updates every 1 ms for 200 ms: the first at once, then cut every 50 ms.
		for range 200 {
			update()
			time.Sleep(time.Millisecond)
		}
		time.Sleep(5 * time.Millisecond)
		synctest.Wait()
		if n := s.rebuilds.Load() - 3; n < 4 || n > 6 {
			t.Fatalf("a 200 ms burst made %d rebuilds, want about 5", n)
		}
	})
}

// TestEpochs: an answer of a higher epoch (the tenant's Raft log started
// over) is newer than any of a lower one, whatever their indexes, even
// with the same modify index; an answer of a lower epoch is older.
func TestEpochs(t *testing.T) {
	s := newService(testClient(), "s")
	now := time.Now()
	if got := s.apply(answer(50, ready("a"), ready("b")), 1, now); got != applied {
		t.Fatalf("first answer: %v", got)
	}
	same := answer(7, ready("c"))
	same.ModifyIndex = 50
	if got := s.apply(same, 2, now); got != applied || s.Index() != 7 || !slices.Equal(ids(s.Snapshot().Instances), []string{"c"}) {
		t.Fatalf("an answer of the next epoch: %v, index %d, instances %v", got, s.Index(), ids(s.Snapshot().Instances))
	}
	if got := s.apply(answer(60, ready("a")), 1, now); got != older || s.Index() != 7 {
		t.Fatalf("an answer of the old epoch: %v, index %d", got, s.Index())
	}
	if got := s.apply(answer(6, ready("d")), 2, now); got != older {
		t.Fatalf("an older answer of the new epoch: %v", got)
	}
	if p := position(2, 7); s.position() != p || epochOf(p) != 2 || indexOf(p) != 7 || position(1<<30, 7) != 7 {
		t.Fatalf("position %d, want %d", s.position(), p)
	}
}
