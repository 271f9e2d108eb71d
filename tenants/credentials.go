package tenants

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/rafting/rafting/api"
)

// Hash is the SHA-256 of a token: the only form in which a token is stored.
// It marshals as 64 lowercase hexadecimal digits (JSON and text, so it may be
// a map key too). The zero Hash is no token's hash and matches nothing.
type Hash [sha256.Size]byte

// HashToken returns the SHA-256 of a token (the whole bearer string, prefix
// included; the admin token too).
func HashToken(s string) Hash { return sha256.Sum256([]byte(s)) }

// ParseHash parses 64 hexadecimal digits (either case) into a Hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != hex.EncodedLen(len(h)) {
		return Hash{}, fmt.Errorf("%w: %d characters, want %d", ErrMalformedHash, len(s), hex.EncodedLen(len(h)))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return Hash{}, fmt.Errorf("%w: %v", ErrMalformedHash, err)
	}
	return h, nil
}

// Equal reports whether h and o are the same hash, in time independent of
// their contents.
func (h Hash) Equal(o Hash) bool { return subtle.ConstantTimeCompare(h[:], o[:]) == 1 }

// IsZero reports whether h is the zero Hash.
func (h Hash) IsZero() bool { return h == Hash{} }

// String returns h in lowercase hex. A tenant token's hash reveals nothing
// usable (its secret has at least 128 random bits); an admin token chosen by a
// person may be guessable from its hash, so do not log that one.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText implements encoding.TextMarshaler (and so JSON): lowercase hex.
func (h Hash) MarshalText() ([]byte, error) { return hex.AppendEncode(nil, h[:]), nil }

// UnmarshalText implements encoding.TextUnmarshaler, as ParseHash.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// DefaultPreviousValid is how long a rotated-out token keeps working when the
// rotation does not say (previous_valid_ms absent): one hour.
const DefaultPreviousValid = time.Hour

// Credentials are a tenant's token hashes, as the meta shard keeps them: the
// current token, and the token it replaced while that one is still honoured.
// The zero value matches nothing. Credentials are values: Rotate returns new
// ones and never changes Previous in place.
type Credentials struct {
	Current Hash `json:"current"`
	// Previous is the token Current replaced, nil when there is none or it
	// was revoked.
	Previous *Hash `json:"previous,omitempty"`
	// PreviousValidUntil is when Previous stops matching: it matches while
	// now is before it.
	PreviousValidUntil time.Time `json:"previous_valid_until,omitzero"`
}

// Match reports whether a presented token's hash h is one of c's tokens at
// now: Current always, Previous only while now is before PreviousValidUntil.
// Both hashes are compared, each in constant time, whatever the first gives,
// so the answer's timing tells nothing of which one matched. The zero Hash
// matches nothing.
func (c Credentials) Match(h Hash, now time.Time) bool {
	var prev Hash // zero, and so never equal to a non-zero h, when there is none
	if c.Previous != nil {
		prev = *c.Previous
	}
	cur := subtle.ConstantTimeCompare(h[:], c.Current[:])
	old := subtle.ConstantTimeCompare(h[:], prev[:])
	valid := 0
	if c.Previous != nil && now.Before(c.PreviousValidUntil) {
		valid = 1
	}
	return (cur|(old&valid)) == 1 && !h.IsZero()
}

// Rotate makes newHash c's current token at now and returns the result, with
// changed false when nothing changed.
//
// A rotation to the token that is already current is a retry and a no-op, so
// a client may resend a rotation that carried its own secret. Otherwise the
// current token becomes the previous one and keeps working until now +
// previousValid; previousValid <= 0 revokes it at once (Previous is nil).
// Only one previous token is kept: an earlier previous one is revoked.
//
// Rotate is deterministic: the meta state machine passes the time stamped in
// the rotation command, never the clock.
func Rotate(c Credentials, newHash Hash, now time.Time, previousValid time.Duration) (_ Credentials, changed bool) {
	if newHash.Equal(c.Current) {
		return c, false
	}
	r := Credentials{Current: newHash}
	if previousValid > 0 && !c.Current.IsZero() {
		prev := c.Current
		r.Previous = &prev
		r.PreviousValidUntil = now.Add(previousValid)
	}
	return r, true
}

// ResolvePreviousValid turns a rotation's previous_valid_ms into the duration
// Rotate takes: absent (nil) is DefaultPreviousValid and 0 revokes the old
// token at once. A value below 0 or above MaxPreviousValidMs is a 400 naming
// "previous_valid_ms".
func ResolvePreviousValid(ms *int64) (time.Duration, error) {
	if ms == nil {
		return DefaultPreviousValid, nil
	}
	if *ms < 0 || *ms > MaxPreviousValidMs {
		return 0, api.BadField("previous_valid_ms", "must be 0 to %d, got %d", int64(MaxPreviousValidMs), *ms)
	}
	return time.Duration(*ms) * time.Millisecond, nil
}

// MaxPreviousValidMs bounds previous_valid_ms: 30 days, in milliseconds. A
// rotated-out token that must live longer was not rotated out.
const MaxPreviousValidMs = 30 * 24 * 3600 * 1000
