// Package attacks is the attack suite of issue 22: each way a hostile
// tenant (or a client with no valid token) was found to hurt other tenants,
// run as an attacker process against three `rafting server` processes while
// a victim tenant's steady workload is measured alone and under the attack.
//
//	cd benchmarks && go test -run '^$' -bench Attacks -benchtime 1x -timeout 60m ./attacks/
//
// The patterns (BenchmarkAttacks/<id>, one cluster each; -bench
// 'Attacks/^4b$' runs one):
//
//	1   writes refused for their fields: 1 MB of '<' in meta, invalid weights
//	2   keepalives and stream attaches for random session IDs through every
//	    node (followers forward them), one in twenty with a 1 MiB body
//	3   streams: as many as it can attach for each of max_sessions (5) sessions
//	4   idle connections that never send a request, from one source address
//	4b  the same from 64 source addresses, 15,000 of them
//	5   over-rate reads from thousands of connections (8 a source address),
//	    mallory's rate lowered to 100 a second per node so that they are
//	6   one service of 10,000 instances × 4 KB meta read again and again by 8
//	    connections, one instance rewritten up to ten times a second
//	7   made-up tokens naming the victim, each request on a new connection
//	    from a new source address (150,000 of them, 127.16.0.0 on)
//	8   writes refused for their fields (4,097 bytes of meta) at the default
//	    write rate (500 a second per node, 1,500 over the cluster)
//	8b  writes refused by the state (4,000 bytes of meta under a session
//	    that does not exist) at the same rate: refused only when applied
//
// The attacker is the mallory tenant with the default quotas (pattern 3:
// max_sessions 5; pattern 5: 100 requests a second; RAFTING_ATTACKS_RPS=n
// gives every pattern n requests a second and burst, n/2 writes); the victim is the victim tenant, created so that its
// shard and mallory's share a Dragonboat worker (shard IDs equal mod 16,
// fifteen idle tenants between them). The victim sends 20 registrations
// and 20 reads a second, open loop, round-robin over the nodes, on kept
// connections from 127.0.0.1; besides, 5 keepalives a second of a session
// of its own through a follower of its shard (forwarded to the leader), and
// 2 reads a second on a new connection each (what a client that connects
// now meets). Attackers never use 127.0.0.1: they are other hosts.
//
// The attacker is a child process (this test binary, RAFTING_ATTACK set),
// started under nice 19 as noisy's flood is (RAFTING_ATTACKS_NICE=n, 0 for
// none): the servers and the victim get the machine's two cores first.
// Phases alternate as in the noisy-neighbour benchmark, victim alone then
// under the attack, RAFTING_ATTACKS_CYCLES (15) times of
// RAFTING_ATTACKS_PHASE (2s) a side; the attacker pauses (SIGUSR1: it
// closes its connections and streams) and resumes (SIGUSR2) and nothing is
// measured for RAFTING_ATTACKS_SETTLE (500ms) after each switch, nor,
// after a pause, before the servers' open files are back within 64 of what
// they were at the start (up to 10 s).
// RAFTING_ATTACKS_QUICK=1 runs 3 cycles of 1 s at smaller scales (the
// whole suite in about four minutes). RAFTING_ATTACKS_CONNS sets patterns
// 4 and 5's connections (6,000; quick 1,500), RAFTING_ATTACKS_INSTANCES
// pattern 6's instances (10,000; quick 1,000).
//
// Reported for each pattern: the victim's p99 for reads and writes alone
// and under the attack and their ratio (target ≤ 1.2×, ≤ 2× for 4, 4b and
// 7, where the attacker holds the machine's own connections); the victim's
// requests that failed; the servers' CPU in each side; each server's RSS
// (/proc/PID/status) and open files (/proc/PID/fd) at their peak before
// any attack (the warm-up and the first phase, the victim alone) and under
// the attack (bound: 64 MB more per server, pattern 6 twice its answer
// more); the growth of the bytes in the data dirs' files (bound: 32 MB
// over the three, pattern 6 three copies of what it wrote more); what the
// attacker got: its requests by outcome, and the entries its tenant shard
// applied beyond its writes (accepted, or of unknown outcome) and beyond
// its rate while paused (target 0: a refused write never
// enters the Raft log). Each pattern's details, and at the end a summary
// table ready for RESULTS.md, are printed on stdout.
//
// Each cycle ends with a control phase (control_test.go;
// RAFTING_ATTACKS_CONTROL=0 leaves it out): the attacker paused, two burner
// processes take the CPU the attack took so far — the servers' CPU beyond
// what they spent with the victim alone, at nice 0 as the servers run, and
// the attacker's own, at its nice — while the victim is measured again.
// The victim's p99 under that load against alone is what the same CPU
// taken from this machine does to it, whoever takes it; a ratio of the
// attack over its target whose control is within 1.5× of it is marked
// "the CPU", else "more than the CPU". RAFTING_ATTACKS_PPROF=dir starts the
// servers with --pprof and saves a CPU profile of each over every attacked
// phase there (pattern-<id>-node<n>-cycle<c>.pprof; `go tool pprof`
// merges the files it is given); RAFTING_ATTACKS_TRACE=dir the same with
// an execution trace of each (….trace, for `go tool trace`: where requests
// waited while the CPU was idle). RAFTING_ATTACKS_OPS=file appends every
// operation of the victim's to file, one line each: pattern, cycle, phase
// (alone, attacked, control), when it went out in ms from the start of the
// phase's measured window, what (read, write, keepalive, fresh) and how
// long it took in ms — where in a phase the slow ones fall.
//
// TestAttacks (invariants_test.go) runs each pattern at a tiny scale in
// this process and checks the invariant of its fix, in about 40 s.
package attacks

import (
	"os"
	"testing"

	"github.com/rafting/rafting/internal/proctest"
)

func TestMain(m *testing.M) {
	if v := os.Getenv(attackEnv); v != "" {
		os.Exit(runAttackerProcess(v))
	}
	if v := os.Getenv(burnEnv); v != "" {
		os.Exit(runBurnerProcess(v))
	}
	if v := os.Getenv(listenEnv); v != "" {
		os.Exit(runListenerProcess(v))
	}
	code := m.Run()
	proctest.Cleanup() // the binaries it built
	os.Exit(code)
}
