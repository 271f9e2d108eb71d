// Package metrics is a small Prometheus metrics library for the server's
// /metrics endpoint: counters, gauges and histograms, plain or labelled,
// plus gauges and counters computed at scrape time, written in the text
// exposition format 0.0.4. It imports only the standard library, because the
// server may not depend on prometheus/client_golang.
//
// # Use
//
// Register every family once, at startup, and keep what registration
// returns:
//
//	reg := metrics.NewRegistry()
//	requests := reg.NewCounterVec("rafting_http_requests_total", "HTTP requests by route and code.", "route", "code")
//	latency := reg.NewHistogramVec("rafting_http_request_duration_seconds", "HTTP request latency.", metrics.DefBuckets, "route")
//	reg.NewGaugeFunc("rafting_shard_applied_index", "Last applied index per shard.", []string{"shard"},
//		func(emit func(float64, ...string)) {
//			for id, idx := range node.AppliedIndexes() {
//				emit(float64(idx), strconv.FormatUint(id, 10))
//			}
//		})
//	mux.Handle("GET /metrics", requireAdmin(reg.Handler()))
//
// On a hot path, resolve the labels once and keep the result:
//
//	renew := requests.With("renew", "200") // at setup
//	renew.Inc()                            // per request: one atomic add
//
// # Threading and cost
//
// Every type is safe for concurrent use. Counter.Inc, Counter.Add with an
// integral value, Gauge.Set and Histogram.Observe are lock-free and never
// allocate; Gauge.Add, Inc and Dec and fractional Counter.Add use a
// compare-and-swap loop. With on a vec takes a read lock and a map lookup
// without allocating once the series exists (if its label values, with more
// than one label, total under 256 bytes); its first call for a label set
// takes the write lock and allocates. A scrape (WriteText, Handler) holds no
// lock while it formats, takes each vec's read lock briefly to copy its
// series, and runs func collectors on its own goroutine.
//
// # Errors
//
// Programmer errors panic, but only at registration: an invalid metric or
// label name, empty help, unsorted histogram buckets, or a name that clashes
// with a registered family (a histogram h also claims h_bucket, h_sum and
// h_count). Register at startup so such a panic fails fast.
//
// Nothing panics afterwards. Misuse at run time is corrected and counted in
// the counter metrics_usage_errors_total, which every Registry exports, with
// the label kind:
//
//   - label_count: With or a collector's emit got the wrong number of label
//     values; they were padded with "" or the extra ones dropped.
//   - invalid_label_value: a label value was not valid UTF-8; the bad bytes
//     were replaced with U+FFFD.
//   - invalid_value: a negative or NaN Counter.Add, a NaN Observe, or a
//     negative or NaN value emitted by a counter collector; it was ignored.
//   - duplicate_series: a collector emitted the same label values twice; the
//     last value was kept.
//
// An alert on a non-zero rate of this counter finds such bugs.
//
// # Output
//
// Families are written sorted by name, each with # HELP and # TYPE, and their
// series sorted by label values, so the output is stable. Label values escape
// backslash, double quote and line feed; help text escapes backslash and line
// feed. Integral values below 2^53 are written as integers, others in the
// shortest form that parses back exactly, and NaN and ±Inf by name. A
// histogram writes cumulative _bucket series with le bounds up to "+Inf",
// then _sum and _count.
//
// # Security
//
// Handler does no authentication: label values name tenants and shards, so
// the caller must wrap it in its own admin check or serve it on a listener
// that only the scraper can reach. Label values should come from validated
// names, never from raw request input, or a client can create unbounded
// series.
package metrics
