package balancer_test

import (
	"errors"
	"testing"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/balancer/balancertest"
)

// TestStatsMissingFinish: a caller that forgets Finish shows in Stats as
// requests in flight that only grow; Finish and Release bring them back.
func TestStatsMissingFinish(t *testing.T) {
	for _, tt := range ejecting {
		b := balancer.New(tt.p)
		b.Update(balancertest.Endpoints("e", 3))
		var forgotten []balancer.Done
		for i := range 30 {
			_, d, err := b.PickTracked()
			if err != nil {
				t.Fatal(err)
			}
			if i%3 == 0 {
				d.Finish(nil)
			} else {
				forgotten = append(forgotten, d)
			}
		}
		st := b.Stats()
		if st.InFlight != 20 {
			t.Errorf("%s: 30 picks, 10 finished: Stats().InFlight = %d, want 20", tt.name, st.InFlight)
		}
		var picked, finished uint64
		var inFlight int64
		for _, e := range st.Endpoints {
			picked += e.Picked
			finished += e.Finished
			inFlight += e.InFlight
			if e.InFlight != int64(e.Picked-e.Finished) {
				t.Errorf("%s: %+v: InFlight is not Picked - Finished", tt.name, e)
			}
		}
		if picked != 30 || finished != 10 || inFlight != 20 {
			t.Errorf("%s: endpoints picked %d, finished %d, in flight %d; want 30, 10, 20", tt.name, picked, finished, inFlight)
		}
		// Untracked picks count nowhere.
		for range 100 {
			b.Pick()
		}
		if got := b.Stats().InFlight; got != 20 {
			t.Errorf("%s: after untracked picks: InFlight = %d, want 20", tt.name, got)
		}
		for i, d := range forgotten {
			if i%2 == 0 {
				d.Finish(nil)
			} else {
				d.Release()
			}
		}
		if got := b.Stats().InFlight; got != 0 {
			t.Errorf("%s: every pick ended: InFlight = %d, want 0", tt.name, got)
		}
		// A Done ended twice shows as more finished than picked.
		_, d, _ := b.PickTracked()
		d.Finish(nil)
		d.Finish(nil)
		if got := b.Stats().InFlight; got != -1 {
			t.Errorf("%s: a Done finished twice: InFlight = %d, want -1", tt.name, got)
		}
	}
}

// TestStatsEjected: Stats lists the ejected endpoints and their failures.
func TestStatsEjected(t *testing.T) {
	for _, tt := range ejecting {
		b := balancer.New(tt.p)
		b.Update(balancertest.Endpoints("e", 3))
		report(t, b, "e1", errDown, balancer.EjectAfter)
		report(t, b, "e2", errDown, 2)
		st := b.Stats()
		if st.Ejected != 1 || len(st.Endpoints) != 3 {
			t.Fatalf("%s: Stats() = %+v, want e1 ejected", tt.name, st)
		}
		for i, want := range []struct {
			id       string
			failures int64
			ejected  bool
		}{{"e0", 0, false}, {"e1", balancer.EjectAfter, true}, {"e2", 2, false}} {
			e := st.Endpoints[i]
			if e.ID != want.id || e.Failures != want.failures || e.Ejected != want.ejected || e.InFlight != 0 {
				t.Errorf("%s: Endpoints[%d] = %+v, want %s with %d failures, ejected %v, none in flight", tt.name, i, e, want.id, want.failures, want.ejected)
			}
		}
	}
}

func TestStatsEmpty(t *testing.T) {
	var b balancer.Balancer
	if st := b.Stats(); st.InFlight != 0 || st.Endpoints != nil {
		t.Errorf("zero Balancer: Stats() = %+v, want zero", st)
	}
	b.Update(balancertest.Endpoints("e", 2))
	b.Update(nil)
	if st := b.Stats(); st.InFlight != 0 || st.Endpoints != nil {
		t.Errorf("after an empty Update: Stats() = %+v, want zero", st)
	}
}

// TestRelease: Release ends a pick that was not used: it leaves
// LeastLoaded's count as it was, and reports no outcome to ejection.
func TestRelease(t *testing.T) {
	b := balancer.New(balancer.LeastLoaded())
	b.Update(balancertest.Endpoints("e", 2))
	d := hold(t, b, "e0")
	d.Release()
	if st := b.Stats(); st.InFlight != 0 {
		t.Fatalf("after Release: InFlight = %d, want 0", st.InFlight)
	}
	// Neither a failure nor a success: EjectAfter-1 failures, Releases,
	// one more failure eject e0.
	report(t, b, "e0", errDown, balancer.EjectAfter-1)
	for range 10 {
		hold(t, b, "e0").Release()
	}
	if got := b.Stats().Endpoints[0].Failures; got != balancer.EjectAfter-1 {
		t.Fatalf("Releases changed e0's failures to %d, want %d", got, balancer.EjectAfter-1)
	}
	report(t, b, "e0", errDown, 1)
	if st := b.Stats(); !st.Endpoints[0].Ejected {
		t.Errorf("Stats() = %+v, want e0 ejected", st)
	}
	// The zero Done's Release does nothing.
	balancer.Done{}.Release()
}

func TestNoEndpointsError(t *testing.T) {
	tests := []struct {
		name     string
		opts     []balancer.Option
		eps      []balancer.Endpoint
		notReady int
		want     string
		sentinel bool // the error is ErrNoEndpoints itself
	}{
		{"unnamed, nothing", nil, nil, 0, "balancer: no endpoints", true},
		{"unnamed, weight 0", nil, []balancer.Endpoint{{ID: "a"}, {ID: "b", Weight: -1}}, 0,
			"balancer: no endpoints to pick (2 registered, 2 not ready: starting/draining/weight 0)", false},
		{"named, nothing", []balancer.Option{balancer.WithName(`sdk: service "orders"`)}, nil, 0,
			`sdk: service "orders": no endpoints to pick (0 registered)`, false},
		{"named, not ready", []balancer.Option{balancer.WithName(`sdk: service "orders"`)}, nil, 2,
			`sdk: service "orders": no endpoints to pick (2 registered, 2 not ready: starting/draining/weight 0)`, false},
		{"named, both", []balancer.Option{balancer.WithName("x")}, []balancer.Endpoint{{ID: "a"}}, 1,
			"x: no endpoints to pick (2 registered, 2 not ready: starting/draining/weight 0)", false},
		{"unnamed, not ready", nil, nil, 3,
			"balancer: no endpoints to pick (3 registered, 3 not ready: starting/draining/weight 0)", false},
	}
	for _, tt := range tests {
		for _, p := range retrying {
			b := balancer.New(p.p, tt.opts...)
			b.SetNotReady(tt.notReady)
			b.Update(tt.eps)
			_, err := b.Pick()
			_, _, errTracked := b.PickTracked()
			_, _, errExcept := b.PickExcept("a")
			for _, err := range []error{err, errTracked, errExcept} {
				if !errors.Is(err, balancer.ErrNoEndpoints) || err.Error() != tt.want || (err == balancer.ErrNoEndpoints) != tt.sentinel {
					t.Errorf("%s, %s: pick error %q, want %q (ErrNoEndpoints itself: %v)", tt.name, p.name, err, tt.want, tt.sentinel)
				}
			}
			if n := testing.AllocsPerRun(100, func() { b.Pick() }); n != 0 {
				t.Errorf("%s, %s: Pick() with no endpoint allocates %v times, want 0", tt.name, p.name, n)
			}
		}
	}
	// Before any Update, a named Balancer names itself too.
	b := balancer.New(nil, balancer.WithName("orders"))
	if _, err := b.Pick(); err == nil || err.Error() != "orders: no endpoints to pick (0 registered)" {
		t.Errorf("before Update: Pick() error = %v, want it named", err)
	}
	// SetNotReady changes the error at once, and only it.
	b.SetNotReady(4)
	if _, err := b.Pick(); err == nil || err.Error() != "orders: no endpoints to pick (4 registered, 4 not ready: starting/draining/weight 0)" {
		t.Errorf("after SetNotReady(4): Pick() error = %v", err)
	}
	b.Update(balancertest.Endpoints("e", 1))
	if e, err := b.Pick(); err != nil || e.ID != "e0" {
		t.Errorf("Pick() = %v, %v, want e0: not-ready endpoints are never picked", e, err)
	}
}
