package sdk

import (
	"fmt"

	"github.com/rafting/rafting/sdk/internal/testhook"
)

func init() {
	testhook.Crash = func(member any) { member.(*Member).crash() }
}

// errCrashed is a crashed member's Err.
var errCrashed = fmt.Errorf("%w: the member crashed (a test's kill -9)", ErrSessionLost)

// crash ends the member as kill -9 would (see testhook.Crash): its loops
// stop, which drops its session stream, and it leaves its Client without a
// word to the servers; a Client Join made for it closes, which leaves no
// other member and sends nothing. A later Leave sends nothing either.
func (m *Member) crash() {
	m.mu.Lock()
	m.leaving = true // nothing registers again
	m.mu.Unlock()
	m.end(errCrashed)
}
