package fsm

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/tenants"
)

// TestEveryInstanceFieldSurvives: the fields of an instance are defined
// once on the wire (api.RegisterRequest in, api.Instance out); the state
// machine's own copy (instance) is checked against them by reflection. A
// registration with every field set shows every api.Instance field, keeps
// it through a snapshot and its restore, and Dump (the script tests'
// view of the state) shows every field of the stored instance. A field
// added to the wire types or to instance and forgotten on one of these
// paths fails here.
func TestEveryInstanceFieldSurvives(t *testing.T) {
	sm := NewTenant(TenantInfo{Name: "acme", Epoch: 1, Version: Version})
	apply := func(index uint64, op Op, c any) {
		t.Helper()
		if o := sm.Apply(index, Encode(op, c), &Changes{}); o.Code != "" {
			t.Fatalf("%v: %s", op, o.Message)
		}
	}
	now := time.Now().UnixMilli()
	apply(1, OpOpenSession, OpenSession{ID: "session-0123456789ab", TTLMs: 10_000, LeaseMs: 1000, DropGraceMs: 1000, AtMs: now})
	w := 7
	req := api.RegisterRequest{Address: "10.0.0.1:80", Mode: api.ModeMasterStandby, State: api.StateReady, Weight: &w,
		Priority: 3, Zone: "z1", Meta: map[string]string{"k": "v"}, Session: "session-0123456789ab",
		ColdStart: &api.ColdStart{MinReady: 1, SettleMs: 5}}
	rv := reflect.ValueOf(req)
	for i := range rv.NumField() {
		if rv.Field(i).IsZero() {
			t.Fatalf("api.RegisterRequest.%s is not set by this test: set it, and check it lands", rv.Type().Field(i).Name)
		}
	}
	apply(2, OpRegister, Register{Service: "svc", ID: "i1", Instance: req, Caller: "session-0123456789ab", AtMs: now})

	svc := sm.Service("svc")
	if len(svc.Instances) != 1 {
		t.Fatalf("%d instances", len(svc.Instances))
	}
	iv := reflect.ValueOf(svc.Instances[0])
	for i := range iv.NumField() {
		if iv.Field(i).IsZero() {
			t.Errorf("api.Instance.%s is empty after a registration with every field set (tenant.go: instance, its view)", iv.Type().Field(i).Name)
		}
	}

	var snap bytes.Buffer
	if err := sm.SaveSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	back := NewTenant(TenantInfo{Name: "acme", Epoch: 1, Version: Version})
	if err := back.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if got := back.Service("svc"); !reflect.DeepEqual(got.Instances, svc.Instances) {
		t.Errorf("after a snapshot's restore:\n got %+v\nwant %+v", got.Instances, svc.Instances)
	}

	// Dump shows each field of the stored instance: changing any one
	// changes it.
	stored := sm.st.Services["svc"].Instances["i1"]
	before := sm.Dump()
	sv := reflect.ValueOf(stored).Elem()
	for i := range sv.NumField() {
		f := sv.Field(i)
		old := reflect.New(f.Type()).Elem()
		old.Set(f)
		change(t, f, sv.Type().Field(i).Name)
		if sm.Dump() == before {
			t.Errorf("Dump (dump.go) does not show instance.%s", sv.Type().Field(i).Name)
		}
		f.Set(old)
	}
}

// TestSameInstanceCountsEveryField: instances that differ in any field a
// registration sets are not the same (sameInstance decides whether a
// registration changed anything: a field it missed would be a write that
// is not seen). RegisteredMs and ReadyIndex are the state machine's own,
// kept across a registration that changes nothing else.
func TestSameInstanceCountsEveryField(t *testing.T) {
	a := instance{Address: "a:1", Mode: api.ModeFarm, State: api.StateReady, Weight: 1, Priority: 1, Zone: "z",
		Meta: map[string]string{"k": "v"}, Session: "s", RegisteredMs: 1, ReadyIndex: 1}
	av := reflect.ValueOf(a)
	for i := range av.NumField() {
		if av.Field(i).IsZero() {
			t.Fatalf("instance.%s is not set by this test: set it", av.Type().Field(i).Name)
		}
	}
	for i := range av.NumField() {
		name := av.Type().Field(i).Name
		b := a
		b.Meta = map[string]string{"k": "v"}
		f := reflect.ValueOf(&b).Elem().Field(i)
		change(t, f, name)
		same := sameInstance(&a, &b)
		switch name {
		case "RegisteredMs", "ReadyIndex":
			if !same {
				t.Errorf("sameInstance counts instance.%s, which a registration does not set", name)
			}
		default:
			if same {
				t.Errorf("sameInstance (tenant.go) does not count instance.%s", name)
			}
		}
	}
}

// change gives field name of an instance (f) another value.
func change(t *testing.T, f reflect.Value, name string) {
	t.Helper()
	switch f.Kind() {
	case reflect.String:
		f.SetString(f.String() + "x")
	case reflect.Int, reflect.Int64:
		f.SetInt(f.Int() + 1)
	case reflect.Uint64:
		f.SetUint(f.Uint() + 1)
	case reflect.Map:
		f.Set(reflect.ValueOf(map[string]string{"other": "x"}))
	default:
		t.Fatalf("instance.%s: a field of kind %s that this test cannot change: teach it", name, f.Kind())
	}
}

// TestMetaDumpShowsEveryField: Meta.Dump (the meta scripts' view of the
// state) shows every field of the meta state, down to each replica, move
// and token: changing any one changes it. A field added to the state and
// forgotten in Dump fails here.
func TestMetaDumpShowsEveryField(t *testing.T) {
	prev := tenants.HashToken("p")
	m := NewMeta()
	m.st = metaState{Applied: 9, Version: 5, NextShardID: 101, NextReplicaID: 1002, Replicas: 3,
		Epochs: map[string]uint64{"acme": 1},
		Nodes:  map[uint64]*NodeRecord{1: {ID: 1, RaftAddress: "h1:1", APIAddress: "a1:1", Incarnation: 1, Zone: "z"}},
		Tenants: map[string]*TenantRecord{"acme": {Name: "acme", ShardID: 100, Epoch: 1,
			Replicas:      map[uint64]Replica{1000: {Node: 1, RaftAddress: "h1:1", Join: true, NonVoting: true, Staged: true}},
			InitialQuotas: api.Quotas{MaxServices: 1}, Quotas: api.Quotas{MaxServices: 2}, QuotasVersion: 1,
			Credentials: tenants.Credentials{Current: tenants.HashToken("c"), Previous: &prev, PreviousValidUntil: time.UnixMilli(5)},
			CreatedMs:   1, Version: 5, Restore: &RestoreMark{Pending: true, Index: 1, BackupIndex: 1},
			Rotation: &Rotation{PreviousValidMs: 1, AtMs: 1}, Move: &Move{Add: 1000, Remove: 999, Step: StepAdding, Reason: "r", StartedMs: 1},
			Retired: map[uint64]uint64{999: 1}}},
		Tombstones: map[uint64]*Tombstone{99: {Tenant: "old", ShardID: 99, Replicas: map[uint64]Replica{998: {Node: 1}}, DeletedMs: 1}},
		Removed:    map[uint64]int64{2: 1},
	}
	before := m.Dump()
	walkFields(t, reflect.ValueOf(&m.st).Elem(), "metaState", func(path string) {
		if m.Dump() == before {
			t.Errorf("Meta.Dump (dump.go) does not show %s", path)
		}
	})
	if m.Dump() != before {
		t.Fatal("walkFields did not restore the state")
	}
}

// walkFields gives each field under v, one at a time, another value, calls
// changed, and restores it: structs, pointers and map entries are walked
// into, and the keys of maps of values (a pointer's value names itself)
// are changed too. A nil pointer or an empty map is a fixture to fill.
func walkFields(t *testing.T, v reflect.Value, path string, changed func(path string)) {
	t.Helper()
	if v.Type() == reflect.TypeFor[time.Time]() {
		old := v.Interface().(time.Time)
		v.Set(reflect.ValueOf(old.Add(time.Millisecond)))
		changed(path)
		v.Set(reflect.ValueOf(old))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			walkFields(t, v.Field(i), path+"."+v.Type().Field(i).Name, changed)
		}
	case reflect.Pointer:
		if v.IsNil() {
			t.Fatalf("%s is nil: set it", path)
		}
		walkFields(t, v.Elem(), path, changed)
	case reflect.Map:
		if v.Len() == 0 {
			t.Fatalf("%s is empty: fill it", path)
		}
		for _, k := range v.MapKeys() {
			orig := v.MapIndex(k)
			e := reflect.New(orig.Type()).Elem()
			e.Set(orig)
			p := fmt.Sprintf("%s[%v]", path, k)
			walkFields(t, e, p, func(p string) { v.SetMapIndex(k, e); changed(p) })
			v.SetMapIndex(k, orig)
			if orig.Kind() != reflect.Pointer {
				k2 := reflect.New(k.Type()).Elem()
				k2.Set(k)
				changeLeaf(t, k2, p+" (key)")
				v.SetMapIndex(k, reflect.Value{})
				v.SetMapIndex(k2, orig)
				changed(p + " (key)")
				v.SetMapIndex(k2, reflect.Value{})
				v.SetMapIndex(k, orig)
			}
		}
	default:
		old := reflect.New(v.Type()).Elem()
		old.Set(v)
		changeLeaf(t, v, path)
		changed(path)
		v.Set(old)
	}
}

// changeLeaf gives a field that holds one value (f, at path) another.
func changeLeaf(t *testing.T, f reflect.Value, path string) {
	t.Helper()
	switch f.Kind() {
	case reflect.String:
		f.SetString(f.String() + "x")
	case reflect.Int, reflect.Int64:
		f.SetInt(f.Int() + 1)
	case reflect.Uint64:
		f.SetUint(f.Uint() + 1)
	case reflect.Bool:
		f.SetBool(!f.Bool())
	case reflect.Array:
		f.Index(0).SetUint(f.Index(0).Uint() + 1)
	default:
		t.Fatalf("%s: a field of kind %s that this test cannot change: teach it", path, f.Kind())
	}
}
