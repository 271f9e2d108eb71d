package sdk

import (
	"errors"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
)

// Errors. Those that a server answers are the api package's sentinels
// themselves, so an error decoded from the wire matches them with
// errors.Is in the service process:
//
//	if errors.Is(err, sdk.ErrQuotaExceeded) { ... }
//
// A quota error also unwraps to an *api.Error carrying Quota, Limit and
// Used (errors.As).
var (
	// ErrNoEndpoints: a Balancer has no instance to pick. A Service's
	// Balancers return a *balancer.NoEndpointsError that matches it with
	// errors.Is, naming the service and counting its instances registered
	// and not ready (starting, draining or weight 0).
	ErrNoEndpoints = balancer.ErrNoEndpoints

	ErrBadRequest     = api.ErrBadRequest     // 400: the message names the field
	ErrUnauthorized   = api.ErrUnauthorized   // 401: missing, unknown or revoked token
	ErrForbidden      = api.ErrForbidden      // 403
	ErrNotFound       = api.ErrNotFound       // 404: no such tenant, service, instance or session
	ErrConflict       = api.ErrConflict       // 409: e.g. a resign with no other candidate
	ErrQuotaExceeded  = api.ErrQuotaExceeded  // 409: a count quota of the tenant
	ErrRateLimited    = api.ErrRateLimited    // 429, once retries are spent
	ErrUnavailable    = api.ErrUnavailable    // 503, or no server answered
	ErrTimeout        = api.ErrTimeout        // 504: the outcome of a write is unknown
	ErrSessionExpired = api.ErrSessionExpired // the server ended the session

	// ErrNotMaster: the member does not hold its service's mastership.
	ErrNotMaster = errors.New("sdk: not master")
	// ErrSessionLost: the member's session ended and it could not be
	// registered again (the cause is joined); Done is closed.
	ErrSessionLost = errors.New("sdk: session lost")
	// ErrLeft: the member has left.
	ErrLeft = errors.New("sdk: member has left")
	// ErrClosed: the Client is closed.
	ErrClosed = errors.New("sdk: client closed")
	// ErrNoServers: no server is configured (RAFTING_SERVERS or WithServers).
	ErrNoServers = errors.New("sdk: no servers configured: set RAFTING_SERVERS or use WithServers")
)
