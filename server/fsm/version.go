package fsm

import "github.com/rafting/rafting/api"

// Version is the semantics this build's state machines apply: what a
// command means, not how it is encoded. Replicas of one shard must apply
// every entry alike, so a build never changes what an entry does on its
// own: a state's version is itself a log entry (SetVersion), proposed only
// once every node of the cluster runs a build that knows it, and each
// change of meaning is made under "if the state's version is at least N".
// An entry before the SetVersion applies as the older builds apply it, on
// every replica, old or new (etcd gates its features on a cluster version
// the same way). A tenant created at version N starts at N.
//
//	1: the builds before versions (a state without one is at 1).
//	2: sm_now moves by a term's own stamps only; holder writes are
//	   numbered per session (X-Rafting-Sequence); a master change moves
//	   the service's modify index; a restore skips ?epoch_gap= epochs, and
//	   no epoch past MaxEpoch is issued; a restored registration keeps its
//	   time; "." and ".." are not names, and addresses, zones and meta hold
//	   no control characters; a meta entry costs MetaEntryCost bytes of
//	   max_meta_bytes beside its key and value, and there are at most
//	   MaxMetaEntries.
//	3: the configuration store: kv_put, kv_delete and kv_txn apply (a
//	   state before 3 refuses them as the builds before it did, changing
//	   nothing), and a session's end deletes the keys it owns.
//	4: a restore marks the tenants it creates as restoring (their
//	   clients are answered 503 restoring) until restore_done, which
//	   records the tenant's index the restore left; a restore marked so
//	   and restore_done before 4 are refused as the builds before it did.
//	   A rotation records its previous_valid_ms, and a retry of it (the
//	   same token) with another is refused (409); revoke_previous ends a
//	   tenant's previous token.
//	5: placement (placement.go): a tenant shard is created on R of the
//	   nodes (create_tenant's and restore's replicas), a node registers
//	   its zone, set_replicas records R, and move_start, move_step and
//	   move_end record a replica's move step by step; a returning node
//	   deletes the data of its retired replicas. Before 5 a tenant is
//	   created on every member, and these commands and fields are refused
//	   as the builds before them refused them.
const Version = 5

// SetVersion raises a state machine's version. The cluster proposes it
// once every node reports a build of at least that version. A replica
// whose build does not know the version refuses the entry and reports
// itself too old (TooOld): its node must stop serving that state.
type SetVersion struct {
	Version uint64 `json:"version"`
	// AtMs is the proposer's clock: from version 2 a tenant anchors the
	// times it shows there (clampStamp) until an ordinary write brings one.
	AtMs int64 `json:"at_ms,omitempty"`
}

// setVersion applies a SetVersion to a state whose version is *have.
func setVersion(have *uint64, c SetVersion, tooOld *bool) *api.Error {
	switch {
	case c.Version == 0:
		return api.Errorf(api.CodeBadRequest, "set_version: version 0")
	case c.Version > Version:
		*tooOld = true
		return api.Errorf(api.CodeConflict, "set_version: the cluster runs version %d; this build knows up to %d", c.Version, Version)
	}
	*have = max(*have, c.Version)
	return nil
}

// versionOf reads a stored version: a state without one is at 1.
func versionOf(v uint64) uint64 { return max(v, 1) }

// unknownField is how a build before a field existed refused a command
// that carried it (strict decoding): a state at an older version refuses
// it alike, so that every replica does the same with the entry.
func unknownField(op Op, name string) *api.Error {
	return api.Errorf(api.CodeBadRequest, "%s: json: unknown field %q", op, name)
}

// Downgrade returns cmd as a cluster whose meta state is at version v can
// apply it: what some node's build may not know yet is left out. A
// holder's sequence number is dropped before version 2 — its protection
// starts once every node runs a build that knows it — rather than the
// write refused. (The meta state's version, not the tenant replica's: a
// replica behind its own set_version would drop the number of a write its
// peers apply at version 2. A tenant state still at 1 refuses a numbered
// write as not applied, and the writer sends it again.)
func Downgrade(cmd any, v uint64) any {
	if v >= 2 {
		return cmd
	}
	switch c := cmd.(type) {
	case Register:
		c.Seq = 0
		return c
	case Deregister:
		c.Seq = 0
		return c
	case Resign:
		c.Seq = 0
		return c
	}
	return cmd
}
