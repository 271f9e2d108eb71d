package chaos

import (
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/rafting/rafting/api"
)

// The configuration store in the campaign: a third workload client per
// tenant puts, deletes and compare-and-sets three keys (kvPrefix/k0..k2)
// and reads them consistently; its history is checked linearizable with a
// register-with-CAS model, apart from the service's.

// kvPrefix is the subtree the KV client writes and reads.
const kvPrefix = "lin"

// kvClient is the workload's KV client: puts of unique values, deletes,
// compare-and-sets (a transaction comparing the value the client last
// read, absent included, then putting a unique value), consistent reads.
func (w *workload) kvClient(c *client, r *mrand.Rand) {
	last := map[string]int{} // what this client last read of each key
	for !w.stop.Load() {
		key := fmt.Sprintf("k%d", r.IntN(3))
		switch x := r.IntN(20); {
		case x < 6:
			w.kvWrite(c, r, key, int(w.seq.Add(1)))
		case x < 8:
			w.kvWrite(c, r, key, absent)
		case x < 13:
			expect, ok := last[key]
			if !ok {
				expect = absent
			}
			w.kvCAS(c, r, key, expect, int(w.seq.Add(1)))
		default:
			if read, ok := w.kvRead(c, r); ok {
				last = map[string]int{}
				for _, k := range []string{"k0", "k1", "k2"} {
					v, ok := read[k]
					if !ok {
						v = absent
					}
					last[k] = v
				}
			}
		}
		w.pause(r)
	}
}

func (w *workload) kvPath(key string) string { return w.path("/kv/" + kvPrefix + "/" + key) }

// kvWrite puts value (or deletes the key: absent), recorded unless it
// surely did not apply.
func (w *workload) kvWrite(c *client, r *mrand.Rand, key string, value int) {
	id := w.server(r)
	o := Op{Client: c.id, Kind: "write", Key: key, Value: value, Call: w.now(), Server: id}
	var a answer
	if value == absent {
		a = w.do(c, id, http.MethodDelete, w.kvPath(key), nil)
	} else {
		a = w.do(c, id, http.MethodPut, w.kvPath(key), rawValue(value))
	}
	if w.answered(&o, a) {
		w.recordKV(o)
	}
}

// rawValue is a body do sends as JSON: a JSON number, which the server,
// with no JSON Content-Type, stores as its bytes ("123").
type rawValue int

// kvCAS compare-and-sets key from expect to value. A 409 is a definite
// failure, an observation like a read's: the key did not hold expect.
func (w *workload) kvCAS(c *client, r *mrand.Rand, key string, expect, value int) {
	id := w.server(r)
	cmp := api.KVCompare{Key: kvPrefix + "/" + key}
	if expect == absent {
		no := false
		cmp.Exists = &no
	} else {
		s := strconv.Itoa(expect)
		cmp.Text = &s
	}
	text := strconv.Itoa(value)
	txn := api.KVTxnRequest{Compare: []api.KVCompare{cmp}, Put: []api.KVTxnPut{{Key: kvPrefix + "/" + key, Text: &text}}}
	o := Op{Client: c.id, Kind: "cas", Key: key, Value: value, Expect: expect, Call: w.now(), Server: id}
	a := w.do(c, id, http.MethodPost, w.path("/kv:txn"), txn)
	switch {
	case a.err == nil && a.status == http.StatusConflict && strings.Contains(string(a.body), `"compare":0`):
		o.Return, o.Status, o.Failed = w.now(), a.String(), true
		w.recordKV(o)
	case w.answered(&o, a):
		w.recordKV(o)
	}
}

// kvRead is a consistent read of the subtree, recorded when it answered.
func (w *workload) kvRead(c *client, r *mrand.Rand) (map[string]int, bool) {
	id := w.server(r)
	o := Op{Client: c.id, Kind: "read", Call: w.now(), Server: id}
	q := "?prefix=true&consistent=true"
	if w.s.opts.Control == StaleReads {
		q = "?prefix=true"
	}
	a := w.do(c, id, http.MethodGet, w.path("/kv/"+kvPrefix)+q, nil)
	o.Return, o.Status = w.now(), a.String()
	if a.err != nil || a.status != http.StatusOK {
		return nil, false
	}
	read, index, ok := parseKVList(a.body)
	if !ok {
		return nil, false
	}
	o.Read, o.Index = read, index
	w.recordKV(o)
	return read, true
}

// parseKVList reads a subtree answer into key -> value.
func parseKVList(body []byte) (map[string]int, uint64, bool) {
	var l api.KVListResponse
	if json.Unmarshal(body, &l) != nil {
		return nil, 0, false
	}
	read := map[string]int{}
	for _, kv := range l.KVs {
		v, err := strconv.Atoi(string(kv.Value))
		if err != nil {
			return nil, 0, false
		}
		read[strings.TrimPrefix(kv.Key, kvPrefix+"/")] = v
	}
	return read, l.Index, true
}

func (w *workload) recordKV(o Op) {
	w.mu.Lock()
	w.kvOps = append(w.kvOps, o)
	w.mu.Unlock()
}

// kvHistory is every KV operation so far.
func (w *workload) kvHistory() []Op {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Op(nil), w.kvOps...)
}

// CheckKVLinearizable checks a tenant's KV history, ended by the final
// read, with porcupine (ResolveKV first).
func CheckKVLinearizable(ops []Op, final Op, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	return porcupine.CheckOperationsVerbose(registers, Porcupine(ResolveKV(ops, final)), timeout)
}

// ResolveKV narrows the writes and CASes whose outcome is unknown, as
// Resolve does the service's, with one more observer: a CAS that applied
// saw the value it expected, and one refused saw that the key did not
// hold it — which an unknown write nobody read may explain. So:
//
//   - one whose value a read (or an applied CAS's expectation) showed
//     applied before that read returned;
//   - a delete stays open-ended (absent is no one's value);
//   - one whose value nobody saw, with a refused CAS of its key after it
//     began, stays open-ended (it may have applied and made that CAS
//     fail, or never applied: placed after the final read, it changes
//     nothing checked);
//   - any other is dropped: it did not apply, or applied and was
//     overwritten unseen, and the history is linearizable without it
//     exactly when it is with it.
func ResolveKV(ops []Op, final Op) []Op {
	seen := map[string]map[int]int64{} // key -> value -> the earliest return of an op that showed it
	see := func(key string, v int, at int64) {
		if seen[key] == nil {
			seen[key] = map[int]int64{}
		}
		if r, ok := seen[key][v]; !ok || at < r {
			seen[key][v] = at
		}
	}
	for _, o := range append(ops, final) {
		switch {
		case o.Kind == "read":
			for k, v := range o.Read {
				see(k, v, o.Return)
			}
		case o.Kind == "cas" && !o.Unknown() && !o.Failed:
			see(o.Key, o.Expect, o.Return)
		}
	}
	refusedAfter := func(key string, call int64) bool {
		for _, o := range ops {
			if o.Kind == "cas" && o.Failed && o.Key == key && o.Return > call {
				return true
			}
		}
		return false
	}
	out := make([]Op, 0, len(ops)+1)
	for _, o := range ops {
		if o.Kind != "read" && o.Unknown() {
			switch r, ok := seen[o.Key][o.Value]; {
			case o.Value != absent && ok:
				o.Return = max(min(r, final.Call), o.Call)
			case o.Kind == "write" && o.Value == absent:
				// open-ended: a delete that never applied is placed
				// after the final read
			case refusedAfter(o.Key, o.Call):
				// open-ended
			default:
				continue
			}
		}
		out = append(out, o)
	}
	return append(out, final)
}

// kvStats summarises a KV history.
func kvStats(ops []Op) string {
	var acked, unknown, reads, cas, refused int
	for _, o := range ops {
		switch {
		case o.Kind == "read":
			reads++
		case o.Unknown():
			unknown++
		case o.Failed:
			refused++
		default:
			acked++
		}
		if o.Kind == "cas" {
			cas++
		}
	}
	return fmt.Sprintf("kv: %d writes acknowledged (%d CAS in all), %d CAS refused, %d unknown, %d reads", acked, cas, refused, unknown, reads)
}

// kvConsistent reads the KV subtree consistently from any running server,
// trying for up to wait: the final read of a tenant's KV history.
func (s *scenario) kvConsistent(tn *tenant, wait time.Duration) (map[string]int, uint64, bool) {
	deadline := time.Now().Add(wait)
	for i := 0; ; i++ {
		if up := s.upIDs(); len(up) > 0 {
			code, b, _, err := s.call(up[i%len(up)], tn.token, http.MethodGet, "/v1/tenants/"+tn.name+"/kv/"+kvPrefix+"?prefix=true&consistent=true", nil, time.Second)
			if err == nil && code == http.StatusOK {
				if read, index, ok := parseKVList(b); ok {
					return read, index, true
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, 0, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkKV runs the KV history's checker: linearizability, CAS included.
func (s *scenario) checkKV(tn *tenant) {
	call := tn.work.now()
	read, index, ok := s.kvConsistent(tn, 20*time.Second)
	if !ok {
		s.violation("liveness", tn.name, "no consistent read of the key-value subtree %s within 20s of healing", kvPrefix)
		return
	}
	final := Op{Client: 99, Kind: "read", Call: call, Return: tn.work.now(), Read: read, Index: index, Status: "final"}
	tn.kvFinal = &final
	ops := tn.work.kvHistory()
	s.note("tenant %s: %s", tn.name, kvStats(ops))
	switch res, _ := CheckKVLinearizable(ops, final, 30*time.Second); res {
	case porcupine.Illegal:
		s.violation("linearizability", tn.name, "the history of %d key-value operations is not linearizable", len(ops)+1)
	case porcupine.Unknown:
		s.note("tenant %s: the key-value linearizability check did not finish within 30s", tn.name)
	}
}
