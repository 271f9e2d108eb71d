// Package bench holds what the benchmarks share: their knobs (knobs.go),
// where clusters keep their data, how latencies are summarised, and what a
// process costs.
package bench

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Dir is where a benchmark cluster keeps its data: a fresh directory under
// $RAFTING_BENCH_DIR when set (say /dev/shm, to take the disk's fsync out of
// the measure), else the benchmark's temp dir. Removed when it ends.
func Dir(tb testing.TB) string {
	if d := String("RAFTING_BENCH_DIR", ""); d != "" {
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

// Usage reads a process's CPU time (user+system) and resident memory.
func Usage(pid int) (cpu time.Duration, rssKB int64) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		// fields after the ")" of the command name: utime is 14th, stime 15th overall
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err == nil {
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				rssKB, _ = strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			}
		}
	}
	return cpu, rssKB
}

// Idle measures each process's CPU share (% of one core) and resident
// memory (MB) over d.
func Idle(pids []int, d time.Duration) (cpuPct, rssMB []float64) {
	before := make([]time.Duration, len(pids))
	for i, pid := range pids {
		before[i], _ = Usage(pid)
	}
	time.Sleep(d)
	for i, pid := range pids {
		cpu, rss := Usage(pid)
		cpuPct = append(cpuPct, 100*float64(cpu-before[i])/float64(d))
		rssMB = append(rssMB, float64(rss)/1024)
	}
	return cpuPct, rssMB
}

// Mean is the mean of v.
func Mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
