package balancer

import (
	"errors"
	"strconv"
)

// ErrNoEndpoints is returned by Pick and PickTracked when the Balancer has no
// endpoint to choose: none was ever given, the last Update was empty, or every
// endpoint in it has weight 0. Pickers return it for the same reasons.
//
// A Balancer returns ErrNoEndpoints itself only while it has no name and
// knows of no endpoint at all; otherwise it returns a *NoEndpointsError that
// says more, and matches ErrNoEndpoints with errors.Is.
var ErrNoEndpoints = errors.New("balancer: no endpoints")

// NoEndpointsError is the error of a pick that finds no endpoint, when there
// is more to say than ErrNoEndpoints: the Balancer's name (WithName), the
// endpoints it knows of that cannot be picked, and those the pick excluded
// (PickExcept). It matches ErrNoEndpoints with errors.Is:
//
//	sdk: service "orders": no endpoints to pick (2 registered, 2 not ready: starting/draining/weight 0)
//
// A Balancer makes it at Update (and SetNotReady), so a pick returns it
// without allocating; treat it as read-only.
type NoEndpointsError struct {
	// Name is the Balancer's name; "" if it has none.
	Name string
	// Registered counts the endpoints of the last Update, weight 0
	// included, and those SetNotReady reported left out.
	Registered int
	// NotReady counts those of Registered that cannot be picked: weight 0
	// or less, or not ready (SetNotReady).
	NotReady int
	// Excluded counts those that PickExcept was told to avoid: every
	// endpoint left, when it is not 0.
	Excluded int
}

func (e *NoEndpointsError) Error() string {
	name := e.Name
	if name == "" {
		name = "balancer"
	}
	b := make([]byte, 0, 128)
	b = append(b, name...)
	b = append(b, ": no endpoints to pick ("...)
	b = strconv.AppendInt(b, int64(e.Registered), 10)
	b = append(b, " registered"...)
	if e.NotReady > 0 {
		b = append(b, ", "...)
		b = strconv.AppendInt(b, int64(e.NotReady), 10)
		b = append(b, " not ready: starting/draining/weight 0"...)
	}
	if e.Excluded > 0 {
		b = append(b, ", "...)
		b = strconv.AppendInt(b, int64(e.Excluded), 10)
		b = append(b, " excluded"...)
	}
	b = append(b, ')')
	return string(b)
}

// Is reports whether target is ErrNoEndpoints.
func (e *NoEndpointsError) Is(target error) bool { return target == ErrNoEndpoints }

// HTTPStatusError is how a function given to Do reports an HTTP answer that
// is an error: Code 500 and above is a failure of the endpoint, which Do
// reports to ejection and retries on another endpoint; below 500 (a 4xx) is
// the caller's problem, not the endpoint's: Do reports the call as a
// success to ejection and returns the error at once, without a retry.
//
// Return it as it is or wrapped (Do looks for it with errors.As); make it
// with StatusError, which does not allocate, or as &HTTPStatusError{Code}.
type HTTPStatusError struct {
	Code int // the HTTP status code, e.g. 503
}

func (e *HTTPStatusError) Error() string {
	return "HTTP status " + strconv.Itoa(e.Code)
}

// StatusError returns an *HTTPStatusError of code. For codes 100 to 599 it
// returns one shared value per code, without allocating: do not modify it.
func StatusError(code int) error {
	if code >= 100 && code < 100+len(statusErrors) {
		return &statusErrors[code-100]
	}
	return &HTTPStatusError{Code: code}
}

var statusErrors = func() (errs [500]HTTPStatusError) {
	for i := range errs {
		errs[i].Code = 100 + i
	}
	return errs
}()

// Permanent marks err as final for Do: Do returns it at once, without
// trying another endpoint. The endpoint is charged with err as Finish would
// charge it (a 4xx HTTPStatusError is not its fault; anything else but a
// cancel is). Use it, say, for a call that is not idempotent and may have
// reached the endpoint. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }
