package restclient

import "errors"

// ErrNoAnswer is returned, wrapping the last failure, when the Retry
// policy ends before any server gave an answer that is not a retryable
// error: errors.As still finds that failure's *api.Error.
var ErrNoAnswer = errors.New("no server answered")
