package metrics

import (
	"fmt"
	"math"
	"slices"
	"sync/atomic"
)

// DefBuckets are upper bounds for request latencies in seconds, from 0.5ms to
// 10s. Do not modify it; registration copies the bounds it is given.
var DefBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// A Histogram counts observations in buckets with fixed upper bounds and
// sums them. Observe is lock-free, never allocates, and is safe for
// concurrent use.
//
// A scrape reads the buckets one by one, so it may include an observation in
// flight in some counts but not yet in the sum; _count always equals the
// +Inf bucket. Histograms come from Registry.NewHistogram or
// HistogramVec.With; on the zero value Observe does nothing.
type Histogram struct {
	upper  []float64       // sorted upper bounds, +Inf excluded
	counts []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum    atomic.Uint64   // float64 bits
	errs   *usageErrors
}

// Observe adds v to the bucket of the least upper bound ≥ v and to the sum. A
// NaN v is ignored and counted in metrics_usage_errors_total{kind="invalid_value"}.
func (h *Histogram) Observe(v float64) {
	if v != v {
		h.errs.count(usageInvalidValue)
		return
	}
	// Binary search for the first bound with v <= bound.
	lo, hi := 0, len(h.upper)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if h.upper[m] < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo >= len(h.counts) {
		return // the zero value
	}
	h.counts[lo].Add(1)
	addFloat(&h.sum, v)
}

// A HistogramVec is a family of histograms told apart by label values; all
// share the family's buckets.
type HistogramVec struct {
	name   string
	upper  []float64
	le     []string // formatted bounds, "+Inf" last
	series *seriesMap[Histogram]
}

// NewHistogramVec registers a histogram family with the given bucket upper
// bounds and label names and returns it. Nil buckets mean DefBuckets; a
// trailing +Inf is implied and may be omitted. It panics if the buckets are
// not strictly increasing, if name, help or a label name is invalid (le is
// reserved), or if name, name_bucket, name_sum or name_count clashes with a
// registered family.
func (r *Registry) NewHistogramVec(name, help string, buckets []float64, labelNames ...string) *HistogramVec {
	if buckets == nil {
		buckets = DefBuckets
	}
	upper := slices.Clone(buckets)
	if n := len(upper); n > 0 && math.IsInf(upper[n-1], +1) {
		upper = upper[:n-1]
	}
	for i, u := range upper {
		if math.IsNaN(u) || math.IsInf(u, 0) || i > 0 && u <= upper[i-1] {
			panic(fmt.Sprintf("metrics: %s: buckets must be finite and strictly increasing, got %v", name, buckets))
		}
	}
	le := make([]string, len(upper)+1)
	for i, u := range upper {
		le[i] = string(appendFloat(nil, u))
	}
	le[len(upper)] = "+Inf"
	v := &HistogramVec{name: name, upper: upper, le: le}
	v.series = newSeriesMap(labelNames, &r.errs, func() *Histogram {
		return &Histogram{upper: upper, counts: make([]atomic.Uint64, len(upper)+1), errs: &r.errs}
	})
	r.register(name, help, "histogram", labelNames, []string{"_bucket", "_sum", "_count"}, v.appendSamples)
	return v
}

// NewHistogram registers a histogram without labels and returns it. It
// panics as NewHistogramVec does.
func (r *Registry) NewHistogram(name, help string, buckets []float64) *Histogram {
	return r.NewHistogramVec(name, help, buckets).With()
}

// With returns the histogram of the given label values, creating it empty on
// first use. Like CounterVec.With it never panics, does not allocate once the
// series exists, and should be called once and kept on a hot path.
func (v *HistogramVec) With(labelValues ...string) *Histogram { return v.series.with(labelValues) }

// DeleteLabelValues removes the series of the given label values and reports
// whether it existed, as CounterVec.DeleteLabelValues does.
func (v *HistogramVec) DeleteLabelValues(labelValues ...string) bool {
	return v.series.delete(labelValues)
}

func (v *HistogramVec) appendSamples(b []byte) []byte {
	for _, s := range v.series.sorted() {
		h := s.metric
		var cum uint64
		for i := range h.counts {
			cum += h.counts[i].Load()
			b = appendSample(b, v.name, "_bucket", s.pairs, "le", v.le[i], float64(cum))
		}
		b = appendSample(b, v.name, "_sum", s.pairs, "", "", math.Float64frombits(h.sum.Load()))
		b = appendSample(b, v.name, "_count", s.pairs, "", "", float64(cum))
	}
	return b
}
