package sdk

import (
	"context"
	"fmt"
	"time"

	"github.com/rafting/rafting/sdk/internal/election"
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

// Crash ends a member's process (its Client, every member of it) as
// kill -9 would: streams and keepalives stop, nothing is said to the
// servers.
func Crash(m *Member) { m.crash() }

// Rebuilds counts a service's balancer rebuilds.
func Rebuilds(s *Service) int64 { return s.rebuilds.Load() }

// Margin is margin.
func Margin(lease time.Duration) time.Duration { return election.Margin(lease) }

// Debug describes a member's state for test failures.
func Debug(m *Member) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	rec := "none"
	if m.st.Rec != nil {
		rec = fmt.Sprintf("token %d releasing %v", m.st.Rec.Token, m.st.Rec.Releasing)
	}
	return fmt.Sprintf("role %v phase %d rec %s at %d, promise remaining %v, mastered %d, session %s attached %v ended %v, leader %q, paused %v",
		m.role, m.st.Phase, rec, m.st.RecIndex, m.st.Promise.Remaining(now), m.st.Mastered, m.sess.tag, m.sess.attached, m.sess.ended(), m.leader, m.paused)
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

// RaceNumbers sends a registration of a numbered before a later-numbered
// write under the same session lands: b's registration, or with ownLater
// a later registration of a's own. It reports whether a's registration
// was numbered again, and its outcome.
func RaceNumbers(ctx context.Context, a, b *Member, ownLater bool) (renumbered bool, err error) {
	a.mu.Lock()
	seq, s, reg := a.nextSeqLocked(), a.sess, a.reg
	a.mu.Unlock()
	other, os := b, b.sess
	if ownLater {
		other, os = a, s
	}
	other.mu.Lock()
	later, oreg := other.nextSeqLocked(), other.reg
	other.mu.Unlock()
	if _, err := other.registerUnder(ctx, os, oreg, later); err != nil {
		return false, err
	}
	first := seq
	_, err = a.registerNumbered(ctx, s, reg, &seq)
	return seq != first, err
}
