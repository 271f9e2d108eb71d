// Package election is a member's role in its service, decided as a pure
// value from what the member knows: its registration's phase, the master
// record that names its session and the position it was read at, a resign
// in flight, and the latest keepalive's promise. Its only clock is the
// one passed in, so its logic is tested without a cluster or a timer
// (state_test.go). Package sdk re-exports Role and its values; their
// meaning is documented there.
package election

import "fmt"

// Role is a member's place in its service (sdk.Role).
type Role int

// Roles, as sdk documents them.
const (
	Starting Role = iota + 1
	Standby
	Master
	Suspended
	Draining
	Left
)

var roleNames = [...]string{Starting: "starting", Standby: "standby", Master: "master",
	Suspended: "suspended", Draining: "draining", Left: "left"}

func (r Role) String() string {
	if r >= Starting && r <= Left {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", int(r))
}
