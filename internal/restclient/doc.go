// Package restclient is the one REST client of Rafting's own tools: the
// CLI, the test helpers and the benchmarks. (The SDK has its own, with
// breakers and streams, in sdk/internal/transport.)
//
// A Client sends a request with its bearer token to its servers in turn
// and reads the answer: a 2xx is the answer, an error answer is an
// *api.Error, and what the API says is safe to retry (429, 503, 504 and
// no answer at all) is sent again, after the wait of the Client's Retry
// policy (a cenkalti/backoff BackOff) and at least the answer's
// Retry-After. An error answer that names a leader among the Client's
// servers sends the next attempt there; any other failure moves to the
// next server: after no answer at once, unless every server has failed
// since the last wait.
//
// Every write of the API is idempotent, so a write is retried too; the
// Response says when an earlier attempt's outcome is unknown (a 504, or a
// request sent whose answer was lost), which a compare-and-set needs to
// tell its own first attempt from someone else's write.
//
// A redirect is never followed: the API never redirects, and following
// one would carry the token elsewhere.
//
// A Client is a plain value: copy it to change a field for some calls
// (a longer HTTP timeout, another token). It is safe for concurrent use
// when its fields are not changed while it is used.
package restclient
