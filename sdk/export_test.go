package sdk

import (
	"fmt"
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
func Crash(m *Member) { m.crash() }

// Rebuilds counts a service's balancer rebuilds.
func Rebuilds(s *Service) int64 { return s.rebuilds.Load() }

// Margin is margin.
func Margin(lease time.Duration) time.Duration { return margin(lease) }

// Debug describes a member's state for test failures.
func Debug(m *Member) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	rec := "none"
	if m.st.rec != nil {
		rec = fmt.Sprintf("token %d releasing %v", m.st.rec.token, m.st.rec.releasing)
	}
	return fmt.Sprintf("role %v phase %d rec %s at %d, promise remaining %v, mastered %d, session %s attached %v ended %v, leader %q, paused %v",
		m.role, m.st.phase, rec, m.st.recIndex, m.st.promise.remaining(now), m.st.mastered, m.sess.tag, m.sess.attached, m.sess.ended(), m.leader, m.paused)
}

// SessionID is a member's current session ID (a secret).
func SessionID(m *Member) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sess.id
}

// Servers is the servers a Client's transport knows now.
func Servers(c *Client) []string { return c.tr.Servers() }

// WithWatchWait sets how long a blocking query waits (DefaultWatchWait).
func WithWatchWait(d time.Duration) Option {
	return func(c *config) { c.conn.watchWait = d }
}

// KeepaliveFrames is how many keepalive frames c's client stream sent, and
// how many sessions they named (0, 0 without WithClientStream).
func KeepaliveFrames(c *Client) (frames, sessions int64) {
	if c.batch == nil {
		return 0, 0
	}
	return c.batch.frames.Load(), c.batch.sent.Load()
}
