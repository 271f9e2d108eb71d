package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/tenants"
)

var (
	kvPropKeys     = []string{"a", "a/b", "a/b/c", "a/b/d", "a/c", "a-b", "b", "b/x/y"}
	kvPropPrefixes = []string{"", "a", "a/b", "a/b/c", "b", "b/x", "c"}
)

// TestKVAnswerInvariants applies random store writes (puts, CAS, deletes
// of keys and subtrees, transactions, ephemeral keys and their sessions'
// ends, quota changes) and checks after each:
//   - a key's or a subtree's answer changed ⇒ its modify index (what a
//     blocking read waits on) moved, and it never goes back;
//   - the changes reported to watchers are exactly the keys whose answer
//     changed, and each subtree that changed has one of them;
//   - no ephemeral key outlives its session; usage is what the keys add up
//     to; the quotas are never exceeded by a write that grew them;
//
// and, every 25 commands, that a replica restored from a snapshot equals
// the live one.
func TestKVAnswerInvariants(t *testing.T) {
	seeds, ops := 200, 300
	if raceEnabled || testing.Short() {
		seeds = 40
	}
	for seed := range seeds {
		runKVInvariants(t, uint64(seed), ops)
	}
}

type kvAnswer struct {
	body   string
	modify uint64
}

func (p *propRun) kvAnswers() (keys, trees map[string]kvAnswer) {
	keys, trees = map[string]kvAnswer{}, map[string]kvAnswer{}
	for _, k := range kvPropKeys {
		kv, ok, _ := p.sm.KV(k)
		body := "missing"
		if ok {
			b, _ := json.Marshal(kv)
			body = string(b)
		}
		keys[k] = kvAnswer{body, p.sm.KVModifyIndex(k, false)}
	}
	for _, pre := range kvPropPrefixes {
		kvs, _, _ := p.sm.KVList(pre, "", 1000, 1<<20)
		b, _ := json.Marshal(kvs)
		trees[pre] = kvAnswer{string(b), p.sm.KVModifyIndex(pre, true)}
	}
	return keys, trees
}

func runKVInvariants(t *testing.T, seed uint64, ops int) {
	p := &propRun{t: t, r: rand.New(rand.NewPCG(seed, 11)), seed: seed, term: 1, now: 1_000_000,
		sm: NewTenant(TenantInfo{Name: "acme", Epoch: 1, Quotas: api.Quotas{MinTTLMs: 1000, MaxTTLMs: 60000}, Version: Version})}
	p.apply(OpBarrier, Barrier{Term: p.term, NowMs: p.now})
	keys, trees := p.kvAnswers()
	for i := range ops {
		usage := p.sm.Usage()
		ch := p.kvStep()
		p.checkKVQuotas(usage, p.sm.Usage())
		k2, t2 := p.kvAnswers()
		reported := map[string]bool{}
		for _, c := range ch.KV {
			reported[c.Key] = true
			if c.Index != p.index {
				t.Fatalf("seed %d: a change of %s reported at %d, applied at %d", seed, c.Key, c.Index, p.index)
			}
		}
		for _, k := range kvPropKeys {
			b, a := keys[k], k2[k]
			switch {
			case a.body != b.body && a.modify == b.modify:
				t.Fatalf("seed %d, command %d: key %s changed at modify index %d:\nbefore %s\nafter  %s\nhistory:\n%s", seed, i, k, a.modify, b.body, a.body, p.trail())
			case a.modify < b.modify:
				t.Fatalf("seed %d, command %d: key %s's modify index went back from %d to %d\nhistory:\n%s", seed, i, k, b.modify, a.modify, p.trail())
			case (a.body != b.body) != reported[k]:
				t.Fatalf("seed %d, command %d: key %s changed %t, reported %t\nhistory:\n%s", seed, i, k, a.body != b.body, reported[k], p.trail())
			}
		}
		for _, pre := range kvPropPrefixes {
			b, a := trees[pre], t2[pre]
			switch {
			case a.body != b.body && a.modify == b.modify:
				t.Fatalf("seed %d, command %d: subtree %q changed at modify index %d\nhistory:\n%s", seed, i, pre, a.modify, p.trail())
			case a.modify < b.modify:
				t.Fatalf("seed %d, command %d: subtree %q's modify index went back from %d to %d", seed, i, pre, b.modify, a.modify)
			case a.body != b.body && !slices.ContainsFunc(ch.KV, func(c KVChange) bool { return api.InSubtree(c.Key, pre) }):
				t.Fatalf("seed %d, command %d: subtree %q changed with no change reported in it", seed, i, pre)
			}
		}
		keys, trees = k2, t2
		p.checkKVState()
		if i%25 == 24 {
			p.checkRestore()
		}
	}
}

// checkKVState checks what the store's derived index must agree on.
func (p *propRun) checkKVState() {
	p.sm.mu.RLock()
	defer p.sm.mu.RUnlock()
	st := &p.sm.st
	var size int64
	for k, e := range st.KV {
		size += tenants.KVSize(k, len(e.Value))
		if e.Session != "" {
			if _, live := st.Sessions[e.Session]; !live {
				p.t.Fatalf("seed %d: key %s outlived its session\nhistory:\n%s", p.seed, k, p.trail())
			}
		}
	}
	if size != p.sm.kv.bytes || len(p.sm.kv.keys) != len(st.KV) || !sort.StringsAreSorted(p.sm.kv.keys) {
		p.t.Fatalf("seed %d: the store's index is off: %d bytes counted, %d summed; %d keys sorted, %d held", p.seed, p.sm.kv.bytes, size, len(p.sm.kv.keys), len(st.KV))
	}
}

// checkKVQuotas fails when a write that applied grew the store past a
// quota (a store may be over one only when it was lowered below it).
func (p *propRun) checkKVQuotas(before, after api.Usage) {
	maxKeys, _, maxBytes := tenants.KVLimits(p.sm.st.Quotas)
	if p.lastOutcome.Code == "" && (after.Keys > before.Keys && after.Keys > maxKeys || after.KVBytes > before.KVBytes && after.KVBytes > maxBytes) {
		p.t.Fatalf("seed %d: a write took the store over its quotas (%d keys, %d bytes; max %d, %d)\nhistory:\n%s",
			p.seed, after.Keys, after.KVBytes, maxKeys, maxBytes, p.trail())
	}
}

func (p *propRun) kvStep() Changes {
	p.now += int64(p.r.IntN(300))
	key := p.pick(kvPropKeys)
	value := []byte(fmt.Sprint(p.r.IntN(4)))
	if p.r.IntN(10) == 0 {
		value = bytes.Repeat([]byte("v"), p.r.IntN(200))
	}
	ifIndex := func() *uint64 {
		if p.r.IntN(3) != 0 {
			return nil
		}
		n := p.sm.KVModifyIndex(key, false)
		if kv, ok, _ := p.sm.KV(key); ok {
			n = kv.ModIndex
		} else {
			n = 0
		}
		if p.r.IntN(3) == 0 {
			n += uint64(p.r.IntN(3))
		}
		return &n
	}
	var ch Changes
	do := func(op Op, cmd any) {
		p.index++
		o := p.sm.Apply(p.index, Encode(op, cmd), &ch)
		b, _ := json.Marshal(cmd)
		p.history = append(p.history, fmt.Sprintf("%d %s %s -> %s %s", p.index, op, b, o.Code, o.Message))
		p.lastOutcome = o
	}
	switch n := p.r.IntN(100); {
	case n < 8:
		sid := fmt.Sprintf("sess%02d-000000000", len(p.sessions))
		p.sessions = append(p.sessions, sid)
		do(OpOpenSession, OpenSession{ID: sid, TTLMs: 5000, AtMs: p.now})
	case n < 12:
		if s := p.session(); s != "" {
			do(OpCloseSession, CloseSession{ID: s, AtMs: p.now})
		} else {
			do(OpTick, Tick{Term: p.term, NowMs: p.now})
		}
	case n < 15:
		do(OpExpire, Expire{Term: p.term, NowMs: p.now, IDs: []string{p.session()}})
	case n < 50:
		sess := ""
		if p.r.IntN(3) == 0 {
			sess = p.session()
		}
		do(OpKVPut, KVPut{Key: key, Value: value, IfIndex: ifIndex(), Session: sess, AtMs: p.now})
	case n < 65:
		do(OpKVDelete, KVDelete{Key: key, IfIndex: ifIndex(), AtMs: p.now})
	case n < 70:
		do(OpKVDelete, KVDelete{Key: p.pick(kvPropPrefixes), Prefix: true, AtMs: p.now})
	case n < 95:
		var c KVTxn
		for range p.r.IntN(3) {
			k := p.pick(kvPropKeys)
			kv, ok, _ := p.sm.KV(k)
			switch p.r.IntN(4) {
			case 0:
				c.Compare = append(c.Compare, KVCompare{Key: k, Target: CompareModIndex, Index: kv.ModIndex + uint64(p.r.IntN(2))})
			case 1:
				c.Compare = append(c.Compare, KVCompare{Key: k, Target: CompareVersion, Index: kv.Version})
			case 2:
				c.Compare = append(c.Compare, KVCompare{Key: k, Target: CompareExists, Exists: ok == (p.r.IntN(4) != 0)})
			default:
				c.Compare = append(c.Compare, KVCompare{Key: k, Target: CompareValue, Value: append([]byte{}, kv.Value...)})
			}
		}
		written := map[string]bool{}
		for range p.r.IntN(4) + 1 {
			k := p.pick(kvPropKeys)
			if written[k] {
				continue
			}
			written[k] = true
			if p.r.IntN(3) == 0 {
				c.Delete = append(c.Delete, k)
			} else {
				sess := ""
				if p.r.IntN(4) == 0 {
					sess = p.session()
				}
				c.Put = append(c.Put, KVTxnPut{Key: k, Value: value, Session: sess})
			}
		}
		do(OpKVTxn, c)
	default:
		do(OpSetQuotas, SetQuotas{Version: p.index, Quotas: api.Quotas{MaxKeys: int64(p.r.IntN(8) + 1),
			MaxKVBytes: int64(p.r.IntN(1500) + 200), MinTTLMs: 1000, MaxTTLMs: 60000}})
	}
	p.sm.Notify(&ch)
	return ch
}

// seededKV is seeded with a store: version 3, keys permanent and
// ephemeral, a subtree.
func seededKV(t testing.TB) *Tenant {
	sm := seeded(t)
	cmds := [][]byte{
		Encode(OpSetVersion, SetVersion{Version: Version}),
		Encode(OpKVPut, KVPut{Key: "app/flag", Value: []byte("on")}),
		Encode(OpKVPut, KVPut{Key: "app/db/url", Value: []byte("pg://x")}),
		Encode(OpKVPut, KVPut{Key: "jobs/owner", Value: []byte("a"), Session: "sessA-0000000000"}),
	}
	for i, c := range cmds {
		var ch Changes
		if o := sm.Apply(uint64(50+i), c, &ch); o.Code != "" {
			t.Fatalf("seed command %d: %s %s", i, o.Code, o.Message)
		}
	}
	return sm
}

// FuzzKVApply feeds arbitrary bodies of the store's commands to a tenant
// with keys: no internal error; a refused command changes nothing and
// reports no change; an applied one leaves the store's index whole; the
// state survives a snapshot round trip.
func FuzzKVApply(f *testing.F) {
	f.Add(byte(OpKVPut), []byte(`{"key":"app/flag","value":"b2Zm","if_index":51}`))
	f.Add(byte(OpKVPut), []byte(`{"key":"jobs/owner","value":"Yg==","session":"sessB-0000000000"}`))
	f.Add(byte(OpKVPut), []byte(`{"key":"a//b","value":null}`))
	f.Add(byte(OpKVDelete), []byte(`{"key":"app","prefix":true}`))
	f.Add(byte(OpKVDelete), []byte(`{"key":"app/flag","if_index":0}`))
	f.Add(byte(OpKVTxn), []byte(`{"compare":[{"key":"app/flag","target":"value","value":"b24="}],"put":[{"key":"x/y","value":""}],"delete":["app/db/url"]}`))
	f.Add(byte(OpKVTxn), []byte(`{"compare":[{"key":"nope","target":"exists"}],"put":[{"key":"x","value":"","session":"sessA-0000000000"}]}`))
	f.Add(byte(OpCloseSession), []byte(`{"id":"sessA-0000000000"}`))
	f.Fuzz(func(t *testing.T, op byte, body []byte) {
		sm := seededKV(t)
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
		p := &propRun{t: t, sm: sm, history: []string{"fuzz"}}
		p.checkKVState()
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

// TestKVCost measures what 10,000 keys cost a replica: heap, a put, a
// subtree read, a snapshot (docs/DECISIONS.md quotes it). The bounds are
// loose: the test fails on a cost of another order, not on noise.
func TestKVCost(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a measurement")
	}
	const n = 10_000
	value := bytes.Repeat([]byte("v"), 100)
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	sm := NewTenant(TenantInfo{Name: "acme", Epoch: 1, Version: Version, Quotas: api.Quotas{MaxKeys: 2 * n, MaxKVBytes: 1 << 30}})
	start := time.Now()
	for i := range n {
		// Random order: inserts land all over the sorted index.
		k := fmt.Sprintf("svc%02d/cfg/key%05d", (i*7919)%50, (i*104729)%n)
		var ch Changes
		if o := sm.Apply(uint64(i+1), Encode(OpKVPut, KVPut{Key: k, Value: value}), &ch); o.Code != "" {
			t.Fatal(o.Message)
		}
	}
	putTook := time.Since(start) / n
	runtime.GC()
	runtime.ReadMemStats(&m1)
	heap := float64(m1.HeapAlloc-m0.HeapAlloc) / n
	start = time.Now()
	const reads = 200
	for i := range reads {
		kvs, _, _ := sm.KVList(fmt.Sprintf("svc%02d", i%50), "", 1000, 1<<20)
		if len(kvs) != n/50 {
			t.Fatalf("a subtree of %d keys, want %d", len(kvs), n/50)
		}
	}
	listTook := time.Since(start) / reads
	start = time.Now()
	snap, err := sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snapTook := time.Since(start)
	start = time.Now()
	if err := NewTenant(TenantInfo{}).Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	restoreTook := time.Since(start)
	_, size := sm.kv.keys, sm.kv.bytes
	t.Logf("%d keys of 20-byte names and 100-byte values: %.0f B of heap a key (max_kv_bytes counts %d), put %v, a subtree of %d keys read in %v, snapshot %d KB in %v, restored in %v",
		n, heap, size/n, putTook, n/50, listTook, len(snap)>>10, snapTook, restoreTook)
	if putTook > 200*time.Microsecond || listTook > 20*time.Millisecond {
		t.Fatalf("a put took %v, a subtree read %v: the store does not scale to %d keys", putTook, listTook, n)
	}
}

// BenchmarkKVPut is a put of an existing key and of a new key in a store
// of 10,000 keys.
func BenchmarkKVPut(b *testing.B) {
	sm := NewTenant(TenantInfo{Name: "acme", Epoch: 1, Version: Version, Quotas: api.Quotas{MaxKeys: 1 << 30, MaxKVBytes: 1 << 40}})
	value := bytes.Repeat([]byte("v"), 100)
	index := uint64(0)
	put := func(k string) {
		index++
		var ch Changes
		if o := sm.Apply(index, Encode(OpKVPut, KVPut{Key: k, Value: value}), &ch); o.Code != "" {
			b.Fatal(o.Message)
		}
	}
	for i := range 10_000 {
		put(fmt.Sprintf("svc%02d/cfg/key%05d", i%50, i))
	}
	b.Run("update", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			put(fmt.Sprintf("svc%02d/cfg/key%05d", i%50, i%10_000))
		}
	})
	b.Run("create", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			put(fmt.Sprintf("svc%02d/new/key%08d", i%50, i))
		}
	})
}

// TestWatchKVWakes: a store watch is woken by a put or delete of its key,
// or of a key in its subtree, and by nothing else.
func TestWatchKVWakes(t *testing.T) {
	sm := NewTenant(TenantInfo{Name: "acme", Epoch: 1, Version: Version})
	index := uint64(0)
	apply := func(op Op, cmd any) {
		t.Helper()
		index++
		var ch Changes
		if o := sm.Apply(index, Encode(op, cmd), &ch); o.Code != "" {
			t.Fatalf("%s: %s", op, o.Message)
		}
		sm.Notify(&ch)
	}
	for _, k := range []string{"app/a", "app/b", "other"} {
		apply(OpKVPut, KVPut{Key: k, Value: []byte("1")})
	}
	type watch struct {
		key    string
		prefix bool
		wake   <-chan struct{}
	}
	var watches []*watch
	for _, w := range []watch{{"app", true, nil}, {"app/a", false, nil}, {"app/a", true, nil}, {"app-x", true, nil}, {"", true, nil}, {"app/new", false, nil}} {
		_, _, wake, done := sm.WatchKV(w.key, w.prefix, 0)
		defer done()
		w.wake = wake
		watches = append(watches, &w)
	}
	woken := func() string {
		var out []string
		for _, w := range watches {
			select {
			case <-w.wake:
				out = append(out, fmt.Sprintf("%s/%t", w.key, w.prefix))
				_, _, w.wake, _ = sm.WatchKV(w.key, w.prefix, 0)
			default:
			}
		}
		return fmt.Sprint(out)
	}
	for _, tt := range []struct {
		op   Op
		cmd  any
		want string
	}{
		{OpKVPut, KVPut{Key: "other", Value: []byte("2")}, "[/true]"},
		{OpKVPut, KVPut{Key: "apple", Value: []byte("2")}, "[/true]"},
		{OpKVPut, KVPut{Key: "app/b", Value: []byte("2")}, "[app/true /true]"},
		{OpKVDelete, KVDelete{Key: "app/a"}, "[app/true app/a/false app/a/true /true]"},
		{OpKVPut, KVPut{Key: "app/new", Value: nil}, "[app/true /true app/new/false]"},
		{OpKVTxn, KVTxn{Put: []KVTxnPut{{Key: "app-x/y", Value: []byte("1")}, {Key: "x", Value: []byte("1")}}}, "[app-x/true /true]"},
	} {
		apply(tt.op, tt.cmd)
		if got := woken(); got != tt.want {
			t.Fatalf("%s %+v woke %s, want %s", tt.op, tt.cmd, got, tt.want)
		}
	}
}

// TestSnapshotBytes: Snapshot, which encodes the store's keys outside the
// lock, writes the bytes of the whole state encoded at once.
func TestSnapshotBytes(t *testing.T) {
	for name, sm := range map[string]*Tenant{"empty": NewTenant(TenantInfo{Name: "acme", Epoch: 1}), "services": seeded(t), "keys": seededKV(t)} {
		whole, err := Marshal(&sm.st)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := sm.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if want := append([]byte{CodecVersion}, whole...); !bytes.Equal(snap, want) {
			t.Errorf("%s: Snapshot() =\n%s\nwant\n%s", name, snap[1:], whole)
		}
	}
}
