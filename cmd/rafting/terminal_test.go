//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/rafting/rafting/internal/proctest"
)

// openPTY opens a pseudo-terminal: what a program writes to tty is read
// from pty. The test's cleanup closes both.
func openPTY(t *testing.T) (pty, tty *os.File) {
	t.Helper()
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { pty.Close() })
	rc, err := pty.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		var unlock int32
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
			ioctlErr = e
			return
		}
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
			ioctlErr = e
		}
	}); err != nil || ioctlErr != nil {
		t.Fatalf("unlock the pseudo-terminal: %v %v", err, ioctlErr)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return pty, tty
}

// onTerminal starts bin with args, its stdout and stderr a terminal, and
// returns it and what it writes there (read until it exits).
func onTerminal(t *testing.T, bin string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	pty, tty := openPTY(t)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = tty, tty
	cmd.Env = append(os.Environ(), "RAFTING_ADMIN_TOKEN=", "RAFTING_SERVERS=")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close() // the child holds it; a read of pty ends when the child does
	var out syncBuffer
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := pty.Read(b)
			out.Write(b[:n])
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, &out
}

// held is a REST server that holds every answer until free is called,
// then answers body.
func held(t *testing.T, body string) (srv *httptest.Server, free func()) {
	t.Helper()
	release := make(chan struct{})
	var once sync.Once
	free = func() { once.Do(func() { close(release) }) }
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(free)
	return srv, free
}

// erasedBefore says whether out, after drawing progress (its line, as
// "restore: writing…"), erased it before done, the command's next words,
// and drew it no more after them.
func erasedBefore(out, progress, done string) bool {
	drawn := strings.LastIndex(out, "\r\x1b[K"+progress)
	d := strings.Index(out, done)
	return drawn >= 0 && d > drawn && strings.Contains(out[drawn+1:d], "\r\x1b[K") &&
		!strings.Contains(out[d:], progress)
}

// TestProgressOnTerminal: the real binary's restore, backup and dev's
// start, their stderr a terminal, redraw one progress line in place while
// they wait (the servers hold their answer until the line is seen; dev's
// nodes need two seconds to elect at --rtt 200ms), and erase it before
// saying they are done.
func TestProgressOnTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := proctest.Build(t, binPkg)
	file := filepath.Join(t.TempDir(), "rafting.backup")
	if err := os.WriteFile(file, []byte(`{"version": 1, "tenants": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, line, done, result string // line: the progress line, drawn at 1 s
		body                     string // the held answer
		args                     func(srv string) []string
	}{
		{"restore", "restore: writing…", "restore: done in ", "restored 1 tenants", `{"tenants": 1}`,
			func(srv string) []string { return []string{"restore", "-f", file, "--servers", srv, "--token", "t"} }},
		{"backup", "backup: reading…", "backup: 41 bytes read in ", "backup of 0 tenants", `{"version": 1, "index": 7, "tenants": []}`,
			func(srv string) []string {
				return []string{"backup", "-f", filepath.Join(t.TempDir(), "b"), "--servers", srv, "--token", "t"}
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, free := held(t, tt.body)
			cmd, out := onTerminal(t, bin, tt.args(srv.URL)...)
			waitFor(t, out, "\r\x1b[K"+tt.line+" 1s", 30*time.Second)
			free()
			if err := cmd.Wait(); err != nil {
				t.Fatalf("rafting %s on a terminal = %v\n%q", tt.name, err, out.String())
			}
			waitFor(t, out, tt.result, 5*time.Second)
			got := out.String()
			if !erasedBefore(got, tt.line, tt.done) || strings.Index(got, tt.done) > strings.Index(got, tt.result) || strings.Contains(got, "still ") {
				t.Errorf("rafting %s on a terminal wrote:\n%q\nwant the progress line redrawn, erased, then the result", tt.name, got)
			}
		})
	}
	t.Run("dev", func(t *testing.T) {
		var apis, rafts []string
		for range 3 {
			for _, l := range []*[]string{&apis, &rafts} {
				_, p, _ := net.SplitHostPort(proctest.FreePort(t))
				*l = append(*l, p)
			}
		}
		cmd, out := onTerminal(t, bin, "dev", "--data", t.TempDir(), "--api-ports", strings.Join(apis, ","),
			"--raft-ports", strings.Join(rafts, ","), "--rtt", "200ms")
		waitFor(t, out, "\r\x1b[Kdev: starting… 1s", 30*time.Second)
		waitFor(t, out, "Rafting dev cluster is up", 90*time.Second)
		got := out.String()
		if !erasedBefore(got, "dev: starting…", "Rafting dev cluster is up") || strings.Contains(got, "still starting") {
			t.Errorf("rafting dev on a terminal wrote:\n%q\nwant the progress line redrawn, erased, then the banner", got)
		}
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("rafting dev after SIGINT = %v\n%q", err, out.String())
		}
	})
}

// TestProgressPlainLines: backup and dev's start, their stderr not a
// terminal, write a plain line every interval while they wait (restore's:
// TestJSONEveryCommand), and none after they are done.
func TestProgressPlainLines(t *testing.T) {
	defer func(b, d time.Duration) { backupProgress, devProgress = b, d }(backupProgress, devProgress)
	backupProgress, devProgress = 20*time.Millisecond, 200*time.Millisecond
	t.Run("backup", func(t *testing.T) {
		srv, free := held(t, `{"version": 1, "index": 7, "tenants": []}`)
		var stdout, stderr syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- execute(t.Context(), []string{"backup", "--servers", srv.URL, "--token", "t"}, strings.NewReader(""), &stdout, &stderr)
		}()
		waitFor(t, &stderr, "backup: still reading, ", 10*time.Second)
		free()
		if err := <-done; err != nil {
			t.Fatalf("rafting backup = %v\n%s", err, stderr.String())
		}
		got := stderr.String()
		if d := strings.Index(got, "backup: 41 bytes read in "); d < 0 || strings.Contains(got[d:], "still") || strings.Contains(got, "\x1b") {
			t.Errorf("backup's stderr:\n%q\nwant plain progress lines, then what it read", got)
		}
	})
	t.Run("dev", func(t *testing.T) {
		var apis, rafts []string
		for range 3 {
			for _, l := range []*[]string{&apis, &rafts} {
				_, p, _ := net.SplitHostPort(proctest.FreePort(t))
				*l = append(*l, p)
			}
		}
		t.Setenv("RAFTING_ADMIN_TOKEN", "")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var stdout, stderr syncBuffer
		done := make(chan error, 1)
		go func() {
			// --rtt 100ms: an election takes a second or more.
			done <- execute(ctx, []string{"dev", "--data", t.TempDir(), "--api-ports", strings.Join(apis, ","),
				"--raft-ports", strings.Join(rafts, ","), "--rtt", "100ms"}, strings.NewReader(""), &stdout, &stderr)
		}()
		waitFor(t, &stdout, "Rafting dev cluster is up", 90*time.Second)
		up := len(stderr.String())
		time.Sleep(10 * devProgress) // a progress line would be written meanwhile
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("rafting dev = %v\n%s", err, stderr.String())
		}
		got := stderr.String()
		if still := strings.Index(got, "dev: still starting, "); still < 0 || still > strings.Index(got, "dev: ready in ") ||
			strings.Contains(got[up:], "still") || strings.Contains(got, "\x1b") {
			t.Errorf("dev's stderr:\n%q\nwant plain progress lines while it starts, none once it is up", got)
		}
	})
}
