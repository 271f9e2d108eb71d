package session

import (
	"testing"
	"testing/synctest"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

// TestBatchEventsCarryTheirIndex: Dragonboat applies committed entries
// in batches, and server/cluster's tenantSM.Update calls the manager's
// Applied once per batch; Applied stamps every stream event with
// m.sm.Applied() — the batch's last index — not with the index of the
// entry that made the change. So a batch in which a holder is granted
// (entry i) and then marked releasing by someone else (entry i+1) sends
// the holder two `master` events at the same index i+1: the first shows a
// clean mastership that the state at i+1 does not have.
//
// The SDK takes a record at an equal position as "as new as" what it holds
// (observe accepts index == recIndex; a keepalive answer must be strictly
// newer): a member that read the first event and lost its stream before
// the second keeps a non-releasing record at i+1, and every keepalive
// answer read at i+1 — which lists the mastership as releasing, and which
// the leader therefore does not count as a clean promise — is ignored for
// the record and taken for the promise: the member stays Master past the
// point where the leader releases it (see the SDK half in
// sdk/events_redteam_test.go).
func TestBatchEventsCarryTheirIndex(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, r := setup(t, Config{SelfPreservationMin: 100})
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: sA, TTLMs: 5000, LeaseMs: 1000})
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: sB, TTLMs: 5000, LeaseMs: 1000})
		mustPropose(t, r, fsm.OpRegister, fsm.Register{Service: "db", ID: "b", Instance: api.RegisterRequest{Address: "b", Mode: api.ModeMasterStandby, Session: sB}})
		mustPropose(t, r, fsm.OpRegister, fsm.Register{Service: "db", ID: "a", Instance: api.RegisterRequest{Address: "a", Mode: api.ModeMasterStandby, Session: sA}})
		const sC = "sessC-0000000000"
		mustPropose(t, r, fsm.OpOpenSession, fsm.OpenSession{ID: sC, TTLMs: 5000, LeaseMs: 1000})
		mustPropose(t, r, fsm.OpRegister, fsm.Register{Service: "db", ID: "c", Instance: api.RegisterRequest{Address: "c", Mode: api.ModeMasterStandby, Session: sC}})
		s, err := m.Attach(sA)
		if err != nil {
			t.Fatal(err)
		}
		// One batch, as tenantSM.Update applies it: B's session is closed
		// (A is granted in that entry), then someone other than A resigns
		// A's mastership (it turns releasing).
		r.mu.Lock()
		var ch fsm.Changes
		r.index++
		grant := r.index
		r.sm.Apply(grant, fsm.Encode(fsm.OpCloseSession, fsm.CloseSession{ID: sB}), &ch)
		r.index++
		revoke := r.index
		o := r.sm.Apply(revoke, fsm.Encode(fsm.OpResign, fsm.Resign{Service: "db", Instance: "a", Token: 1<<40 | grant}), &ch)
		r.mu.Unlock()
		if o.Code != "" {
			t.Fatalf("resign: %s %s", o.Code, o.Message)
		}
		r.sm.Notify(&ch)
		m.Applied(&ch)

		truth := r.sm.Service("db").Master // the state at index `revoke`
		if truth == nil || !truth.Releasing {
			t.Fatalf("master at %d: %+v, want a releasing", revoke, truth)
		}
		for {
			select {
			case ev := <-s.Events():
				if ev.Type != api.EventMaster {
					continue
				}
				t.Logf("event: index %d master %+v", ev.Index, ev.Master)
				if ev.Index == revoke && (ev.Master == nil || ev.Master.Releasing != truth.Releasing) {
					t.Errorf("a stream event says index %d shows master %+v; the state at %d shows %+v: two events with one index, different records",
						ev.Index, ev.Master, revoke, truth)
				}
				continue
			default:
			}
			break
		}
	})
}
