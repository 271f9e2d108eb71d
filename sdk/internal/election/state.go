package election

import "time"

// Rho bounds the relative drift between the client's clock rate and the
// server leader's: 1e-3, a thousand times the drift of an ordinary quartz
// clock (tens of ppm), so Margin covers it with room to spare.
const Rho = 1e-3

// MinMargin is the fixed part of the margin: scheduling delay between a
// check of IsMaster and the action it guards, and timer slack.
const MinMargin = 50 * time.Millisecond

// Margin is how much earlier than the server's promise a member stops
// believing it: 50 ms + 2·ρ·lease (52 ms for the default 1 s lease).
func Margin(lease time.Duration) time.Duration {
	return MinMargin + time.Duration(2*Rho*float64(lease))
}

// Promise is the latest keepalive answer's promise: the servers will not
// end the session before the leader received the keepalive + lease. The
// client anchors it at the moment it sent the keepalive, which is earlier,
// so its belief can only be shorter than the promise.
type Promise struct {
	Sent  time.Time     // when the keepalive was sent, with the monotonic reading
	Wall  time.Time     // the same instant, wall clock only
	Lease time.Duration // the answer's lease_ms
}

// NewPromise is the promise of an answer with lease to a keepalive sent
// at sent.
func NewPromise(sent time.Time, lease time.Duration) Promise {
	return Promise{Sent: sent, Wall: sent.Round(0), Lease: lease}
}

// Elapsed is the time since the send: the larger of the monotonic and the
// wall-clock differences. The monotonic clock stops while a host is
// suspended and the wall clock can be stepped; taking the larger never
// over-believes after a suspension (a step backwards is covered by the
// monotonic reading).
func (p Promise) Elapsed(now time.Time) time.Duration {
	return max(now.Sub(p.Sent), now.Round(0).Sub(p.Wall))
}

// Remaining is how long the member may still believe the promise: lease −
// margin − elapsed; ≤ 0 once it lapsed (or with no promise at all).
func (p Promise) Remaining(now time.Time) time.Duration {
	if p.Sent.IsZero() || p.Lease <= 0 {
		return 0
	}
	return p.Lease - Margin(p.Lease) - p.Elapsed(now)
}

// Valid reports whether the promise still holds, margin included.
func (p Promise) Valid(now time.Time) bool { return p.Remaining(now) > 0 }

// Phase is the life-cycle state of a member, from its registration.
type Phase int

// Phases.
const (
	PhaseJoining  Phase = iota + 1 // before the first registration
	PhaseStarting                  // registered as starting
	PhaseReady                     // registered as ready
	PhaseDraining                  // registered as draining, or leaving
	PhaseLeft                      // left, or lost for good
)

// Record is the master record of the member's service when it names the
// member's session.
type Record struct {
	Token     uint64
	Releasing bool
}

// State is everything a member's role follows from. It is a pure
// value: Role reads no clock but now.
type State struct {
	Phase     Phase
	Farm      bool
	Rec       *Record // the latest known master record, when it names our session
	RecIndex  uint64  // the position (epoch, index) rec was observed at
	Resigning bool    // a resign of ours is in flight, or its outcome is not known yet
	Promise   Promise
	Mastered  uint64 // the token we last were Master with
}

// Role is the member's role at now, and the fencing token that goes with
// it (Master and Suspended only).
func (s *State) Role(now time.Time) (Role, uint64) {
	switch s.Phase {
	case PhaseLeft:
		return Left, 0
	case PhaseDraining:
		return Draining, 0
	case PhaseJoining, PhaseStarting:
		return Starting, 0
	}
	if s.Farm || s.Rec == nil || s.Rec.Releasing || s.Resigning {
		return Standby, 0
	}
	switch {
	case s.Promise.Valid(now):
		return Master, s.Rec.Token
	case s.Rec.Token == s.Mastered:
		// We were master with this token and the promise lapsed: the
		// session may well live on (a slow Raft election), and no
		// successor is granted while it does.
		return Suspended, s.Rec.Token
	}
	// Granted, but no promise covers it yet.
	return Standby, 0
}
