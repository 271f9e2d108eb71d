package metrics_test

import (
	"os"
	"strconv"

	"github.com/rafting/rafting/server/metrics"
)

func Example() {
	reg := metrics.NewRegistry()

	// Register at startup; keep what registration returns.
	requests := reg.NewCounterVec("rafting_http_requests_total", "HTTP requests by route and code.", "route", "code")
	latency := reg.NewHistogram("rafting_renew_duration_seconds", "Session renewal latency.", []float64{0.001, 0.01, 0.1})
	reg.NewGaugeFunc("rafting_shard_applied_index", "Last applied index per shard.", []string{"shard"},
		func(emit func(float64, ...string)) {
			for shard, index := range []uint64{41, 7} {
				emit(float64(index), strconv.Itoa(shard))
			}
		})

	// On a hot path, resolve the labels once.
	renewOK := requests.With("renew", "200")
	for range 3 {
		renewOK.Inc()
		latency.Observe(0.004)
	}
	requests.With("join", "409").Inc()

	if err := reg.WriteText(os.Stdout); err != nil {
		panic(err)
	}
	// Output:
	// # HELP metrics_usage_errors_total Misuses of the metrics API corrected at run time instead of panicking, by kind.
	// # TYPE metrics_usage_errors_total counter
	// metrics_usage_errors_total{kind="duplicate_series"} 0
	// metrics_usage_errors_total{kind="invalid_label_value"} 0
	// metrics_usage_errors_total{kind="invalid_value"} 0
	// metrics_usage_errors_total{kind="label_count"} 0
	// # HELP rafting_http_requests_total HTTP requests by route and code.
	// # TYPE rafting_http_requests_total counter
	// rafting_http_requests_total{route="join",code="409"} 1
	// rafting_http_requests_total{route="renew",code="200"} 3
	// # HELP rafting_renew_duration_seconds Session renewal latency.
	// # TYPE rafting_renew_duration_seconds histogram
	// rafting_renew_duration_seconds_bucket{le="0.001"} 0
	// rafting_renew_duration_seconds_bucket{le="0.01"} 3
	// rafting_renew_duration_seconds_bucket{le="0.1"} 3
	// rafting_renew_duration_seconds_bucket{le="+Inf"} 3
	// rafting_renew_duration_seconds_sum 0.012
	// rafting_renew_duration_seconds_count 3
	// # HELP rafting_shard_applied_index Last applied index per shard.
	// # TYPE rafting_shard_applied_index gauge
	// rafting_shard_applied_index{shard="0"} 41
	// rafting_shard_applied_index{shard="1"} 7
}

func ExampleCounterVec_With() {
	reg := metrics.NewRegistry()
	sessions := reg.NewCounterVec("rafting_sessions_opened_total", "Sessions opened by tenant.", "tenant")

	sessions.With("acme").Inc()
	sessions.With("acme", "extra").Inc() // the wrong label count: truncated, counted, no panic

	sessions.DeleteLabelValues("acme") // the tenant was deleted
	if err := reg.WriteText(os.Stdout); err != nil {
		panic(err)
	}
	// Output:
	// # HELP metrics_usage_errors_total Misuses of the metrics API corrected at run time instead of panicking, by kind.
	// # TYPE metrics_usage_errors_total counter
	// metrics_usage_errors_total{kind="duplicate_series"} 0
	// metrics_usage_errors_total{kind="invalid_label_value"} 0
	// metrics_usage_errors_total{kind="invalid_value"} 0
	// metrics_usage_errors_total{kind="label_count"} 1
	// # HELP rafting_sessions_opened_total Sessions opened by tenant.
	// # TYPE rafting_sessions_opened_total counter
}
