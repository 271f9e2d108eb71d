package chaos

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPlacementUnderWorkload: five servers, three tenants placed on three
// of them each, every tenant with masters writing a fenced ledger, a farm,
// watchers and a linearizable workload, members on the client stream. A
// server is killed, removed and replaced (its shards get a replica
// elsewhere, then replicas move onto the new node), and the meta shard's
// leader is killed while replicas move. Every checker must pass: no two
// masters, tokens only increase, no acknowledged write lost, linearizable
// reads, watchers converge.
func TestPlacementUnderWorkload(t *testing.T) {
	if testing.Short() {
		t.Skip("processes")
	}
	plan := Plan{Seed: 15, Servers: 5, Tenants: 3, Phase: 12 * time.Second, Stream: true, Faults: []Fault{
		{Kind: ReplaceNode, At: time.Second, Dur: 3 * time.Second, Server: 2, Peer: 1},
		{Kind: KillMetaLeader, At: 5 * time.Second, Dur: 2 * time.Second},
	}}
	r := Run(t, plan, Options{Log: t.Logf})
	if r.Injected[ReplaceNode] != 1 || r.Injected[KillMetaLeader] != 1 {
		t.Fatalf("faults injected: %v", r.Injected)
	}
	failOnViolations(t, r)
}

// TestNodesJoinAndLeaveUnderFaults: five servers, two tenants under the
// full workload. A fresh server joins (--join, a real process) while one
// is killed, and another is removed (DELETE /v1/cluster/nodes/ID) while a
// third is killed, the Raft links are slow and a master is killed;
// replicas move onto the new server and off the removed one meanwhile.
// Every checker must pass, and the removed server ends by itself.
//
// The faults here leave the server being removed alone, and pause or cut
// off none: the campaign's seeds draw those too, and found what they do
// today (docs/RELIABILITY.md, "Nodes joining and leaving").
//
// It runs with the campaign (make chaos), not in make test: in CI it
// failed once (seed 16, 2026-12-07) on the liveness finding it was written
// around — a tenant's replica on a server answering 503 "catching up" for
// good after a removal and a kill (docs/RELIABILITY.md) — until that is
// fixed it would make make test fail now and then.
func TestNodesJoinAndLeaveUnderFaults(t *testing.T) {
	if testing.Short() || !*runCampaign {
		t.Skip("processes; a known liveness finding: run with -chaos (make chaos)")
	}
	plan := Plan{Seed: 16, Servers: 5, Tenants: 2, Phase: 12 * time.Second, Stream: true, Faults: []Fault{
		{Kind: KillServer, At: time.Second, Dur: 3 * time.Second, Server: 0},             // server 1
		{Kind: AddNode, At: 1500 * time.Millisecond, Dur: time.Second, Peer: 1},          // server 6
		{Kind: RemoveNode, At: 5 * time.Second, Dur: time.Second, Server: 2},             // server 3
		{Kind: KillServer, At: 5500 * time.Millisecond, Dur: 2 * time.Second, Server: 4}, // server 5
		{Kind: SlowRaft, At: 6 * time.Second, Dur: 3 * time.Second, Delay: 100 * time.Millisecond},
		{Kind: KillMaster, At: 9500 * time.Millisecond, Dur: 2 * time.Second, Tenant: 1},
	}}
	r := Run(t, plan, Options{Log: t.Logf})
	if r.Injected[AddNode] != 1 || r.Injected[RemoveNode] != 1 {
		t.Fatalf("faults injected: %v", r.Injected)
	}
	failOnViolations(t, r)
}

// failOnViolations fails t with each of r's violations, and saves the run
// where it outlives the test when there are any.
func failOnViolations(t *testing.T, r *Result) {
	t.Helper()
	for _, v := range r.Violations {
		t.Errorf("violation: %s", v)
	}
	if len(r.Violations) > 0 {
		t.Logf("saved to %s", r.Save(filepath.Join(os.TempDir(), "rafting-chaos")))
	}
}
