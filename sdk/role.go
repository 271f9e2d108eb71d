package sdk

import (
	"context"
	"fmt"
	"time"

	"github.com/rafting/rafting/sdk/internal/election"
)

// Role is a member's place in its service. See the package documentation
// for the roles of farm members and the promise rule behind Master.
type Role = election.Role

// Roles.
const (
	// Starting: joining, or registered as `starting` (two-step startup)
	// until Member.Ready. Never picked, never elected.
	Starting = election.Starting
	// Standby: ready and not master. Every ready farm member is Standby:
	// balancers pick it; a farm has no master.
	Standby = election.Standby
	// Master: the service's master record names this member's session and
	// the latest promise, less a margin, has not run out. Act only now.
	Master = election.Master
	// Suspended: a master whose promise ran out while its session lives
	// (the servers could not renew it in time, e.g. during a Raft leader
	// election). It must not act; no successor is granted while its
	// session lives, and it resumes as Master with the same fencing token
	// once a keepalive succeeds again.
	Suspended = election.Suspended
	// Draining: Leave is under way; the member no longer acts.
	Draining = election.Draining
	// Left: the member has left, or its session was lost for good. Final.
	Left = election.Left
)

// RoleChange is one role a member took, as OnRoleChange and
// WithRoleChange report it.
//
// A callback may be called before Join has returned (it sees every role
// from the first, the first promotion too), so it must not read a
// variable that Join's result is assigned to: that is a data race, and
// nil. Member is the member, set from the first call on. A callback that
// acts as master does so under Term, whose Ctx ended if the member
// stopped being master since (callbacks run behind the role).
type RoleChange struct {
	Role     Role      // the new role
	Previous Role      // the role before; equal to Role for the replay on registration
	Token    uint64    // the fencing token while Master or Suspended, else 0
	Term     Term      // the term the member became Master in; zero unless Role is Master
	Member   *Member   // the member whose role changed; never nil
	At       time.Time // when the member took the role
}

// String describes the change, as "master (token 42, was standby)".
func (c RoleChange) String() string {
	s := c.Role.String()
	switch {
	case c.Token != 0 && c.Previous != c.Role:
		return fmt.Sprintf("%s (token %d, was %s)", s, c.Token, c.Previous)
	case c.Token != 0:
		return fmt.Sprintf("%s (token %d)", s, c.Token)
	case c.Previous != c.Role:
		return fmt.Sprintf("%s (was %s)", s, c.Previous)
	}
	return s
}

// Term is one stretch of a member's mastership, from the moment it may
// act as master to the moment it must stop, in one consistent read: as
// Member.Mastership returns it, RunAsMaster gives it to its fn, and a
// Master RoleChange carries it. A suspension ends a term; the member's
// next term may have the same token (it resumed: no one else was granted
// meanwhile).
type Term struct {
	// Token is the fencing token of the mastership: pass it with every
	// write to what the master guards; that resource rejects a token lower
	// than the highest it has seen.
	Token uint64
	// Ctx is cancelled when the member stops being master for this term:
	// its local promise ran out, it was demoted, resigned or left. Bound
	// the master's work with it. It never outlives IsMaster: its Err (and
	// a look at Done) checks the promise, by the wall clock too, so after
	// a host suspension it reads ended at once, and a goroutine already
	// waiting on Done is released within 10 ms of the wall clock's jump.
	Ctx context.Context
}
