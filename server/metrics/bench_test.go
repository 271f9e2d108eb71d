package metrics_test

import (
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafting/rafting/server/metrics"
)

// The server's shape at 100 tenants: 30 routes × 3 codes of requests, 30
// latency histograms, two counters and ten scrape-time families per tenant
// or shard — 1,330 series. docs/DECISIONS.md has these numbers beside the
// hand-written library's on the same shape.
const benchTenants, benchRoutes = 100, 30

func serverShaped(reg *prometheus.Registry) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rafting_http_requests_total", Help: "x"}, []string{"route", "code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rafting_http_request_seconds", Help: "x", Buckets: metrics.DefBuckets}, []string{"route"})
	entries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rafting_raft_applied_entries_total", Help: "x"}, []string{"tenant"})
	changes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rafting_shard_leader_changes_total", Help: "x"}, []string{"shard", "tenant"})
	reg.MustRegister(requests, latency, entries, changes)
	for i := range benchRoutes {
		route := "PUT /v1/route/" + strconv.Itoa(i)
		for _, code := range []string{"200", "404", "429"} {
			requests.WithLabelValues(route, code).Add(float64(i))
		}
		latency.WithLabelValues(route).Observe(float64(i) / 1000)
	}
	for i := range benchTenants {
		entries.WithLabelValues("tenant-" + strconv.Itoa(i)).Add(12345)
		changes.WithLabelValues(strconv.Itoa(i+2), "tenant-"+strconv.Itoa(i)).Inc()
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		metrics.NewGaugeFunc(reg, "rafting_shard_"+n, "x", []string{"shard", "tenant"}, func(emit func(float64, ...string)) {
			for i := range benchTenants {
				emit(float64(1000+i), strconv.Itoa(i+2), "tenant-"+strconv.Itoa(i))
			}
		})
	}
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		metrics.NewGaugeFunc(reg, "rafting_tenant_"+n, "x", []string{"tenant"}, func(emit func(float64, ...string)) {
			for i := range benchTenants {
				emit(float64(i), "tenant-"+strconv.Itoa(i))
			}
		})
	}
}

func benchScrape(b *testing.B, reg *prometheus.Registry) {
	h := metrics.Handler(reg, nil)
	req := httptest.NewRequest("GET", "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("scrape = %d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkScrape is a scrape of the server's own families at 100 tenants.
func BenchmarkScrape(b *testing.B) {
	reg := prometheus.NewRegistry()
	serverShaped(reg)
	benchScrape(b, reg)
}

// BenchmarkScrapeRuntime is what go_* and process_* add to every scrape.
func BenchmarkScrapeRuntime(b *testing.B) {
	benchScrape(b, metrics.NewRegistry())
}

// BenchmarkCounterInc is a request's count, its child resolved at setup.
func BenchmarkCounterInc(b *testing.B) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "C."}, []string{"route"}).WithLabelValues("renew")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc()
		}
	})
}

// BenchmarkHistogramObserve is a request's latency, its child resolved at
// setup.
func BenchmarkHistogramObserve(b *testing.B) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "h_seconds", Help: "H.", Buckets: metrics.DefBuckets}, []string{"route"}).WithLabelValues("renew")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		v := 0.0001
		for pb.Next() {
			h.Observe(v)
			if v *= 1.7; v > 20 {
				v = 0.0001
			}
		}
	})
}
