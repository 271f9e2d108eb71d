package peers

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ezChildren lists the live child processes of this test process.
func ezChildren() []string {
	me := os.Getpid()
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "status"))
		if err != nil {
			continue
		}
		var name string
		ppid := -1
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Name:"); ok {
				name = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(l, "PPid:"); ok {
				ppid, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if ppid == me {
			out = append(out, fmt.Sprintf("%s (pid %s)", name, filepath.Base(d)))
		}
	}
	return out
}

// ezCheckClean fails t if a child process remains or the goroutines do not
// return to about base within a few seconds.
func ezCheckClean(t *testing.T, base int) {
	t.Helper()
	if c := ezChildren(); len(c) > 0 {
		t.Errorf("child processes remain after Stop: %v", c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutines: %d after, %d before:\n%s", n, base, buf)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ezSetting returns the setting named name.
func ezSetting(t *testing.T, tg Target, name string) Setting {
	t.Helper()
	i := slices.IndexFunc(tg.Settings(), func(s Setting) bool { return s.Name == name })
	if i < 0 {
		t.Fatalf("%s has no setting %q", tg.Name(), name)
	}
	return tg.Settings()[i]
}

// ezSummary is "n=…, p50 …, p99 …, max …" of a sample.
func ezSummary(s Sample) string {
	if len(s.Latencies) == 0 {
		return "n=0"
	}
	l := slices.Clone(s.Latencies)
	slices.Sort(l)
	q := func(p float64) time.Duration { return l[min(len(l)-1, int(p*float64(len(l))))] }
	return fmt.Sprintf("n=%d p50 %v p99 %v max %v", len(l), q(0.50).Round(10*time.Microsecond),
		q(0.99).Round(10*time.Microsecond), l[len(l)-1].Round(10*time.Microsecond))
}
