package peers

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rafting/rafting/internal/proctest"
)

// StartProcess starts one process of a Target with proctest.Launch: its
// stderr goes to logDir/<name>.log, and it runs in a process group of its
// own, so a Ctrl-C reaches the benchmark, which ends it by its PID.
func StartProcess(name, logDir, bin string, env []string, args ...string) (*proctest.Proc, error) {
	log, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	defer log.Close() // the process has its own copy
	return proctest.Launch(proctest.Spec{Name: name, Bin: bin, Args: args, Env: env, Stderr: log, OwnGroup: true})
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux
// everywhere Go runs).
const clockTicks = 100

// statFields are the fields of /proc/<pid>/stat after the command name,
// which may hold spaces: state, ppid, … (proc(5)'s numbering less 3).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, errors.New("malformed /proc stat")
	}
	return strings.Fields(s[i+1:]), nil
}

// cpuTicks returns utime+stime of pid and its resident set in bytes.
func cpuTicks(pid int) (ticks int64, rss int64, err error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, 0, err
	}
	// state(0) ... utime(11) stime(12) ... rss(21) in pages.
	if len(f) < 22 {
		return 0, 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	pages, _ := strconv.ParseInt(f[21], 10, 64)
	return ut + st, pages * int64(os.Getpagesize()), nil
}

// Usage measures pids over d: CPU as % of one core (all together) and
// their summed resident memory at the end, and this process's CPU (the
// clients') over the same window. The caller fills in what ran.
func Usage(pids []int, d time.Duration) (IdleCost, error) {
	// snapshot sums the ticks and resident memory of pids, and reads
	// this process's ticks.
	snapshot := func() (ticks, rss, self int64, err error) {
		for _, pid := range pids {
			t, r, err := cpuTicks(pid)
			if err != nil {
				return 0, 0, 0, err
			}
			ticks, rss = ticks+t, rss+r
		}
		self, _, err = cpuTicks(os.Getpid())
		return ticks, rss, self, err
	}
	t0, _, self0, err := snapshot()
	if err != nil {
		return IdleCost{}, err
	}
	start := time.Now()
	time.Sleep(d) // the window measured
	t1, r1, self1, err := snapshot()
	if err != nil {
		return IdleCost{}, err
	}
	secs := time.Since(start).Seconds()
	pct := func(ticks int64) float64 { return 100 * float64(ticks) / clockTicks / secs }
	return IdleCost{CPUPct: pct(t1 - t0), RSSBytes: r1, ClientCPUPct: pct(self1 - self0)}, nil
}
