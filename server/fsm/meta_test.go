package fsm

import (
	"bytes"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/tenants"
)

func metaApply(t testing.TB, m *Meta, index uint64, op Op, body any) MetaOutcome {
	t.Helper()
	o := m.Apply(index, Encode(op, body))
	if o.Index != index {
		t.Fatalf("%s: index %d, want %d", op, o.Index, index)
	}
	return o
}

func TestMetaTenantLifecycle(t *testing.T) {
	m := NewMeta()
	members := map[uint64]string{1: "h1:1", 2: "h2:1", 3: "h3:1"}
	h1 := tenants.HashToken("rft_acme_one")
	o := metaApply(t, m, 1, OpCreateTenant, CreateTenant{Name: "acme", Quotas: api.Quotas{MaxServices: 7}, TokenHash: h1, Members: members, NowMs: 1000})
	if o.Code != "" || !o.Created || o.Tenant.ShardID != FirstTenantShardID || o.Tenant.Epoch != 1 {
		t.Fatalf("create = %+v", o)
	}
	if got := len(o.Tenant.Replicas); got != 3 {
		t.Fatalf("replicas = %d, want 3", got)
	}
	first := o.Tenant
	// A retry with the same token hash answers the same tenant; another hash conflicts.
	if o := metaApply(t, m, 2, OpCreateTenant, CreateTenant{Name: "acme", TokenHash: h1, Members: members}); o.Code != "" || o.Created || o.Tenant.ShardID != first.ShardID {
		t.Fatalf("retry = %+v", o)
	}
	if o := metaApply(t, m, 3, OpCreateTenant, CreateTenant{Name: "acme", TokenHash: tenants.HashToken("x"), Members: members}); o.Code != api.CodeConflict {
		t.Fatalf("second create = %+v, want conflict", o)
	}
	if o := metaApply(t, m, 4, OpCreateTenant, CreateTenant{Name: "Bad_Name", TokenHash: h1, Members: members}); o.Code != api.CodeBadRequest {
		t.Fatalf("bad name = %+v, want bad_request", o)
	}
	// Delete tombstones the shard; a re-create gets fresh IDs and the next epoch.
	metaApply(t, m, 5, OpDeleteTenant, DeleteTenant{Name: "acme", NowMs: 2000})
	if !m.Tombstoned(first.ShardID) {
		t.Fatal("deleted shard not tombstoned")
	}
	if o := metaApply(t, m, 6, OpDeleteTenant, DeleteTenant{Name: "acme"}); o.Code != "" {
		t.Fatalf("delete of a missing tenant = %+v, want success", o)
	}
	o = metaApply(t, m, 7, OpCreateTenant, CreateTenant{Name: "acme", TokenHash: h1, Members: members, NowMs: 3000})
	if o.Tenant.ShardID <= first.ShardID || o.Tenant.Epoch != 2 {
		t.Fatalf("re-create = shard %d epoch %d, want a new shard and epoch 2", o.Tenant.ShardID, o.Tenant.Epoch)
	}
	for id := range o.Tenant.Replicas {
		if _, reused := first.Replicas[id]; reused {
			t.Fatalf("replica ID %d reused", id)
		}
	}
	// Rotation: the previous token stays valid for its window; a retry is a no-op.
	h2 := tenants.HashToken("rft_acme_two")
	metaApply(t, m, 8, OpRotateToken, RotateToken{Name: "acme", TokenHash: h2, PreviousValidMs: 60_000, NowMs: 10_000})
	metaApply(t, m, 9, OpRotateToken, RotateToken{Name: "acme", TokenHash: h2, PreviousValidMs: 60_000, NowMs: 20_000})
	c, _ := m.Credentials("acme")
	if !c.Match(h2, time.UnixMilli(10_001)) || !c.Match(h1, time.UnixMilli(69_999)) || c.Match(h1, time.UnixMilli(70_000)) {
		t.Fatalf("credentials after rotation: %+v", c)
	}
	// Quotas: a change bumps the version once.
	metaApply(t, m, 10, OpUpdateQuotas, UpdateQuotas{Name: "acme", Quotas: api.Quotas{MaxServices: 9}})
	metaApply(t, m, 11, OpUpdateQuotas, UpdateQuotas{Name: "acme", Quotas: api.Quotas{MaxServices: 9}})
	tr, _ := m.Tenant("acme")
	if tr.QuotasVersion != 1 || tr.Quotas.MaxServices != 9 {
		t.Fatalf("quotas = %+v v%d", tr.Quotas, tr.QuotasVersion)
	}
	// A node that joins later gets a joiner replica, once.
	a := metaApply(t, m, 12, OpAddReplica, AddReplica{Name: "acme", Node: 4, RaftAddress: "h4:1"})
	b := metaApply(t, m, 13, OpAddReplica, AddReplica{Name: "acme", Node: 4, RaftAddress: "h4:1"})
	if !a.Created || b.Created || a.Replica != b.Replica || !b.Tenant.Replicas[a.Replica].Join {
		t.Fatalf("add replica: %+v then %+v", a, b)
	}
	if _, ok := b.Tenant.Initial()[a.Replica]; ok {
		t.Fatal("a joiner is part of the initial map")
	}
	// Snapshot round trip.
	snap, _ := m.Snapshot()
	again := NewMeta()
	if err := again.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if s2, _ := again.Snapshot(); !bytes.Equal(snap, s2) {
		t.Fatalf("meta snapshot round trip differs")
	}
}

func FuzzMetaApply(f *testing.F) {
	f.Add(byte(OpCreateTenant), []byte(`{"name":"acme","quotas":{},"token_hash":"00","members":{"1":"a"}}`))
	f.Add(byte(OpRotateToken), []byte(`{"name":"acme","token_hash":"zz","previous_valid_ms":-1}`))
	f.Add(byte(OpAddReplica), []byte(`{"name":"acme","node":0}`))
	f.Add(byte(OpRegisterNode), []byte(`{"id":1,"raft_address":"x","api_address":"y"}`))
	f.Add(byte(OpRemoveNode), []byte(`{"id":2,"now_ms":5}`))
	f.Add(byte(OpMoveStart), []byte(`{"name":"acme","node":2,"raft_address":"b","remove":1000}`))
	f.Add(byte(OpMoveStep), []byte(`{"name":"acme","add":1001,"step":"promoted"}`))
	f.Add(byte(OpMoveEnd), []byte(`{"name":"acme","add":1001,"undo":true}`))
	f.Add(byte(OpSetReplicas), []byte(`{"replicas":9}`))
	f.Add(byte(OpRestore), []byte(`{"next_shard_id":90,"epochs":{"acme":4},"tenants":[{"name":"acme","credentials":{"current":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}}],"members":{"1":"a"}}`))
	f.Fuzz(func(t *testing.T, op byte, body []byte) {
		m := NewMeta()
		m.Apply(1, Encode(OpSetMetaVersion, SetVersion{Version: Version}))
		m.Apply(2, Encode(OpCreateTenant, CreateTenant{Name: "acme", TokenHash: tenants.HashToken("t"), Members: map[uint64]string{1: "a"}}))
		before, _ := m.Snapshot()
		o := m.Apply(3, append([]byte{CodecVersion, op}, body...))
		if o.Code == api.CodeInternal {
			t.Fatalf("op %d %q: internal error %s", op, body, o.Message)
		}
		after, _ := m.Snapshot()
		// A rejected command moves the applied index and nothing else.
		if want := bytes.Replace(before, []byte(`"applied":2,`), []byte(`"applied":3,`), 1); o.Code != "" && !bytes.Equal(want, after) {
			t.Fatalf("op %d %q rejected (%s) but changed the state", op, body, o.Code)
		}
	})
}

// TestMetaRestore: a restore into a cluster without tenants raises the
// counters and epochs first, so every restored tenant's epoch is above the
// backup's; it keeps the credentials, previous token included. A retry is
// a no-op; a restore into a cluster with other tenants is a conflict.
func TestMetaRestore(t *testing.T) {
	m := NewMeta()
	members := map[uint64]string{1: "h1:1", 2: "h2:1", 3: "h3:1"}
	prev := tenants.HashToken("rft_acme_old")
	until := time.UnixMilli(5000).UTC()
	creds := tenants.Credentials{Current: tenants.HashToken("rft_acme_new"), Previous: &prev, PreviousValidUntil: until}
	cmd := Restore{NextShardID: 190, NextReplicaID: 1500, Epochs: map[string]uint64{"acme": 4, "gone": 7},
		Tenants: []RestoreTenant{{Name: "acme", Quotas: api.Quotas{MaxServices: 3}, Credentials: creds, CreatedMs: 42}},
		Members: members, NowMs: 1000}
	if o := metaApply(t, m, 1, OpRestore, Restore{Tenants: []RestoreTenant{{Name: "acme"}}, Members: members}); o.Code != api.CodeBadRequest {
		t.Fatalf("restore without a token hash = %+v, want bad_request", o)
	}
	if o := metaApply(t, m, 2, OpRestore, cmd); o.Code != "" || !o.Created {
		t.Fatalf("restore = %+v", o)
	}
	rec, ok := m.Tenant("acme")
	if !ok || rec.Epoch != 5 || rec.ShardID != 190 || rec.Quotas.MaxServices != 3 || rec.CreatedMs != 42 ||
		!rec.Credentials.Match(prev, time.UnixMilli(4999)) || !rec.Credentials.Match(creds.Current, time.UnixMilli(9999)) {
		t.Fatalf("restored tenant = %+v", rec)
	}
	for id := range rec.Replicas {
		if id < 1500 {
			t.Fatalf("replica ID %d issued below the backup's next (1500)", id)
		}
	}
	if o := metaApply(t, m, 3, OpCreateTenant, CreateTenant{Name: "gone", TokenHash: tenants.HashToken("g"), Members: members}); o.Tenant.Epoch != 8 || o.Tenant.ShardID != 191 {
		t.Fatalf("a tenant created after the restore = %+v, want epoch 8 on shard 191", o.Tenant)
	}
	before, _ := m.Snapshot()
	if o := metaApply(t, m, 4, OpRestore, cmd); o.Code != "" || o.Created {
		t.Fatalf("restore again = %+v, want a no-op", o)
	}
	after, _ := m.Snapshot()
	if want := bytes.Replace(before, []byte(`"applied":3,`), []byte(`"applied":4,`), 1); !bytes.Equal(want, after) {
		t.Fatal("a retried restore changed the state")
	}
	other := cmd
	other.Tenants = []RestoreTenant{{Name: "delta", Credentials: creds}}
	if o := metaApply(t, m, 5, OpRestore, other); o.Code != api.CodeConflict {
		t.Fatalf("restore into a cluster with tenants = %+v, want conflict", o)
	}
}

// TestMetaRemoveNode: a removed node leaves the node records and every
// tenant's replica map, and can neither register again nor get a replica;
// removing it again changes nothing.
func TestMetaRemoveNode(t *testing.T) {
	m := NewMeta()
	members := map[uint64]string{1: "h1:1", 2: "h2:1", 3: "h3:1"}
	for id, addr := range members {
		metaApply(t, m, id, OpRegisterNode, RegisterNode{ID: id, RaftAddress: addr})
	}
	metaApply(t, m, 4, OpCreateTenant, CreateTenant{Name: "acme", TokenHash: tenants.HashToken("a"), Members: members})
	if o := metaApply(t, m, 5, OpRemoveNode, RemoveNode{ID: 3, NowMs: 77}); o.Code != "" {
		t.Fatalf("remove = %+v", o)
	}
	rec, _ := m.Tenant("acme")
	if _, _, on := rec.ReplicaOn(3); on || len(rec.Replicas) != 2 {
		t.Fatalf("acme's replicas after removing node 3: %+v", rec.Replicas)
	}
	if _, ok := m.Node(3); ok || !m.Removed(3) || m.Removed(2) {
		t.Fatal("node 3 still recorded, or not marked removed")
	}
	if o := metaApply(t, m, 6, OpRegisterNode, RegisterNode{ID: 3, RaftAddress: "h3:1"}); o.Code != api.CodeConflict {
		t.Fatalf("a removed node registering again = %+v, want conflict", o)
	}
	if o := metaApply(t, m, 7, OpAddReplica, AddReplica{Name: "acme", Node: 3, RaftAddress: "h3:1"}); o.Code != api.CodeConflict {
		t.Fatalf("a replica for a removed node = %+v, want conflict", o)
	}
	before, _ := m.Snapshot()
	metaApply(t, m, 8, OpRemoveNode, RemoveNode{ID: 3, NowMs: 99})
	after, _ := m.Snapshot()
	if want := bytes.Replace(before, []byte(`"applied":7,`), []byte(`"applied":8,`), 1); !bytes.Equal(want, after) {
		t.Fatalf("removing again changed the state:\n%s\n%s", before, after)
	}
	snap, _ := m.Snapshot()
	r := NewMeta()
	if err := r.Restore(bytes.NewReader(snap)); err != nil || !r.Removed(3) {
		t.Fatalf("the removal did not survive a snapshot: %v", err)
	}
}

// TestMetaRestoreEpochs: a restore of a stale backup into a new cluster
// gives the tenant an epoch above every one its name could have had in the
// old cluster after the backup (up to EpochGap re-creations), so fencing
// tokens neither repeat nor go backwards; and the epoch bound is enforced
// with an error, never wrapped.
func TestMetaRestoreEpochs(t *testing.T) {
	members := map[uint64]string{1: "h1:1", 2: "h2:1", 3: "h3:1"}
	hash := tenants.HashToken("rft_acme_one")
	old := NewMeta()
	index := uint64(0)
	next := func() uint64 { index++; return index }
	metaApply(t, old, next(), OpSetMetaVersion, SetVersion{Version: Version})
	if o := metaApply(t, old, next(), OpCreateTenant, CreateTenant{Name: "acme", TokenHash: hash, Members: members}); o.Tenant.Epoch != 1 {
		t.Fatalf("create = %+v", o)
	}
	backup := old.Backup()
	highest := uint64(0)
	for range 16 { // the old cluster goes on: acme deleted and created again
		metaApply(t, old, next(), OpDeleteTenant, DeleteTenant{Name: "acme"})
		o := metaApply(t, old, next(), OpCreateTenant, CreateTenant{Name: "acme", TokenHash: hash, Members: members})
		highest = o.Tenant.Epoch
	}
	restore := Restore{NextShardID: backup.NextShardID, NextReplicaID: backup.NextReplica, Epochs: backup.Epochs,
		EpochGap: 16, Members: members,
		Tenants: []RestoreTenant{{Name: "acme", Credentials: tenants.Credentials{Current: hash}}}}
	fresh := NewMeta()
	if o := metaApply(t, fresh, 1, OpRestore, restore); o.Code != api.CodeBadRequest {
		t.Fatalf("restore with an epoch gap at version 1 = %+v, want refused as version 1 refused it", o)
	}
	metaApply(t, fresh, 2, OpSetMetaVersion, SetVersion{Version: Version})
	if o := metaApply(t, fresh, 3, OpRestore, restore); o.Code != "" {
		t.Fatalf("restore = %+v", o)
	}
	if rec, _ := fresh.Tenant("acme"); rec.Epoch <= highest {
		t.Fatalf("restored epoch %d, want above %d, the old cluster's after the backup", rec.Epoch, highest)
	}

	// The bound: a name's last incarnation is MaxEpoch.
	full := NewMeta()
	metaApply(t, full, 1, OpSetMetaVersion, SetVersion{Version: Version})
	restore.Epochs = map[string]uint64{"acme": MaxEpoch - 3}
	restore.EpochGap = 3
	if o := metaApply(t, full, 2, OpRestore, restore); o.Code != api.CodeBadRequest {
		t.Fatalf("restore past the epoch bound = %+v, want bad_request", o)
	}
	if _, ok := full.Tenant("acme"); ok {
		t.Fatal("a refused restore created the tenant")
	}
	restore.EpochGap = 2
	if o := metaApply(t, full, 3, OpRestore, restore); o.Code != "" {
		t.Fatalf("restore to the last epoch = %+v", o)
	}
	if rec, _ := full.Tenant("acme"); rec.Epoch != MaxEpoch || rec.Epoch<<40|(1<<40-1) >= 1<<53 {
		t.Fatalf("restored epoch %d, want %d, the last below 2^53 in tokens", rec.Epoch, MaxEpoch)
	}
	metaApply(t, full, 4, OpDeleteTenant, DeleteTenant{Name: "acme"})
	if o := metaApply(t, full, 5, OpCreateTenant, CreateTenant{Name: "acme", TokenHash: hash, Members: members}); o.Code != api.CodeConflict {
		t.Fatalf("a creation past the last epoch = %+v, want conflict", o)
	}
}

// TestMetaVersion4: a state before version 4 refuses what version 4 added
// (a marked restore, restore_done, revoke_previous) as the builds before
// it did, changing nothing; at 4 a marked restore holds its tenants
// restoring until restore_done, a retried rotation with another
// previous_valid_ms is refused, and revoke_previous ends the previous
// token only.
func TestMetaVersion4(t *testing.T) {
	members := map[uint64]string{1: "h1:1"}
	hash := tenants.HashToken("rft_acme_a")
	marked := Restore{Tenants: []RestoreTenant{{Name: "acme", Credentials: tenants.Credentials{Current: hash}}},
		Members: members, NowMs: 1000, Mark: true, BackupIndex: 77}
	old := NewMeta()
	metaApply(t, old, 1, OpSetMetaVersion, SetVersion{Version: 3})
	before, _ := old.Snapshot()
	for i, c := range []struct {
		op   Op
		body any
	}{{OpRestore, marked}, {OpRestoreDone, RestoreDone{Name: "acme", Index: 9}}, {OpRevokePrevious, RevokePrevious{Name: "acme"}}} {
		if o := metaApply(t, old, uint64(2+i), c.op, c.body); o.Code != api.CodeBadRequest {
			t.Fatalf("%s at version 3 = %+v, want refused", c.op, o)
		}
	}
	after, _ := old.Snapshot()
	if want := bytes.Replace(before, []byte(`"applied":1,`), []byte(`"applied":4,`), 1); !bytes.Equal(want, after) {
		t.Fatalf("refused commands changed the state:\n%s\n%s", before, after)
	}

	m := NewMeta()
	metaApply(t, m, 1, OpSetMetaVersion, SetVersion{Version: 4})
	if m.Restored() {
		t.Fatal("Restored before any restore")
	}
	metaApply(t, m, 2, OpRestore, marked)
	if mark, ok := m.RestoreMark("acme"); !ok || !mark.Pending || mark.BackupIndex != 77 || !m.Restoring() || m.Restored() {
		t.Fatalf("after a marked restore: %+v %v, restoring %v", mark, ok, m.Restoring())
	}
	metaApply(t, m, 3, OpRestoreDone, RestoreDone{Name: "acme", Index: 9})
	if mark, _ := m.RestoreMark("acme"); mark.Pending || mark.Index != 9 || m.Restoring() || !m.Restored() {
		t.Fatalf("after restore_done: %+v, restoring %v", mark, m.Restoring())
	}
	next := tenants.HashToken("rft_acme_b")
	metaApply(t, m, 4, OpRotateToken, RotateToken{Name: "acme", TokenHash: next, PreviousValidMs: 60000, NowMs: 2000})
	if o := metaApply(t, m, 5, OpRotateToken, RotateToken{Name: "acme", TokenHash: next, PreviousValidMs: 0, NowMs: 2500}); o.Code != api.CodeConflict {
		t.Fatalf("a retried rotation with another previous_valid_ms = %+v, want conflict", o)
	}
	if o := metaApply(t, m, 6, OpRotateToken, RotateToken{Name: "acme", TokenHash: next, PreviousValidMs: 60000, NowMs: 2600}); o.Code != "" {
		t.Fatalf("the same rotation again = %+v, want a no-op", o)
	}
	if c, _ := m.Credentials("acme"); !c.Match(hash, time.UnixMilli(3000)) {
		t.Fatal("the previous token does not work after the rotation")
	}
	metaApply(t, m, 7, OpRevokePrevious, RevokePrevious{Name: "acme"})
	if c, _ := m.Credentials("acme"); c.Match(hash, time.UnixMilli(3000)) || !c.Match(next, time.UnixMilli(3000)) {
		t.Fatalf("after revoke_previous: %+v", c)
	}
	if o := metaApply(t, m, 8, OpRevokePrevious, RevokePrevious{Name: "nosuch"}); o.Code != api.CodeNotFound {
		t.Fatalf("revoke_previous of a missing tenant = %+v", o)
	}
}

// TestMetaRestoreRefusalIsDeterministic: a restore with several names past
// the epoch bound is refused naming the first in order, on every replica
// and every try (it named a random one: the map's order).
func TestMetaRestoreRefusalIsDeterministic(t *testing.T) {
	restore := Restore{EpochGap: 2, Members: map[uint64]string{1: "h1:1"},
		Epochs: map[string]uint64{"e": MaxEpoch, "d": MaxEpoch, "c": MaxEpoch, "b": MaxEpoch, "f": MaxEpoch, "g": MaxEpoch}}
	const want = "restore: tenant name b: epoch 8191 + epoch gap 2 leaves no incarnation below 8191; restore with a smaller gap"
	for i := range 50 {
		m := NewMeta()
		metaApply(t, m, 1, OpSetMetaVersion, SetVersion{Version: Version})
		if o := metaApply(t, m, 2, OpRestore, restore); o.Code != api.CodeBadRequest || o.Message != want {
			t.Fatalf("try %d: restore = %s %q, want bad_request %q", i, o.Code, o.Message, want)
		}
	}
}
