package balancer

import (
	"context"
	"errors"
	"strconv"
)

// Do calls fn with an endpoint of b, and while fn fails, again with
// another endpoint, up to tries calls in all (tries below 1 counts as 1).
// It is the way to call a farm: it never calls fn twice with one endpoint
// (it picks with PickExcept, excluding those tried), and it ends every
// pick with the outcome of fn, which feeds LeastLoaded's counts and
// ejection. It returns nil as soon as fn does.
//
// What fn's error means:
//
//   - A *HTTPStatusError (StatusError(code)), as it is or wrapped, with a
//     5xx code: a failure of the endpoint, tried again on another.
//   - A *HTTPStatusError with a code below 500 (a 4xx): not the endpoint's
//     fault and not worth another try: Do reports a success and returns.
//   - An error wrapped by Permanent: Do returns at once, charging the
//     endpoint as it would without Permanent.
//   - An error when ctx is done, or one that is context.Canceled: neutral,
//     charged to no endpoint (Done.Release), and Do returns.
//   - Any other error (a refused connection, a reset, fn's own timeout): a
//     failure of the endpoint, tried again on another.
//
// Do returns ErrNoEndpoints (a *NoEndpointsError) if b has no endpoint to
// pick, ctx's error if ctx is done before the first call, and otherwise an
// error that wraps fn's last error and says how many endpoints were tried.
// When every endpoint has been tried it stops, whatever tries is: it
// returns the last failure rather than call an endpoint twice. It makes no
// pause between tries: each goes to another endpoint.
//
// Do allocates nothing of its own when it returns nil with tries up to 8;
// its error, when it returns one, is one allocation.
func Do(ctx context.Context, b *Balancer, tries int, fn func(context.Context, Endpoint) error) error {
	tries = max(tries, 1)
	var room [8]string
	tried := room[:0]
	var last error
	for len(tried) < tries {
		if err := ctx.Err(); err != nil {
			if last == nil {
				return err
			}
			break
		}
		e, done, err := b.PickExcept(tried...)
		if err != nil {
			if last == nil {
				return err
			}
			break // every endpoint tried
		}
		err = fn(ctx, e)
		if err == nil {
			done.Finish(nil)
			return nil
		}
		tried = append(tried, e.ID)
		last = err
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			done.Release()
			break
		}
		if se, ok := errors.AsType[*HTTPStatusError](err); ok && se.Code < 500 {
			done.Finish(nil)
			break
		}
		done.Finish(err)
		if _, ok := errors.AsType[*permanentError](err); ok {
			break
		}
	}
	return &tryError{name: b.name, tried: len(tried), err: last}
}

// tryError is Do's error: fn's last, and how many endpoints were tried.
type tryError struct {
	name  string
	tried int
	err   error
}

func (e *tryError) Error() string {
	name := e.name
	if name == "" {
		name = "balancer"
	}
	s := " endpoints tried: "
	if e.tried == 1 {
		s = " endpoint tried: "
	}
	return name + ": " + strconv.Itoa(e.tried) + s + e.err.Error()
}

func (e *tryError) Unwrap() error { return e.err }
