// Package bench holds what the benchmarks share: where clusters keep their
// data and how latencies are summarised.
package bench

import (
	"os"
	"sort"
	"testing"
	"time"
)

// Dir is where a benchmark cluster keeps its data: a fresh directory under
// $RAFTING_BENCH_DIR when set (say /dev/shm, to take the disk's fsync out of
// the measure), else the benchmark's temp dir. Removed when it ends.
func Dir(tb testing.TB) string {
	if d := os.Getenv("RAFTING_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "rafting-bench-*")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return tb.TempDir()
}

// Pct is the p-th percentile of d in milliseconds (nearest rank).
func Pct(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return float64(s[i].Microseconds()) / 1000
}
