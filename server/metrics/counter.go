package metrics

import (
	"math"
	"sync/atomic"
)

// A Counter is a cumulative value that only goes up. Its methods are
// lock-free, never allocate, and are safe for concurrent use.
//
// The zero value is a working counter at 0 that no registry exports and that
// ignores invalid increments without counting them; registered counters come
// from Registry.NewCounter or CounterVec.With.
type Counter struct {
	n    atomic.Uint64 // sum of integral increments
	f    atomic.Uint64 // float64 bits of the sum of the others
	errs *usageErrors
}

// Inc adds 1.
func (c *Counter) Inc() { c.n.Add(1) }

// Add adds v. Integral values below 2^53 take a single atomic add; other
// values a compare-and-swap loop. A counter never decreases: a negative or
// NaN v is ignored and counted in metrics_usage_errors_total{kind="invalid_value"}.
func (c *Counter) Add(v float64) {
	if v >= 0 && v < maxExactInt && v == math.Trunc(v) {
		c.n.Add(uint64(v))
		return
	}
	if !(v >= 0) {
		c.errs.count(usageInvalidValue)
		return
	}
	addFloat(&c.f, v)
}

// Value returns the current value.
func (c *Counter) Value() float64 {
	return float64(c.n.Load()) + math.Float64frombits(c.f.Load())
}

// addFloat adds v to the float64 whose bits u holds.
func addFloat(u *atomic.Uint64, v float64) {
	for {
		old := u.Load()
		if u.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// A CounterVec is a family of counters told apart by label values.
type CounterVec struct {
	name   string
	series *seriesMap[Counter]
}

// NewCounterVec registers a counter family with the given label names and
// returns it. By convention counter names end in _total. It panics if name,
// help or a label name is invalid, or if the name clashes with a registered
// family.
func (r *Registry) NewCounterVec(name, help string, labelNames ...string) *CounterVec {
	v := &CounterVec{
		name:   name,
		series: newSeriesMap(labelNames, &r.errs, func() *Counter { return &Counter{errs: &r.errs} }),
	}
	r.register(name, help, "counter", labelNames, nil, v.appendSamples)
	return v
}

// NewCounter registers a counter without labels and returns it. It panics as
// NewCounterVec does.
func (r *Registry) NewCounter(name, help string) *Counter {
	return r.NewCounterVec(name, help).With()
}

// NewCounterFunc registers a counter family whose series collect emits at
// every scrape, for counts kept elsewhere (say, by Dragonboat). Each call of
// emit writes one sample with the given label values; a negative or NaN value
// is dropped. The label values are treated as in CounterVec.With, and if one
// label set is emitted twice the last value wins; both are counted as usage
// errors.
//
// collect runs on the scraping goroutine with no lock of the registry held,
// and may run concurrently with itself when scrapes overlap. emit may be
// called only from collect's goroutine and only until collect returns. It
// panics as NewCounterVec does, or if collect is nil.
func (r *Registry) NewCounterFunc(name, help string, labelNames []string, collect func(emit func(value float64, labelValues ...string))) {
	r.newFunc(name, help, "counter", labelNames, collect)
}

// With returns the counter of the given label values, creating it at 0 on
// first use. It is safe for concurrent use and does not allocate once the
// series exists, but it takes a read lock and a map lookup: on a hot path,
// call With once and keep the *Counter.
//
// With never panics. Given the wrong number of values, it pads them with ""
// or drops the extra ones; it replaces invalid UTF-8 with U+FFFD. Each such
// call is counted in metrics_usage_errors_total (kind "label_count" or
// "invalid_label_value").
func (v *CounterVec) With(labelValues ...string) *Counter { return v.series.with(labelValues) }

// DeleteLabelValues removes the series of the given label values, say when a
// tenant is deleted, and reports whether it existed. A *Counter already held
// keeps working but is no longer exported; a later With starts a new series
// at 0. The wrong number of values deletes nothing.
func (v *CounterVec) DeleteLabelValues(labelValues ...string) bool {
	return v.series.delete(labelValues)
}

func (v *CounterVec) appendSamples(b []byte) []byte {
	for _, s := range v.series.sorted() {
		b = appendSample(b, v.name, "", s.pairs, "", "", s.metric.Value())
	}
	return b
}
