package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
)

// Control is a negative control: one rule broken on purpose, which one
// checker must catch, or that checker proves nothing.
type Control int

// The negative controls; each names the checker that must catch it.
const (
	NoControl           Control = iota
	LedgerIgnoresTokens         // the ledger accepts any token; a stale master's write goes in (safety)
	MemberIgnoresCtx            // members act on their first Term for ever (safety)
	StaleReads                  // the workload reads without ?consistent=true (linearizability)
	AckLostWrites               // writes acknowledged that were never sent (durability)
	StaleWatch                  // watchers stop applying changes after two snapshots (watch)
	UnhealedReplica             // one server stays cut off while the replicas are compared (convergence)
	ClockBehind                 // the clock checker's reference clock is an hour behind (clock)
	numControls
)

var controlNames = [...]string{"none", "ledger-ignores-tokens", "member-ignores-ctx", "stale-reads",
	"ack-lost-writes", "stale-watch", "unhealed-replica", "clock-behind"}

func (c Control) String() string { return controlNames[c] }

// Checker is the checker a control must trip.
func (c Control) Checker() string {
	return [...]string{"", "safety", "safety", "linearizability", "durability", "watch", "convergence", "clock"}[c]
}

// Controls is every negative control.
func Controls() []Control {
	var cs []Control
	for c := Control(1); c < numControls; c++ {
		cs = append(cs, c)
	}
	return cs
}

// ControlPlan is the scenario a control runs: faults chosen so that the
// broken rule is bound to show.
func ControlPlan(c Control, seed uint64) Plan {
	p := Plan{Seed: seed, Servers: 3, Tenants: 1, Phase: 6 * time.Second}
	switch c {
	case LedgerIgnoresTokens:
		p.Faults = []Fault{{Kind: KillMaster, At: time.Second, Dur: 2 * time.Second}}
	case MemberIgnoresCtx:
		p.Faults = []Fault{{Kind: PauseMember, At: time.Second, Dur: 4500 * time.Millisecond}} // Peer 0: the master
		// The members' sessions on the client stream: caught there too.
		p.Stream = true
	case StaleWatch:
		p.Stream = true // the watchers' watches on the client stream
	case StaleReads:
		p.Faults = []Fault{{Kind: IsolateServer, At: time.Second, Dur: 4 * time.Second}}
	case UnhealedReplica:
		p.Faults = []Fault{{Kind: IsolateServer, At: time.Second, Dur: 4 * time.Second}}
	}
	return p
}

// Options are a scenario's settings.
type Options struct {
	Control Control
	// Log, if set, receives progress lines.
	Log func(format string, args ...any)
}

// Violation is one broken rule.
type Violation struct {
	Checker string `json:"checker"`
	Tenant  string `json:"tenant,omitempty"`
	Detail  string `json:"detail"`
}

func (v Violation) String() string {
	if v.Tenant != "" {
		return fmt.Sprintf("%s: tenant %s: %s", v.Checker, v.Tenant, v.Detail)
	}
	return v.Checker + ": " + v.Detail
}

// Result is what a scenario did and found.
type Result struct {
	Plan       Plan          `json:"plan"`
	Control    string        `json:"control,omitempty"`
	Faults     int           `json:"faults"`     // faults injected
	Injected   map[Kind]int  `json:"injected"`   // faults injected, by kind
	Operations int           `json:"operations"` // workload operations and ledger writes
	Violations []Violation   `json:"violations"`
	Took       time.Duration `json:"took"`
	Dir        string        `json:"dir,omitempty"` // where Save saved it
	Timeline   []string      `json:"timeline"`

	save func(out string) string
}

// member is one chaosmember process.
type member struct {
	id     string
	mode   string
	tenant *tenant
	proc   *proctest.Proc
}

// tenant is one tenant of a scenario and everything that uses it.
type tenant struct {
	name    string
	token   string
	members []*member // every process ever started, in order
	next    int
	work    *workload
	final   *Op // the final consistent read
	kvFinal *Op // the final consistent read of the key-value subtree
}

type scenario struct {
	t       *testing.T
	plan    Plan
	opts    Options
	start   time.Time
	net     *network
	ledger  *Ledger
	cluster *proctest.Cluster // its Servers only from the goroutine that joins: others read servers
	member  string            // the chaosmember binary
	skewDir string            // each server's wall-clock skew, a file by ID
	tenants []*tenant
	removed map[int]bool
	down    map[int]bool // killed, not restarted yet
	paused  map[*proctest.Proc]bool
	act     map[int]*active // the faults under way (runFaults' goroutine only)
	// removals are the node removals (RemoveNode) under way, each in its
	// own goroutine; heal waits for them.
	removals sync.WaitGroup

	mu       sync.Mutex
	removing int                // the server a removal under way removes, 0 when none
	servers  []*proctest.Server // cluster.Servers, as of the last join
	marks    []mark
	timeline []string
	faults   int
	injected map[Kind]int
	v        []Violation
}

// Run runs one scenario in t: it starts the cluster and the processes,
// injects the plan's faults, heals them, checks, and stops everything it
// started. It fails t only on a harness error; violations are in the
// Result.
func Run(t *testing.T, plan Plan, opts Options) *Result {
	begun := time.Now()
	s := &scenario{t: t, plan: plan, opts: opts, start: begun, removed: map[int]bool{}, down: map[int]bool{},
		paused: map[*proctest.Proc]bool{}, injected: map[Kind]int{}}
	var err error
	if s.ledger, err = NewLedger(); err != nil {
		t.Fatal(err)
	}
	defer s.ledger.Close()
	s.ledger.IgnoreTokens = opts.Control == LedgerIgnoresTokens
	if s.net, err = newNetwork(plan.Seed<<16, plan.Servers+2); err != nil {
		t.Fatal(err)
	}
	defer s.net.close()
	s.member = proctest.Build(t, "github.com/rafting/rafting/internal/chaos/cmd/chaosmember")
	s.skewDir = t.TempDir()
	s.cluster = proctest.StartClusterWith(t, proctest.Options{Servers: plan.Servers, RTT: 50 * time.Millisecond,
		Args: []string{"--logdb", "tiny"}, Server: s.net.server, Tags: "chaos",
		Env: func(id int) []string { return []string{"RAFTING_CHAOS_WALL_SKEW=" + s.skewFile(id)} }})
	s.servers = slices.Clone(s.cluster.Servers)
	s.note("cluster of %d ready", plan.Servers)
	for i := range plan.Tenants {
		s.tenants = append(s.tenants, s.newTenant(fmt.Sprintf("t%d", i)))
	}
	for _, tn := range s.tenants {
		for prio := 3; prio >= 1; prio-- {
			s.startMember(tn, "master", prio)
		}
		s.startMember(tn, "farm", 0)
		s.startMember(tn, "watch", 0)
		tn.work = &workload{s: s, tenant: tn.name, token: tn.token}
		tn.work.start()
	}
	for _, tn := range s.tenants {
		if _, ok := s.masterOf(tn, 30*time.Second); !ok {
			s.violation("liveness", tn.name, "no master within 30s of the start")
		}
	}
	s.note("masters elected; faults begin")
	s.runFaults()
	s.note("fault phase over; healing")
	s.heal()
	time.Sleep(2 * time.Second) // the workload goes on, healed
	s.zombie()
	for _, tn := range s.tenants {
		tn.work.halt()
	}
	ledgerWrites := len(s.ledger.Log())
	// Let the sessions the workload abandoned expire (their instances
	// go with them), so the replicas and caches compared hold still.
	var settled int64
	for _, tn := range s.tenants {
		settled = max(settled, tn.work.settled())
	}
	wait := min(time.Duration(settled)+time.Second-time.Since(s.start), 5*time.Second)
	time.Sleep(wait)
	s.note("workload stopped; checking")
	s.check()
	s.stopMembers()
	r := &Result{Plan: plan, Faults: s.faults, Injected: s.injected, Violations: s.v, Took: time.Since(begun), Timeline: s.timeline}
	if opts.Control != NoControl {
		r.Control = opts.Control.String()
	}
	r.Operations = ledgerWrites
	for _, tn := range s.tenants {
		r.Operations += len(tn.work.history()) + len(tn.work.kvHistory())
	}
	r.save = func(out string) string { return s.save(r, out) }
	return r
}

// Save writes the scenario's record (plan and seed, timeline, histories,
// member events, ledger, logs, porcupine's visualization) to a directory
// under out, and returns it.
func (r *Result) Save(out string) string {
	r.Dir = r.save(out)
	return r.Dir
}

// note adds a line to the timeline (and the log).
func (s *scenario) note(format string, args ...any) {
	line := fmt.Sprintf("%7.3fs ", time.Since(s.start).Seconds()) + fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.timeline = append(s.timeline, line)
	s.mu.Unlock()
	if s.opts.Log != nil {
		s.opts.Log("seed %d: %s", s.plan.Seed, line)
	}
}

func (s *scenario) violation(checker, tenant, format string, args ...any) {
	v := Violation{Checker: checker, Tenant: tenant, Detail: fmt.Sprintf(format, args...)}
	s.mu.Lock()
	s.v = append(s.v, v)
	s.mu.Unlock()
	s.note("VIOLATION %v", v)
}

// serverIDs is every server not removed, by ID.
func (s *scenario) serverIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []int
	for _, sv := range s.servers {
		if !s.removed[sv.ID] {
			ids = append(ids, sv.ID)
		}
	}
	return ids
}

// upIDs is every server that runs (not removed, not killed).
func (s *scenario) upIDs() []int {
	var up []int
	for _, id := range s.serverIDs() {
		s.mu.Lock()
		down := s.down[id]
		s.mu.Unlock()
		if !down {
			up = append(up, id)
		}
	}
	return up
}

var admin = &http.Client{Timeout: 2 * time.Second}

// call sends one request to server id's own API (no proxy: the harness
// observes from outside the faults).
func (s *scenario) call(id int, token, method, path string, body any, timeout time.Duration) (int, []byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var rd io.Reader = http.NoBody
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.server(id).API+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := admin.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

// newTenant creates a tenant with quotas no workload reaches.
func (s *scenario) newTenant(name string) *tenant {
	quotas := api.Quotas{RequestsPerSecond: 100_000, Burst: 100_000, WritesPerSecond: 100_000}
	b := s.cluster.Must(1, proctest.AdminToken, http.MethodPost, "/v1/tenants",
		api.CreateTenantRequest{Name: name, Quotas: quotas, Secret: proctest.Secret(name)})
	var t api.Tenant
	if err := json.Unmarshal(b, &t); err != nil {
		s.t.Fatal(err)
	}
	return &tenant{name: name, token: t.Token}
}

// startMember starts a chaosmember of the tenant.
func (s *scenario) startMember(tn *tenant, mode string, priority int) *member {
	tn.next++
	id := fmt.Sprintf("%s-%s%d", tn.name, mode, tn.next)
	env := []string{"RAFTING_SERVERS=" + s.net.advertised(s.serverIDs()), "RAFTING_TENANT=" + tn.name, "RAFTING_TOKEN=" + tn.token}
	args := []string{"-mode", mode, "-id", id, "-route", routeFlag(s.net.routes(tn.name + "/" + id))}
	if s.plan.Stream {
		args = append(args, "-stream")
	}
	switch mode {
	case "master":
		args = append(args, "-service", "ledger", "-priority", fmt.Sprint(priority), "-ledger", s.ledger.URL())
		if s.opts.Control == MemberIgnoresCtx {
			args = append(args, "-ignore-ctx")
		}
	case "farm":
		args = append(args, "-service", "farm")
	case "watch":
		args = append(args, "-service", linService+",ledger")
		if s.opts.Control == StaleWatch {
			args = append(args, "-stale-after", "2")
		}
	}
	m := &member{id: id, mode: mode, tenant: tn, proc: proctest.Start(s.t, id, s.member, env, args...)}
	tn.members = append(tn.members, m)
	return m
}

// serviceRead is a read of a service from server id's own replica, or a
// consistent one.
func (s *scenario) serviceRead(tn *tenant, id int, service, query string, timeout time.Duration) (api.ServiceResponse, bool) {
	code, b, _, err := s.call(id, tn.token, http.MethodGet, "/v1/tenants/"+tn.name+"/services/"+service+query, nil, timeout)
	var sr api.ServiceResponse
	if err != nil || code != http.StatusOK || json.Unmarshal(b, &sr) != nil {
		return sr, false
	}
	return sr, true
}

// consistent reads a service consistently from any running server,
// trying for up to wait.
func (s *scenario) consistent(tn *tenant, service string, wait time.Duration) (api.ServiceResponse, bool) {
	deadline := time.Now().Add(wait)
	for i := 0; ; i++ {
		up := s.upIDs()
		if len(up) > 0 {
			if sr, ok := s.serviceRead(tn, up[i%len(up)], service, "?consistent=true", time.Second); ok {
				return sr, true
			}
		}
		if time.Now().After(deadline) {
			return api.ServiceResponse{}, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// masterOf finds the member process that holds the tenant's mastership.
func (s *scenario) masterOf(tn *tenant, wait time.Duration) (*member, bool) {
	deadline := time.Now().Add(wait)
	for {
		if sr, ok := s.consistent(tn, "ledger", time.Second); ok && sr.Master != nil && !sr.Master.Releasing {
			for _, m := range tn.members {
				if m.id == sr.Master.Instance {
					return m, true
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leaderOf is the node leading a shard (a tenant's, or the meta shard's
// for ""), as the running servers report it; 0 if none knows.
func (s *scenario) leaderOf(tenantName string) int {
	for _, id := range s.upIDs() {
		code, b, _, err := s.call(id, proctest.AdminToken, http.MethodGet, "/v1/cluster", nil, 500*time.Millisecond)
		if err != nil || code != http.StatusOK {
			continue
		}
		var cl api.Cluster
		if json.Unmarshal(b, &cl) != nil {
			continue
		}
		for _, sh := range cl.Shards {
			if sh.Tenant == tenantName && (tenantName != "" || sh.ShardID == 1) && sh.Leader != 0 {
				if l := int(sh.Leader); !s.removed[l] && !s.down[l] {
					return l
				}
			}
		}
	}
	return 0
}

func exited(p *proctest.Proc) bool {
	select {
	case <-p.Exited():
		return true
	default:
		return false
	}
}

// tail is the end of a log.
func tail(log string, n int) string {
	if len(log) > n {
		return "…" + log[len(log)-n:]
	}
	return log
}

// signal sends sig to a process that still runs (never to a PID that
// may have been reused).
func signal(p *proctest.Proc, sig syscall.Signal) {
	select {
	case <-p.Exited():
	default:
		p.Signal(sig)
	}
}

func (s *scenario) server(id int) *proctest.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.servers[id-1]
}

func (s *scenario) killServer(id int) {
	s.server(id).Proc.Kill()
	s.mu.Lock()
	s.down[id] = true
	s.mu.Unlock()
}

func (s *scenario) restartServer(id int) {
	s.mu.Lock()
	down, removed := s.down[id], s.removed[id]
	s.mu.Unlock()
	if !down || removed {
		return
	}
	s.cluster.Restart(id)
	s.mu.Lock()
	delete(s.down, id)
	s.mu.Unlock()
}

// waitReady waits until every running server answers /readyz. A server
// that exited by itself is a violation, unless it could not bind its
// port (taken meanwhile as another connection's ephemeral port: the
// harness's accident, not the server's); either way it starts again.
func (s *scenario) waitReady(wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for _, id := range s.upIDs() {
		for {
			code, _, _, err := s.call(id, "", http.MethodGet, "/readyz", nil, time.Second)
			if err == nil && code == http.StatusOK {
				break
			}
			if p := s.server(id).Proc; exited(p) {
				if log := p.Stderr(); !strings.Contains(log, "address already in use") {
					s.violation("liveness", "", "server %d exited by itself (%v): %s", id, p.ExitErr(), tail(log, 800))
				}
				s.mu.Lock()
				s.down[id] = true
				s.mu.Unlock()
				time.Sleep(200 * time.Millisecond)
				s.restartServer(id)
			}
			if time.Now().After(deadline) {
				s.violation("liveness", "", "server %d not ready %v after healing", id, wait)
				return false
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return true
}

// heal ends every fault: links healed, processes continued, servers
// restarted; then waits for the servers.
func (s *scenario) heal() {
	s.net.heal()
	if s.opts.Control == UnhealedReplica {
		s.isolate(s.serverIDs()[1], Rule{Cut: true}) // the control: one replica stays cut off
	}
	for _, id := range s.serverIDs() {
		s.setSkew(id, "0") // clocks set right: a term begun from now on stamps true time
	}
	for p := range s.paused {
		signal(p, syscall.SIGCONT)
	}
	s.paused = map[*proctest.Proc]bool{}
	for _, id := range s.serverIDs() {
		s.restartServer(id)
	}
	s.removals.Wait() // a removal held up by the faults finishes now
	s.waitRemovedEnd(30 * time.Second)
	s.waitReady(60 * time.Second)
	s.note("healed")
}

// isolate applies rule to every Raft link into and out of server id.
func (s *scenario) isolate(id int, rule Rule) {
	for _, o := range s.serverIDs() {
		if o != id {
			s.net.raftLink(id, o, rule)
			s.net.raftLink(o, id, rule)
		}
	}
}

// zombie writes to each tenant's ledger as a deposed master would: under
// the lowest token it accepted, once a higher one was accepted. The
// ledger must refuse it.
func (s *scenario) zombie() {
	for _, tn := range s.tenants {
		var lo, hi uint64
		for _, e := range s.ledger.Log() {
			if e.Tenant == tn.name && e.Accepted {
				if lo == 0 || e.Token < lo {
					lo = e.Token
				}
				hi = max(hi, e.Token)
			}
		}
		if lo < hi {
			s.ledger.Write(LedgerWrite{Tenant: tn.name, Member: "zombie", Token: lo})
		}
	}
}

// stopMembers ends every member process: SIGTERM (a graceful Leave), then
// SIGKILL for any still running after 5 s.
func (s *scenario) stopMembers() {
	var wg sync.WaitGroup
	for _, tn := range s.tenants {
		for _, m := range tn.members {
			signal(m.proc, syscall.SIGCONT)
			wg.Go(func() { m.proc.Stop(5 * time.Second) })
		}
	}
	wg.Wait()
}

// events parses every event a tenant's members printed.
func (tn *tenant) events() []Event {
	var evs []Event
	for _, m := range tn.members {
		for _, l := range m.proc.Lines() {
			var e Event
			if json.Unmarshal([]byte(l), &e) == nil {
				evs = append(evs, e)
			}
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].At < evs[j].At })
	return evs
}

// membersOf is the tenant's running member processes of a mode.
func (tn *tenant) running(mode string) []*member {
	var ms []*member
	for _, m := range tn.members {
		select {
		case <-m.proc.Exited():
		default:
			if m.mode == mode {
				ms = append(ms, m)
			}
		}
	}
	return ms
}

// pick is the i-th element of ids, whatever i.
func pick(ids []int, i int) int { return ids[i%len(ids)] }

// others is ids without id.
func others(ids []int, id int) []int {
	return slices.DeleteFunc(slices.Clone(ids), func(x int) bool { return x == id })
}
