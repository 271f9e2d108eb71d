// Package testhook reaches into package sdk for sdk/sdktest: what a test
// of a user's own service needs to do to the SDK and no program should,
// such as crashing a member. Package sdk sets the hooks in its init; the
// internal path keeps them out of every other importer's reach.
package testhook

// Crash, called with an *sdk.Member, ends the member as kill -9 would
// end its process: its session stream and connections drop and its
// keepalives stop, and nothing is said to the servers (no drain, no
// deregistration, no session end), so they find out as from a crashed
// process: the stream's drop_grace, or the TTL. Its Client goes too when
// Join made it. Locally the member is over: Done is closed and Err
// matches sdk.ErrSessionLost.
var Crash func(member any)
