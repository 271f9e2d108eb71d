package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/internal/proctest"
)

// TestExamplesAgainstDev runs the README's examples as the README says: a
// `rafting dev` cluster (what `make run` starts), the README's export
// line pasted in a shell at the repository root, then each `go run` line
// of the README (the gRPC farm's with its `cd contrib/grpc`). Each must
// exit 0 and print what its README line promises. A new example line in
// the README is run too; one that this test has no promise for fails it.
func TestExamplesAgainstDev(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the examples against a dev cluster")
	}
	// What each example prints once it did what the README says.
	promises := map[string]string{
		"go run ./examples/farm":                    "the caller stopped picking farm-3",
		"go run ./examples/masterstandby":           "its tokens only increase: true",
		"go run ./examples/config":                  "owns the job",
		"cd contrib/grpc && go run ./examples/farm": "SIGTERM grpc-2: drained, then stopped gracefully",
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var export string
	var lines []string
	for _, l := range strings.Split(string(readme), "\n") {
		switch {
		case strings.HasPrefix(l, "export RAFTING_SERVERS="):
			export = l
		case strings.HasPrefix(l, "go run ./examples/"):
			l, _, _ = strings.Cut(l, "#")
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	for _, m := range regexp.MustCompile("`(cd [^`]+ && go run ./examples/[^`]+)`").FindAllStringSubmatch(string(readme), -1) {
		lines = append(lines, m[1])
	}
	if export == "" || len(lines) < len(promises) {
		t.Fatalf("README: export line %q, example lines %q; want the export line and %d examples", export, lines, len(promises))
	}

	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "rafting-dev")
	var apis, rafts []string
	for range 3 {
		for _, l := range []*[]string{&apis, &rafts} {
			_, p, _ := net.SplitHostPort(proctest.FreePort(t))
			*l = append(*l, p)
		}
	}
	dev := proctest.Start(t, "dev", proctest.Build(t, binPkg), []string{"RAFTING_ADMIN_TOKEN="},
		"dev", "--data", dir, "--api-ports", strings.Join(apis, ","), "--raft-ports", strings.Join(rafts, ","))
	for deadline := time.Now().Add(90 * time.Second); !strings.Contains(strings.Join(dev.Lines(), "\n"), "Rafting dev cluster is up"); {
		if time.Now().After(deadline) {
			t.Fatalf("the dev cluster did not come up in 90 s:\n%s", dev.Stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The README's export line, with this test's ports and data dir.
	for i, port := range []string{"7070", "7170", "7270"} {
		export = strings.ReplaceAll(export, "127.0.0.1:"+port, "127.0.0.1:"+apis[i])
	}
	export = strings.ReplaceAll(export, ".rafting-dev", dir)

	for _, line := range lines {
		t.Run(line, func(t *testing.T) {
			promise, ok := promises[line]
			if !ok {
				t.Fatalf("README runs %q: this test does not know what it should print", line)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "sh", "-c", export+"\n"+line)
			cmd.Dir = root
			// TMPDIR: the masterstandby example's ledger lives there.
			cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir(), "RAFTING_TENANT=")
			// Its own process group: go run's program and the example's
			// children end with it (by the group's ID) if it times out.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			start := time.Now()
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), promise) {
				t.Fatalf("%s = %v after %v; want it to print %q:\n%s", line, err, time.Since(start).Round(time.Millisecond), promise, out)
			}
			t.Logf("%s: done in %v", line, time.Since(start).Round(time.Millisecond))
		})
	}
	stop(t, dev)
}
