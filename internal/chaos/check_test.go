package chaos

import (
	"math"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

const ms = int64(time.Millisecond)

func TestCheckTerms(t *testing.T) {
	tests := []struct {
		name string
		evs  []Event
		bad  int
	}{
		{"handover with a gap", []Event{
			{Ev: "live", ID: "a", Token: 10, From: 0, To: 100 * ms},
			{Ev: "term", ID: "a", Token: 10, From: 0, To: 150 * ms},
			{Ev: "live", ID: "b", Token: 20, From: 200 * ms, To: 300 * ms},
		}, 0},
		{"overlap", []Event{
			{Ev: "term", ID: "a", Token: 10, From: 1, To: 250 * ms},
			{Ev: "live", ID: "b", Token: 20, From: 200 * ms, To: 300 * ms},
		}, 1},
		{"overlap within the margin", []Event{
			{Ev: "term", ID: "a", Token: 10, From: 1, To: 201 * ms},
			{Ev: "live", ID: "b", Token: 20, From: 200 * ms, To: 300 * ms},
		}, 0},
		{"token goes back", []Event{
			{Ev: "term", ID: "a", Token: 20, From: 1, To: 100 * ms},
			{Ev: "live", ID: "b", Token: 10, From: 200 * ms, To: 300 * ms},
		}, 1},
		{"same member, next term", []Event{
			{Ev: "term", ID: "a", Token: 10, From: 1, To: 100 * ms},
			{Ev: "live", ID: "a", Token: 30, From: 90 * ms, To: 300 * ms},
		}, 0},
	}
	for _, tt := range tests {
		if got := CheckTerms(Intervals(tt.evs), ClockMargin); len(got) != tt.bad {
			t.Errorf("%s: CheckTerms = %q, want %d violations", tt.name, got, tt.bad)
		}
	}
}

func TestCheckLedger(t *testing.T) {
	log := []LedgerEntry{
		{LedgerWrite: LedgerWrite{Tenant: "t", Token: 5}, Accepted: true},
		{LedgerWrite: LedgerWrite{Tenant: "u", Token: 1}, Accepted: true}, // another tenant
		{LedgerWrite: LedgerWrite{Tenant: "t", Token: 4}, Accepted: false},
		{LedgerWrite: LedgerWrite{Tenant: "t", Token: 7}, Accepted: true},
	}
	if bad := CheckLedger(log, "t"); len(bad) != 0 {
		t.Errorf("CheckLedger = %q, want none", bad)
	}
	log = append(log, LedgerEntry{LedgerWrite: LedgerWrite{Tenant: "t", Token: 6}, Accepted: true})
	if bad := CheckLedger(log, "t"); len(bad) != 1 {
		t.Errorf("CheckLedger with a lower token accepted = %q, want one violation", bad)
	}
}

func write(client int, key string, v int, call, ret int64, index uint64) Op {
	return Op{Client: client, Kind: "write", Key: key, Value: v, Call: call, Return: ret, Index: index}
}

func read(client int, call, ret int64, index uint64, kv map[string]int) Op {
	return Op{Client: client, Kind: "read", Read: kv, Call: call, Return: ret, Index: index}
}

func TestCheckLinearizable(t *testing.T) {
	ok := []Op{
		write(0, "p0", 1, 0, 10, 5),
		read(1, 11, 20, 5, map[string]int{"p0": 1}),
		write(0, "p0", 2, 21, math.MaxInt64, 0), // unknown outcome
		read(1, 30, 40, 6, map[string]int{"p0": 1}),
		read(1, 50, 60, 7, map[string]int{"p0": 2}),
		write(0, "p0", 3, 61, math.MaxInt64, 0), // unknown, never seen: dropped
		{Client: 100, Kind: "expire", Key: "e0", Value: absent, Call: 70, Return: math.MaxInt64},
	}
	final := read(9, 100, 110, 9, map[string]int{"p0": 2})
	if res, _ := CheckLinearizable(ok, final, time.Second); res != porcupine.Ok {
		t.Errorf("a linearizable history: %v", res)
	}
	stale := append(ok, read(1, 70, 80, 8, map[string]int{"p0": 1})) // back to 1 after 2 was read
	if res, _ := CheckLinearizable(stale, final, time.Second); res != porcupine.Illegal {
		t.Errorf("a stale read: %v, want illegal", res)
	}
	lost := read(9, 100, 110, 9, map[string]int{"p0": 1}) // 2 was read, then 1 again at the end
	if res, _ := CheckLinearizable(ok, lost, time.Second); res != porcupine.Illegal {
		t.Errorf("a final read going back: %v, want illegal", res)
	}
	if got := Resolve(ok, final); len(got) != len(ok) { // one dropped, the final read added
		t.Errorf("Resolve kept %d operations of %d, want the unseen unknown write dropped", len(got)-1, len(ok))
	}
}

func TestCheckDurable(t *testing.T) {
	ops := []Op{
		write(0, "p0", 1, 0, 10, 5),
		write(0, "p0", 2, 20, 30, 6),
		write(0, "p1", 3, 20, math.MaxInt64, 0), // unknown: may or may not be there
	}
	if bad := CheckDurable(ops, read(9, 100, 110, 9, map[string]int{"p0": 2, "p1": 3})); len(bad) != 0 {
		t.Errorf("CheckDurable = %q, want none", bad)
	}
	if bad := CheckDurable(ops, read(9, 100, 110, 9, map[string]int{"p0": 2})); len(bad) != 0 {
		t.Errorf("CheckDurable without the unknown write = %q, want none", bad)
	}
	if bad := CheckDurable(ops, read(9, 100, 110, 9, map[string]int{"p0": 1})); len(bad) != 1 {
		t.Errorf("CheckDurable with the last acknowledged write lost = %q, want one violation", bad)
	}
}

func TestCheckWatch(t *testing.T) {
	ops := []Op{
		write(0, "p0", 1, 0, 10, 5),
		write(0, "p0", 2, 20, 30, 8),
	}
	snap := func(index uint64, kv map[string]int) Event {
		e := Event{Ev: "snap", ID: "w", Service: linService, Index: index}
		for k, v := range kv {
			e.Instances = append(e.Instances, Instance{ID: k, Weight: v})
		}
		return e
	}
	good := []Event{snap(4, nil), snap(5, map[string]int{"p0": 1}), snap(9, map[string]int{"p0": 2})}
	if bad := CheckWatch(good, ops); len(bad) != 0 {
		t.Errorf("CheckWatch = %q, want none", bad)
	}
	skipped := []Event{snap(5, map[string]int{"p0": 1}), snap(9, map[string]int{"p0": 1})}
	if bad := CheckWatch(skipped, ops); len(bad) != 1 {
		t.Errorf("CheckWatch of a skipped change = %q, want one violation", bad)
	}
	back := []Event{snap(9, map[string]int{"p0": 2}), snap(8, map[string]int{"p0": 2})}
	if bad := CheckWatch(back, ops); len(bad) != 1 {
		t.Errorf("CheckWatch of an index going back = %q, want one violation", bad)
	}
}

func TestPlansCoverEveryKind(t *testing.T) {
	seen := map[Kind]bool{}
	for seed := uint64(1000); seed < 1000+uint64(len(Kinds())); seed++ {
		p := NewPlan(seed, 8*time.Second)
		if q := NewPlan(seed, 8*time.Second); q.String() != p.String() {
			t.Fatalf("seed %d gives two plans:\n%v\n%v", seed, p, q)
		}
		for _, f := range p.Faults {
			seen[f.Kind] = true
			if p.overlapsExclusive(f) {
				t.Errorf("seed %d: %v overlaps an exclusive fault:\n%v", seed, f, p)
			}
		}
	}
	for _, k := range Kinds() {
		if !seen[k] {
			t.Errorf("%d consecutive seeds have no %v fault", len(Kinds()), k)
		}
	}
}

// TestPlansKeepThreeServers: a plan removes a server only from four or
// more (a join first on three), so that every tenant keeps its three
// replicas.
func TestPlansKeepThreeServers(t *testing.T) {
	removals := 0
	for seed := uint64(0); seed < 2000; seed++ {
		p := NewPlan(seed, 8*time.Second)
		n := p.Servers
		for _, f := range p.Faults {
			switch f.Kind {
			case AddNode:
				n++
			case RemoveNode:
				if n--; n < 3 {
					t.Fatalf("seed %d: %v leaves %d servers:\n%v", seed, f, n, p)
				}
				removals++
			}
		}
	}
	if removals == 0 {
		t.Fatal("no plan of 2,000 removes a server")
	}
}
