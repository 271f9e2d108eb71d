// Package stream is the SDK's side of the client stream (POST
// /v1/tenants/{t}/stream, DESIGN.md "The client stream"): one full-duplex
// stream per Client, on one server at a time, that carries the Client's
// service watches, its sessions' attachments and their keepalives (and,
// later, its writes).
//
// A Client owns the stream: one goroutine (run) opens it, starts every
// registered watch on it, and when it ends opens it again — on the first
// server a moved frame names at once, else on another server after a
// jittered backoff (the transport's breakers choose it). Each open stream
// (conn) has a writer goroutine, the only writer of the request body, with
// two lanes: frames sent ahead (keepalives) leave before any queued
// ordinary frame, and a frame's OnWrite runs just before its bytes are
// handed to the transport, so a promise anchored there is never later than
// the send. The conn's reader goroutine decodes every server frame and
// dispatches it at once: results to their request's callback, snapshot and
// changes to their watch, in the order they came.
//
// A session kept attached (Attach) is attached again on every stream the
// Client opens; a `moved` for it moves the stream to the leader it names,
// so that one stream carries every session to the tenant's leader. A
// keepalive frame (Keepalive) goes in the ahead lane, and its OnWrite time
// is the anchor of the promises it brings back.
//
// A watch keeps its own view of the service (View): the last snapshot with
// every changes frame applied, at the index and epoch of its last frame.
// When a watch starts again (a new stream, a resync, a failed watch
// request) it asks from that index and epoch, so the server answers either
// "covered" (changes follow) or with a snapshot, never with anything older.
// Its Handler is called from the reader, one call at a time, in index
// order, with the whole service at an index.
//
// Threading: Client and Watch methods are safe for concurrent use.
// Handlers must not block (they run on the stream's reader) and must not
// call back into the Client. Close ends the stream and waits for every
// goroutine the Client started.
package stream
