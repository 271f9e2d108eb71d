package sdk

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/election"
	"github.com/rafting/rafting/sdk/internal/transport"
)

// holderWrite is a write the member makes under its own session through
// Resign or Update. A resign, and a registration as starting or draining,
// hand the mastership over in their own Raft entry (the holder's own
// revocation grants the successor at once): such a write whose outcome is
// unknown — no answer, 504, or the ctx ended first — may still be applied
// later, so the member must not act as master until its outcome is known.
//
// The member's holder writes take one lane, one at a time, each until its
// outcome is known: a later write cannot overtake one still unknown.
type holderWrite struct {
	s      *session
	seq    uint64               // X-Rafting-Sequence: the same for every copy, so the servers apply one
	resign *api.ResignRequest   // a resign, or
	reg    *api.RegisterRequest // a registration (its session is s)
	before election.Phase       // a registration's: the member's phase before it
	cancel context.CancelFunc   // ends its settling in the background
}

// handsOver reports whether w can hand a mastership over in its entry.
func (w *holderWrite) handsOver() bool {
	return w.resign != nil || w.reg.State != StateReady
}

// takeLane waits until the member's holder writes before this one are
// settled.
func (m *Member) takeLane(ctx context.Context) error {
	select {
	case m.lane <- struct{}{}:
		return nil
	case <-m.done:
		return ErrLeft
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *Member) freeLane() { <-m.lane }

// definite reports whether an answer to a holder write settles its
// outcome: applied (nil), or refused by the servers for what the write
// says (a conflict with the state, a quota, a session or service that is
// gone, a bad field), which they answer only once the write went through
// the tenant's log or for a reason every copy of it shares. No answer, 503,
// 504, a rate limit or a refused token leave it unknown.
func definite(err error) bool {
	if err == nil {
		return true
	}
	var ae *api.Error
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Code {
	case api.CodeConflict, api.CodeQuotaExceeded, api.CodeNotFound, api.CodeSessionExpired, api.CodeBadRequest:
		return true
	}
	return false
}

// try sends w (with the Client's retries, within ctx) and reports whether
// its outcome is now known: applied (err nil) or refused. A write that
// can hand over and was refused is known only once a linearizable read of
// the master record has been taken in: that record is newer than the
// refusal, hence than any copy of the write the servers applied before
// it (Raft applies the log in order, and a re-sent copy goes to its end).
// A resign refused because the token moved on counts as applied. pos is
// where an applied write applied.
func (m *Member) try(ctx context.Context, w *holderWrite) (known bool, pos uint64, err error) {
	if w.resign != nil {
		pos, err = m.sendResign(ctx, w.s.id, *w.resign, w.seq)
	} else {
		pos, err = m.registerNumbered(ctx, w.s, *w.reg, &w.seq)
	}
	switch {
	case !definite(err):
		return false, 0, err
	case errors.Is(err, api.ErrSessionExpired):
		m.sessionEnded(w.s) // nothing of the session can grant anything now
		return true, 0, err
	case err == nil:
		if w.resign != nil {
			m.mu.Lock()
			if m.sess == w.s && pos >= m.st.RecIndex {
				// At pos the record no longer names us.
				m.st.Rec, m.st.RecIndex = nil, pos
			}
			m.mu.Unlock()
		}
		return true, pos, nil
	case !w.handsOver():
		return true, 0, err
	}
	token, rerr := m.readMaster(ctx)
	if rerr != nil {
		return false, 0, err
	}
	if w.resign != nil && errors.Is(err, api.ErrConflict) && token != w.resign.FencingToken {
		// A copy sent before applied (or the mastership ended otherwise):
		// the token moved on.
		return true, 0, nil
	}
	return true, 0, err
}

// readMaster reads the service's master record with a linearizable read,
// takes it in, and returns its token (0: no master).
func (m *Member) readMaster(ctx context.Context) (uint64, error) {
	resp, err := m.c.do(ctx, http.MethodGet, m.c.tenantPath("/services/"+url.PathEscape(m.service)+"?consistent=true"), nil, nil, true)
	if err != nil {
		return 0, err
	}
	r, err := decodeService(resp.Body, nil)
	if err != nil {
		return 0, err
	}
	m.observe(position(resp.Epoch(), r.Index), r.Master)
	if r.Master == nil {
		return 0, nil
	}
	return r.Master.FencingToken, nil
}

// settled takes in what the caller of Resign or Update learnt of w. A
// known outcome is taken in at once and the lane freed. An unknown one of
// a write that can hand over keeps the member from acting as master (a
// resign keeps it resigning, a registration keeps its new phase) while a
// goroutine sends w again until its outcome is known, then frees the lane.
func (m *Member) settled(w *holderWrite, known bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !known && w.handsOver() && m.sess == w.s && !w.s.ended() && !m.leaving && m.st.Phase != election.PhaseLeft {
		ctx, cancel := context.WithCancel(context.Background())
		w.cancel = cancel
		m.unsettled = w
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.settle(ctx, w)
		}()
		m.log.Warn("a handover's outcome is unknown: not acting as master until the servers answer", "err", err)
		return
	}
	m.concludeLocked(w, err)
	m.freeLane()
}

// settle sends w again, with backoff, until its outcome is known or
// nothing of it can matter any longer (its session or the member ended,
// which cancels ctx); then it frees the lane. The servers keep a session
// only while it renews, so this is bounded by the session's life.
func (m *Member) settle(ctx context.Context, w *holderWrite) {
	defer m.freeLane()
	j := transport.NewJitter(50*time.Millisecond, 2*time.Second)
	for {
		known, _, err := m.try(ctx, w)
		m.mu.Lock()
		if m.unsettled != w {
			m.mu.Unlock()
			return
		}
		if known {
			m.concludeLocked(w, err)
			m.mu.Unlock()
			m.log.Info("a handover's outcome is known", "applied", err == nil, "err", err)
			return
		}
		m.mu.Unlock()
		m.log.Debug("a handover's outcome is still unknown; sending it again", "err", err)
		if !sleep(ctx, j.NextBackOff()) {
			return
		}
	}
}

// concludeLocked takes in the known outcome of w: applied when err is
// nil, else not applied.
func (m *Member) concludeLocked(w *holderWrite, err error) {
	if m.unsettled == w {
		m.unsettled = nil
	}
	live := !m.leaving && m.st.Phase != election.PhaseLeft
	switch {
	case w.resign != nil:
		m.st.Resigning = false
	case err == nil:
		reg := *w.reg
		reg.Session = ""
		m.reg = reg
		if live {
			m.st.Phase = phaseOf(reg.State)
		}
	case live && m.st.Phase == phaseOf(w.reg.State):
		m.st.Phase = w.before
	}
	m.reconcileLocked(time.Now())
}

// dropUnsettledLocked gives up on the holder write whose outcome is
// unknown, if any, once nothing of it can hand anything over: its session
// ended (a resign names the token of a mastership that ended with the
// session; a registration under an ended session is refused), or the
// member did. The write counts as not applied.
func (m *Member) dropUnsettledLocked() {
	w := m.unsettled
	if w == nil {
		return
	}
	w.cancel()
	m.concludeLocked(w, errors.New("dropped"))
}

// numbered sets X-Rafting-Sequence on a holder write's headers: every copy
// of the write carries its number, and the servers apply at most one of
// them and answer the others as they answered it. A copy that is still on
// its way between servers when a copy sent later has been answered (the
// outcome the member acts on) is thereby not applied after it.
func numbered(h http.Header, seq uint64) {
	if seq > 0 {
		h.Set(api.HeaderSequence, strconv.FormatUint(seq, 10))
	}
}
