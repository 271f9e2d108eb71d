// Package api holds the wire contract of Rafting's REST API v1, shared by the
// server and the SDK: request and response types, headers, name rules, and
// the error codes with their HTTP statuses and sentinel errors.
//
// It imports only the standard library. Nothing here does IO; every function
// is safe for concurrent use.
//
// Errors cross the wire as an ErrorBody; Decode turns one back into an *Error
// whose Unwrap is the code's sentinel, so a client tests
//
//	errors.Is(err, api.ErrQuotaExceeded)
//
// exactly as the server meant it.
package api
