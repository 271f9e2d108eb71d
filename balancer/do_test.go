package balancer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/balancer/balancertest"
)

// retrying lists every policy Do must retry on another endpoint with:
// the built-in ones, a Func and a custom Picker.
var retrying = []struct {
	name string
	p    balancer.Policy
}{
	{"RoundRobin", balancer.RoundRobin()},
	{"MonteCarlo", balancer.MonteCarlo()},
	{"LeastLoaded", balancer.LeastLoaded()},
	{"Func/first", balancer.Func(first)},
	{"ZoneFirst", ZoneFirst("zone-1")},
}

var errRefused = fmt.Errorf("dial tcp: %w", syscall.ECONNREFUSED)

// TestDoNeverTheSameTwice is the retry that picked the same dead instance
// three times in a row: with one endpoint of three dead, Do with 3 tries
// never calls fn twice with one endpoint, and always succeeds.
func TestDoNeverTheSameTwice(t *testing.T) {
	for _, tt := range retrying {
		t.Run(tt.name, func(t *testing.T) {
			for _, dead := range []string{"e0", "e1", "e2"} {
				b := balancer.New(tt.p)
				b.Update(balancertest.Endpoints("e", 3))
				for i := range 300 {
					var seen []string
					err := balancer.Do(context.Background(), b, 3, func(_ context.Context, e balancer.Endpoint) error {
						for _, id := range seen {
							if id == e.ID {
								t.Fatalf("dead %s, call %d: fn called with %s twice (%v)", dead, i, e.ID, seen)
							}
						}
						seen = append(seen, e.ID)
						if e.ID == dead {
							return errRefused
						}
						return nil
					})
					if err != nil {
						t.Fatalf("dead %s, call %d: Do() = %v after %v, want nil", dead, i, err, seen)
					}
				}
				if st := b.Stats(); st.InFlight != 0 {
					t.Errorf("dead %s: %d in flight after every Do returned, want 0", dead, st.InFlight)
				}
			}
		})
	}
}

// TestDoAllDead: every endpoint fails; Do tries each once, however many
// tries it is given, and its error wraps the last failure and counts the
// endpoints tried.
func TestDoAllDead(t *testing.T) {
	for _, tt := range retrying {
		for _, tries := range []int{1, 2, 3, 5} {
			b := balancer.New(tt.p)
			b.Update(balancertest.Endpoints("e", 3))
			seen := map[string]int{}
			var last error
			err := balancer.Do(context.Background(), b, tries, func(_ context.Context, e balancer.Endpoint) error {
				seen[e.ID]++
				last = fmt.Errorf("%s: %w", e.ID, balancer.StatusError(503))
				return last
			})
			want := min(tries, 3)
			if len(seen) != want {
				t.Errorf("%s, %d tries: fn called with %v, want %d distinct endpoints once each", tt.name, tries, seen, want)
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("%s, %d tries: fn called %d times with %s, want once", tt.name, tries, n, id)
				}
			}
			var se *balancer.HTTPStatusError
			if !errors.Is(err, last) || !errors.As(err, &se) || se.Code != 503 {
				t.Errorf("%s, %d tries: Do() = %v, want it to wrap the last failure %v", tt.name, tries, err, last)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%d endpoint", want)) {
				t.Errorf("%s, %d tries: Do() = %q, want it to say %d endpoints were tried", tt.name, tries, err, want)
			}
		}
	}
}

// TestDoOutcomes checks what Do does with each kind of error fn returns:
// whether it tries another endpoint, and what the endpoint is charged.
func TestDoOutcomes(t *testing.T) {
	ctxErr := errors.New("stand-in for the caller's ctx error")
	tests := []struct {
		name     string
		err      error // fn's error on every try; ctxErr: fn cancels ctx
		calls    int   // of fn, with 3 tries over 3 endpoints
		failures int64 // charged to the endpoints, in all
		is       error // errors.Is(Do's error, is)
	}{
		{"success", nil, 1, 0, nil},
		{"5xx", balancer.StatusError(502), 3, 3, nil},
		{"wrapped 5xx", fmt.Errorf("get /orders: %w", balancer.StatusError(500)), 3, 3, nil},
		{"dial error", errRefused, 3, 3, syscall.ECONNREFUSED},
		{"any other error", errors.New("reset"), 3, 3, nil},
		{"4xx", balancer.StatusError(404), 1, 0, nil},
		{"wrapped 4xx", fmt.Errorf("get: %w", &balancer.HTTPStatusError{Code: 409}), 1, 0, nil},
		{"permanent", balancer.Permanent(errors.New("not idempotent")), 1, 1, nil},
		{"permanent 5xx", balancer.Permanent(balancer.StatusError(503)), 1, 1, nil},
		{"permanent 4xx", balancer.Permanent(balancer.StatusError(400)), 1, 0, nil},
		{"fn's own cancel", fmt.Errorf("read: %w", context.Canceled), 1, 0, context.Canceled},
		{"fn's own deadline", fmt.Errorf("read: %w", context.DeadlineExceeded), 3, 3, context.DeadlineExceeded},
		{"the caller's ctx ends", ctxErr, 1, 0, context.Canceled},
	}
	for _, tt := range tests {
		for _, p := range ejecting {
			b := balancer.New(p.p)
			b.Update(balancertest.Endpoints("e", 3))
			ctx, cancel := context.WithCancel(context.Background())
			calls := 0
			err := balancer.Do(ctx, b, 3, func(ctx context.Context, e balancer.Endpoint) error {
				calls++
				if tt.err == ctxErr {
					cancel()
					return ctx.Err()
				}
				return tt.err
			})
			cancel()
			if calls != tt.calls {
				t.Errorf("%s, %s: fn called %d times, want %d", tt.name, p.name, calls, tt.calls)
			}
			if (err == nil) != (tt.err == nil) {
				t.Errorf("%s, %s: Do() = %v, want an error: %v", tt.name, p.name, err, tt.err != nil)
			}
			if tt.err != nil && tt.err != ctxErr && !errors.Is(err, tt.err) {
				t.Errorf("%s, %s: Do() = %v, want it to wrap %v", tt.name, p.name, err, tt.err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("%s, %s: Do() = %v, want errors.Is %v", tt.name, p.name, err, tt.is)
			}
			st := b.Stats()
			var failures int64
			for _, e := range st.Endpoints {
				failures += e.Failures
				if e.Picked != e.Finished {
					t.Errorf("%s, %s: %s picked %d times, finished %d, want every pick finished once", tt.name, p.name, e.ID, e.Picked, e.Finished)
				}
			}
			if failures != tt.failures {
				t.Errorf("%s, %s: %d failures charged, want %d", tt.name, p.name, failures, tt.failures)
			}
		}
	}
}

// TestDoEjects: 5xx answers reported by Do eject the endpoint that gives
// them, so later calls stop paying a try for it.
func TestDoEjects(t *testing.T) {
	for _, p := range ejecting {
		b := balancer.New(p.p)
		b.Update(balancertest.Endpoints("e", 3))
		calls := map[string]int{}
		for range 200 {
			err := balancer.Do(context.Background(), b, 3, func(_ context.Context, e balancer.Endpoint) error {
				calls[e.ID]++
				if e.ID == "e0" {
					return balancer.StatusError(503)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s: Do() = %v, want nil", p.name, err)
			}
		}
		if calls["e0"] != balancer.EjectAfter {
			t.Errorf("%s: the failing e0 was called %d times in 200 Do, want %d (then ejected)", p.name, calls["e0"], balancer.EjectAfter)
		}
		if st := b.Stats(); st.Ejected != 1 || !st.Endpoints[0].Ejected {
			t.Errorf("%s: Stats() = %+v, want e0 ejected", p.name, st)
		}
	}
}

func TestDoNoEndpoints(t *testing.T) {
	b := balancer.New(balancer.LeastLoaded(), balancer.WithName(`service "orders"`))
	b.Update([]balancer.Endpoint{{ID: "a", Weight: 0}})
	called := false
	err := balancer.Do(context.Background(), b, 3, func(context.Context, balancer.Endpoint) error {
		called = true
		return nil
	})
	if called || !errors.Is(err, balancer.ErrNoEndpoints) || !strings.Contains(err.Error(), `service "orders"`) {
		t.Errorf("Do() = %v, fn called %v, want ErrNoEndpoints naming the balancer and no call", err, called)
	}
}

func TestDoDoneContext(t *testing.T) {
	b := balancer.New(nil)
	b.Update(balancertest.Endpoints("e", 3))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := balancer.Do(ctx, b, 3, func(context.Context, balancer.Endpoint) error {
		t.Error("fn called with a done ctx")
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Do() = %v, want %v", err, context.Canceled)
	}
	if st := b.Stats(); st.InFlight != 0 {
		t.Errorf("%d in flight, want 0", st.InFlight)
	}
}

// TestDoAllocs: a Do whose first try fails and second succeeds allocates
// nothing of its own.
func TestDoAllocs(t *testing.T) {
	for _, tt := range retrying {
		b := balancer.New(tt.p)
		b.Update(balancertest.Endpoints("e", 10))
		ctx := context.Background()
		n := 0
		fn := func(_ context.Context, e balancer.Endpoint) error {
			n++
			if n%2 == 1 {
				return errFive
			}
			return nil
		}
		if a := testing.AllocsPerRun(1000, func() { balancer.Do(ctx, b, 3, fn) }); a != 0 {
			t.Errorf("%s: Do() allocates %v times, want 0", tt.name, a)
		}
	}
}

var errFive = balancer.StatusError(503)

func BenchmarkDo(b *testing.B) {
	ctx := context.Background()
	ok := func(context.Context, balancer.Endpoint) error { return nil }
	n := 0
	failFirst := func(context.Context, balancer.Endpoint) error {
		n++
		if n%2 == 1 {
			return errFive
		}
		return nil
	}
	for _, tt := range ejecting {
		for _, f := range []struct {
			name string
			fn   func(context.Context, balancer.Endpoint) error
		}{{"ok", ok}, {"retry", failFirst}} {
			b.Run(tt.name+"/"+f.name, func(b *testing.B) {
				bl := balancer.New(tt.p)
				bl.Update(endpoints(10))
				b.ReportAllocs()
				for b.Loop() {
					if err := balancer.Do(ctx, bl, 3, f.fn); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
