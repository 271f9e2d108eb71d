package api

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

// Limits on names and identifiers.
const (
	MaxNameLen       = 128 // services and instance IDs
	MaxTenantNameLen = 63
	MinSessionIDLen  = 16 // session IDs are secrets: 128 random bits, base64url or hex
	MaxSessionIDLen  = 128
)

// ValidateName checks a service name or an instance ID: 1–128 characters of
// [A-Za-z0-9._-], but not "." or ".." (a name is a path segment: those
// would be cleaned away, and the request sent elsewhere). The error is a
// 400 naming field.
func ValidateName(field, s string) error {
	if err := ValidateNameChars(field, s); err != nil {
		return err
	}
	if s == "." || s == ".." {
		return BadField(field, "%q is not a name", s)
	}
	return nil
}

// ValidateNameChars is ValidateName without the rule on "." and "..": the
// check of the state machines' first version, which they keep for entries
// applied at it.
func ValidateNameChars(field, s string) error {
	if len(s) == 0 || len(s) > MaxNameLen {
		return BadField(field, "must be 1 to %d characters, got %d", MaxNameLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		if !nameByte(s[i]) {
			return BadField(field, "character %q at %d is not one of [A-Za-z0-9._-]", s[i], i)
		}
	}
	return nil
}

// ValidateText checks a value a tenant writes and operators read (an
// address, a zone, meta): valid UTF-8 without control characters (C0, DEL,
// C1), which a terminal would obey — set its title, clear it, forge rows.
func ValidateText(field, s string) error {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			return BadField(field, "is not valid UTF-8 (byte %d)", i)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			return BadField(field, "control character %U at byte %d", r, i)
		}
	}
	return nil
}

// ValidateTenantName checks a tenant name: 1–63 characters of [a-z0-9-].
func ValidateTenantName(field, s string) error {
	if len(s) == 0 || len(s) > MaxTenantNameLen {
		return BadField(field, "must be 1 to %d characters, got %d", MaxTenantNameLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return BadField(field, "character %q at %d is not one of [a-z0-9-]", c, i)
		}
	}
	return nil
}

// ValidateSessionID checks a client-chosen session ID: 16–128 characters of
// [A-Za-z0-9_-] (the SDK uses 22 characters of base64url: 128 random bits).
func ValidateSessionID(field, s string) error {
	if len(s) < MinSessionIDLen || len(s) > MaxSessionIDLen {
		return BadField(field, "must be %d to %d characters, got %d", MinSessionIDLen, MaxSessionIDLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(nameByte(c) && c != '.') {
			return BadField(field, "character at %d is not one of [A-Za-z0-9_-]", i)
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// SessionTag is the public name of a secret session ID: the first 8 bytes of
// its SHA-256, in hex. Reads, events and logs show only the tag; a member
// recognises its own session in a master record by it.
func SessionTag(sessionID string) string {
	sum := sha256.Sum256([]byte(sessionID))
	return hex.EncodeToString(sum[:8])
}
