package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/rafting/rafting/api"
)

// NetError is a request that got no HTTP answer from a server: refused,
// reset, timed out. It matches api.ErrUnavailable with errors.Is, as the
// cause does.
type NetError struct {
	Server string
	Err    error
}

func (e *NetError) Error() string {
	return fmt.Sprintf("rafting server %s: %v", e.Server, e.Err)
}

// Unwrap returns api.ErrUnavailable and the cause.
func (e *NetError) Unwrap() []error { return []error{api.ErrUnavailable, e.Err} }

// ErrPlaintext refuses a server that is not loopback to a plain-HTTP
// Client without Config.Insecure: the token would cross the network in
// the clear. It is never retried.
var ErrPlaintext = errors.New("plain HTTP to a server that is not loopback would send the token in the clear")

// ErrNoServer means every server's breaker is open: none is worth a try now.
var ErrNoServer = fmt.Errorf("%w: every rafting server failed recently (breakers open)", api.ErrUnavailable)

// Retryable reports whether a request that failed with err may be sent
// again, unchanged: no answer (every write is idempotent), 429, 503 or 504.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ne *NetError
	if errors.As(err, &ne) || errors.Is(err, ErrNoServer) {
		return true
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Code.Retryable()
	}
	return false
}

// serverFault reports whether err says something about the server that
// answered (so its breaker counts it): no answer, a 5xx that is not the
// cluster's state (no leader, timeout), or a replica cut off from the rest.
func serverFault(err error) bool {
	var ne *NetError
	if errors.As(err, &ne) {
		return !errors.Is(err, context.Canceled)
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		switch {
		case ae.Code == api.CodeStaleReplica:
			return true
		case ae.Status() >= http.StatusInternalServerError && ae.Status() != http.StatusServiceUnavailable &&
			ae.Status() != http.StatusGatewayTimeout:
			return true
		}
	}
	return false
}

// moveOn reports whether the next attempt should go to another server.
func moveOn(err error) bool {
	var ae *api.Error
	if errors.As(err, &ae) {
		// A 503 or 504 from one node is usually the shard's state (no
		// leader yet), but another node may know better; a 429 is the
		// tenant's rate on this node.
		return ae.Code == api.CodeStaleReplica || ae.Code == api.CodeUnavailable || ae.Code == api.CodeRateLimited
	}
	return true
}
