// Package testhook reaches into package sdk for sdk/sdktest: what a test
// of a user's own service needs to do to the SDK and no program should,
// such as crashing a member. Package sdk sets the hooks in its init; the
// internal path keeps them out of every other importer's reach.
package testhook

// Crash, called with an *sdk.Member, ends the member's process as kill -9
// would: its Client is the process, so every member of the Client ends
// with it (the farm members among them share a session). Their session
// streams, the Client's stream and connections drop, keepalives stop, and
// nothing is said to the servers (no drain, no deregistration, no session
// end), so they find out as from a crashed process: the stream's
// drop_grace, or the TTL. Locally the members are over: Done is closed
// and Err matches sdk.ErrSessionLost.
var Crash func(member any)
