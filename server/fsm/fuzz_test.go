package fsm

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/tenants"
)

var appliedField = regexp.MustCompile(`applied=\d+`)

// seeded returns a tenant with sessions, a farm service and an elected
// master-standby service, so fuzzed commands meet real state.
func seeded(t testing.TB) *Tenant {
	sm := NewTenant(TenantInfo{Name: "acme", Epoch: 3, Quotas: api.Quotas{MaxServices: 5, MaxInstances: 8, MaxSessions: 4, MaxMetaBytes: 64, MinTTLMs: 3000, MaxTTLMs: 60000}})
	cmds := [][]byte{
		Encode(OpBarrier, Barrier{Term: 2, NowMs: 1000}),
		Encode(OpOpenSession, OpenSession{ID: "sessA-0000000000", TTLMs: 5000, LeaseMs: 1000}),
		Encode(OpOpenSession, OpenSession{ID: "sessB-0000000000", TTLMs: 5000, LeaseMs: 1000}),
		Encode(OpRegister, Register{Service: "web", ID: "w1", Instance: api.RegisterRequest{Address: "a:1"}}),
		Encode(OpRegister, Register{Service: "db", ID: "d1", Instance: api.RegisterRequest{Address: "d:1", Mode: api.ModeMasterStandby, Session: "sessA-0000000000"}}),
		Encode(OpRegister, Register{Service: "db", ID: "d2", Instance: api.RegisterRequest{Address: "d:2", Mode: api.ModeMasterStandby, Session: "sessB-0000000000"}}),
	}
	for i, c := range cmds {
		var ch Changes
		if o := sm.Apply(uint64(i+1), c, &ch); o.Code != "" {
			t.Fatalf("seed command %d: %s %s", i, o.Code, o.Message)
		}
	}
	return sm
}

// FuzzTenantApply feeds arbitrary commands to a tenant state machine: no
// command may hit the internal-error path (a panic caught by Apply), a
// rejected command must change nothing, and the state must survive a
// snapshot round trip.
func FuzzTenantApply(f *testing.F) {
	f.Add(byte(OpRegister), []byte(`{"service":"db","id":"d3","instance":{"address":"x","mode":"master-standby","session":"sessA-0000000000","priority":3}}`))
	f.Add(byte(OpResign), []byte(`{"service":"db","instance":"d1","fencing_token":3298534883333,"to":"d2","caller":"sessA-0000000000"}`))
	f.Add(byte(OpExpire), []byte(`{"term":2,"now_ms":5000,"ids":["sessA-0000000000","sessB-0000000000"]}`))
	f.Add(byte(OpRelease), []byte(`{"term":2,"now_ms":5000,"service":"db","fencing_token":3298534883333}`))
	f.Add(byte(OpSetPolicy), []byte(`{"service":"db","cold_start":{"min_ready":2,"settle_ms":100}}`))
	f.Add(byte(OpTick), []byte(`{"term":2,"now_ms":-1}`))
	f.Add(byte(OpRenew), []byte(`{"term":2,"now_ms":1,"items":[{"id":"sessA-0000000000","remaining_ms":-7}]}`))
	f.Add(byte(OpOpenSession), []byte(`{"id":"sessC-0000000000","ttl_ms":1e30}`))
	f.Add(byte(OpDeregister), []byte(`{"service":"db","id":"d1"}`))
	f.Add(byte(OpCloseSession), []byte(`{"id":"sessB-0000000000"}`))
	f.Add(byte(0), []byte(`null`))
	f.Add(byte(OpRegister), []byte(`{"service":"web","id":"w1","instance":{"address":"a","meta":{"":"x"}}}`))
	f.Fuzz(func(t *testing.T, op byte, body []byte) {
		sm := seeded(t)
		before := appliedField.ReplaceAllString(sm.Dump(), "")
		var ch Changes
		o := sm.Apply(100, append([]byte{CodecVersion, op}, body...), &ch)
		if o.Code == api.CodeInternal {
			t.Fatalf("op %d %q: internal error: %s", op, body, o.Message)
		}
		if o.Code != "" {
			if after := appliedField.ReplaceAllString(sm.Dump(), ""); after != before {
				t.Fatalf("op %d %q rejected (%s) but changed the state:\n%s\nwas:\n%s", op, body, o.Code, after, before)
			}
			if !ch.empty() {
				t.Fatalf("op %d %q rejected but reported changes %+v", op, body, ch)
			}
		}
		snap, err := sm.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		again := NewTenant(TenantInfo{})
		if err := again.Restore(bytes.NewReader(snap)); err != nil {
			t.Fatal(err)
		}
		if again.Dump() != sm.Dump() {
			t.Fatalf("snapshot round trip differs after op %d %q", op, body)
		}
	})
}

// FuzzDecode checks the command envelope never panics and round-trips.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{CodecVersion, byte(OpRegister), '{', '}'})
	f.Add([]byte{})
	f.Add([]byte{9, 9})
	f.Fuzz(func(t *testing.T, cmd []byte) {
		op, body, err := Decode(cmd)
		if err != nil {
			return
		}
		if again := append([]byte{CodecVersion, byte(op)}, body...); !bytes.Equal(again, cmd) {
			t.Fatalf("Decode(%q) does not round-trip", cmd)
		}
	})
}

// TestServiceAnswer: the cached answer, after its head, equals a fresh
// encoding of Service, before and after changes, for existing and missing
// services, and instances unchanged since the previous answer are not
// encoded again.
func TestServiceAnswer(t *testing.T) {
	sm := seeded(t)
	check := func(fresh int) {
		t.Helper()
		for _, name := range []string{"web", "db", "nothing"} {
			checkAnswer(t, sm, name)
		}
		if _, a, _ := sm.ServiceAnswer("web"); fresh >= 0 && a.Fresh() != fresh {
			t.Fatalf("web's answer encoded %d instances, want %d", a.Fresh(), fresh)
		}
	}
	check(1)
	n := sm.AnswersEncoded()
	check(1) // from the cache
	if sm.AnswersEncoded() != n {
		t.Fatal("an unchanged answer was encoded again")
	}
	var ch Changes
	sm.Apply(50, Encode(OpRegister, Register{Service: "web", ID: "w2", Instance: api.RegisterRequest{Address: "b:1"}}), &ch)
	check(1)
	sm.Apply(51, Encode(OpRegister, Register{Service: "web", ID: "w0", Instance: api.RegisterRequest{Address: "c:1",
		Meta: map[string]string{"<": "&>"}}}), &ch)
	check(1)
	sm.Apply(52, Encode(OpRegister, Register{Service: "web", ID: "w2", Instance: api.RegisterRequest{Address: "b:2"}}), &ch)
	check(1)
	sm.Apply(53, Encode(OpDeregister, Deregister{Service: "web", ID: "w1"}), &ch)
	check(0)
	sm.Apply(54, Encode(OpDeregister, Deregister{Service: "web", ID: "w2"}), &ch)
	sm.Apply(55, Encode(OpDeregister, Deregister{Service: "web", ID: "w0"}), &ch)
	check(-1)
}

// checkAnswer fails t unless ServiceAnswer(name), after its head, is
// Service(name) encoded, in both of its forms.
func checkAnswer(t testing.TB, sm *Tenant, name string) {
	t.Helper()
	idx, a, err := sm.ServiceAnswer(name)
	if err != nil {
		t.Fatal(err)
	}
	body := a.AppendTo(AppendServiceHead(nil, idx))
	want, _ := json.Marshal(sm.Service(name))
	if string(body) != string(want)+"\n" || idx != sm.Applied() {
		t.Fatalf("ServiceAnswer(%s) = %s, want %s", name, body, want)
	}
	var w bytes.Buffer
	if n, err := a.WriteTo(&w); err != nil || int(n) != a.Len() || w.String() != string(body[len(AppendServiceHead(nil, idx)):]) {
		t.Fatalf("WriteTo wrote %d bytes (%v), Len %d, AppendTo %d", n, err, a.Len(), len(body))
	}
}

// FuzzRestore feeds arbitrary snapshots to both state machines: Restore
// either refuses one or leaves a state that every read serves and that
// survives another snapshot round trip; nothing panics.
func FuzzRestore(f *testing.F) {
	good, err := seeded(f).Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	meta := NewMeta()
	metaApply(f, meta, 1, OpCreateTenant, CreateTenant{Name: "acme", TokenHash: tenants.HashToken("rft_acme_x"), Members: map[uint64]string{1: "h:1"}, NowMs: 1})
	metaGood, err := meta.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	withKV, err := seededKV(f).Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(withKV)
	f.Add(append([]byte{CodecVersion}, `{"kv":{"a/b":{"value":"eA==","mod_index":9},"c":null},"kv_tree":{"x":3,"a":1}}`...))
	f.Add(metaGood)
	f.Add([]byte{CodecVersion})
	f.Add(append([]byte{CodecVersion}, `{"services":{"a":null},"sessions":{"s":null}}`...))
	f.Add(append([]byte{CodecVersion}, `{"tenants":{"a":null},"nodes":{"1":null}}`...))
	f.Fuzz(func(t *testing.T, b []byte) {
		ten := NewTenant(TenantInfo{Name: "acme", Epoch: 1})
		if ten.Restore(bytes.NewReader(b)) == nil {
			for _, s := range ten.Services().Services {
				ten.Service(s.Name)
				checkAnswer(t, ten, s.Name)
			}
			ten.Durable()
			ten.Usage()
			ten.Sessions()
			ten.Releasing()
			ten.Waiting()
			ten.KVList("", "", 100, 1<<20)
			ten.KVModifyIndex("a/b", true)
			ten.DurableKV()
			_ = ten.Dump()
			again, err := ten.Snapshot()
			if err != nil {
				t.Fatalf("a restored tenant state does not encode: %v", err)
			}
			if err := NewTenant(TenantInfo{Name: "acme", Epoch: 1}).Restore(bytes.NewReader(again)); err != nil {
				t.Fatalf("a restored tenant state's snapshot is refused: %v", err)
			}
		}
		m := NewMeta()
		if m.Restore(bytes.NewReader(b)) == nil {
			for _, rec := range m.Tenants() {
				m.Brief(rec.Name)
				m.Credentials(rec.Name)
				for id := range rec.Replicas {
					m.ReplicaNode(rec.Name, id)
				}
				m.TenantByShard(rec.ShardID)
			}
			m.Nodes()
			m.Tombstones()
			m.Backup()
			again, err := m.Snapshot()
			if err != nil {
				t.Fatalf("a restored meta state does not encode: %v", err)
			}
			if err := NewMeta().Restore(bytes.NewReader(again)); err != nil {
				t.Fatalf("a restored meta state's snapshot is refused: %v", err)
			}
		}
	})
}

// TestEncodeKeepsSize: a command holds what it was given, byte for byte: a
// meta value of HTML characters does not grow (json.Marshal wrote each as
// six bytes, so refused writes filled the Raft log six times faster).
func TestEncodeKeepsSize(t *testing.T) {
	meta := map[string]string{"k": strings.Repeat("<>&", 10000)}
	cmd := Encode(OpRegister, Register{Service: "web", ID: "w1", Instance: api.RegisterRequest{Address: "a:1", Meta: meta}})
	if len(cmd) > 30000+200 {
		t.Fatalf("a command with 30,000 bytes of meta encodes to %d bytes", len(cmd))
	}
	op, body, err := Decode(cmd)
	var back Register
	if err != nil || op != OpRegister || strictUnmarshal(body, &back) != nil || back.Instance.Meta["k"] != meta["k"] {
		t.Fatalf("the command does not decode back: %v", err)
	}
}
