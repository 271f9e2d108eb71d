package fence

import (
	"errors"
	"fmt"
)

// Sentinel errors. A refused token is one of these, or wraps one: test with
// errors.Is.
var (
	// ErrStaleToken: the token is lower than the highest the resource has
	// seen, so a newer master has written. The writer must stop acting as
	// master. Refusals carry the numbers as a *StaleTokenError.
	ErrStaleToken = errors.New("fence: stale fencing token")
	// ErrNoToken: there is no token to check: 0 (which is never a
	// master's token), a request without the header, or a Transport whose
	// Token func reported no mastership.
	ErrNoToken = errors.New("fence: no fencing token")
	// ErrMalformedToken: a header value that is not a fencing token (see
	// ParseToken for the one accepted form).
	ErrMalformedToken = errors.New("fence: malformed fencing token")
)

// StaleTokenError is a token refused because a higher one was seen.
// errors.Is(err, ErrStaleToken) holds for it.
type StaleTokenError struct {
	Token   uint64 // the refused token
	Highest uint64 // the highest token seen when Token was refused; Highest > Token
}

func (e *StaleTokenError) Error() string {
	return fmt.Sprintf("fence: stale fencing token %d: a newer master has written with %d", e.Token, e.Highest)
}

// Is reports whether target is ErrStaleToken.
func (e *StaleTokenError) Is(target error) bool { return target == ErrStaleToken }
