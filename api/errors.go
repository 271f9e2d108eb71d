package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Code is a stable, machine-readable error code carried in every error body.
type Code string

// The error codes of REST API v1. Each maps to exactly one HTTP status and one
// sentinel error below.
const (
	CodeBadRequest     Code = "bad_request"     // 400: bad input; the message names the field
	CodeUnauthorized   Code = "unauthorized"    // 401: missing or unknown token
	CodeForbidden      Code = "forbidden"       // 403: a tenant token on an admin endpoint
	CodeNotFound       Code = "not_found"       // 404: no such tenant, service, instance or session
	CodeConflict       Code = "conflict"        // 409: the request contradicts current state
	CodeQuotaExceeded  Code = "quota_exceeded"  // 409: a count quota would be exceeded
	CodeTooLarge       Code = "too_large"       // 413: body over MaxBodyBytes
	CodeRateLimited    Code = "rate_limited"    // 429: the tenant's (or address's) rate is spent
	CodeUnavailable    Code = "unavailable"     // 503: not applied, safe to retry (no leader, busy)
	CodeStaleReplica   Code = "stale_replica"   // 503: this node cannot reach the asked index
	CodeRestoring      Code = "restoring"       // 503: a restore is writing the cluster's (or the tenant's) state
	CodeTimeout        Code = "timeout"         // 504: outcome unknown, retry with the same body
	CodeSessionExpired Code = "session_expired" // 404: the session is a known tombstone
	CodeNotAttached    Code = "not_attached"    // 409: a master session renews only with its stream attached
	CodeInternal       Code = "internal"        // 500: a bug; never expected
)

// Sentinel errors, one per code. An *Error decoded from the wire matches its
// sentinel with errors.Is, so errors.Is(err, api.ErrQuotaExceeded) holds in a
// client process for a 409 quota_exceeded answered by a server.
var (
	ErrBadRequest     = errors.New("bad request")
	ErrUnauthorized   = errors.New("unauthorized")
	ErrForbidden      = errors.New("forbidden")
	ErrNotFound       = errors.New("not found")
	ErrConflict       = errors.New("conflict")
	ErrQuotaExceeded  = errors.New("quota exceeded")
	ErrTooLarge       = errors.New("request too large")
	ErrRateLimited    = errors.New("rate limited")
	ErrUnavailable    = errors.New("unavailable")
	ErrStaleReplica   = errors.New("stale replica")
	ErrRestoring      = errors.New("restoring")
	ErrTimeout        = errors.New("timeout: outcome unknown")
	ErrSessionExpired = errors.New("session expired")
	ErrNotAttached    = errors.New("session stream not attached")
	ErrInternal       = errors.New("internal error")
)

var codes = map[Code]struct {
	status   int
	sentinel error
}{
	CodeBadRequest:     {http.StatusBadRequest, ErrBadRequest},
	CodeUnauthorized:   {http.StatusUnauthorized, ErrUnauthorized},
	CodeForbidden:      {http.StatusForbidden, ErrForbidden},
	CodeNotFound:       {http.StatusNotFound, ErrNotFound},
	CodeConflict:       {http.StatusConflict, ErrConflict},
	CodeQuotaExceeded:  {http.StatusConflict, ErrQuotaExceeded},
	CodeTooLarge:       {http.StatusRequestEntityTooLarge, ErrTooLarge},
	CodeRateLimited:    {http.StatusTooManyRequests, ErrRateLimited},
	CodeUnavailable:    {http.StatusServiceUnavailable, ErrUnavailable},
	CodeStaleReplica:   {http.StatusServiceUnavailable, ErrStaleReplica},
	CodeRestoring:      {http.StatusServiceUnavailable, ErrRestoring},
	CodeTimeout:        {http.StatusGatewayTimeout, ErrTimeout},
	CodeSessionExpired: {http.StatusNotFound, ErrSessionExpired},
	CodeNotAttached:    {http.StatusConflict, ErrNotAttached},
	CodeInternal:       {http.StatusInternalServerError, ErrInternal},
}

// Status is the HTTP status a code is answered with (500 for an unknown code).
func (c Code) Status() int {
	if e, ok := codes[c]; ok {
		return e.status
	}
	return http.StatusInternalServerError
}

// Sentinel is the sentinel error of a code (ErrInternal for an unknown code).
func (c Code) Sentinel() error {
	if e, ok := codes[c]; ok {
		return e.sentinel
	}
	return ErrInternal
}

// Retryable reports whether a request that got this code may be sent again
// unchanged: the write was not applied (503) or its outcome is unknown and
// every write is idempotent (504), or the rate will refill (429).
func (c Code) Retryable() bool {
	switch c {
	case CodeUnavailable, CodeStaleReplica, CodeRestoring, CodeTimeout, CodeRateLimited:
		return true
	}
	return false
}

// Error is the error of REST API v1, on both sides of the wire. Servers build
// it with Errorf or the constructors below and write it with its Body; clients
// get it back from Decode and test it with errors.Is against the sentinels.
type Error struct {
	Code    Code
	Message string
	// Quota, Limit and Used are set for CodeQuotaExceeded.
	Quota string
	Limit int64
	Used  int64
	// RetryAfter is set on 429, 503 and 504: how long to wait before retrying.
	RetryAfter time.Duration
	// Leader is the API address of the shard's leader, when it is known.
	Leader string
	// Conflict is set on a 409 conflict of the configuration store (a
	// compare-and-set, a transaction's compare): the key, its mod_index
	// now, the failed compare.
	Conflict *KVConflict
}

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// BadField returns a 400 bad_request naming the offending field.
func BadField(field, format string, args ...any) *Error {
	return &Error{Code: CodeBadRequest, Message: field + ": " + fmt.Sprintf(format, args...)}
}

// QuotaExceeded returns a 409 quota_exceeded for a count quota.
func QuotaExceeded(tenant, quota string, limit, used int64) *Error {
	return &Error{
		Code:    CodeQuotaExceeded,
		Message: fmt.Sprintf("tenant %s: %s %d reached", tenant, quota, limit),
		Quota:   quota, Limit: limit, Used: used,
	}
}

func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Message
}

// Status is the HTTP status the error is answered with.
func (e *Error) Status() int { return e.Code.Status() }

// Unwrap returns the code's sentinel, so errors.Is(err, ErrNotFound) works.
func (e *Error) Unwrap() error { return e.Code.Sentinel() }

// ErrorBody is the JSON body of every answer with a status >= 400.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the "error" object of an ErrorBody.
type ErrorDetail struct {
	Code         Code   `json:"code"`
	Message      string `json:"message"`
	Quota        string `json:"quota,omitempty"`
	Limit        int64  `json:"limit,omitempty"`
	Used         int64  `json:"used,omitempty"`
	RetryAfterMs int64  `json:"retry_after_ms,omitempty"`
	Leader       string `json:"leader,omitempty"`
	// The fields of a configuration store conflict (key, mod_index,
	// compare), when there is one.
	*KVConflict
}

// Body returns the wire form of the error.
func (e *Error) Body() ErrorBody {
	return ErrorBody{Error: ErrorDetail{
		Code: e.Code, Message: e.Message,
		Quota: e.Quota, Limit: e.Limit, Used: e.Used,
		RetryAfterMs: e.RetryAfter.Milliseconds(),
		Leader:       e.Leader,
		KVConflict:   e.Conflict,
	}}
}

// Decode turns an error answer into an *Error. It never fails: a body that is
// not an ErrorBody gives an error with a code derived from the status.
// retryAfter is the Retry-After header, in seconds (may be empty).
func Decode(status int, body []byte, retryAfter string) *Error {
	var b ErrorBody
	if err := json.Unmarshal(body, &b); err != nil || b.Error.Code == "" {
		msg := string(body)
		if len(msg) > 200 {
			msg = msg[:200]
		}
		b.Error = ErrorDetail{Code: codeForStatus(status), Message: fmt.Sprintf("status %d: %s", status, msg)}
	}
	e := &Error{
		Code: b.Error.Code, Message: b.Error.Message,
		Quota: b.Error.Quota, Limit: b.Error.Limit, Used: b.Error.Used,
		RetryAfter: time.Duration(b.Error.RetryAfterMs) * time.Millisecond,
		Leader:     b.Error.Leader,
		Conflict:   b.Error.KVConflict,
	}
	if _, known := codes[e.Code]; !known {
		e.Code = codeForStatus(status)
	}
	if e.RetryAfter == 0 && retryAfter != "" {
		if s, err := strconv.Atoi(retryAfter); err == nil && s >= 0 {
			e.RetryAfter = time.Duration(s) * time.Second
		}
	}
	return e
}

func codeForStatus(status int) Code {
	switch status {
	case http.StatusBadRequest:
		return CodeBadRequest
	case http.StatusUnauthorized:
		return CodeUnauthorized
	case http.StatusForbidden:
		return CodeForbidden
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusConflict:
		return CodeConflict
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusTooManyRequests:
		return CodeRateLimited
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return CodeUnavailable
	case http.StatusGatewayTimeout:
		return CodeTimeout
	}
	return CodeInternal
}
