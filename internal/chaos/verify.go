package chaos

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rafting/rafting/api"
)

// check runs every checker on every tenant, once the faults healed and
// the workload stopped.
func (s *scenario) check() {
	for _, tn := range s.tenants {
		t0 := time.Now()
		if _, ok := s.masterOf(tn, 20*time.Second); !ok {
			s.violation("liveness", tn.name, "no master 20s after healing")
		} else if d := time.Since(t0); d > 2*time.Second {
			s.note("tenant %s: a master after %v", tn.name, d.Round(time.Millisecond))
		}
		call := tn.work.now()
		sr, ok := s.consistent(tn, linService, 20*time.Second)
		if !ok {
			s.violation("liveness", tn.name, "no consistent read of %s within 20s of healing", linService)
			continue
		}
		final := Op{Client: 99, Kind: "read", Call: call, Return: tn.work.now(), Read: map[string]int{}, Index: sr.Index, Status: "final"}
		for _, in := range sr.Instances {
			final.Read[in.ID] = in.Weight
		}
		tn.final = &final
		ops := tn.work.history()
		s.note("tenant %s: %s", tn.name, stats(ops, Intervals(tn.events()), s.ledger.Log(), tn.name))

		for _, b := range CheckTerms(Intervals(tn.events()), ClockMargin) {
			s.violation("safety", tn.name, "%s", b)
		}
		for _, b := range CheckLedger(s.ledger.Log(), tn.name) {
			s.violation("safety", tn.name, "%s", b)
		}
		switch res, _ := CheckLinearizable(ops, final, 30*time.Second); res {
		case porcupine.Illegal:
			s.violation("linearizability", tn.name, "the history of %d operations on %s is not linearizable", len(ops)+1, linService)
		case porcupine.Unknown:
			s.note("tenant %s: the linearizability check did not finish within 30s", tn.name)
		}
		for _, b := range CheckDurable(ops, final) {
			s.violation("durability", tn.name, "%s", b)
		}
		s.checkKV(tn)
		slow := func(what string, since time.Time) {
			if d := time.Since(since); d > 2*time.Second {
				s.note("tenant %s: %s took %v", tn.name, what, d.Round(time.Millisecond))
			}
		}
		t0 = time.Now()
		s.checkWatchers(tn, ops, final)
		slow("the watch check", t0)
		t0 = time.Now()
		s.checkConvergence(tn, final.Index)
		slow("the convergence check", t0)
		s.checkClock(tn)
	}
}

// stats summarises what a tenant went through.
func stats(ops []Op, ivs []Interval, ledger []LedgerEntry, tenant string) string {
	var acked, unknown, reads int
	for _, o := range ops {
		switch {
		case o.Kind == "read":
			reads++
		case o.Kind == "expire":
		case o.Unknown():
			unknown++
		default:
			acked++
		}
	}
	var accepted, fenced int
	for _, e := range ledger {
		if e.Tenant == tenant {
			if e.Accepted {
				accepted++
			} else {
				fenced++
			}
		}
	}
	return fmt.Sprintf("%d writes acknowledged, %d unknown, %d reads; %d Terms; ledger %d accepted, %d fenced",
		acked, unknown, reads, len(ivs), accepted, fenced)
}

// checkWatchers checks each watcher's snapshots, then waits for its
// cache to equal a consistent read.
func (s *scenario) checkWatchers(tn *tenant, ops []Op, final Op) {
	for _, w := range tn.running("watch") {
		deadline := time.Now().Add(15 * time.Second)
		var lin, ledger []Event
		for {
			if sr, ok := s.consistent(tn, linService, time.Second); ok {
				final.Index, final.Read = sr.Index, map[string]int{}
				for _, in := range sr.Instances {
					final.Read[in.ID] = in.Weight
				}
			}
			lin, ledger = nil, nil
			for _, l := range w.proc.Lines() {
				var e Event
				if json.Unmarshal([]byte(l), &e) != nil || e.Ev != "snap" {
					continue
				}
				if e.Service == linService {
					lin = append(lin, e)
				} else {
					ledger = append(ledger, e)
				}
			}
			if len(lin) > 0 && sameInstances(lin[len(lin)-1], final.Read) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, b := range CheckWatch(lin, ops) {
			s.violation("watch", tn.name, "%s", b)
		}
		if len(lin) == 0 {
			s.violation("watch", tn.name, "%s: no snapshot of %s at all", w.id, linService)
		} else if last := lin[len(lin)-1]; !sameInstances(last, final.Read) {
			got := map[string]int{}
			for _, in := range last.Instances {
				got[in.ID] = in.Weight
			}
			s.violation("watch", tn.name, "%s: 15s after the writes stopped its cache (index %d) holds %s, a consistent read (index %d) %s",
				w.id, last.Index, describe(got), final.Index, describe(final.Read))
		}
		var token uint64
		for _, e := range ledger {
			if e.Master != 0 && e.Master < token {
				s.violation("watch", tn.name, "%s: the master's token went back from %d to %d at index %d", w.id, token, e.Master, e.Index)
			}
			token = max(token, e.Master)
		}
	}
}

// clockSlack is how far a time the servers show may run ahead of the
// machine's clock.
const clockSlack = 5 * time.Second

// checkClock checks the times a tenant shows (registration times, master
// since): they never run ahead of the machine's one clock, whatever a
// leader's wall clock said (a leader's clock an hour ahead must not move
// the state machine's clock).
func (s *scenario) checkClock(tn *tenant) {
	now := time.Now()
	if s.opts.Control == ClockBehind {
		now = now.Add(-time.Hour) // the control: a reference clock an hour behind
	}
	for _, svc := range convergenceServices {
		sr, ok := s.consistent(tn, svc, 5*time.Second)
		if !ok {
			continue
		}
		for _, in := range sr.Instances {
			if ahead := in.RegisteredAt.Sub(now); ahead > clockSlack {
				s.violation("clock", tn.name, "%s/%s was registered at %s, %v ahead of the clock", svc, in.ID,
					in.RegisteredAt.Format(time.RFC3339Nano), ahead.Round(time.Millisecond))
				break
			}
		}
		if m := sr.Master; m != nil {
			if ahead := m.Since.Sub(now); ahead > clockSlack {
				s.violation("clock", tn.name, "%s's master %s since %s, %v ahead of the clock", svc, m.Instance,
					m.Since.Format(time.RFC3339Nano), ahead.Round(time.Millisecond))
			}
		}
	}
}

// convergenceServices are the services every tenant has.
var convergenceServices = []string{linService, "ledger", "farm"}

// checkConvergence compares every running server's own replica of the
// tenant (reads served by each node, at or past index) until they agree.
func (s *scenario) checkConvergence(tn *tenant, index uint64) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		states := map[int]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, id := range s.upIDs() {
			wg.Go(func() {
				st := s.replicaState(tn, id, index)
				mu.Lock()
				states[id] = st
				mu.Unlock()
			})
		}
		wg.Wait()
		diff := differ(states)
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			s.violation("convergence", tn.name, "replicas still differ 15s after healing: %s", diff)
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// replicaState is a server's replica of a tenant as text: each service as
// that node answers it from its own state, at index or later.
func (s *scenario) replicaState(tn *tenant, id int, index uint64) string {
	var b []byte
	for _, svc := range convergenceServices {
		code, body, _, err := s.call(id, tn.token, http.MethodGet,
			fmt.Sprintf("/v1/tenants/%s/services/%s?index=%d&wait=10ms", tn.name, svc, index), nil, 2*time.Second)
		if err != nil || code != http.StatusOK {
			return fmt.Sprintf("(%s: %d %v %s)", svc, code, err, tail(string(body), 300))
		}
		var sr api.ServiceResponse
		if err := json.Unmarshal(body, &sr); err != nil {
			return fmt.Sprintf("(%s: %v)", svc, err)
		}
		sr.Index = 0 // the replica's applied index when it answered: not state
		c, _ := json.Marshal(sr)
		b = append(append(b, c...), '\n')
	}
	return string(b)
}

// differ describes how the states differ, or "" when all are equal.
func differ(states map[int]string) string {
	var ids []int
	for id := range states {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids[1:] {
		if states[id] != states[ids[0]] {
			return fmt.Sprintf("server %d has\n%s\nserver %d has\n%s", ids[0], states[ids[0]], id, states[id])
		}
	}
	return ""
}
