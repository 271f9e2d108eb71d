package chaos

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind int

// The faults. A fault starts at its At and heals after its Dur; every
// fault still active when the fault phase ends heals then.
const (
	KillServer       Kind = iota + 1 // kill -9 a server; restart it
	KillTenantLeader                 // kill -9 the Raft leader of a tenant's shard; restart it
	KillMetaLeader                   // kill -9 the meta shard's leader; restart it
	KillAll                          // kill -9 every server at once; restart them all
	PauseServer                      // SIGSTOP a server; SIGCONT
	PauseMember                      // SIGSTOP a member, the master half the time (sometimes past its TTL); SIGCONT
	KillMaster                       // kill -9 a tenant's master member; a new member replaces it
	StopMaster                       // SIGTERM a tenant's master member: it leaves, handing over; a new member replaces it
	ResignMaster                     // a tenant's master resigns (SIGUSR1: Member.Resign), handing over
	TransferLeader                   // SIGTERM a tenant's Raft leader (it hands its shards over); restart it
	IsolateServer                    // cut every Raft link of a server, both ways
	SplitServers                     // cut the servers in two groups
	OneWayRaft                       // cut the Raft links from one server to the others (it still hears them)
	LossyRaft                        // lose and delay messages on every Raft link into a server
	SlowRaft                         // delay every Raft link
	IsolateClient                    // cut a member's links to every server, both ways
	OneWayClient                     // a member's requests arrive, the answers do not (or the other way)
	LossyClient                      // lose and delay packets on a member's links
	ReplaceNode                      // kill -9 a server, `cluster remove` it, join a new one (--join)
	ClockJump                        // the wall clocks of a tenant leader's followers jump an hour ahead or behind; the leader hands over
	AddNode                          // a fresh server joins (--join) while the other faults go on; it stays
	RemoveNode                       // a running server is removed (`cluster remove`) while the other faults go on; it ends by itself
	numKinds                         // not a fault
)

var kindNames = [...]string{"", "kill-server", "kill-tenant-leader", "kill-meta-leader", "kill-all", "pause-server",
	"pause-member", "kill-master", "stop-master", "resign-master", "transfer-leader", "isolate-server", "split-servers", "one-way-raft", "lossy-raft",
	"slow-raft", "isolate-client", "one-way-client", "lossy-client", "replace-node", "clock-jump", "add-node", "remove-node"}

func (k Kind) String() string {
	if k <= 0 || k >= numKinds {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// Kinds is every fault kind.
func Kinds() []Kind {
	var ks []Kind
	for k := Kind(1); k < numKinds; k++ {
		ks = append(ks, k)
	}
	return ks
}

// exclusive faults run alone: every other fault has healed when they
// start, and none starts before they heal.
func (k Kind) exclusive() bool { return k == KillAll || k == ReplaceNode }

// Fault is one fault of a schedule. Its targets are drawn from the seed:
// Server and Tenant are indexes (0-based) into the scenario's live
// servers and tenants at the time the fault starts; Peer picks a second
// server or a member; a leader or a master is whoever holds it then.
type Fault struct {
	Kind   Kind          `json:"kind"`
	At     time.Duration `json:"at"`
	Dur    time.Duration `json:"dur"`
	Server int           `json:"server"`
	Peer   int           `json:"peer"`
	Tenant int           `json:"tenant"`
	Loss   float64       `json:"loss,omitempty"`
	Delay  time.Duration `json:"delay,omitempty"`
	Up     bool          `json:"up,omitempty"` // one-way-client: cut the requests (else the answers); clock-jump: ahead (else behind)
}

func (f Fault) String() string {
	s := fmt.Sprintf("%s at %v for %v", f.Kind, f.At, f.Dur)
	switch f.Kind {
	case LossyRaft, LossyClient, SlowRaft:
		s += fmt.Sprintf(" (loss %.0f%%, delay %v)", f.Loss*100, f.Delay)
	}
	return s
}

// Plan is a scenario drawn from a seed: the cluster's shape and the
// fault timeline. The same seed always gives the same Plan.
type Plan struct {
	Seed    uint64        `json:"seed"`
	Servers int           `json:"servers"` // 3 or 5
	Tenants int           `json:"tenants"`
	Phase   time.Duration `json:"phase"` // how long the faults run
	Faults  []Fault       `json:"faults"`
	// Stream: the members' SDK Clients use the client stream
	// (sdk.WithClientStream) for their sessions and watches.
	Stream bool `json:"stream,omitempty"`
}

func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %d servers, %d tenants, %d faults in %v", p.Seed, p.Servers, p.Tenants, len(p.Faults), p.Phase)
	if p.Stream {
		b.WriteString(", members on the client stream")
	}
	for _, f := range p.Faults {
		fmt.Fprintf(&b, "\n  %v", f)
	}
	return b.String()
}

// NewPlan draws a scenario from seed. Each scenario has 3 to 5 faults;
// the kind of the first cycles through every kind with the seed, so that
// any Kinds() consecutive seeds cover every fault.
func NewPlan(seed uint64, phase time.Duration) Plan {
	r := rand.New(rand.NewPCG(seed, 0x6368616f73))
	p := Plan{Seed: seed, Servers: 3, Tenants: 2, Phase: phase}
	// Half the scenarios put the members on the client stream, drawn
	// apart from the faults so that a seed's faults stay what they were.
	p.Stream = rand.New(rand.NewPCG(seed, 0x73747265616d)).IntN(2) == 1
	if r.IntN(3) == 0 {
		p.Servers, p.Tenants = 5, 3
	}
	n := 3 + r.IntN(3)
	at := 300*time.Millisecond + time.Duration(r.IntN(500))*time.Millisecond
	var busyUntil time.Duration // the end of every fault so far
	for i := 0; i < n && at < phase-time.Second; i++ {
		k := Kind(1 + r.IntN(int(numKinds)-1))
		if i == 0 {
			k = Kind(1 + seed%uint64(numKinds-1))
		}
		f := Fault{Kind: k, Server: r.IntN(5), Peer: r.IntN(5), Tenant: r.IntN(3), Up: r.IntN(2) == 0}
		f.Dur = time.Duration(500+r.IntN(2500)) * time.Millisecond
		switch k {
		case PauseMember, IsolateClient, OneWayClient:
			if f.Peer%2 == 0 && r.IntN(2) == 0 { // the master, past its TTL
				f.Dur = 3500*time.Millisecond + time.Duration(r.IntN(1500))*time.Millisecond // past the TTL (3 s)
			}
		case LossyRaft, LossyClient:
			f.Loss = []float64{0.1, 0.3, 0.6}[r.IntN(3)]
			f.Delay = time.Duration(r.IntN(80)) * time.Millisecond
		case SlowRaft:
			f.Delay = time.Duration(20+r.IntN(300)) * time.Millisecond
		case KillAll:
			f.Dur = time.Duration(300+r.IntN(1500)) * time.Millisecond
		}
		if k == RemoveNode && p.Servers+p.count(AddNode)-p.count(RemoveNode) < 4 {
			// Three servers stay: a removal from three comes after a join.
			p.Faults = append(p.Faults, Fault{Kind: AddNode, At: at, Dur: time.Second, Server: f.Server, Peer: f.Peer})
			at += 1200 * time.Millisecond
		}
		if k.exclusive() {
			at = max(at, busyUntil+300*time.Millisecond)
			if at >= phase-time.Second {
				break
			}
		}
		f.At = at
		p.Faults = append(p.Faults, f)
		busyUntil = max(busyUntil, f.At+f.Dur)
		if k.exclusive() {
			at = f.At + f.Dur + 300*time.Millisecond
		} else {
			at += time.Duration(200+r.IntN(int(f.Dur/time.Millisecond)+500)) * time.Millisecond
		}
		// No fault starts while an exclusive one runs.
		for _, g := range p.Faults {
			if g.Kind.exclusive() && at < g.At+g.Dur {
				at = g.At + g.Dur + 300*time.Millisecond
			}
		}
	}
	return p
}

// count is how many of the plan's faults are of kind k.
func (p Plan) count(k Kind) int {
	n := 0
	for _, f := range p.Faults {
		if f.Kind == k {
			n++
		}
	}
	return n
}

// overlapsExclusive is whether an exclusive fault would overlap f: the
// schedule keeps exclusive faults alone.
func (p Plan) overlapsExclusive(f Fault) bool {
	for _, g := range p.Faults {
		if g != f && (g.Kind.exclusive() || f.Kind.exclusive()) && f.At < g.At+g.Dur && g.At < f.At+f.Dur {
			return true
		}
	}
	return false
}
