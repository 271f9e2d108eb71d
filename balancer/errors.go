package balancer

import "errors"

// ErrNoEndpoints is returned by Pick and PickTracked when the Balancer has no
// endpoint to choose: none was ever given, the last Update was empty, or every
// endpoint in it has weight 0. Pickers return it for the same reasons.
var ErrNoEndpoints = errors.New("balancer: no endpoints")
