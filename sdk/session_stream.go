package sdk

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/stream"
)

// Sessions on the client stream (WithClientStream): a member's session is
// attached on its Client's one stream instead of a session stream of its
// own, and its keepalives travel with every other session of the Client
// that is due in one keepalive frame. The rules do not change: a promise
// is anchored when the frame that carried the keepalive was handed to the
// transport (stream.Frame.OnWrite), a master-seeking session renews only
// while attached, and losing the stream does not demote — the promise
// does.

// attachLoop keeps the member's current session attached on the Client's
// stream until ctx ends; the stream attaches it again wherever it opens.
func (m *Member) attachLoop(ctx context.Context) {
	for {
		m.mu.Lock()
		s := m.sess
		m.mu.Unlock()
		select {
		case <-s.open:
		case <-s.gone:
			continue
		case <-ctx.Done():
			return
		}
		a := m.c.stream.Attach(s.id, sessionEvents{m, s})
		m.mu.Lock()
		if m.sess == s {
			s.again = a.Again
		}
		m.mu.Unlock()
		select {
		case <-s.gone:
		case <-ctx.Done():
		}
		a.Stop()
		m.detached(s)
		if ctx.Err() != nil {
			return
		}
	}
}

// sessionEvents hands an attachment's news to its member, as readStream
// does a session stream's.
type sessionEvents struct {
	m *Member
	s *session
}

func (h sessionEvents) Attached(server string, _ api.AttachResponse) { h.m.attached(h.s, server) }

func (h sessionEvents) Detached(err error) {
	h.m.detached(h.s)
	h.m.log.Debug("session detached from the client stream", "session", h.s.tag, "err", err)
}

func (h sessionEvents) Event(f *api.ServerFrame, epoch uint64) {
	m, s := h.m, h.s
	switch f.Type {
	case api.EventExpired:
		m.sessionEnded(s)
	case api.EventMaster:
		if f.Service == m.service {
			m.observe(position(epoch, f.Index), f.Master.Master)
		}
	case api.EventInstance:
		if f.Instance != nil && m.keeps != nil {
			m.keeps.heldNews(s.id, position(epoch, f.Index), []api.HeldInstance{*f.Instance}, false)
		} else if f.Instance != nil {
			m.mu.Lock()
			if m.sess == s {
				m.adoptStateLocked(position(epoch, f.Index), []api.HeldInstance{*f.Instance}, false)
				m.reconcileLocked(time.Now())
			}
			m.mu.Unlock()
		}
	}
}

// keepaliveStream is keepaliveOnce on the client stream: s's keepalive
// joins the Client's next keepalive frame.
func (m *Member) keepaliveStream(ctx context.Context, s *session) error {
	r, err := m.c.batch.renew(ctx, s.id, m.keepaliveTimeout(), m.keepaliveInterval()/10)
	if err != nil {
		if errors.Is(err, stream.ErrNoStream) || errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// Not answered: the stream is (re)opening, or slow. Retry
			// as after a 503, and anchor nothing.
			return &api.Error{Code: api.CodeUnavailable, Message: "keepalive: " + err.Error()}
		}
		return err
	}
	if r.answer.Status != http.StatusOK {
		return api.Decode(r.answer.Status, r.answer.Body, "")
	}
	var ka api.KeepaliveResponse
	if err := jsonUnmarshal(r.answer.Body, &ka); err != nil {
		return err
	}
	ka.Index = position(r.epoch, ka.Index) // compared with positions from here on
	m.renewed(s, r.sent, &ka, r.server)
	return nil
}

// A keepBatch gathers the keepalives of a Client's sessions into frames:
// each waits at most its own delay (a tenth of its interval: 25 ms for a
// master-seeking session at the default lease, 167 ms for a farm one),
// and every keepalive due meanwhile leaves in the same frame.
type keepBatch struct {
	st *stream.Client
	// ctx ends at close: frames in flight stop waiting for their answers.
	ctx    context.Context
	cancel context.CancelFunc

	frames, sent atomic.Int64 // keepalive frames sent, and the sessions they named

	mu      sync.Mutex
	waiting []*keepWait
	timer   *time.Timer
	due     time.Time // when the timer fires (zero: not armed)
	closed  bool
	wg      sync.WaitGroup
}

// maxKeepBatch bounds the sessions of one frame (the servers allow the
// tenant's max_sessions, and 10,000 at most).
const maxKeepBatch = 1000

type keepWait struct {
	id      string
	by      time.Time     // sent by then
	timeout time.Duration // for its answer
	done    chan keepResult
}

type keepResult struct {
	answer api.KeepaliveAnswer
	sent   time.Time
	server string
	epoch  uint64
	err    error // the frame's, when it was not answered session by session
}

func newKeepBatch(st *stream.Client) *keepBatch {
	ctx, cancel := context.WithCancel(context.Background())
	return &keepBatch{st: st, ctx: ctx, cancel: cancel}
}

// renew sends session id's keepalive in a frame that leaves within wait,
// and returns its answer.
func (b *keepBatch) renew(ctx context.Context, id string, timeout, wait time.Duration) (keepResult, error) {
	w := &keepWait{id: id, by: time.Now().Add(wait), timeout: timeout, done: make(chan keepResult, 1)}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return keepResult{}, stream.ErrClosed
	}
	b.waiting = append(b.waiting, w)
	b.armLocked(w.by)
	b.mu.Unlock()
	t := time.NewTimer(wait + timeout)
	defer t.Stop()
	select {
	case r := <-w.done:
		if r.err != nil {
			return keepResult{}, r.err
		}
		return r, nil
	case <-t.C:
		return keepResult{}, context.DeadlineExceeded
	case <-ctx.Done():
		return keepResult{}, ctx.Err()
	}
}

func (b *keepBatch) armLocked(by time.Time) {
	if !b.due.IsZero() && !by.Before(b.due) {
		return
	}
	b.due = by
	d := time.Until(by)
	if b.timer == nil {
		b.timer = time.AfterFunc(d, b.flush)
		return
	}
	b.timer.Reset(d)
}

// flush sends every waiting keepalive, maxKeepBatch a frame.
func (b *keepBatch) flush() {
	b.mu.Lock()
	b.due = time.Time{}
	if b.closed || len(b.waiting) == 0 {
		b.mu.Unlock()
		return
	}
	ws := b.waiting
	b.waiting = nil
	b.wg.Add(1)
	b.mu.Unlock()
	defer b.wg.Done()
	for chunk := range slices.Chunk(ws, maxKeepBatch) {
		b.wg.Add(1)
		go b.send(chunk)
	}
}

// send sends one frame for ws and hands each its answer.
func (b *keepBatch) send(ws []*keepWait) {
	defer b.wg.Done()
	ids := make([]string, len(ws))
	var timeout time.Duration
	for i, w := range ws {
		ids[i] = w.id
		timeout = max(timeout, w.timeout)
	}
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	r, err := b.st.Keepalive(ctx, ids)
	if !r.Sent.IsZero() {
		b.frames.Add(1)
		b.sent.Add(int64(len(ids)))
	}
	for i, w := range ws {
		res := keepResult{sent: r.Sent, server: r.Server, epoch: r.Epoch, err: err}
		if err == nil {
			res.answer = r.Answers[i]
		}
		w.done <- res
	}
}

// close stops the batch: waiting keepalives are not sent, and those sent
// stop waiting for their answers.
func (b *keepBatch) close() {
	b.mu.Lock()
	b.closed = true
	if b.timer != nil {
		b.timer.Stop()
	}
	ws := b.waiting
	b.waiting = nil
	b.mu.Unlock()
	for _, w := range ws {
		w.done <- keepResult{err: stream.ErrClosed}
	}
	b.cancel()
	b.wg.Wait()
}
