//go:build chaos

package session

import (
	"os"
	"strings"
	"time"
)

// wallSkew is the chaos campaign's wall-clock fault (internal/chaos,
// built with -tags chaos): the Go duration in the file that
// RAFTING_CHAOS_WALL_SKEW names ("1h", "-1h"; 0 when unset or
// unreadable), added to the wall clock a new term's stamps start from,
// as if this server's clock had jumped. faketime cannot do it: a Go
// binary reads the clock through the vDSO, not libc.
func wallSkew() time.Duration {
	path := os.Getenv("RAFTING_CHAOS_WALL_SKEW")
	if path == "" {
		return 0
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return d
}
