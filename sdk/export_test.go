package sdk

import (
	"errors"
	"time"
)

// PauseKeepalives stops (or resumes) a member's keepalives, as a paused
// process's would stop; its stream stays attached.
func PauseKeepalives(m *Member, pause bool) {
	m.mu.Lock()
	m.paused = pause
	m.mu.Unlock()
	select {
	case m.work <- struct{}{}:
	default:
	}
}

// Crash ends a member as kill -9 would: its stream and keepalives stop,
// nothing is said to the servers.
func Crash(m *Member) {
	m.end(errors.New("crashed"))
}

// Rebuilds counts a service's balancer rebuilds.
func Rebuilds(s *Service) int64 { return s.rebuilds.Load() }

// Margin is margin.
func Margin(lease time.Duration) time.Duration { return margin(lease) }
