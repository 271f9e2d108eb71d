package sdk

import (
	"context"
	"fmt"

	"github.com/rafting/rafting/sdk/internal/testhook"
)

func init() {
	testhook.Crash = func(member any) { member.(*Member).crash() }
}

// errCrashed is a crashed member's Err.
var errCrashed = fmt.Errorf("%w: the member crashed (a test's kill -9)", ErrSessionLost)

// crash ends the member's process as kill -9 would (see testhook.Crash):
// its Client is the process, so every member of the Client ends with it,
// and so do the sessions the Client's farm members share. Their loops
// stop and the Client's stream and connections close, which the servers
// see as a crash (drop_grace); nothing is said to them. A later Leave
// sends nothing either.
func (m *Member) crash() {
	m.c.shutdown(true)
	m.crashLocal() // a member that has left its Client already
}

// crashLocal ends one member (or keeper) without a word to the servers.
func (m *Member) crashLocal() {
	m.mu.Lock()
	m.leaving = true // nothing registers again
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.leaveTimeout)
	defer cancel()
	m.stop(ctx, errCrashed)
	if m.unlisten != nil {
		m.unlisten()
	}
	m.c.mu.Lock()
	delete(m.c.members, m)
	m.c.mu.Unlock()
}
