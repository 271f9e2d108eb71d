package sdk

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/election"
)

// Ephemeral keys: a member's keys bound to its session (ZooKeeper's
// ephemeral nodes, Consul's session-bound keys). The servers delete them
// in the entry that ends the session: after Leave, or when a crashed
// process's stream has been gone for drop_grace (and its promise has run
// out), or a TTL after its last keepalive.
//
// When the servers end the session of a member that lives on (its
// keepalives did not get through within the TTL), the member registers
// again under a new session (see Member), and puts its ephemeral keys
// again under it, with the values it last put, before that
// re-registration is over. Each is put only if the key does not exist:
// the old session's end deleted it, so a key that exists now was written
// by someone else since — another process took it over, as a lock — and
// the member gives it up (logged as a warning) rather than overwrite it.

// heldKeys is what a member holds under its sessions: its ephemeral keys
// and the values it last put. Its map is guarded by mu; a member's mu is
// taken before it.
//
// Every put or delete of a held key (PutEphemeral, DeleteEphemeral, the
// recovery putting keys back, Leave deleting them) runs in the key lane,
// from the decision to the record of its outcome, one at a time: so a
// Leave deletes the key that a put back in flight wrote, rather than
// racing it and leaving it behind under a session that lives on with the
// Client's other members, and nothing is put once the member leaves.
type heldKeys struct {
	lane chan struct{} // the key lane: taken by a send
	mu   sync.Mutex
	keys map[string]*heldKey
	gen  uint64 // numbers the puts, so an older put never overwrites what a newer one recorded
}

type heldKey struct {
	value    []byte
	under    *session // the session the key was last put under
	modIndex uint64   // the mod_index that put gave it
	gen      uint64
}

// enter takes the key lane, within ctx.
func (h *heldKeys) enter(ctx context.Context) error {
	select {
	case h.lane <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// exit gives the key lane back.
func (h *heldKeys) exit() { <-h.lane }

// record notes a put of key under s.
func (h *heldKeys) record(key string, value []byte, s *session, modIndex uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.keys == nil {
		h.keys = map[string]*heldKey{}
	}
	h.gen++
	h.keys[key] = &heldKey{value: value, under: s, modIndex: modIndex, gen: h.gen}
}

// pending returns the keys not yet put under s.
func (h *heldKeys) pending(s *session) map[string]heldKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]heldKey{}
	for k, hk := range h.keys {
		if hk.under != s {
			out[k] = *hk
		}
	}
	return out
}

// settle notes that key, as of gen, is now under s; false when it was
// put again or dropped since.
func (h *heldKeys) settle(key string, gen uint64, s *session, modIndex uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	hk := h.keys[key]
	if hk == nil || hk.gen != gen {
		return false
	}
	hk.under, hk.modIndex = s, modIndex
	return true
}

// is reports whether key is held as of gen.
func (h *heldKeys) is(key string, gen uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.keys[key] != nil && h.keys[key].gen == gen
}

// drop forgets key (as of gen, when gen is not 0) and returns what was
// held.
func (h *heldKeys) drop(key string, gen uint64) (heldKey, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hk := h.keys[key]
	if hk == nil || gen != 0 && hk.gen != gen {
		return heldKey{}, false
	}
	delete(h.keys, key)
	return *hk, true
}

// PutEphemeral writes a key bound to the member's session, and returns it
// as written (its SessionTag is the session's). For a farm member that
// shares its Client's session (see WithOwnSession) that is the shared one,
// and Leave deletes the member's own keys (if still as it put them) before
// the session ends with the last member. The servers delete it when the
// session ends: when the member leaves, or its process dies (after the
// session's drop_grace, or its TTL); they refuse, with ErrConflict, a
// key that another live session holds, so an ephemeral key is also a
// lock: whoever puts it first holds it until its process goes. If the
// servers end the session while the member lives on, the member puts the
// key again, with the value it last put, under the session it registers
// again with, unless someone else has written the key meanwhile (see the
// package comment of this file). The key is in the Client's Config views
// when PutEphemeral returns.
func (m *Member) PutEphemeral(ctx context.Context, key string, value []byte) (api.KV, error) {
	if err := api.ValidateKey("key", key); err != nil {
		return api.KV{}, fmt.Errorf("sdk: put ephemeral: %w", err)
	}
	value = slices.Clone(value)
	for {
		m.mu.Lock()
		if m.leavingLocked() {
			m.mu.Unlock()
			return api.KV{}, ErrLeft
		}
		s := m.sess
		m.mu.Unlock()
		select { // a new session is opened as the member registers again
		case <-s.open:
		case <-s.gone:
			continue
		case <-m.done:
			return api.KV{}, ErrLeft
		case <-ctx.Done():
			return api.KV{}, fmt.Errorf("sdk: put ephemeral %s: the member's session is being replaced: %w", key, ctx.Err())
		}
		kv, pos, put, err := m.putHeld(ctx, s, key, value)
		if errors.Is(err, api.ErrSessionExpired) {
			// The session has ended: the member registers again under a
			// new one, and the key goes there.
			select {
			case <-s.gone:
				continue
			case <-m.done:
				return api.KV{}, ErrLeft
			case <-ctx.Done():
				return api.KV{}, fmt.Errorf("sdk: put ephemeral %s: %w", key, errors.Join(ctx.Err(), err))
			}
		}
		switch {
		case errors.Is(err, ErrLeft):
			return api.KV{}, err
		case err != nil:
			return api.KV{}, fmt.Errorf("sdk: put ephemeral %s: %w", key, err)
		case !put:
			// Replaced while the put was in flight: the old session's end
			// deletes (or deleted) the key. Put it under the new one.
			continue
		}
		return kv, m.c.wroteKV(ctx, "put ephemeral", pos, key)
	}
}

// putHeld puts key under s and records it, in the key lane; put is false
// when s was replaced meanwhile.
func (m *Member) putHeld(ctx context.Context, s *session, key string, value []byte) (kv api.KV, pos uint64, put bool, err error) {
	if err := m.held.enter(ctx); err != nil {
		return api.KV{}, 0, false, err
	}
	defer m.held.exit()
	if m.isLeaving() {
		return api.KV{}, 0, false, ErrLeft
	}
	kv, pos, err = m.c.putKV(ctx, key, value, nil, s.id)
	if err != nil {
		return api.KV{}, 0, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sess != s {
		return api.KV{}, 0, false, nil
	}
	m.held.record(key, value, s, kv.ModIndex)
	return kv, pos, true, nil
}

// isLeaving reports whether the member is leaving or has left.
func (m *Member) isLeaving() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leavingLocked()
}

// leavingLocked is isLeaving with m.mu held.
func (m *Member) leavingLocked() bool { return m.leaving || m.st.Phase == election.PhaseLeft }

// DeleteEphemeral gives up an ephemeral key of the member's: it is not
// put again under a later session, and is deleted now if it is still as
// the member last put it (a delete on its mod_index). A key someone else
// has written since is left as it is, and the error matches ErrConflict;
// one already gone, or one the member does not hold, is no error.
func (m *Member) DeleteEphemeral(ctx context.Context, key string) error {
	if err := m.held.enter(ctx); err != nil {
		return fmt.Errorf("sdk: delete ephemeral %s: %w", key, err)
	}
	defer m.held.exit()
	return m.deleteHeld(ctx, key)
}

// deleteHeld is DeleteEphemeral in the key lane. A key whose put back
// under the current session had an unknown outcome is looked up: it is
// the member's if that session holds it.
func (m *Member) deleteHeld(ctx context.Context, key string) error {
	hk, ok := m.held.drop(key, 0)
	if !ok {
		return nil
	}
	m.mu.Lock()
	s := m.sess
	m.mu.Unlock()
	if hk.under != s {
		got, err := m.c.Get(ctx, key)
		switch {
		case errors.Is(err, api.ErrNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("sdk: delete ephemeral %s: %w", key, err)
		case got.SessionTag != s.tag:
			return nil // not put back: someone else's, or gone with its session
		}
		hk.modIndex = got.ModIndex
	}
	pos, err := m.c.deleteKV(ctx, key, hk.modIndex)
	var ae *api.Error
	switch {
	case errors.As(err, &ae) && ae.Conflict != nil && ae.Conflict.ModIndex == 0:
		return nil // already gone (its session ended, or someone deleted it)
	case err != nil:
		return fmt.Errorf("sdk: delete ephemeral %s: %w", key, err)
	}
	return m.c.wroteKV(ctx, "delete ephemeral", pos, key)
}

// putEphemeralAgain puts the member's ephemeral keys again under s, the
// session it has just registered again with (see the package comment of
// this file), within the re-registration (ctx), while its keepalives go
// on. A failure that a retry would not mend gives the key up; the end of
// s, or of ctx, or the member's Leave leaves the rest for the next
// session (or for Leave to delete).
func (m *Member) putEphemeralAgain(ctx context.Context, s *session) {
	pending := m.held.pending(s)
	for _, key := range slices.Sorted(maps.Keys(pending)) {
		if !m.putBack(ctx, s, key, pending[key]) {
			return
		}
	}
}

// putBack puts key, as held at hk, back under s if it does not exist, in
// the key lane; false when the keys left must wait.
func (m *Member) putBack(ctx context.Context, s *session, key string, hk heldKey) bool {
	if m.held.enter(ctx) != nil {
		return false
	}
	defer m.held.exit()
	if m.isLeaving() {
		return false
	}
	if !m.held.is(key, hk.gen) {
		return true // given up (DeleteEphemeral) or put again meanwhile
	}
	none := uint64(0)
	kv, _, err := m.c.putKV(ctx, key, hk.value, &none, s.id)
	switch {
	case err == nil:
		m.held.settle(key, hk.gen, s, kv.ModIndex)
		return true
	case ctx.Err() != nil:
		return false // its outcome unknown: it stays pending (see deleteHeld)
	case errors.Is(err, api.ErrSessionExpired) || errors.Is(err, api.ErrNotFound):
		m.log.Warn("the session ended again while its ephemeral keys were put back", "err", err)
		return false
	case errors.Is(err, api.ErrConflict) || errors.Is(err, api.ErrTimeout):
		// The key exists: this put itself may have got there (its
		// outcome unknown), or someone else.
		got, gerr := m.c.Get(ctx, key)
		switch {
		case gerr == nil && got.SessionTag == s.tag:
			m.held.settle(key, hk.gen, s, got.ModIndex)
			return true
		case gerr == nil: // someone else's
		case !errors.Is(gerr, api.ErrNotFound) || errors.Is(err, api.ErrTimeout):
			return true // unknown, or may land yet: it stays pending (see deleteHeld)
		}
	}
	if _, ok := m.held.drop(key, hk.gen); ok {
		m.log.Warn("ephemeral key given up: it could not be put again under the new session", "key", key, "err", err)
	}
	return true
}
