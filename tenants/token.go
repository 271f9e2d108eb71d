package tenants

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"

	"github.com/rafting/rafting/api"
)

// Token format: TokenPrefix + tenant + "_" + secret. A tenant name is
// [a-z0-9-]{1,63} and has no '_', so the tenant part ends at the first '_'
// after the prefix; the secret (base64url) may contain '_' itself.
const (
	// TokenPrefix starts every tenant token, so a token is recognisable in a
	// config file or a secret scanner.
	TokenPrefix = "rft_"
	// SecretBytes is how many random bytes NewSecret draws: 256 bits.
	SecretBytes = 32
	// MinSecretLen and MaxSecretLen bound a client-supplied secret, in
	// characters of base64url: 22 characters carry at least 128 bits.
	MinSecretLen = 22
	MaxSecretLen = 128
)

// NewSecret returns a fresh token secret: SecretBytes from crypto/rand in
// unpadded base64url, 43 characters. crypto/rand.Read never returns an error
// (since Go 1.24 it crashes the program irrecoverably if the kernel's random
// source fails), so neither does NewSecret.
func NewSecret() string {
	var b [SecretBytes]byte
	_, _ = rand.Read(b[:]) // documented never to fail
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidateSecret checks a client-supplied secret (the request field named
// field): MinSecretLen to MaxSecretLen characters of [A-Za-z0-9_-]. It cannot
// check that the secret is random; the client must draw it, as NewSecret
// does, from a cryptographic source. The error is a 400 naming field, and
// never quotes the secret.
func ValidateSecret(field, s string) error {
	if err := secretFormat(field, s); err != nil {
		return err
	}
	if !Strong(s) {
		return api.BadField(field, "looks far from random (at most %.0f bits, %d different characters): draw at least %d random bytes, e.g. head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d =",
			EstimateBits(s), distinct(s), MinSecretBits/8)
	}
	return nil
}

// secretFormat checks a secret's length and alphabet (what ParseToken
// checks of a token presented: its strength was checked when it was made).
func secretFormat(field, s string) error {
	if len(s) < MinSecretLen || len(s) > MaxSecretLen {
		return api.BadField(field, "must be %d to %d characters of base64url, got %d", MinSecretLen, MaxSecretLen, len(s))
	}
	if i := badSecretByte(s); i >= 0 {
		return api.BadField(field, "character at %d is not one of [A-Za-z0-9_-]", i)
	}
	return nil
}

// MinSecretBits is the least a secret must carry: the admin token's and a
// tenant token's.
const MinSecretBits = 128

// Strong reports whether s could carry MinSecretBits: EstimateBits is at
// least that, and s has at least 10 different characters (a string of one
// or a few repeated characters is long but guessable). It cannot tell a
// random secret from a cleverly chosen one; it refuses the obvious ones.
func Strong(s string) bool {
	return EstimateBits(s) >= MinSecretBits && distinct(s) >= 10
}

// EstimateBits is an upper bound of s's entropy, were each character drawn
// at random from the classes s uses (lower case, upper case, digits, the
// other printable ASCII characters): len(s) × log2(their size).
func EstimateBits(s string) float64 {
	var lower, upper, digit, other bool
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= '0' && c <= '9':
			digit = true
		default:
			other = true
		}
	}
	n := 0
	for _, c := range []struct {
		used bool
		size int
	}{{lower, 26}, {upper, 26}, {digit, 10}, {other, 32}} {
		if c.used {
			n += c.size
		}
	}
	if n < 2 {
		return 0
	}
	return float64(len(s)) * math.Log2(float64(n))
}

func distinct(s string) int {
	var seen [256]bool
	n := 0
	for i := 0; i < len(s); i++ {
		if !seen[s[i]] {
			seen[s[i]] = true
			n++
		}
	}
	return n
}

// badSecretByte is the index of the first byte of s outside the base64url
// alphabet, or -1.
func badSecretByte(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return i
		}
	}
	return -1
}

// Token is a tenant's bearer token, "rft_<tenant>_<secret>". Its String,
// GoString, Format and LogValue redact the secret, so a Token printed or logged by
// mistake leaks only the tenant's name; Reveal returns the raw value, to send
// it (an Authorization header, the answer to a create or rotation).
type Token string

// FormatToken returns the token of tenant with secret. It does not validate
// either: the caller has checked the tenant's name (api.ValidateTenantName)
// and the secret (ValidateSecret, or NewSecret).
func FormatToken(tenant, secret string) Token {
	return Token(TokenPrefix + tenant + "_" + secret)
}

// ParseToken returns the tenant a token names. ok is false unless s is a
// well-formed tenant token: the prefix, a valid tenant name, '_' and a secret
// of MinSecretLen to MaxSecretLen base64url characters. A well-formed token
// is not yet an authentic one: compare HashToken(s) with the tenant's
// Credentials. ParseToken never panics.
func ParseToken(s string) (tenant string, ok bool) {
	rest, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok {
		return "", false
	}
	tenant, secret, ok := strings.Cut(rest, "_")
	if !ok || api.ValidateTenantName("", tenant) != nil ||
		len(secret) < MinSecretLen || len(secret) > MaxSecretLen || badSecretByte(secret) >= 0 {
		return "", false
	}
	return tenant, true
}

// Reveal returns the raw token, secret included.
func (t Token) Reveal() string { return string(t) }

// String returns the token with its secret redacted: "rft_acme_…" for a
// tenant token, "[redacted]" for anything else.
func (t Token) String() string {
	if tenant, ok := ParseToken(string(t)); ok {
		return TokenPrefix + tenant + "_…"
	}
	return "[redacted]"
}

// GoString redacts like String, so %#v does not leak the secret either.
func (t Token) GoString() string { return "tenants.Token(" + t.String() + ")" }

// Format implements fmt.Formatter so that no verb prints the secret: every
// verb formats String (and %#v GoString) instead of the raw value.
func (t Token) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, t.GoString())
		return
	}
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), t.String())
}

// LogValue implements slog.LogValuer: a Token logs as its String.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.String()) }
