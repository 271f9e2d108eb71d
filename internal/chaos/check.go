package chaos

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// ClockMargin is how far two members' live Terms may overlap before it
// counts: every member reads the one machine's wall clock, and a member
// reports an instant as live only if its Term's Ctx was live after it.
const ClockMargin = 2 * time.Millisecond

// Interval is a Term as a member saw it: live at every sample from From
// to To (Unix ns).
type Interval struct {
	Member   string `json:"member"`
	Token    uint64 `json:"token"`
	From, To int64
}

// Intervals gathers the members' Terms from their live and term events.
func Intervals(evs []Event) []Interval {
	type key struct {
		member string
		token  uint64
	}
	byKey := map[key]*Interval{}
	var order []key
	for _, e := range evs {
		if (e.Ev != "live" && e.Ev != "term") || e.Token == 0 || e.From == 0 {
			continue
		}
		k := key{e.ID, e.Token}
		iv, ok := byKey[k]
		if !ok {
			iv = &Interval{Member: e.ID, Token: e.Token, From: e.From, To: e.To}
			byKey[k] = iv
			order = append(order, k)
		}
		iv.From, iv.To = min(iv.From, e.From), max(iv.To, e.To)
	}
	out := make([]Interval, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].From < out[j].From })
	return out
}

// CheckTerms is the master-safety check of the members' own view: at no
// instant do two members hold a live Term (beyond margin), a token
// belongs to one member, and a later Term never has a lower token.
func CheckTerms(ivs []Interval, margin time.Duration) []string {
	var bad []string
	for i, a := range ivs {
		for _, b := range ivs[i+1:] { // b.From >= a.From
			if a.Member != b.Member && b.From < a.To-int64(margin) {
				bad = append(bad, fmt.Sprintf("%s (token %d) and %s (token %d) both held a live Term from %s to %s (%v)",
					a.Member, a.Token, b.Member, b.Token, stamp(b.From), stamp(min(a.To, b.To)),
					time.Duration(min(a.To, b.To)-b.From)))
			}
			if a.Token == b.Token && a.Member != b.Member {
				bad = append(bad, fmt.Sprintf("token %d held by both %s and %s", a.Token, a.Member, b.Member))
			}
			if b.From > a.To && b.Token < a.Token {
				bad = append(bad, fmt.Sprintf("%s held token %d from %s, after %s held the higher %d", b.Member, b.Token, stamp(b.From), a.Member, a.Token))
			}
		}
	}
	return bad
}

// CheckLedger is the fenced ledger's check: it never accepted a token
// lower than one it had accepted before.
func CheckLedger(log []LedgerEntry, tenant string) []string {
	var bad []string
	var highest uint64
	for _, e := range log {
		if e.Tenant != tenant || !e.Accepted {
			continue
		}
		if e.Token < highest {
			bad = append(bad, fmt.Sprintf("the ledger accepted %s's write under token %d at %s, after accepting token %d",
				e.Member, e.Token, stamp(e.At), highest))
		}
		highest = max(highest, e.Token)
	}
	return bad
}

func stamp(ns int64) string { return time.Unix(0, ns).Format("15:04:05.000000") }

// regInput is one operation on one key, as porcupine sees it.
type regInput struct {
	op     string // write, read, cas
	key    string
	value  int
	expect int
}

// registers is the model of both histories: each key is a register
// (absent, or a value: an instance of the service and its weight, a
// configuration key and its value) with compare-and-set, which only the
// KV history uses; a read returns every register. A CAS's output is true
// (applied), false (refused: the key did not hold expect) or nil (outcome
// unknown: it applies if the key holds expect where it is placed).
var registers = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		keys := map[string]bool{}
		for _, o := range history {
			if in := o.Input.(regInput); in.op != "read" {
				keys[in.key] = true
			}
		}
		names := make([]string, 0, len(keys))
		for k := range keys {
			names = append(names, k)
		}
		sort.Strings(names)
		var parts [][]porcupine.Operation
		for _, k := range names {
			var part []porcupine.Operation
			for _, o := range history {
				in := o.Input.(regInput)
				switch {
				case in.op != "read" && in.key == k:
					part = append(part, o)
				case in.op == "read":
					v, ok := o.Output.(map[string]int)[k]
					if !ok {
						v = absent
					}
					o.Input, o.Output = regInput{op: "read", key: k}, v
					part = append(part, o)
				}
			}
			parts = append(parts, part)
		}
		return parts
	},
	Init: func() any { return absent },
	Step: func(state, input, output any) (bool, any) {
		in, s := input.(regInput), state.(int)
		switch in.op {
		case "write":
			return true, in.value
		case "cas":
			ok, known := output.(bool)
			switch {
			case !known:
				if s == in.expect {
					return true, in.value
				}
				return true, s
			case ok:
				return s == in.expect, in.value
			default:
				return s != in.expect, s
			}
		}
		return output.(int) == s, s
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		switch in.op {
		case "write":
			if in.value == absent {
				return fmt.Sprintf("delete %s", in.key)
			}
			return fmt.Sprintf("%s = %d", in.key, in.value)
		case "cas":
			return fmt.Sprintf("%s: %s -> %d: %v", in.key, valueString(in.expect), in.value, output)
		}
		if v, ok := output.(int); ok {
			return fmt.Sprintf("read %s: %s", in.key, valueString(v))
		}
		return "read"
	},
	DescribeState: func(state any) string { return valueString(state.(int)) },
}

// Porcupine turns a history, the service's or the KV store's, into
// porcupine's operations.
func Porcupine(ops []Op) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for _, o := range ops {
		po := porcupine.Operation{ClientId: o.Client, Call: o.Call, Return: o.Return,
			Metadata: fmt.Sprintf("server %d, %s, index %d", o.Server, o.Status, o.Index)}
		switch o.Kind {
		case "read":
			po.Input, po.Output = regInput{op: "read"}, o.Read
		case "cas":
			po.Input = regInput{op: "cas", key: o.Key, value: o.Value, expect: o.Expect}
			if !o.Unknown() {
				po.Output = !o.Failed
			}
		default: // write, expire
			po.Input = regInput{op: "write", key: o.Key, value: o.Value}
		}
		out = append(out, po)
	}
	return out
}

func valueString(v int) string {
	if v == absent {
		return "absent"
	}
	return fmt.Sprint(v)
}

// CheckLinearizable checks a tenant's history, ended by the final read,
// with porcupine (Resolve first).
func CheckLinearizable(ops []Op, final Op, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	return porcupine.CheckOperationsVerbose(registers, Porcupine(Resolve(ops, final)), timeout)
}

// Resolve narrows the writes whose outcome is unknown, so that porcupine
// need not try every place for each (a few dozen of them, after servers
// were killed, took it past a minute):
//
//   - a write of a value no read returned is dropped: it did not apply, or
//     it applied and was overwritten unseen, and either way the history
//     without it is linearizable exactly when the history with it is;
//   - a write of a value a read returned applied before that read
//     returned;
//   - every other (a delete) applied, if at all, before the final read:
//     that read came after healing, from a leader that had committed an
//     entry of its own term, so whatever of the faults' writes was ever to
//     commit had committed.
//
// A session's expiry stays open-ended: a leader may hold it back.
func Resolve(ops []Op, final Op) []Op {
	seen := map[string]map[int]int64{} // key -> value -> the earliest return of a read that showed it
	for _, o := range append(ops, final) {
		if o.Kind != "read" {
			continue
		}
		for k, v := range o.Read {
			if seen[k] == nil {
				seen[k] = map[int]int64{}
			}
			if r, ok := seen[k][v]; !ok || o.Return < r {
				seen[k][v] = o.Return
			}
		}
	}
	out := make([]Op, 0, len(ops)+1)
	for _, o := range ops {
		if o.Kind == "write" && o.Unknown() {
			if o.Value != absent {
				r, ok := seen[o.Key][o.Value]
				if !ok {
					continue
				}
				o.Return = min(r, final.Call)
			} else {
				o.Return = final.Call
			}
			o.Return = max(o.Return, o.Call)
		}
		out = append(out, o)
	}
	return append(out, final)
}

// CheckDurable checks that the final read holds, for every key written,
// the value of a write that no acknowledged write surely followed: an
// acknowledged write is never lost.
func CheckDurable(ops []Op, final Op) []string {
	var bad []string
	for _, key := range keysOf(ops) {
		got, ok := final.Read[key]
		if !ok {
			got = absent
		}
		var acked []Op
		for _, o := range ops {
			if o.Key == key && o.Kind == "write" && !o.Unknown() {
				acked = append(acked, o)
			}
		}
		cands := map[int]bool{}
		if len(acked) == 0 {
			cands[absent] = true
		}
		for _, o := range ops {
			if o.Key != key || o.Kind == "read" {
				continue
			}
			overwritten := false
			for _, y := range acked {
				if y.Call > o.Return {
					overwritten = true
					break
				}
			}
			if !overwritten {
				cands[o.Value] = true
			}
		}
		if !cands[got] {
			last := acked[len(acked)-1]
			for _, y := range acked {
				if y.Return > last.Return {
					last = y
				}
			}
			bad = append(bad, fmt.Sprintf("%s: the write of %s acknowledged at %v (index %d) is lost: after healing %s reads %s",
				key, valueString(last.Value), time.Duration(last.Return), last.Index, key, valueString(got)))
		}
	}
	return bad
}

func keysOf(ops []Op) []string {
	seen := map[string]bool{}
	var keys []string
	for _, o := range ops {
		if o.Kind != "read" && !seen[o.Key] {
			seen[o.Key] = true
			keys = append(keys, o.Key)
		}
	}
	sort.Strings(keys)
	return keys
}

// CheckWatch checks one watcher's snapshots of the workload's service:
// indexes never go back, and each snapshot holds every acknowledged write
// at or below its index (none skipped) and none above it.
func CheckWatch(snaps []Event, ops []Op) []string {
	var bad []string
	var last uint64
	keys := keysOf(ops)
	for _, s := range snaps {
		if s.Index < last {
			bad = append(bad, fmt.Sprintf("%s: index went back from %d to %d", s.ID, last, s.Index))
		}
		last = max(last, s.Index)
		got := map[string]int{}
		for _, in := range s.Instances {
			got[in.ID] = in.Weight
		}
		for _, key := range keys {
			v, ok := got[key]
			if !ok {
				v = absent
			}
			var newest *Op
			cands := map[int]bool{}
			for i, o := range ops {
				switch {
				case o.Key != key || o.Kind == "read":
				case o.Unknown() || o.Index == 0:
					cands[o.Value] = true // applied at an index we do not know, if at all
				case o.Index <= s.Index && (newest == nil || o.Index > newest.Index):
					newest = &ops[i]
				}
			}
			if newest != nil {
				cands[newest.Value] = true
			} else {
				cands[absent] = true
			}
			if !cands[v] {
				want := "absent"
				if newest != nil {
					want = fmt.Sprintf("%s (written at index %d)", valueString(newest.Value), newest.Index)
				}
				bad = append(bad, fmt.Sprintf("%s: the snapshot at index %d shows %s = %s, want %s", s.ID, s.Index, key, valueString(v), want))
				break // one a snapshot is enough
			}
		}
	}
	return bad
}

// sameInstances reports whether a snapshot shows exactly the read's
// instances and weights.
func sameInstances(s Event, read map[string]int) bool {
	if len(s.Instances) != len(read) {
		return false
	}
	for _, in := range s.Instances {
		if v, ok := read[in.ID]; !ok || v != in.Weight {
			return false
		}
	}
	return true
}

// describe renders a read for a message.
func describe(read map[string]int) string {
	var kv []string
	for k, v := range read {
		kv = append(kv, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(kv)
	return "{" + strings.Join(kv, " ") + "}"
}

// unknownReturn is the Return of an operation whose outcome is unknown.
const unknownReturn = math.MaxInt64
