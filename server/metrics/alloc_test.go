package metrics

import "testing"

// TestHotPathAllocs pins the promise of the package doc: the hot paths do not
// allocate once a series exists.
func TestHotPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	r := NewRegistry()
	c := r.NewCounterVec("c_total", "C.", "a", "b")
	g := r.NewGaugeVec("g", "G.", "a")
	h := r.NewHistogramVec("h", "H.", nil, "a")
	c.With("x", "y")
	g.With("x")
	h.With("x")
	tests := []struct {
		name string
		f    func()
	}{
		{"Counter.Inc", func() { c.With("x", "y").Inc() }},
		{"Counter.Add", func() { c.With("x", "y").Add(1.5) }},
		{"Gauge.Set", func() { g.With("x").Set(2) }},
		{"Gauge.Add", func() { g.With("x").Add(-1) }},
		{"Histogram.Observe", func() { h.With("x").Observe(0.3) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, tt.f); n != 0 {
			t.Errorf("%s: AllocsPerRun() = %v, want 0", tt.name, n)
		}
	}
}
