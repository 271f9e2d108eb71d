package httpapi

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

// TestBackupKeepsEveryInstanceField: a backup's instance (api.Instance,
// every field set) is restored by a registration (registration) that
// carries every field of api.RegisterRequest but the session, which a
// backup does not hold; the registration time goes beside it
// (fsm.Register.RegisteredMs). A field added to either wire type and
// forgotten here fails this test.
func TestBackupKeepsEveryInstanceField(t *testing.T) {
	var in api.Instance
	v := reflect.ValueOf(&in).Elem()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch {
		case f.Type() == reflect.TypeOf(time.Time{}):
			f.Set(reflect.ValueOf(time.Unix(1_800_000_000, 0)))
		case f.Kind() == reflect.String:
			f.SetString(name + "-x")
		case f.Kind() == reflect.Int:
			f.SetInt(int64(i + 1))
		case f.Kind() == reflect.Map:
			f.Set(reflect.ValueOf(map[string]string{"k": "v"}))
		default:
			t.Fatalf("api.Instance.%s: a field of kind %s that this test cannot set: teach it", name, f.Kind())
		}
	}
	reg := registration(in, &api.ColdStart{MinReady: 1})
	rv := reflect.ValueOf(reg)
	for i := range rv.NumField() {
		name := rv.Type().Field(i).Name
		if name == "Session" {
			continue
		}
		if rv.Field(i).IsZero() {
			t.Errorf("a restored instance loses RegisterRequest.%s (backup.go, registration)", name)
		}
	}
	// Each api.Instance field is restored somewhere: in the registration
	// (same name), as the instance's ID, or as its registration time.
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		switch name {
		case "ID", "RegisteredAt", "SessionTag": // the command's ID, RegisteredMs; a session's (none)
			continue
		}
		f := rv.FieldByName(name)
		if !f.IsValid() {
			t.Errorf("api.Instance.%s has no RegisterRequest field: say here how a restore keeps it", name)
			continue
		}
		if f.Kind() == reflect.Pointer {
			f = f.Elem()
		}
		if fmt.Sprint(f.Interface()) != fmt.Sprint(v.Field(i).Interface()) {
			t.Errorf("RegisterRequest.%s = %v after a restore, want %v", name, f.Interface(), v.Field(i).Interface())
		}
	}
}

// TestSameInstanceAndMasterCountEveryField: a watch's changes frame
// (clientstream_watch.go) holds the instances and master record that
// differ from its previous frame; records that differ in any one field of
// their wire type must not compare the same, or the change would never
// reach the client.
func TestSameInstanceAndMasterCountEveryField(t *testing.T) {
	check := func(typ string, a any, same func(a, b any) bool) {
		t.Helper()
		av := reflect.ValueOf(a).Elem()
		for i := range av.NumField() {
			f, name := av.Field(i), av.Type().Field(i).Name
			switch {
			case f.Type() == reflect.TypeOf(time.Time{}):
				f.Set(reflect.ValueOf(time.Unix(1_800_000_000, 0)))
			case f.Kind() == reflect.String:
				f.SetString(name)
			case f.Kind() == reflect.Int || f.Kind() == reflect.Uint64:
				if f.Kind() == reflect.Int {
					f.SetInt(1)
				} else {
					f.SetUint(1)
				}
			case f.Kind() == reflect.Bool:
				f.SetBool(true)
			case f.Kind() == reflect.Map:
				f.Set(reflect.ValueOf(map[string]string{"k": "v"}))
			default:
				t.Fatalf("%s.%s: a field of kind %s that this test cannot set: teach it", typ, name, f.Kind())
			}
		}
		for i := range av.NumField() {
			bp := reflect.New(av.Type())
			bv := bp.Elem()
			bv.Set(av)
			f, name := bv.Field(i), av.Type().Field(i).Name
			switch {
			case f.Type() == reflect.TypeOf(time.Time{}):
				f.Set(reflect.ValueOf(time.Unix(1_800_000_001, 0)))
			case f.Kind() == reflect.String:
				f.SetString(name + "x")
			case f.Kind() == reflect.Int:
				f.SetInt(2)
			case f.Kind() == reflect.Uint64:
				f.SetUint(2)
			case f.Kind() == reflect.Bool:
				f.SetBool(false)
			case f.Kind() == reflect.Map:
				f.Set(reflect.ValueOf(map[string]string{"k": "w"}))
			}
			if same(a, bp.Interface()) {
				t.Errorf("a watch does not tell %s records apart by %s (clientstream_watch.go)", typ, name)
			}
		}
	}
	check("api.Instance", &api.Instance{}, func(a, b any) bool { return sameInstance(a.(*api.Instance), b.(*api.Instance)) })
	check("api.Master", &api.Master{}, func(a, b any) bool { return sameMaster(a.(*api.Master), b.(*api.Master)) })
}

// TestSessionSummaryCountsEveryField: every field of what the state
// machine knows of a session (fsm.SessionInfo, every field set) reaches
// its entry in GET .../sessions (sessionSummary) but its ID, which only
// its tag names, and the applied index, which the list carries once; every
// field of api.SessionSummary is filled but Attached (the leader's, not
// the state machine's). The entry's JSON never holds the ID. A field added
// to either and forgotten in sessionSummary fails this test.
func TestSessionSummaryCountsEveryField(t *testing.T) {
	var info fsm.SessionInfo
	v := reflect.ValueOf(&info).Elem()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch {
		case f.Kind() == reflect.String:
			f.SetString("sess-secret-" + name)
		case f.Kind() == reflect.Int64:
			f.SetInt(int64(1000 + i))
		case f.Kind() == reflect.Uint64:
			f.SetUint(uint64(1000 + i))
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.Type() == reflect.TypeOf([]api.HeldInstance{}):
			f.Set(reflect.ValueOf([]api.HeldInstance{{Service: "s", Instance: "i", State: api.StateReady}}))
		case f.Type() == reflect.TypeOf([]api.HeldMastership{}):
			f.Set(reflect.ValueOf([]api.HeldMastership{{Service: "s", Instance: "i", FencingToken: 7, Releasing: true}}))
		default:
			t.Fatalf("fsm.SessionInfo.%s: a field of type %s that this test cannot set: teach it", name, f.Type())
		}
	}
	sum := sessionSummary(info)
	sv := reflect.ValueOf(sum)
	for i := range sv.NumField() {
		name := sv.Type().Field(i).Name
		if name != "Attached" && sv.Field(i).IsZero() {
			t.Errorf("api.SessionSummary.%s is not filled by sessionSummary", name)
		}
	}
	// Each SessionInfo field is in the summary: under its own name, or
	// as the named one.
	renamed := map[string]string{"Held": "Masters"}
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		switch name {
		case "ID": // secret: its tag only
			if sum.SessionTag != api.SessionTag(info.ID) {
				t.Errorf("session_tag %q, want the ID's tag %q", sum.SessionTag, api.SessionTag(info.ID))
			}
			continue
		case "Applied": // the list's index
			continue
		}
		to := name
		if r, ok := renamed[name]; ok {
			to = r
		}
		f := sv.FieldByName(to)
		if !f.IsValid() {
			t.Errorf("fsm.SessionInfo.%s has no api.SessionSummary field: add one, or say here why the list leaves it out", name)
			continue
		}
		if fmt.Sprint(f.Interface()) != fmt.Sprint(v.Field(i).Interface()) {
			t.Errorf("api.SessionSummary.%s = %v, want fsm.SessionInfo.%s %v", to, f.Interface(), name, v.Field(i).Interface())
		}
	}
	b, err := json.Marshal(sum)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), info.ID) {
		t.Errorf("a session's entry holds its ID: %s", b)
	}
}
