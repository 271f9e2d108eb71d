package sdk

import "time"

// StreamAgain does what a member does when one of its keepalives, sent
// at `at`, is refused not_attached on the client stream: restartStream
// (s.again, Attachment.Again). Tests only.
func StreamAgain(m *Member, at time.Time) {
	m.mu.Lock()
	s := m.sess
	m.mu.Unlock()
	m.restartStream(s, at)
}
