package fsm

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/tenants"
)

// TestPlace: zones first, then the fewest replicas, then the lowest ID;
// never a node twice, never more than the candidates.
func TestPlace(t *testing.T) {
	tests := []struct {
		name       string
		candidates []uint64
		have       []uint64
		n          int
		load       map[uint64]int
		zones      map[uint64]string
		want       []uint64
	}{
		{"lowest IDs when even", []uint64{1, 2, 3, 4, 5}, nil, 3, nil, nil, []uint64{1, 2, 3}},
		{"fewest replicas", []uint64{1, 2, 3, 4, 5}, nil, 3, map[uint64]int{1: 4, 2: 1, 3: 4, 4: 0, 5: 2}, nil, []uint64{4, 2, 5}},
		{"zones before load", []uint64{1, 2, 3, 4}, nil, 3, map[uint64]int{1: 0, 2: 0, 3: 9, 4: 9},
			map[uint64]string{1: "a", 2: "a", 3: "b", 4: "c"}, []uint64{1, 3, 4}},
		{"a zone the shard lacks", []uint64{1, 2, 3, 4}, []uint64{1, 3}, 1, map[uint64]int{2: 0, 4: 5},
			map[uint64]string{1: "a", 2: "a", 3: "b", 4: "c"}, []uint64{4}},
		{"never more than the nodes", []uint64{1, 2}, nil, 3, nil, nil, []uint64{1, 2}},
		{"never a holder", []uint64{1, 2, 3}, []uint64{2}, 2, nil, nil, []uint64{1, 3}},
	}
	for _, tt := range tests {
		if got := Place(tt.candidates, tt.have, tt.n, tt.load, tt.zones); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Place() = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func metaAt5(t *testing.T, nodes int, zones ...string) *Meta {
	t.Helper()
	m := NewMeta()
	metaApply(t, m, 1, OpSetMetaVersion, SetVersion{Version: 5})
	for i := 1; i <= nodes; i++ {
		zone := ""
		if len(zones) > 0 {
			zone = zones[(i-1)%len(zones)]
		}
		if o := metaApply(t, m, uint64(1+i), OpRegisterNode, RegisterNode{ID: uint64(i), RaftAddress: fmt.Sprintf("h%d:1", i), Zone: zone}); o.Code != "" {
			t.Fatalf("register %d: %+v", i, o)
		}
	}
	return m
}

func members(n int) map[uint64]string {
	out := map[uint64]string{}
	for i := 1; i <= n; i++ {
		out[uint64(i)] = fmt.Sprintf("h%d:1", i)
	}
	return out
}

// TestMetaPlacesOnR: from version 5 a tenant gets R replicas on the least
// loaded members, zones first; 20 tenants on 5 nodes spread within one.
func TestMetaPlacesOnR(t *testing.T) {
	m := metaAt5(t, 5, "a", "a", "b", "b", "c")
	idx := uint64(100)
	for i := range 20 {
		idx++
		o := metaApply(t, m, idx, OpCreateTenant, CreateTenant{Name: fmt.Sprintf("t%d", i), TokenHash: tenants.HashToken(fmt.Sprint(i)),
			Members: members(5), Replicas: 3})
		if o.Code != "" || len(o.Tenant.Replicas) != 3 {
			t.Fatalf("create t%d = %+v", i, o)
		}
		zones := map[string]bool{}
		for _, r := range o.Tenant.Replicas {
			zones[m.Zones()[r.Node]] = true
		}
		if len(zones) != 3 {
			t.Fatalf("t%d on %v: zones %v, want three", i, o.Tenant.NodesOf(), zones)
		}
	}
	lo, hi := 1<<30, 0
	for _, l := range m.Load() {
		lo, hi = min(lo, l), max(hi, l)
	}
	// Zone c has one node: it takes a replica of every tenant (20); the
	// others share the rest within one.
	if l := m.Load(); l[5] != 20 || hi-lo > 20-8 {
		t.Fatalf("loads %v", l)
	}

	// Without zones: within one.
	m = metaAt5(t, 5)
	for i := range 20 {
		metaApply(t, m, uint64(200+i), OpCreateTenant, CreateTenant{Name: fmt.Sprintf("t%d", i), TokenHash: tenants.HashToken(fmt.Sprint(i)),
			Members: members(5), Replicas: 3})
	}
	lo, hi = 1<<30, 0
	for _, l := range m.Load() {
		lo, hi = min(lo, l), max(hi, l)
	}
	if hi-lo > 1 {
		t.Fatalf("loads %v: not within one", m.Load())
	}
	// More replicas than members: one on each.
	if o := metaApply(t, m, 300, OpCreateTenant, CreateTenant{Name: "big", TokenHash: tenants.HashToken("b"), Members: members(2), Replicas: 5}); len(o.Tenant.Replicas) != 2 {
		t.Fatalf("R 5 on 2 members = %+v", o.Tenant)
	}
	if o := metaApply(t, m, 301, OpCreateTenant, CreateTenant{Name: "huge", TokenHash: tenants.HashToken("h"), Members: members(5), Replicas: 6}); o.Code != api.CodeBadRequest {
		t.Fatalf("R 6 = %+v, want refused", o)
	}
}

// TestMetaPlacementBefore5: before version 5 the placement's commands and
// fields are refused as the builds before them refused them, changing
// nothing.
func TestMetaPlacementBefore5(t *testing.T) {
	m := NewMeta()
	metaApply(t, m, 1, OpSetMetaVersion, SetVersion{Version: 4})
	metaApply(t, m, 2, OpCreateTenant, CreateTenant{Name: "acme", TokenHash: tenants.HashToken("a"), Members: members(3)})
	before, _ := m.Snapshot()
	cmds := []struct {
		op   Op
		body any
	}{
		{OpSetReplicas, SetReplicas{Replicas: 3}},
		{OpMoveStart, MoveStart{Name: "acme", Node: 4, RaftAddress: "h4:1"}},
		{OpMoveStep, MoveStep{Name: "acme", Add: 1, Step: StepCaughtUp}},
		{OpMoveEnd, MoveEnd{Name: "acme", Add: 1}},
		{OpRegisterNode, RegisterNode{ID: 4, RaftAddress: "h4:1", Zone: "a"}},
		{OpCreateTenant, CreateTenant{Name: "b", TokenHash: tenants.HashToken("b"), Members: members(3), Replicas: 3}},
		{OpRestore, Restore{Replicas: 3}},
	}
	for i, c := range cmds {
		if o := metaApply(t, m, uint64(3+i), c.op, c.body); o.Code != api.CodeBadRequest {
			t.Fatalf("%s at version 4 = %+v, want refused", c.op, o)
		}
	}
	after, _ := m.Snapshot()
	want := bytes.Replace(before, []byte(`"applied":2,`), []byte(fmt.Sprintf(`"applied":%d,`, 2+len(cmds))), 1)
	if !bytes.Equal(want, after) {
		t.Fatalf("refused commands changed the state:\n%s\n%s", before, after)
	}
}

// TestMetaMoveSteps: a move adds a non-voting replica, which only a
// promotion makes voting; it is finished (the old replica retired) only
// once promoted, undone (the new one retired) only before; steps only go
// forward; a retry of a start answers the same move.
func TestMetaMoveSteps(t *testing.T) {
	m := metaAt5(t, 4)
	o := metaApply(t, m, 10, OpCreateTenant, CreateTenant{Name: "acme", TokenHash: tenants.HashToken("a"), Members: members(3), Replicas: 3})
	var from uint64
	for rid, r := range o.Tenant.Replicas {
		if r.Node == 1 {
			from = rid
		}
	}
	start := MoveStart{Name: "acme", Node: 4, RaftAddress: "h4:1", Remove: from, Reason: "balance", NowMs: 5}
	a := metaApply(t, m, 11, OpMoveStart, start)
	if r := a.Tenant.Replicas[a.Replica]; a.Code != "" || !a.Created || a.Replica == 0 || !r.NonVoting || !r.Join || !r.Staged {
		t.Fatalf("move_start = %+v", a)
	}
	if b := metaApply(t, m, 12, OpMoveStart, start); b.Code != "" || b.Created || b.Replica != a.Replica {
		t.Fatalf("a retried move_start = %+v", b)
	}
	if b := metaApply(t, m, 13, OpMoveStart, MoveStart{Name: "acme", Remove: from}); b.Code != api.CodeConflict {
		t.Fatalf("a second move = %+v, want conflict", b)
	}
	add := a.Replica
	if o := metaApply(t, m, 14, OpMoveEnd, MoveEnd{Name: "acme", Add: add, Remove: from}); o.Code != api.CodeConflict {
		t.Fatalf("finished before promoted = %+v, want conflict", o)
	}
	metaApply(t, m, 15, OpMoveStep, MoveStep{Name: "acme", Add: add, Remove: from, Step: StepCaughtUp})
	metaApply(t, m, 16, OpMoveStep, MoveStep{Name: "acme", Add: add, Remove: from, Step: StepPromoted})
	if o := metaApply(t, m, 17, OpMoveStep, MoveStep{Name: "acme", Add: add, Remove: from, Step: StepAdding}); o.Code != "" || o.Tenant.Move.Step != StepPromoted {
		t.Fatalf("a step back = %+v", o)
	}
	if o := metaApply(t, m, 18, OpMoveEnd, MoveEnd{Name: "acme", Add: add, Remove: from, Undo: true}); o.Code != api.CodeConflict {
		t.Fatalf("undone after promoted = %+v, want conflict", o)
	}
	e := metaApply(t, m, 19, OpMoveEnd, MoveEnd{Name: "acme", Add: add, Remove: from})
	if r := e.Tenant.Replicas[add]; e.Code != "" || e.Tenant.Move != nil || e.Tenant.Retired[from] != 1 || r.NonVoting || !r.Staged {
		t.Fatalf("move_end = %+v", e.Tenant)
	}
	if _, _, on1 := e.Tenant.ReplicaOn(1); on1 || len(e.Tenant.VotingOn()) != 3 {
		t.Fatalf("after the move: %v", e.Tenant.NodesOf())
	}

	// An undone move retires the new replica.
	u := metaApply(t, m, 20, OpMoveStart, MoveStart{Name: "acme", Node: 1, RaftAddress: "h1:1", NowMs: 6})
	if o := metaApply(t, m, 21, OpMoveEnd, MoveEnd{Name: "acme", Add: u.Replica, Undo: true}); o.Code != "" || o.Tenant.Move != nil ||
		o.Tenant.Retired[u.Replica] != 1 || len(o.Tenant.Replicas) != 3 {
		t.Fatalf("undo = %+v", o.Tenant)
	}
	// A shrink: nothing to add, promoted at once.
	var any uint64
	for rid := range e.Tenant.Replicas {
		any = rid
	}
	s := metaApply(t, m, 22, OpMoveStart, MoveStart{Name: "acme", Remove: any})
	if s.Code != "" || s.Tenant.Move.Step != StepPromoted {
		t.Fatalf("shrink start = %+v", s)
	}
	if o := metaApply(t, m, 23, OpMoveEnd, MoveEnd{Name: "acme", Remove: any}); o.Code != "" || len(o.Tenant.Replicas) != 2 {
		t.Fatalf("shrink end = %+v", o)
	}
	// A node removed during a move undoes the move that added on it.
	w := metaApply(t, m, 24, OpMoveStart, MoveStart{Name: "acme", Node: 1, RaftAddress: "h1:1"})
	metaApply(t, m, 25, OpRemoveNode, RemoveNode{ID: 1})
	if tr, _ := m.Tenant("acme"); tr.Move != nil || tr.Replicas[w.Replica].Node != 0 {
		t.Fatalf("after the node's removal: %+v", tr)
	}

	// A deleted tenant's tombstone names its retired replicas too: a node
	// that kept one deletes it.
	retired, _ := m.Tenant("acme")
	metaApply(t, m, 26, OpDeleteTenant, DeleteTenant{Name: "acme"})
	tombs := m.Tombstones()
	for rid, node := range retired.Retired {
		if tombs[0].Replicas[rid].Node != node {
			t.Fatalf("tombstone %+v lacks retired replica %d on node %d", tombs[0], rid, node)
		}
	}

	snap, _ := m.Snapshot()
	again := NewMeta()
	if err := again.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if s2, _ := again.Snapshot(); !bytes.Equal(snap, s2) {
		t.Fatal("meta snapshot round trip differs")
	}
}
