package sdk

import (
	"context"
	"maps"
	"slices"
)

// PutEphemeralAgain puts a member's ephemeral keys again under its current
// session, as after a session replacement: each create-only, given up when
// someone else holds it.
func PutEphemeralAgain(ctx context.Context, m *Member) {
	m.held.mu.Lock()
	for _, hk := range m.held.keys {
		hk.under = nil
	}
	m.held.mu.Unlock()
	m.mu.Lock()
	s := m.sess
	m.mu.Unlock()
	m.putEphemeralAgain(ctx, s)
}

// HeldKeys is the ephemeral keys a member holds, sorted.
func HeldKeys(m *Member) []string {
	m.held.mu.Lock()
	defer m.held.mu.Unlock()
	return slices.Sorted(maps.Keys(m.held.keys))
}
