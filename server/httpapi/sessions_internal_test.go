package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"testing"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

// BenchmarkSessionList is what one GET .../sessions costs a node when the
// tenant's replica applied an entry since the last one, for a tenant at the
// default max_sessions (10,000), each session owning one instance: the
// state machine's read of every session, their tags, their order, a page
// of 1,000, and its encoding. BenchmarkSessionPage is the same read at an
// applied index already read: the page and its encoding.
func BenchmarkSessionList(b *testing.B) {
	sm := fsm.NewTenant(fsm.TenantInfo{Name: "acme", Epoch: 1, Version: fsm.Version})
	var ch fsm.Changes
	index := uint64(0)
	apply := func(op fsm.Op, cmd any) {
		index++
		if o := sm.Apply(index, fsm.Encode(op, cmd), &ch); o.Err() != nil {
			b.Fatalf("%s: %v", op, o.Err())
		}
	}
	for i := range 10_000 {
		id := fmt.Sprintf("sess-bench-%016d", i)
		apply(fsm.OpOpenSession, fsm.OpenSession{ID: id, TTLMs: 5000})
		apply(fsm.OpRegister, fsm.Register{Service: fmt.Sprintf("svc-%d", i%100), ID: fmt.Sprintf("in-%d", i),
			Instance: api.RegisterRequest{Address: "10.0.0.1:80", Session: id}})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		l, _, _ := sessionPage(byTag(sm.Sessions()), sessionsQuery{limit: api.DefaultSessionPage})
		if len(l.Sessions) != api.DefaultSessionPage {
			b.Fatalf("a page of %d", len(l.Sessions))
		}
		if err := json.NewEncoder(io.Discard).Encode(l); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSessionPage(b *testing.B) {
	sm := fsm.NewTenant(fsm.TenantInfo{Name: "acme", Epoch: 1, Version: fsm.Version})
	var ch fsm.Changes
	for i := range 10_000 {
		id := fmt.Sprintf("sess-bench-%016d", i)
		sm.Apply(uint64(2*i+1), fsm.Encode(fsm.OpOpenSession, fsm.OpenSession{ID: id, TTLMs: 5000}), &ch)
		sm.Apply(uint64(2*i+2), fsm.Encode(fsm.OpRegister, fsm.Register{Service: fmt.Sprintf("svc-%d", i%100), ID: fmt.Sprintf("in-%d", i),
			Instance: api.RegisterRequest{Address: "10.0.0.1:80", Session: id}}), &ch)
	}
	all := byTag(sm.Sessions())
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		l, _, _ := sessionPage(all, sessionsQuery{limit: api.DefaultSessionPage})
		if err := json.NewEncoder(io.Discard).Encode(l); err != nil {
			b.Fatal(err)
		}
	}
}
