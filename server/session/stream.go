package session

import (
	"time"

	"github.com/rafting/rafting/api"
)

// streamBuffer is how many events a slow reader may fall behind before the
// server closes its stream (with `moved`, so the client re-attaches and
// reads the current state).
const streamBuffer = 64

// Stream is a session stream attached on the leader. Events delivers master
// changes, then a final `moved` or `expired` when the server ends it; it is
// closed after that final event.
type Stream struct {
	m      *Manager
	id     string
	events chan api.StreamEvent
	ended  bool
}

// MaxStreams is how many streams one session may have attached at once: a
// process's own, and one more while it re-attaches (the old one may not be
// closed yet). A tenant holds at most max_sessions streams in all.
const MaxStreams = 2

// Attach attaches a stream to a live session. It returns ErrNotLeader on a
// node that does not lead the shard.
func (m *Manager) Attach(id string) (*Stream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.admitLocked(id, false); err != nil {
		return nil, err
	}
	e := m.entries[id]
	if e.attached >= MaxStreams {
		return nil, api.Errorf(api.CodeConflict, "session %s has %d streams attached already", api.SessionTag(id), MaxStreams)
	}
	// And a tenant holds at most max_sessions streams (DESIGN.md: streams
	// count there), a re-attaching session's second one included: each is
	// a connection, a goroutine pair and buffers on the leader.
	if q, _ := m.sm.Quotas(); q.MaxSessions > 0 && int64(len(m.streams)) >= q.MaxSessions {
		return nil, api.QuotaExceeded(m.sm.Name(), "max_sessions", q.MaxSessions, int64(len(m.streams)))
	}
	e.attached++
	if e.clientClosed && !e.expiring && e.cut.After(e.deadline) {
		// Attached again within drop_grace: the process lives (a client
		// stream carries every session of an SDK Client, and one reopened
		// for one session's sake closed it for all). The deadline the
		// close cut short is the session's again: its keepalives keep
		// their period.
		e.deadline = e.cut
	}
	e.clientClosed, e.cut = false, time.Time{}
	s := &Stream{m: m, id: id, events: make(chan api.StreamEvent, streamBuffer)}
	m.streams[s] = struct{}{}
	return s, nil
}

// Events is the stream's event channel.
func (s *Stream) Events() <-chan api.StreamEvent { return s.events }

// ClientClosed detaches a stream the client closed (its connection ended).
// When it was the session's last stream, the session's deadline becomes
// max(last promise, now + drop_grace): a crashed process is replaced in
// about a second instead of a TTL.
func (s *Stream) ClientClosed() {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	delete(m.streams, s)
	close(s.events)
	e := m.entries[s.id]
	if e == nil || m.role != leading {
		return
	}
	if e.attached > 0 {
		e.attached--
	}
	if e.attached > 0 {
		return
	}
	d := time.Now().Add(e.grace)
	if e.promised.After(d) {
		d = e.promised
	}
	if d.Before(e.deadline) {
		e.cut = e.deadline
		e.deadline = d
		m.earlier(d)
	}
	e.clientClosed = true
}

// Detach detaches a stream that the server ended (it told the client
// `moved`, or ended the stream for the client's fault). Unlike
// ClientClosed it never starts drop_grace: the session keeps its deadline.
func (s *Stream) Detach() {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	s.endLocked(api.StreamEvent{Type: api.EventMoved})
}

// endLocked ends a stream from the server side: a final event, then close.
// A server-side close never starts drop_grace.
func (s *Stream) endLocked(final api.StreamEvent) {
	if s.ended {
		return
	}
	s.ended = true
	delete(s.m.streams, s)
	if e := s.m.entries[s.id]; e != nil && e.attached > 0 {
		e.attached--
	}
	select {
	case s.events <- final:
	default:
		// A full buffer: the reader learns of the end by the close alone.
	}
	close(s.events)
}

// sendLocked queues an event; a reader too slow to keep up is ended with
// `moved` so it re-attaches and re-reads.
func (s *Stream) sendLocked(ev api.StreamEvent) {
	if s.ended {
		return
	}
	select {
	case s.events <- ev:
	default:
		s.endLocked(api.StreamEvent{Type: api.EventMoved, Leader: s.m.raft.LeaderAPI()})
	}
}

// Heartbeat is the content of the next heartbeat line: the leader's term and
// the replica's applied index. ok is false when this node no longer leads.
func (s *Stream) Heartbeat() (api.StreamEvent, bool) {
	term, leading := s.m.Term()
	return api.StreamEvent{Type: api.EventHeartbeat, Term: term, Index: s.m.sm.Applied()}, leading
}

// Attached reports, for each of ids, whether a stream is attached to it on
// this node, in one read under the manager's lock; ok is false (and
// attached nil) when this node does not answer the shard's sessions: the
// leader is the only node that knows. A read, for GET .../sessions: it
// changes nothing.
func (m *Manager) Attached(ids []string) (attached []bool, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != leading {
		return nil, false
	}
	attached = make([]bool, len(ids))
	for i, id := range ids {
		if e := m.entries[id]; e != nil {
			attached[i] = e.attached > 0
		}
	}
	return attached, true
}
