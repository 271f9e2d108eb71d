package fsm

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
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
