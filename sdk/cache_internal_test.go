package sdk

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk/internal/watchcache"
)

func answer(index uint64, instances ...api.Instance) *api.ServiceResponse {
	return &api.ServiceResponse{Index: index, ModifyIndex: index, Service: "s", Instances: instances}
}

func ready(id string) api.Instance {
	return api.Instance{ID: id, Address: id + ":1", State: api.StateReady, Weight: 100}
}

func pickedIDs(b *balancer.Balancer) []string {
	var out []string
	for _, e := range b.Endpoints() {
		out = append(out, e.ID)
	}
	slices.Sort(out)
	return out
}

// TestQuarantine: the Service's balancers keep the instances a mass
// removal took for the quarantine (watchcache's rules), and drop them
// exactly when it ends, by the publisher's timer, with no answer needed.
func TestQuarantine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := publishing(t, 10*time.Second, 0)
		b := s.Balancer(nil)
		s.apply(answer(10, ready("a"), ready("b"), ready("c")), 0)
		synctest.Wait()
		if got := pickedIDs(b); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("after the first fill the balancer holds %v", got)
		}
		s.apply(answer(11, ready("a")), 0)
		synctest.Wait()
		snap := s.Snapshot()
		if got := ids(snap.Instances); !slices.Equal(got, []string{"a"}) || !slices.Equal(snap.Quarantined, []string{"b", "c"}) {
			t.Fatalf("the snapshot shows %v, quarantined %v; want the truth [a], [b c]", got, snap.Quarantined)
		}
		if got := pickedIDs(b); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("during the quarantine the balancer holds %v, want [a b c]", got)
		}
		time.Sleep(10*time.Second - time.Nanosecond)
		synctest.Wait()
		if got := pickedIDs(b); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("a nanosecond before the quarantine's end the balancer holds %v, want [a b c]", got)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if got := pickedIDs(b); !slices.Equal(got, []string{"a"}) || len(s.Snapshot().Quarantined) != 0 {
			t.Fatalf("at the quarantine's end the balancer holds %v, quarantined %v; want [a], none", got, s.Snapshot().Quarantined)
		}
	})
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
		s := publishing(t, 0, 2*time.Millisecond)
		b := s.Balancer(nil)
		idx := uint64(1)
		update := func() {
			idx++
			ins := []api.Instance{ready("a"), ready(fmt.Sprint("i", idx))} // a new list every time
			s.apply(answer(idx, ins...), 0)
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

// TestEpochs: the Service hands the cache each answer's epoch as its
// positions hold it — one no position can hold (a broken server's) as 0 —
// and its snapshots carry the epoch and index as a position.
func TestEpochs(t *testing.T) {
	s := newService(testClient(), "s")
	if got := s.apply(answer(50, ready("a"), ready("b")), 1<<30); got != applied || s.position() != 50 {
		t.Fatalf("an answer of epoch 2^30: %v, position %d, want applied at 50 (epoch 0)", got, s.position())
	}
	if got := s.apply(answer(7, ready("c")), 2); got != applied || s.Index() != 7 || !slices.Equal(ids(s.Snapshot().Instances), []string{"c"}) {
		t.Fatalf("an answer of epoch 2: %v, index %d, instances %v", got, s.Index(), ids(s.Snapshot().Instances))
	}
	if got := s.apply(answer(60, ready("a")), 1); got != older || s.Index() != 7 {
		t.Fatalf("an answer of the old epoch: %v, index %d", got, s.Index())
	}
	if p := position(2, 7); s.position() != p || s.Snapshot().pos != p || epochOf(p) != 2 || indexOf(p) != 7 || position(1<<30, 7) != 7 {
		t.Fatalf("position %d, snapshot's %d, want %d", s.position(), s.Snapshot().pos, p)
	}
}

// TestSnapshotOfEveryField: every field of Snapshot is filled from the
// cache's view (snapshotOf), so that a field added to one and not the
// other fails here rather than reading as zero.
func TestSnapshotOfEveryField(t *testing.T) {
	v := &watchcache.View{Pos: watchcache.Pos{Epoch: 3}}
	vv := reflect.ValueOf(v).Elem()
	st := reflect.TypeFor[Snapshot]()
	for i := range st.NumField() {
		f := st.Field(i)
		if !f.IsExported() {
			continue
		}
		vf := vv.FieldByName(f.Name)
		if !vf.IsValid() || vf.Type() != f.Type {
			t.Fatalf("watchcache.View has no field %s of type %s: snapshotOf cannot fill Snapshot.%s", f.Name, f.Type, f.Name)
		}
		fill(t, vf, i+1)
	}
	snap := reflect.ValueOf(snapshotOf(v))
	for i := range st.NumField() {
		if f := st.Field(i); f.IsExported() && !reflect.DeepEqual(snap.Field(i).Interface(), vv.FieldByName(f.Name).Interface()) {
			t.Errorf("snapshotOf does not copy %s: %v, want %v", f.Name, snap.Field(i), vv.FieldByName(f.Name))
		}
	}
	if got := snapshotOf(v).pos; got != position(3, v.Index) {
		t.Errorf("snapshotOf's pos = %d, want %d", got, position(3, v.Index))
	}
}

// fill sets v, and what it holds, to values that are not zero.
func fill(t *testing.T, v reflect.Value, n int) {
	t.Helper()
	switch {
	case v.Type() == reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(time.Unix(int64(n), 0)))
	case v.Kind() == reflect.String:
		v.SetString(fmt.Sprint("s", n))
	case v.Kind() == reflect.Bool:
		v.SetBool(true)
	case v.CanUint():
		v.SetUint(uint64(n))
	case v.CanInt():
		v.SetInt(int64(n))
	case v.Kind() == reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), n)
	case v.Kind() == reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(t, v.Index(0), n)
	case v.Kind() == reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(t, v.Field(i), n*10+i)
			}
		}
	default:
		t.Fatalf("a %s: teach fill to set it", v.Type())
	}
}

// publishing is a Service of a test Client with its publisher running
// (until the test ends), with the given quarantine and debounce.
func publishing(t *testing.T, quarantine, debounce time.Duration) *Service {
	c := testClient()
	c.cfg.conn.quarantine, c.cfg.conn.debounce = quarantine, debounce
	s := newService(c, "s")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.publish(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}
