// Package chaos is Rafting's fault campaign (make chaos, make
// chaos-quick): seeded scenarios of real processes under faults, and the
// checkers that judge them.
//
// A scenario is drawn from a seed (NewPlan): 3 or 5 `rafting server`
// processes, two or three tenants, and on each tenant three members of a
// master-standby service that write to a fenced ledger (Ledger) while
// they hold a Term, a farm member, a watcher, and a workload of
// registrations, deregistrations, sessions and consistent reads. Every
// address is a fault proxy's (Proxy, RaftProxy): servers dial each other's
// Raft addresses through one (--raft-listen behind --raft), and clients
// reach every server through their own, so every Raft link and every
// client-to-server link can be cut, cut one way, made lossy or slow. The
// faults (Kind) kill, pause and restart servers and members, partition
// links, hand leadership over, replace a node, join and remove nodes while
// the other faults go on, and make servers' wall clocks jump an hour (the
// servers are built with -tags chaos, whose only effect is
// server/session's wallSkew hook). The timeline is the seed's; what the
// processes do in it varies from run to run.
//
// Once the faults heal and the workload stops, the checkers run:
//
//   - safety: no two members hold a live Term at once (their own samples,
//     on the machine's one wall clock, ClockMargin apart), tokens only
//     increase, and the ledger never accepted a token below one it had
//     accepted (CheckTerms, CheckLedger);
//   - linearizability of the workload's history with porcupine, outcomes
//     unknown taken as ambiguous, sessions' expiry included
//     (CheckLinearizable);
//   - durability: every acknowledged write survives (CheckDurable);
//   - watch: watchers' indexes never go back, no acknowledged change is
//     missing from a snapshot at or past its index, and each cache ends
//     equal to a consistent read (CheckWatch);
//   - convergence: every server's own replica of a tenant ends the same;
//   - clock: no time a tenant shows (registered_at, a master's since) runs
//     ahead of the machine's clock, whatever a leader's clock said;
//   - liveness: after healing, every tenant has a master and answers, and
//     no server exited by itself.
//
// Each checker has a negative control (Control): a rule broken on purpose
// that it must catch. A failing scenario saves its plan, seed, history,
// member events, ledger, logs and porcupine's visualization in a
// directory it prints, and `make chaos SEED=n` runs it again.
//
// The campaign runs in TestChaos with -chaos; without it the package's
// tests are unit tests of the proxies and the checkers.
package chaos
