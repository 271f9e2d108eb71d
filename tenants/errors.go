package tenants

import (
	"errors"
	"fmt"

	"github.com/rafting/rafting/api"
)

// ErrMalformedHash is returned by ParseHash and by Hash.UnmarshalText for
// anything but 64 hexadecimal digits.
var ErrMalformedHash = errors.New("tenants: malformed token hash")

// QuotaError reports that a write would take a tenant past one of its count
// quotas. The tenant state machine returns it; the HTTP layer answers it as
// 409 quota_exceeded through API.
//
// errors.Is(err, api.ErrQuotaExceeded) holds for a *QuotaError, so callers
// test it the same way on both sides of the wire.
type QuotaError struct {
	Tenant string // the tenant's name
	Quota  string // the quota's JSON name, e.g. QuotaMaxInstances
	Limit  int64  // the quota's value
	Used   int64  // the usage that the write found
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("tenant %s: %s %d reached (used %d)", e.Tenant, e.Quota, e.Limit, e.Used)
}

// Is reports whether target is api.ErrQuotaExceeded.
func (e *QuotaError) Is(target error) bool { return target == api.ErrQuotaExceeded }

// API returns the wire form of the error: a 409 quota_exceeded carrying
// Quota, Limit and Used.
func (e *QuotaError) API() *api.Error {
	return api.QuotaExceeded(e.Tenant, e.Quota, e.Limit, e.Used)
}
