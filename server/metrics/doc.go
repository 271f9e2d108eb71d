// Package metrics is what the server's /metrics adds to Prometheus's own
// client, github.com/prometheus/client_golang: a registry that carries the Go
// runtime's and the process's collectors (go_*, process_*), families whose
// series are computed at scrape time from state owned elsewhere (the applied
// index of each shard, the sessions of each tenant), the request latency
// buckets, and the exposition handler.
//
// # Use
//
// Create one registry per server at startup, register every family on it
// once, and keep what registration returns:
//
//	reg := metrics.NewRegistry()
//	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rafting_http_requests_total", Help: "..."}, []string{"route", "code"})
//	reg.MustRegister(requests)
//	metrics.NewGaugeFunc(reg, "rafting_shard_applied_index", "Last applied index per shard.", []string{"shard"},
//		func(emit func(float64, ...string)) {
//			for id, idx := range node.AppliedIndexes() {
//				emit(float64(idx), strconv.FormatUint(id, 10))
//			}
//		})
//	mux.Handle("GET /metrics", requireAdmin(metrics.Handler(reg, log)))
//
// On a hot path, resolve the labels once and keep the child
// (requests.WithLabelValues(route, code)): its Inc is one atomic add.
//
// # Threading
//
// Everything here is safe for concurrent use. A func family's collect runs
// on a scraping goroutine, with no lock of the registry held, and may run
// concurrently with itself when scrapes overlap; its emit may be called only
// from that goroutine and only until collect returns.
//
// # Errors
//
// Registration panics on a programmer error (an invalid or clashing name),
// as client_golang's MustRegister does: register at startup so it fails
// fast. A collect that emits the wrong number of label values, or the same
// series twice, does not fail the scrape: the handler serves every other
// series, logs the error at warn and counts it in
// promhttp_metric_handler_errors_total.
//
// # Security
//
// Handler does no authentication: label values name tenants and shards, so
// the caller wraps it in its own admin check. Label values come from
// validated names, never from raw request input, so no client can create
// series.
package metrics
