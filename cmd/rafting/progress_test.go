package main

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
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
