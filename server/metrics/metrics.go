package metrics

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefBuckets are the upper bounds, in seconds, of the server's latency
// histograms: 0.5 ms to 10 s, finer at the low end than
// prometheus.DefBuckets (5 ms to 10 s), since most requests answer from
// memory in under a millisecond. Do not modify it.
var DefBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// NewRegistry returns a registry holding the Go runtime's collector (go_*)
// and the process's (process_*).
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves reg's families in the format the scraper asks for (text by
// default), each family sorted by name and its series by label values. A
// collector's error is logged at warn and counted in
// promhttp_metric_handler_errors_total; the rest is served. A nil log is
// silent.
func Handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      errorLog{log},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	})
}

// errorLog adapts a *slog.Logger to promhttp.Logger.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Println(v ...any) { l.log.Warn("metrics: " + fmt.Sprint(v...)) }

// NewGaugeFunc registers on reg a gauge family whose series collect emits at
// every scrape: state owned elsewhere, such as the applied index or the
// leader of each shard, or the sessions of each tenant. Each call of emit
// writes one sample with the given label values, one per label name. It
// panics if the name or a label name is invalid or clashes with a
// registered family, or if collect is nil.
func NewGaugeFunc(reg prometheus.Registerer, name, help string, labelNames []string, collect func(emit func(value float64, labelValues ...string))) {
	newFunc(reg, prometheus.GaugeValue, name, help, labelNames, collect)
}

// NewCounterFunc is NewGaugeFunc for a count kept elsewhere, which only goes
// up.
func NewCounterFunc(reg prometheus.Registerer, name, help string, labelNames []string, collect func(emit func(value float64, labelValues ...string))) {
	newFunc(reg, prometheus.CounterValue, name, help, labelNames, collect)
}

func newFunc(reg prometheus.Registerer, typ prometheus.ValueType, name, help string, labelNames []string, collect func(emit func(float64, ...string))) {
	if collect == nil {
		panic("metrics: " + name + ": nil collect function")
	}
	reg.MustRegister(&funcCollector{desc: prometheus.NewDesc(name, help, labelNames, nil), typ: typ, collect: collect})
}

// funcCollector is a family computed at scrape time.
type funcCollector struct {
	desc    *prometheus.Desc
	typ     prometheus.ValueType
	collect func(emit func(float64, ...string))
}

func (f *funcCollector) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }

func (f *funcCollector) Collect(ch chan<- prometheus.Metric) {
	f.collect(func(v float64, labelValues ...string) {
		m, err := prometheus.NewConstMetric(f.desc, f.typ, v, labelValues...)
		if err != nil {
			m = prometheus.NewInvalidMetric(f.desc, err)
		}
		ch <- m
	})
}
