// Package watchcache is the SDK's cache of one service: the rules a
// Service's answers are applied by, with no network and no clock of its
// own (Config.Now). Its owner (sdk.Service) asks the servers — blocking
// queries, or a watch on the client stream — and hands each answer to
// Apply, and each failed request to Failed.
//
// The rules:
//
//   - Order. An answer is at a position (Pos): the tenant's epoch, then its
//     Raft index. One before the cache's view is dropped (Older), so the
//     view never goes back in time; one of a higher epoch (the tenant's
//     Raft log started over) is newer whatever its index. Before the first
//     answer is applied, one below the floor (RaiseFloor: the owner's own
//     writes, read-your-writes) is dropped too (BelowFloor).
//   - Same content. An answer with the view's modify index, of its epoch,
//     holds the same content: the view moves to its position and Synced
//     without a new content, and listeners do not hear it.
//   - Staleness. After `servers` failed requests in a row (Failed) the view
//     is marked Stale and kept: a failure never empties the view, and never
//     reaches listeners. The next applied answer clears it.
//   - Quarantine of mass removals. An answer in which more than half of the
//     instances balancers pick vanish at once (at least two; gone, not
//     drained) is applied as is, but the vanished ones stay in the view's
//     Endpoints, and are listed in Quarantined, until Config.Quarantine
//     after that answer: exactly then EndQuarantine drops them, and an
//     answer at or after then no longer keeps them. One that comes back
//     leaves the quarantine at once.
//
// Publishing: every change makes a new View, stored for lock-free reads
// (View) and never modified after; the replaced View's Changed channel is
// closed when the change is one a watcher should see (content, staleness,
// quarantine), and kept for the next one when it is not (a position that
// moved without a change). Listeners (Listen) are called with every View
// of a new content, one at a time, in the order applied.
//
// Threading: every method is safe for concurrent use. Apply, Failed,
// RaiseFloor, EndQuarantine and Listen serialize on the Cache's one lock,
// and listeners run under it: a listener must not block, and must not call
// back into the Cache. View and Filled never block.
package watchcache
