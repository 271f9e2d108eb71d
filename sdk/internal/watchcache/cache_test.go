package watchcache

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/api"
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

func ids(ins []api.Instance) []string {
	out := []string{}
	for _, in := range ins {
		out = append(out, in.ID)
	}
	return out
}

func endpointIDs(v *View) []string {
	out := []string{}
	for _, e := range v.Endpoints() {
		out = append(out, e.ID)
	}
	slices.Sort(out)
	return out
}

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestOrder: an answer before the view is dropped, whatever it holds; one
// of a higher epoch is newer whatever its index, even with the view's
// modify index; one of a lower epoch is older.
func TestOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Service: "s"})
		tests := []struct {
			name    string
			r       *api.ServiceResponse
			epoch   uint64
			want    Outcome
			wantPos Pos
			wantIDs []string
		}{
			{"first", answer(50, ready("b"), ready("a")), 1, Applied, Pos{1, 50}, []string{"a", "b"}},
			{"an older index", answer(49, ready("x")), 1, Older, Pos{1, 50}, []string{"a", "b"}},
			{"index 0", answer(0), 1, Older, Pos{1, 50}, []string{"a", "b"}},
			{"the same index and modify index: the same content", answer(50, ready("a")), 1, Applied, Pos{1, 50}, []string{"a", "b"}},
			{"a newer index", answer(60, ready("c")), 1, Applied, Pos{1, 60}, []string{"c"}},
			{"the next epoch, a lower index", &api.ServiceResponse{Index: 7, ModifyIndex: 60, Instances: []api.Instance{ready("d")}},
				2, Applied, Pos{2, 7}, []string{"d"}},
			{"the old epoch, a higher index", answer(70, ready("e")), 1, Older, Pos{2, 7}, []string{"d"}},
			{"the new epoch, an older index", answer(6, ready("f")), 2, Older, Pos{2, 7}, []string{"d"}},
			{"epoch 0", answer(1000, ready("g")), 0, Older, Pos{2, 7}, []string{"d"}},
		}
		for _, tt := range tests {
			before := c.View()
			if got := c.Apply(tt.r, tt.epoch); got != tt.want {
				t.Errorf("%s: Apply() = %v, want %v", tt.name, got, tt.want)
			}
			v := c.View()
			if v.Pos != tt.wantPos || !slices.Equal(ids(v.Instances), tt.wantIDs) {
				t.Errorf("%s: the view is at %+v with %v, want %+v with %v", tt.name, v.Pos, ids(v.Instances), tt.wantPos, tt.wantIDs)
			}
			if tt.want == Older && v != before {
				t.Errorf("%s: a dropped answer published a view", tt.name)
			}
		}
	})
}

// TestFloor: before the first answer is applied, one below the highest
// floor raised is dropped and Filled stays open; once filled, the floor
// no longer matters (the order does).
func TestFloor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Service: "s"})
		c.RaiseFloor(Pos{1, 20})
		c.RaiseFloor(Pos{1, 10}) // never lowers it
		if got := c.Apply(answer(19, ready("a")), 1); got != BelowFloor || closed(c.Filled()) || len(c.View().Instances) != 0 {
			t.Fatalf("below the floor: Apply() = %v, filled %v, view %v", got, closed(c.Filled()), ids(c.View().Instances))
		}
		if got := c.Apply(answer(5, ready("a")), 2); got != Applied || !closed(c.Filled()) {
			t.Fatalf("of a higher epoch: Apply() = %v, filled %v, want applied", got, closed(c.Filled()))
		}
		c.RaiseFloor(Pos{3, 1})
		if got := c.Apply(answer(6, ready("b")), 2); got != Applied {
			t.Fatalf("after the first fill, below a later floor: Apply() = %v, want applied", got)
		}
	})
}

// TestSameContent: an answer with the view's modify index, of its epoch,
// moves the view's position and Synced without waking watchers or
// listeners; of another epoch it is a new content.
func TestSameContent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Service: "s"})
		heard := 0
		c.Listen(func(*View) { heard++ })
		c.Apply(answer(10, ready("a")), 1)
		first := c.View()
		time.Sleep(time.Second)
		same := answer(15, ready("a"))
		same.ModifyIndex = 10
		if got := c.Apply(same, 1); got != Applied {
			t.Fatalf("Apply() = %v", got)
		}
		v := c.View()
		if v.Index != 15 || !v.Synced.Equal(first.Synced.Add(time.Second)) || closed(first.Changed()) || heard != 1 {
			t.Fatalf("same content: index %d, synced +%v, woke watchers %v, listeners heard %d; want 15, +1s, false, 1",
				v.Index, v.Synced.Sub(first.Synced), closed(first.Changed()), heard)
		}
		same = answer(3, ready("a"))
		same.ModifyIndex = 10
		c.Apply(same, 2)
		if !closed(v.Changed()) || heard != 2 {
			t.Fatalf("the same modify index of another epoch: woke watchers %v, listeners heard %d; want true, 2", closed(v.Changed()), heard)
		}
	})
}

// TestQuarantine: an answer in which more than half of the pickable
// instances (at least two) vanish keeps them in Endpoints until exactly
// Quarantine after it; drains, small removals and returning instances
// leave at once.
func TestQuarantine(t *testing.T) {
	const q = 10 * time.Second
	tests := []struct {
		name   string
		before []api.Instance
		after  []api.Instance
		held   []string
	}{
		{"one of four vanishes", []api.Instance{ready("a"), ready("b"), ready("c"), ready("d")},
			[]api.Instance{ready("a"), ready("b"), ready("c")}, nil},
		{"two of four: half, not more", []api.Instance{ready("a"), ready("b"), ready("c"), ready("d")},
			[]api.Instance{ready("a"), ready("b")}, nil},
		{"two of three", []api.Instance{ready("a"), ready("b"), ready("c")}, []api.Instance{ready("a")}, []string{"b", "c"}},
		{"one of one: at least two", []api.Instance{ready("a")}, nil, nil},
		{"every one of two", []api.Instance{ready("a"), ready("b")}, nil, []string{"a", "b"}},
		{"a mass drain", []api.Instance{ready("a"), ready("b"), ready("c")},
			[]api.Instance{ready("a"), draining("b"), draining("c")}, nil},
		{"drained ones vanish: not counted", []api.Instance{ready("a"), ready("b"), draining("c"), draining("d")},
			[]api.Instance{ready("a"), ready("b")}, nil},
		{"two of three ready, beside others not ready", []api.Instance{ready("a"), ready("b"), ready("c"), draining("d")},
			[]api.Instance{draining("d"), ready("c")}, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := New(Config{Service: "s", Quarantine: q})
				c.Apply(answer(1, tt.before...), 0)
				c.Apply(answer(2, tt.after...), 0)
				v := c.View()
				want := ids(tt.after)
				if !slices.Equal(ids(v.Instances), want) {
					t.Fatalf("the view holds %v, want the truth %v", ids(v.Instances), want)
				}
				if !slices.Equal(v.Quarantined, tt.held) {
					t.Fatalf("Quarantined = %v, want %v", v.Quarantined, tt.held)
				}
				wantEps := ids(slices.DeleteFunc(slices.Clone(tt.after), func(in api.Instance) bool { return !Pickable(in) }))
				wantEps = append(wantEps, tt.held...)
				slices.Sort(wantEps)
				if got := endpointIDs(v); !slices.Equal(got, wantEps) {
					t.Fatalf("Endpoints() = %v, want %v", got, wantEps)
				}
				if tt.held == nil && !v.HoldEnd().IsZero() || tt.held != nil && !v.HoldEnd().Equal(time.Now().Add(q)) {
					t.Fatalf("HoldEnd() = %v, want now+%v if held", v.HoldEnd(), q)
				}
			})
		})
	}
	t.Run("q=0", func(t *testing.T) {
		c := New(Config{Service: "s"})
		c.Apply(answer(1, ready("a"), ready("b")), 0)
		c.Apply(answer(2), 0)
		if v := c.View(); len(v.Quarantined) != 0 || len(v.Endpoints()) != 0 {
			t.Fatalf("without a quarantine: held %v", v.Quarantined)
		}
	})
}

// TestQuarantineBoundary: the held endpoints stay until exactly
// Quarantine after the mass removal — through EndQuarantine and through
// the answers that follow — and not a nanosecond longer; one that comes
// back leaves the quarantine at once.
func TestQuarantineBoundary(t *testing.T) {
	const q = 10 * time.Second
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Service: "s", Quarantine: q})
		c.Apply(answer(1, ready("a"), ready("b"), ready("c"), ready("d")), 0)
		start := time.Now()
		c.Apply(answer(2, ready("a")), 0)
		if v := c.View(); !slices.Equal(v.Quarantined, []string{"b", "c", "d"}) || !v.HoldEnd().Equal(start.Add(q)) {
			t.Fatalf("after the mass removal: held %v until %v", v.Quarantined, v.HoldEnd().Sub(start))
		}
		time.Sleep(time.Second)
		// b comes back, draining: it leaves the quarantine and the balancers.
		c.Apply(answer(3, ready("a"), draining("b")), 0)
		if v := c.View(); !slices.Equal(v.Quarantined, []string{"c", "d"}) || !slices.Equal(endpointIDs(v), []string{"a", "c", "d"}) ||
			!v.HoldEnd().Equal(start.Add(q)) {
			t.Fatalf("after b came back: held %v, endpoints %v, until %v", v.Quarantined, endpointIDs(v), v.HoldEnd().Sub(start))
		}
		time.Sleep(q - time.Second - time.Nanosecond)
		if c.EndQuarantine() {
			t.Fatal("EndQuarantine() = true a nanosecond before the quarantine's end")
		}
		c.Apply(answer(4, ready("a"), draining("b"), ready("e")), 0)
		if v := c.View(); !slices.Equal(v.Quarantined, []string{"c", "d"}) {
			t.Fatalf("an answer a nanosecond before the end: held %v, want [c d]", v.Quarantined)
		}
		time.Sleep(time.Nanosecond)
		before := c.View()
		if !c.EndQuarantine() {
			t.Fatal("EndQuarantine() = false at the quarantine's end")
		}
		if v := c.View(); len(v.Quarantined) != 0 || !v.HoldEnd().IsZero() || !slices.Equal(endpointIDs(v), []string{"a", "e"}) ||
			!closed(before.Changed()) || v.Index != 4 {
			t.Fatalf("after the end: held %v until %v, endpoints %v, watchers woken %v, index %d",
				v.Quarantined, v.HoldEnd(), endpointIDs(v), closed(before.Changed()), v.Index)
		}
		if c.EndQuarantine() {
			t.Fatal("EndQuarantine() = true with nothing held")
		}
	})
	// An answer (not EndQuarantine) exactly at the end drops them.
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Service: "s", Quarantine: q})
		c.Apply(answer(1, ready("a"), ready("b"), ready("c")), 0)
		c.Apply(answer(2, ready("a")), 0)
		time.Sleep(q)
		c.Apply(answer(3, ready("a"), ready("e")), 0)
		if v := c.View(); len(v.Quarantined) != 0 || !v.HoldEnd().IsZero() {
			t.Fatalf("an answer at the end: held %v until %v, want none", v.Quarantined, v.HoldEnd())
		}
	})
	// A second mass removal during a quarantine holds both, until its own end.
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Service: "s", Quarantine: q})
		c.Apply(answer(1, ready("a"), ready("b"), ready("c")), 0)
		c.Apply(answer(2, ready("a")), 0)
		time.Sleep(time.Second)
		c.Apply(answer(3, ready("x"), ready("y"), ready("z")), 0)
		c.Apply(answer(4), 0)
		if v := c.View(); !slices.Equal(v.Quarantined, []string{"b", "c", "x", "y", "z"}) || v.HoldEnd().Sub(time.Now()) != q {
			t.Fatalf("a second mass removal: held %v for %v", v.Quarantined, v.HoldEnd().Sub(time.Now()))
		}
	})
}

// TestStale: after `servers` failed requests in a row the view is marked
// Stale, kept whole, and watchers are woken once; listeners hear nothing
// of it. An applied answer — new content or the same — ends it.
func TestStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Service: "s"})
		errDown := errors.New("down")
		c.Failed(errDown, 1)
		if v := c.View(); v.Stale || !errors.Is(c.Err(), errDown) {
			t.Fatalf("a failure before the first fill: stale %v, Err() = %v", v.Stale, c.Err())
		}
		var heard []*View
		c.Listen(func(v *View) { heard = append(heard, v) })
		c.Apply(answer(10, ready("a"), ready("b")), 0)
		if c.Err() != nil {
			t.Fatalf("Err() = %v after an answer", c.Err())
		}
		filled := c.View()
		c.Failed(errDown, 3)
		c.Failed(errDown, 3)
		if c.View() != filled || closed(filled.Changed()) {
			t.Fatal("two failures of three servers published a view")
		}
		c.Failed(errDown, 3)
		stale := c.View()
		if !stale.Stale || !slices.Equal(ids(stale.Instances), []string{"a", "b"}) || stale.Pos != filled.Pos || !closed(filled.Changed()) {
			t.Fatalf("after three: stale %v with %v at %+v, watchers woken %v", stale.Stale, ids(stale.Instances), stale.Pos, closed(filled.Changed()))
		}
		c.Failed(errDown, 3)
		if c.View() != stale || closed(stale.Changed()) {
			t.Fatal("a failure of a stale view published again")
		}
		if len(heard) != 1 {
			t.Fatalf("listeners heard %d views, want 1 (failures are not news)", len(heard))
		}
		// The same content again: fresh, watchers woken, listeners not.
		same := answer(11, ready("a"), ready("b"))
		same.ModifyIndex = 10
		c.Apply(same, 0)
		if v := c.View(); v.Stale || !closed(stale.Changed()) || len(heard) != 1 {
			t.Fatalf("after the same content: stale %v, watchers woken %v, listeners heard %d", v.Stale, closed(stale.Changed()), len(heard))
		}
		// The count starts over after an answer.
		c.Failed(errDown, 2)
		if c.View().Stale {
			t.Fatal("one failure of two servers after an answer: stale")
		}
		c.Failed(errDown, 2)
		c.Apply(answer(12, ready("a")), 0)
		if v := c.View(); v.Stale || len(heard) != 2 || heard[1] != v {
			t.Fatalf("a new content after staleness: stale %v, listeners heard %d", v.Stale, len(heard))
		}
	})
}

// TestListeners: every listener hears every new content, in the order
// applied — also when answers race — and never an empty or stale view
// after failures; one that comes after the first fill hears the current
// view at once; a stopped one hears nothing more.
func TestListeners(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Service: "s", Quarantine: time.Minute})
		var a, b []uint64
		stopA := c.Listen(func(v *View) { a = append(a, v.Index) })
		if len(a) != 0 {
			t.Fatal("a listener heard a view before the first fill")
		}
		c.Apply(answer(1, ready("x"), ready("y"), ready("z")), 0)
		c.Listen(func(v *View) {
			if len(v.Instances) == 0 && len(v.Quarantined) == 0 || v.Stale {
				t.Errorf("a listener heard an empty or stale view: %+v", v)
			}
			b = append(b, v.Index)
		})
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 50 {
					idx := uint64(2 + i*4 + g)
					c.Apply(answer(idx, ready("x"), ready(fmt.Sprint("i", idx))), 0)
					c.Failed(errors.New("down"), 1)
				}
			})
		}
		wg.Wait()
		for name, got := range map[string][]uint64{"a": a, "b": b} {
			if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) || got[len(got)-1] != 201 {
				t.Errorf("listener %s heard %v: want increasing indexes up to 201", name, got)
			}
		}
		if b[0] != 1 {
			t.Errorf("a listener added after the fill heard %d first, want the current view (1)", b[0])
		}
		stopA()
		n := len(a)
		c.Apply(answer(300, ready("x")), 0)
		if len(a) != n || b[len(b)-1] != 300 {
			t.Fatalf("after stop: a heard %d more, b last heard %d", len(a)-n, b[len(b)-1])
		}
	})
}

// TestWatchersNeverSeeEmpty: a watcher following Changed after a failure
// sees the last membership, marked stale, never an emptied one.
func TestWatchersNeverSeeEmpty(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Config{Service: "s"})
		c.Apply(answer(1, ready("a"), ready("b")), 0)
		seen := make(chan *View, 10)
		done := make(chan struct{})
		v := c.View()
		go func() {
			defer close(done)
			for range 2 {
				<-v.Changed()
				v = c.View()
				seen <- v
			}
		}()
		c.Failed(errors.New("down"), 1)
		synctest.Wait()
		c.Failed(errors.New("still down"), 1)
		c.Apply(answer(2, ready("a"), ready("b"), ready("c")), 0)
		<-done
		close(seen)
		var got []string
		for v := range seen {
			got = append(got, fmt.Sprintf("%d stale=%v %v", v.Index, v.Stale, ids(v.Instances)))
		}
		want := []string{"1 stale=true [a b]", "2 stale=false [a b c]"}
		if !slices.Equal(got, want) {
			t.Fatalf("the watcher saw %q, want %q", got, want)
		}
	})
}
