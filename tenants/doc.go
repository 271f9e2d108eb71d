// Package tenants holds the tenant model's pure helpers, shared by the
// server's HTTP layer and its meta state machine: quotas, tokens and their
// hashes, credentials with rotation, per-node rate limiters, and the typed
// error of an exceeded count quota.
//
// # Quotas
//
// Resolve gives a new tenant's quotas (a zero field takes its default, see
// DefaultQuotas) and Merge applies a PATCH (a zero field keeps its value);
// both validate, and a bad value is a 400 bad_request naming the field as
// "quotas.<json name>". Count quotas (max_services, max_instances,
// max_sessions, and max_meta_bytes per instance, see MetaSize) are enforced
// inside the tenant state machine, which answers a *QuotaError; max_watchers
// and the rates are enforced per node by the HTTP layer.
//
// # Tokens
//
// A tenant token is "rft_<tenant>_<secret>" (FormatToken, ParseToken), the
// secret at least 128 random bits (NewSecret draws 256; ValidateSecret
// checks a client-supplied one, which makes a retried create or rotation
// safe). Only HashToken's SHA-256 of the whole token is stored, in
// Credentials, and Credentials.Match compares in constant time. Rotate keeps
// one previous token for a while (DefaultPreviousValid; ResolvePreviousValid
// reads the request's previous_valid_ms). The admin token is any non-empty
// string; the server stores its Hash the same way. To authenticate a bearer
// string s: h := HashToken(s); accept it as admin if h.Equal(adminHash);
// otherwise tenant, ok := ParseToken(s), and accept it for that tenant if ok
// and the tenant's Credentials.Match(h, now).
//
// A Token never prints or logs its secret (String, Format, LogValue all
// redact); Reveal is the one way to the raw value.
//
// # Rate limiting
//
// Limiters holds token buckets keyed by a string, created lazily, following
// the quota passed on each call, and evicted when idle. The server keeps one
// Limiters per use: requests per tenant (requests_per_second, burst), writes
// per tenant (writes_per_second, WriteBurst), unauthenticated requests per
// remote address (UnauthenticatedRate, UnauthenticatedBurst), and the
// keepalive lane per session (LaneRate, LaneBurst), grouped by tenant
// (AllowIn): a tenant past its cap of lane buckets shares an overflow bucket
// of its own, never another tenant's. Buckets are per node: with
// N nodes a tenant can reach N times its rates. Keys are held in memory
// until evicted, so a per-address key should be the address without its port
// (and an IPv6 address its /64), and a per-session key the session's tag
// (api.SessionTag), not its secret ID.
//
// # Threading and time
//
// Every function is safe for concurrent use; Limiters is safe for concurrent
// use through its methods. Nothing here does IO, starts a goroutine or reads
// the clock: time comes in as a now argument, so the meta state machine can
// call Rotate and Match deterministically with the time stamped in a
// command, and tests inject it. The only randomness is NewSecret's, which
// the state machine never calls: secrets are drawn by the HTTP layer (or
// the client) and arrive inside the command.
//
// The package imports only the standard library, golang.org/x/time/rate and
// github.com/rafting/rafting/api.
package tenants
