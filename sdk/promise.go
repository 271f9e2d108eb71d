package sdk

import "time"

// rho bounds the relative drift between the client's clock rate and the
// server leader's: 1e-3, a thousand times the drift of an ordinary quartz
// clock (tens of ppm), so margin covers it with room to spare.
const rho = 1e-3

// minMargin is the fixed part of the margin: scheduling delay between a
// check of IsMaster and the action it guards, and timer slack.
const minMargin = 50 * time.Millisecond

// margin is how much earlier than the server's promise a member stops
// believing it: 50 ms + 2·ρ·lease (52 ms for the default 1 s lease).
func margin(lease time.Duration) time.Duration {
	return minMargin + time.Duration(2*rho*float64(lease))
}

// promise is the latest keepalive answer's promise: the servers will not
// end the session before the leader received the keepalive + lease. The
// client anchors it at the moment it sent the keepalive, which is earlier,
// so its belief can only be shorter than the promise.
type promise struct {
	sent  time.Time     // when the keepalive was sent, with the monotonic reading
	wall  time.Time     // the same instant, wall clock only
	lease time.Duration // the answer's lease_ms
}

func newPromise(sent time.Time, lease time.Duration) promise {
	return promise{sent: sent, wall: sent.Round(0), lease: lease}
}

// elapsed is the time since the send: the larger of the monotonic and the
// wall-clock differences. The monotonic clock stops while a host is
// suspended and the wall clock can be stepped; taking the larger never
// over-believes after a suspension (a step backwards is covered by the
// monotonic reading).
func (p promise) elapsed(now time.Time) time.Duration {
	return max(now.Sub(p.sent), now.Round(0).Sub(p.wall))
}

// remaining is how long the member may still believe the promise: lease −
// margin − elapsed; ≤ 0 once it lapsed (or with no promise at all).
func (p promise) remaining(now time.Time) time.Duration {
	if p.sent.IsZero() || p.lease <= 0 {
		return 0
	}
	return p.lease - margin(p.lease) - p.elapsed(now)
}

// valid reports whether the promise still holds, margin included.
func (p promise) valid(now time.Time) bool { return p.remaining(now) > 0 }

// phase is the life-cycle state of a member, from its registration.
type phase int

const (
	phaseJoining  phase = iota + 1 // before the first registration
	phaseStarting                  // registered as starting
	phaseReady                     // registered as ready
	phaseDraining                  // registered as draining, or leaving
	phaseLeft                      // left, or lost for good
)

// record is the master record of the member's service when it names the
// member's session.
type record struct {
	token     uint64
	releasing bool
}

// roleState is everything a member's role follows from. It is a pure
// value: role() reads no clock but now.
type roleState struct {
	phase     phase
	farm      bool
	rec       *record // the latest known master record, when it names our session
	recIndex  uint64  // the position (epoch, index) rec was observed at
	resigning bool    // a resign of ours is in flight, or its outcome is not known yet
	promise   promise
	mastered  uint64 // the token we last were Master with
}

// role is the member's role at now, and the fencing token that goes with
// it (Master and Suspended only).
func (s *roleState) role(now time.Time) (Role, uint64) {
	switch s.phase {
	case phaseLeft:
		return Left, 0
	case phaseDraining:
		return Draining, 0
	case phaseJoining, phaseStarting:
		return Starting, 0
	}
	if s.farm || s.rec == nil || s.rec.releasing || s.resigning {
		return Standby, 0
	}
	switch {
	case s.promise.valid(now):
		return Master, s.rec.token
	case s.rec.token == s.mastered:
		// We were master with this token and the promise lapsed: the
		// session may well live on (a slow Raft election), and no
		// successor is granted while it does.
		return Suspended, s.rec.token
	}
	// Granted, but no promise covers it yet.
	return Standby, 0
}
