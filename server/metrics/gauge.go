package metrics

import (
	"math"
	"sync/atomic"
)

// A Gauge is a value that goes up and down. Its methods are lock-free, never
// allocate, and are safe for concurrent use. Any float64 is a valid value,
// NaN and the infinities included.
//
// The zero value is a working gauge at 0 that no registry exports; registered
// gauges come from Registry.NewGauge or GaugeVec.With.
type Gauge struct {
	bits atomic.Uint64 // float64 bits
}

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds v, which may be negative.
func (g *Gauge) Add(v float64) { addFloat(&g.bits, v) }

// Inc adds 1.
func (g *Gauge) Inc() { addFloat(&g.bits, 1) }

// Dec subtracts 1.
func (g *Gauge) Dec() { addFloat(&g.bits, -1) }

// Value returns the current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// A GaugeVec is a family of gauges told apart by label values.
type GaugeVec struct {
	name   string
	series *seriesMap[Gauge]
}

// NewGaugeVec registers a gauge family with the given label names and returns
// it. It panics if name, help or a label name is invalid, or if the name
// clashes with a registered family.
func (r *Registry) NewGaugeVec(name, help string, labelNames ...string) *GaugeVec {
	v := &GaugeVec{
		name:   name,
		series: newSeriesMap(labelNames, &r.errs, func() *Gauge { return new(Gauge) }),
	}
	r.register(name, help, "gauge", labelNames, nil, v.appendSamples)
	return v
}

// NewGauge registers a gauge without labels and returns it. It panics as
// NewGaugeVec does.
func (r *Registry) NewGauge(name, help string) *Gauge {
	return r.NewGaugeVec(name, help).With()
}

// NewGaugeFunc registers a gauge family whose series collect emits at every
// scrape: state owned elsewhere, such as the applied index or the leader of
// each shard, or the sessions of each tenant. Each call of emit writes one
// sample with the given label values, which are treated as in GaugeVec.With;
// if one label set is emitted twice the last value wins and a usage error is
// counted.
//
// collect runs on the scraping goroutine with no lock of the registry held,
// and may run concurrently with itself when scrapes overlap. emit may be
// called only from collect's goroutine and only until collect returns. It
// panics as NewGaugeVec does, or if collect is nil.
func (r *Registry) NewGaugeFunc(name, help string, labelNames []string, collect func(emit func(value float64, labelValues ...string))) {
	r.newFunc(name, help, "gauge", labelNames, collect)
}

// With returns the gauge of the given label values, creating it at 0 on first
// use. Like CounterVec.With it never panics, does not allocate once the
// series exists, and should be called once and kept on a hot path.
func (v *GaugeVec) With(labelValues ...string) *Gauge { return v.series.with(labelValues) }

// DeleteLabelValues removes the series of the given label values and reports
// whether it existed, as CounterVec.DeleteLabelValues does.
func (v *GaugeVec) DeleteLabelValues(labelValues ...string) bool {
	return v.series.delete(labelValues)
}

func (v *GaugeVec) appendSamples(b []byte) []byte {
	for _, s := range v.series.sorted() {
		b = appendSample(b, v.name, "", s.pairs, "", "", s.metric.Value())
	}
	return b
}
