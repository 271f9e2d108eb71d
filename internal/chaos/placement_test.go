package chaos

import (
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
	for _, v := range r.Violations {
		t.Errorf("violation: %s", v)
	}
	if len(r.Violations) > 0 {
		t.Logf("saved to %s", r.Save(t.TempDir()))
	}
}
