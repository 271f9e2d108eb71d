// Package ui is Rafting's web dashboard, served at /ui by every node: an
// HTML page, a style sheet and a script embedded in the binary (no CDN, no
// build step), and one live feed a browser tab reads, /ui/events.
//
// The page logs in with a token it keeps in the tab's sessionStorage and
// sends only in an Authorization header, never in a URL. What it shows
// depends on the token: the admin token sees every node and tenant, the
// read-only admin token sees the same without any action, a tenant token
// sees its own tenant.
//
// The feed (Dashboard.Feed) is one streamed answer in the text/event-stream
// format, read with fetch (EventSource cannot send a header). It is made of
// the REST API's own answers, asked in-process through the API's handler
// with the browser's token, so the feed sees exactly what the token may
// read through REST, under the same rate limits and quotas: GET /v1/cluster,
// the tenants and the tenant's sessions every second, its service list
// every 500 ms, and one blocking query per service (up to MaxWatched), so
// a registration, a drain or a new master reaches the page as soon as the
// node applied it.
// A service whose blocking query the node refuses (the tenant's
// max_watchers reached) is read without one every 500 ms for a while.
// A browser holds one connection for it, however many services it shows.
// Service answers are paced to FeedBytesPerSecond a feed: changes that
// come faster are sent together.
// One identity holds at most MaxFeeds feeds on a node (429 past it); a
// write the browser does not take within 10 s ends a feed, and so does a
// 401 of its token (revoked, rotated out), after it is sent as problem.
//
// Actions (drain, undrain, resign, rotate a token) are the REST API's own
// requests, sent by the page with the token after a confirmation; the
// server authorizes them as any other request.
//
// Everything a tenant wrote (names, addresses, zones, meta) is put in the
// page as text (textContent), never parsed as HTML, and every /ui answer
// carries a Content-Security-Policy that allows only the embedded script
// and style sheet: no inline script, no eval, no other origin.
//
// Threading: a Dashboard is safe for concurrent use; Feed returns once the
// request's context ends, having waited for every goroutine it started.
package ui
