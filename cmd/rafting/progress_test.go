package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rafting/rafting/internal/proctest"
)

// TestProgress: on a terminal one line is redrawn in place every second,
// a line of the command's own is written on a clean line, and Stop erases
// the progress; elsewhere a plain line every interval, nothing erased.
// Nothing is written after Stop.
func TestProgress(t *testing.T) {
	tests := []struct {
		name string
		tty  bool
		want string
	}{
		{"terminal", true, "\r\x1b[Kdev: starting… 1s\r\x1b[Kdev: starting… 2s" +
			"\r\x1b[Kdev: node 1 started\n" +
			"\r\x1b[Kdev: starting… 3s\r\x1b[K"},
		{"not a terminal", false, "dev: still starting, 2s elapsed\ndev: node 1 started\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var out syncBuffer
				p := tickingOn(&out, tt.tty, "dev", "starting", 2*time.Second)
				time.Sleep(2500 * time.Millisecond)
				synctest.Wait()
				p.Printf("dev: node %d started\n", 1)
				time.Sleep(time.Second)
				synctest.Wait()
				p.Stop()
				p.Stop()
				time.Sleep(10 * time.Second)
				if got := out.String(); got != tt.want {
					t.Errorf("progress wrote %q, want %q", got, tt.want)
				}
				if strings.Contains(out.String(), "4s") {
					t.Error("progress wrote after Stop")
				}
			})
		})
	}
}

// TestProgressOnTerminal: the real binary's restore, its stderr a
// terminal (script(1) gives it one), redraws one progress line in place
// while the server has not answered, and erases it before saying it is
// done. The server holds the answer until the line is seen.
func TestProgressOnTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) to give the binary a terminal")
	}
	bin := proctest.Build(t, binPkg)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"tenants": 1}`)
	}))
	defer srv.Close()
	defer free()
	file := filepath.Join(t.TempDir(), "rafting.backup")
	if err := os.WriteFile(file, []byte(`{"version": 1, "tenants": []}`), 0o600); err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("'%s' restore -f '%s' --servers %s --token t", bin, file, srv.URL)
	cmd := exec.Command(scriptBin, "-qefc", line, "/dev/null")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "\r\x1b[Krestore: writing… 1s") {
		if time.Now().After(deadline) {
			t.Fatalf("no progress line on the terminal in 30 s:\n%q", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	free()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rafting restore under script = %v\n%q", err, out.String())
	}
	got := out.String()
	erased := strings.LastIndex(got, "\r\x1b[K")
	if done := strings.Index(got, "restore: done in "); done < 0 || erased < 0 || erased > done ||
		!strings.Contains(got, "restored 1 tenants") || strings.Contains(got, "still writing") {
		t.Errorf("restore on a terminal wrote:\n%q\nwant the progress line redrawn, erased, then done and the result", got)
	}
}
