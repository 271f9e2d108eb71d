package httpapi

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
)

// FuzzClientFrame: the frame decoder never panics; what it accepts has a
// known type and only that type's fields, and what it refuses is a 400
// naming a field (or, for a line that is not JSON, a fatal 400).
func FuzzClientFrame(f *testing.F) {
	for _, seed := range []string{
		`{"type":"ping"}`,
		`{"type":"ping","req":1}`,
		`{"type":"attach","req":1,"session":"sess-0123456789abcdef"}`,
		`{"type":"keepalive","req":2,"sessions":[{"id":"sess-0123456789abcdef"},{"id":"sess-fedcba9876543210"}]}`,
		`{"type":"watch","req":3,"w":1,"service":"web","index":1042,"epoch":1}`,
		`{"type":"unwatch","req":4,"w":1}`,
		`{"type":"put_instance","req":5,"service":"web","id":"w-1","body":{"address":"10.0.0.5:80"},"session":"sess-0123456789abcdef","seq":3}`,
		`{"type":"delete_instance","req":6,"service":"web","id":"w-1"}`,
		`{"type":"open_session","req":7,"id":"sess-0123456789abcdef","body":{"ttl_ms":5000,"lease_ms":1000}}`,
		`{"type":"close_session","req":8,"id":"sess-0123456789abcdef"}`,
		`{"type":"resign","req":9,"service":"web","body":{"instance":"w-1","fencing_token":7}}`,
		`{"type":"set_policy","req":10,"service":"web","body":{"cold_start":{"min_ready":2}}}`,
		`{"type":"put_kv","req":11,"key":"app/flag","body":{"text":"on","if_index":0}}`,
		`{"type":"kv_txn","req":12,"body":{"compare":[{"key":"a","exists":true}],"put":[{"key":"a","text":"1"}]}}`,
		`{"type":"put_kv","req":13,"key":"../x","body":{}}`,
		`{"type":"delete_kv","req":14,"key":"app/flag","if_index":7}`,
		`{"type":"delete_kv","req":15,"key":"app","prefix":true,"if_index":0}`,
		`{"type":"watch","req":"x"}`, `[1]`, `null`, `{"type":`, `{} {}`, `{"type":"ping","req":-1}`,
		`{"type":"keepalive","req":1,"sessions":[]}`, "\xff\xfe", `{"type":"watch","req":1,"w":1,"service":".."}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		fr, bad, fatal := decodeFrame(line)
		switch {
		case fatal != nil:
			if bad != nil || fatal.Code != api.CodeBadRequest || !strings.HasPrefix(fatal.Message, "frame: ") {
				t.Fatalf("fatal %v with bad %v", fatal, bad)
			}
		case bad != nil:
			if bad.Code != api.CodeBadRequest || !strings.Contains(bad.Message, ": ") {
				t.Fatalf("bad frame answered %v", bad)
			}
		default:
			allowed, ok := frameFields[fr.Type]
			if !ok || presentFields(&fr)&^allowed != 0 || (fr.Req == 0 && fr.Type != api.FramePing) {
				t.Fatalf("accepted %q as %+v", line, fr)
			}
		}
	})
}

// svcView is a view of the service r, after prev.
func svcView(r api.ServiceResponse, prev *view) *view {
	return newView(r.ModifyIndex, r.Index, newServiceContent(r), prev)
}

// TestStreamEncodings: the frames the writer builds by hand decode as the
// api types say, and a delta turns its view's predecessor into it.
func TestStreamEncodings(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	in := func(id, addr string) api.Instance {
		return api.Instance{ID: id, Address: addr, Mode: api.ModeFarm, State: api.StateReady, Weight: 100, RegisteredAt: at,
			Meta: map[string]string{"v": addr}}
	}
	m := &api.Master{Instance: "a", SessionTag: "91c2", FencingToken: 1 << 40, Since: at}
	a := svcView(api.ServiceResponse{Index: 10, ModifyIndex: 9, Instances: []api.Instance{in("a", "1"), in("b", "1"), in("c", "1")},
		Master: m, Policy: api.Policy{ColdStart: api.ColdStart{MinReady: 1}}}, nil)
	b := svcView(api.ServiceResponse{Index: 12, ModifyIndex: 12, Instances: []api.Instance{in("a", "1"), in("c", "2"), in("d", "1")},
		Policy: api.Policy{ColdStart: api.ColdStart{MinReady: 2}}}, a)

	snap, err := a.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sf api.SnapshotFrame
	if err := json.Unmarshal([]byte(`{"type":"snapshot","w":3,"index":10,`+string(snap)), &sf); err != nil {
		t.Fatalf("snapshot %s: %v", snap, err)
	}
	if sf.W != 3 || sf.Index != 10 || len(sf.Instances) != 3 || sf.Master == nil || sf.Master.FencingToken != 1<<40 {
		t.Fatalf("snapshot = %+v", sf)
	}
	if b.prevModify != 9 || b.delta == nil {
		t.Fatalf("b follows %d with delta %q", b.prevModify, b.delta)
	}
	var cf api.ChangesFrame
	if err := json.Unmarshal([]byte(`{"type":"changes","w":3,`+string(b.delta)), &cf); err != nil {
		t.Fatalf("changes %s: %v", b.delta, err)
	}
	ids := func(l []api.Instance) (out []string) {
		for _, i := range l {
			out = append(out, i.ID)
		}
		return out
	}
	if got := strings.Join(ids(cf.Upsert), ","); got != "c,d" || strings.Join(cf.Delete, ",") != "b" ||
		!cf.Master.Set || cf.Master.Master != nil || cf.Policy == nil || cf.Policy.ColdStart.MinReady != 2 || cf.Index != 12 {
		t.Fatalf("changes = %+v (upsert %s)", cf, got)
	}
	// Nothing a client sees changed: no delta.
	c := svcView(api.ServiceResponse{Index: 13, ModifyIndex: 13, Instances: b.body.(*serviceContent).instances, Policy: b.body.(*serviceContent).policy}, b)
	if c.delta != nil {
		t.Fatalf("an unchanged service has delta %s", c.delta)
	}
	// A master that appears, and the ServerFrame a client decodes.
	d := svcView(api.ServiceResponse{Index: 14, ModifyIndex: 14, Instances: b.body.(*serviceContent).instances, Master: m, Policy: b.body.(*serviceContent).policy}, c)
	var sfr api.ServerFrame
	if err := json.Unmarshal([]byte(`{"type":"changes","w":`+strconv.Itoa(4)+`,`+string(d.delta)), &sfr); err != nil {
		t.Fatal(err)
	}
	if !sfr.Master.Set || sfr.Master.Master == nil || sfr.Master.Master.Instance != "a" || sfr.Upsert != nil || sfr.W != 4 {
		t.Fatalf("master change = %+v", sfr)
	}
}
