package cluster

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkProposed is what every proposal adds for its metrics: the count
// by kind and result (resolved once, then a read-locked lookup) and the
// latency.
func BenchmarkProposed(b *testing.B) {
	m := newNodeMetrics(prometheus.NewRegistry(), nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.proposed(7, "ok", 3*time.Millisecond)
		}
	})
}
