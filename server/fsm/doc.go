// Package fsm holds Rafting's deterministic state machines: Meta (shard 1:
// nodes, tenants, placement, token hashes, tombstones and ID counters) and
// Tenant (one per tenant shard: services, instances, sessions, master
// records, modify indexes and the configuration store's keys: kv.go), with
// their versioned command codec.
//
// The rules, from DESIGN.md:
//
//   - Apply is total and deterministic. It reads no clock and no random
//     source, iterates maps in sorted order, and turns every undecodable or
//     invalid command into a rejected Outcome that changed nothing. Time
//     arrives only in leader-only commands (Barrier, Renew, Expire, Tick,
//     Release); sm_now = max(sm_now, stamp).
//   - Leader-only commands carry the term they were proposed in and apply
//     only while it equals the term of the last applied Barrier (the term
//     guard), so a deposed leader's late Expire never applies after the new
//     leader has spoken.
//   - Fencing tokens are epoch<<40 | index of the granting entry.
//   - Renew, Tick and other bookkeeping entries move no service's modify
//     index, so they wake no watcher.
//
// Threading: Apply is called by one goroutine at a time; every read method
// takes a read lock and may run concurrently with Apply. Notify must be
// called after a batch's Apply calls, outside the caller's locks. Nothing
// here imports Dragonboat: server/cluster adapts these types to it.
package fsm
