package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/rafting/rafting/api"
)

// TestServiceAnswerInvariants applies random commands (every op a tenant
// shard takes, valid and not) and checks after each one, for every service:
//   - the answer changed ⇒ its modify index moved (blocking queries, the
//     cached answer and the SDK's "same index, same content" rest on it);
//   - the cached answer (ServiceAnswer) equals an uncached read;
//
// and, every 50 commands, that a replica restored from a snapshot equals the
// live one (snapshot bytes, dump, every answer).
func TestServiceAnswerInvariants(t *testing.T) {
	seeds, ops := 300, 300
	if raceEnabled || testing.Short() {
		seeds = 80
	}
	for seed := range seeds {
		runInvariants(t, uint64(seed), ops)
	}
}

var (
	propServices  = []string{"db", "web", "jobs"}
	propInstances = []string{"i1", "i2", "i3", "i4"}
)

type propRun struct {
	t        *testing.T
	r        *rand.Rand
	sm       *Tenant
	index    uint64
	term     uint64
	now      int64
	sessions []string // every session ID ever opened (some ended)
	seed     uint64
	history  []string
	// lastOutcome is the last command's (kv_test.go's steps).
	lastOutcome Outcome
}

func runInvariants(t *testing.T, seed uint64, ops int) {
	p := &propRun{t: t, r: rand.New(rand.NewPCG(seed, 7)), seed: seed, term: 1, now: 1_000_000,
		sm: NewTenant(TenantInfo{Name: "acme", Epoch: 1, Quotas: api.Quotas{MinTTLMs: 1000, MaxTTLMs: 60000}, Version: Version})}
	p.apply(OpBarrier, Barrier{Term: p.term, NowMs: p.now})
	before := p.answers()
	for i := range ops {
		p.step()
		after := p.answers()
		for _, name := range propServices {
			b, a := before[name], after[name]
			if a.body != b.body && a.modify == b.modify {
				t.Fatalf("seed %d, command %d (%s): service %s changed at modify index %d:\nbefore %s\nafter  %s\nhistory:\n%s",
					seed, i, p.history[len(p.history)-1], name, a.modify, b.body, a.body, p.trail())
			}
			if a.modify < b.modify {
				t.Fatalf("seed %d, command %d: service %s's modify index went back from %d to %d", seed, i, name, b.modify, a.modify)
			}
			p.checkTail(name)
		}
		before = after
		if i%50 == 49 {
			p.checkRestore()
		}
	}
}

type answer struct {
	body   string
	modify uint64
}

// answers reads every service, without the applied index (which moves on
// every entry).
func (p *propRun) answers() map[string]answer {
	out := map[string]answer{}
	for _, name := range propServices {
		r := p.sm.Service(name)
		modify := r.ModifyIndex
		r.Index, r.ModifyIndex = 0, 0
		b, err := json.Marshal(r)
		if err != nil {
			p.t.Fatal(err)
		}
		out[name] = answer{body: string(b), modify: modify}
	}
	return out
}

func (p *propRun) checkTail(name string) {
	_, a, err := p.sm.ServiceAnswer(name)
	if err != nil {
		p.t.Fatal(err)
	}
	r := p.sm.Service(name)
	r.Index = 0
	fresh, _ := json.Marshal(r)
	tail := a.AppendTo(nil)
	if want := append(fresh[len(`{"index":0,`):], '\n'); !bytes.Equal(tail, want) || a.Len() != len(tail) {
		p.t.Fatalf("seed %d: service %s's cached answer differs from a read:\ncached %s\nread   %s\nhistory:\n%s", p.seed, name, tail, want, p.trail())
	}
}

func (p *propRun) checkRestore() {
	snap, err := p.sm.Snapshot()
	if err != nil {
		p.t.Fatal(err)
	}
	other := NewTenant(TenantInfo{})
	if err := other.Restore(bytes.NewReader(snap)); err != nil {
		p.t.Fatalf("seed %d: restore: %v", p.seed, err)
	}
	again, _ := other.Snapshot()
	if !bytes.Equal(snap, again) || other.Dump() != p.sm.Dump() {
		p.t.Fatalf("seed %d: a restored replica differs from the live one", p.seed)
	}
	for _, name := range propServices {
		a, b := p.sm.Service(name), other.Service(name)
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if !bytes.Equal(ja, jb) {
			p.t.Fatalf("seed %d: service %s restored as %s, live %s", p.seed, name, jb, ja)
		}
	}
}

func (p *propRun) trail() string {
	var b bytes.Buffer
	for _, h := range p.history[max(0, len(p.history)-20):] {
		b.WriteString("  " + h + "\n")
	}
	return b.String()
}

func (p *propRun) apply(op Op, cmd any) Outcome {
	p.index++
	var ch Changes
	o := p.sm.Apply(p.index, Encode(op, cmd), &ch)
	b, _ := json.Marshal(cmd)
	p.history = append(p.history, fmt.Sprintf("%d %s %s -> %s %s", p.index, op, b, o.Code, o.Message))
	return o
}

func (p *propRun) pick(from []string) string { return from[p.r.IntN(len(from))] }

// session is a known session ID (live or ended), or a new one, or "".
func (p *propRun) session() string {
	switch {
	case len(p.sessions) == 0 || p.r.IntN(8) == 0:
		return ""
	default:
		return p.pick(p.sessions)
	}
}

func (p *propRun) master(svc string) (string, uint64, string) {
	if m := p.sm.Service(svc).Master; m != nil {
		for _, id := range p.sessions {
			if api.SessionTag(id) == m.SessionTag {
				return m.Instance, m.FencingToken, id
			}
		}
		return m.Instance, m.FencingToken, ""
	}
	return "", 0, ""
}

func (p *propRun) step() {
	p.now += int64(p.r.IntN(300))
	svc, id := p.pick(propServices), p.pick(propInstances)
	switch n := p.r.IntN(100); {
	case n < 12:
		sid := fmt.Sprintf("sess%02d-000000000", len(p.sessions))
		p.sessions = append(p.sessions, sid)
		p.apply(OpOpenSession, OpenSession{ID: sid, TTLMs: 5000, LeaseMs: int64(p.r.IntN(2)) * 1000, AtMs: p.now})
	case n < 17:
		if s := p.session(); s != "" {
			p.apply(OpCloseSession, CloseSession{ID: s, AtMs: p.now})
		}
	case n < 22:
		var ids []string
		for range p.r.IntN(3) + 1 {
			if s := p.session(); s != "" {
				ids = append(ids, s)
			}
		}
		p.apply(OpExpire, Expire{Term: p.term, NowMs: p.now, IDs: ids})
	case n < 50:
		reg := api.RegisterRequest{Address: id + ":1", Session: p.session()}
		if p.r.IntN(2) == 0 {
			reg.Mode = api.ModeMasterStandby
		}
		reg.State = []api.State{"", api.StateReady, api.StateStarting, api.StateDraining}[p.r.IntN(4)]
		if p.r.IntN(4) == 0 {
			w := p.r.IntN(200)
			reg.Weight = &w
		}
		reg.Priority = p.r.IntN(3)
		if p.r.IntN(6) == 0 {
			reg.ColdStart = &api.ColdStart{MinReady: p.r.IntN(3), SettleMs: int64(p.r.IntN(2)) * 1000}
		}
		caller := ""
		if p.r.IntN(3) == 0 {
			caller = p.session()
		}
		p.apply(OpRegister, Register{Service: svc, ID: id, Instance: reg, Caller: caller, AtMs: p.now})
	case n < 62:
		caller := ""
		if p.r.IntN(2) == 0 {
			_, _, caller = p.master(svc)
		}
		p.apply(OpDeregister, Deregister{Service: svc, ID: id, Caller: caller, AtMs: p.now})
	case n < 67:
		p.apply(OpSetPolicy, SetPolicy{Service: svc, ColdStart: api.ColdStart{MinReady: p.r.IntN(3), SettleMs: int64(p.r.IntN(3)) * 500}, AtMs: p.now})
	case n < 77:
		inst, token, holder := p.master(svc)
		if p.r.IntN(4) == 0 {
			token++
		}
		caller := holder
		if p.r.IntN(3) == 0 {
			caller = p.session()
		}
		to := ""
		if p.r.IntN(3) == 0 {
			to = p.pick(propInstances)
		}
		p.apply(OpResign, Resign{Service: svc, Instance: inst, Token: token, To: to, Caller: caller, AtMs: p.now})
	case n < 83:
		_, token, _ := p.master(svc)
		p.apply(OpRelease, Release{Term: p.term, NowMs: p.now, Service: svc, Token: token})
	case n < 91:
		p.apply(OpTick, Tick{Term: p.term, NowMs: p.now})
	case n < 95:
		var items []RenewItem
		if s := p.session(); s != "" {
			items = append(items, RenewItem{ID: s, RemainingMs: int64(p.r.IntN(6000))})
		}
		p.apply(OpRenew, Renew{Term: p.term, NowMs: p.now, Items: items})
	case n < 97:
		p.term++
		p.apply(OpBarrier, Barrier{Term: p.term, NowMs: p.now})
	default:
		p.apply(OpSetQuotas, SetQuotas{Version: uint64(p.index), Quotas: api.Quotas{MaxInstances: int64(p.r.IntN(12)), MinTTLMs: 1000, MaxTTLMs: 60000}})
	}
}

// TestServiceAnswerShared: readers that ask for a large answer at once share
// one encoding, made outside the tenant's lock: a write applies meanwhile.
func TestServiceAnswerShared(t *testing.T) {
	sm := NewTenant(TenantInfo{Name: "acme", Epoch: 1, Version: Version})
	meta := map[string]string{"m": strings.Repeat("x", 4000)}
	for i := range 2000 {
		var ch Changes
		o := sm.Apply(uint64(i+1), Encode(OpRegister, Register{Service: "big", ID: fmt.Sprintf("i%d", i),
			Instance: api.RegisterRequest{Address: "a:1", Meta: meta}}), &ch)
		if o.Code != "" {
			t.Fatal(o.Message)
		}
	}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, a, err := sm.ServiceAnswer("big"); err != nil || a.Len() < 8_000_000 {
				t.Errorf("answer of %d bytes, %v", a.Len(), err)
			}
		})
	}
	// A write to another service applies while the readers encode.
	var ch Changes
	applied := make(chan struct{})
	go func() {
		sm.Apply(3000, Encode(OpRegister, Register{Service: "small", ID: "s", Instance: api.RegisterRequest{Address: "a:1"}}), &ch)
		close(applied)
	}()
	wg.Wait()
	<-applied
	if n := sm.encodes.Load(); n != 1 {
		t.Fatalf("16 readers of one answer encoded it %d times, want once", n)
	}
}
