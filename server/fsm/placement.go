package fsm

import (
	"sort"

	"github.com/rafting/rafting/api"
)

// Placement (from version 5): each tenant shard has R voting replicas
// (DefaultReplicas unless set_replicas said otherwise), on the nodes with
// the fewest replicas, spread over zones first. A replica moves in steps,
// each one an entry here, so that whoever leads next finishes or undoes a
// move cut short:
//
//	move_start  a new replica (non-voting) is recorded on its node, and/or
//	            the replica that goes is named; step "adding" (or, with
//	            nothing to add, "promoted")
//	move_step   "caught_up": the new replica's node read through it once
//	            "promoted": the shard's membership made it a voter
//	move_end    the replica that goes left the shard's membership (or the
//	            move is undone: the new replica left it): it is retired,
//	            and its node deletes its data
//
// The state machine only records; the nodes make the membership changes
// (server/cluster's placement.go).

// DefaultReplicas is R when set_replicas never said: three voting
// replicas, one failure tolerated. MaxReplicas is the most allowed.
const (
	DefaultReplicas = 3
	MaxReplicas     = 5
)

// Steps of a Move.
const (
	StepAdding   = "adding"    // the new replica is being added, non-voting
	StepCaughtUp = "caught_up" // it applied what its leader had committed once
	StepPromoted = "promoted"  // it votes; the replica that goes may leave
)

// Move is a tenant shard's replica move under way: Add is the replica being
// added (0: none, a shard brought down to R), Remove the one that goes (0:
// none, a shard brought back up to R).
type Move struct {
	Add       uint64 `json:"add,omitempty"`
	Remove    uint64 `json:"remove,omitempty"`
	Step      string `json:"step"`
	Reason    string `json:"reason,omitempty"`
	StartedMs int64  `json:"started_ms"`
}

// SetReplicas sets R, the voting replicas of every tenant shard.
type SetReplicas struct {
	Replicas uint64 `json:"replicas"`
}

// MoveStart begins a move of a tenant's shard: a new replica on node Node
// (0: none) and/or the replica Remove that goes (0: none). Refused while
// another move of the tenant is under way, unless it is this one (a retry
// answers it).
type MoveStart struct {
	Name        string `json:"name"`
	Node        uint64 `json:"node,omitempty"`
	RaftAddress string `json:"raft_address,omitempty"`
	Remove      uint64 `json:"remove,omitempty"`
	Reason      string `json:"reason,omitempty"`
	NowMs       int64  `json:"now_ms"`
}

// MoveStep records that the tenant's move (the one adding replica Add, or
// removing Remove when it adds none) reached Step. Steps only go forward.
type MoveStep struct {
	Name   string `json:"name"`
	Add    uint64 `json:"add,omitempty"`
	Remove uint64 `json:"remove,omitempty"`
	Step   string `json:"step"`
}

// MoveEnd ends the tenant's move named by Add and Remove: finished (the
// replica Remove left the shard) or, with Undo, undone (the replica Add
// left it; only before it was promoted).
type MoveEnd struct {
	Name   string `json:"name"`
	Add    uint64 `json:"add,omitempty"`
	Remove uint64 `json:"remove,omitempty"`
	Undo   bool   `json:"undo,omitempty"`
}

var stepOrder = map[string]int{StepAdding: 1, StepCaughtUp: 2, StepPromoted: 3}

func (m *Meta) applySetReplicas(_ uint64, _ Op, c SetReplicas, _ *Changes) MetaOutcome {
	if c.Replicas < 1 || c.Replicas > MaxReplicas {
		return metaReject(api.CodeBadRequest, "set_replicas: replicas %d, want 1 to %d", c.Replicas, MaxReplicas)
	}
	m.st.Replicas = c.Replicas
	return MetaOutcome{}
}

func (m *Meta) applyMoveStart(_ uint64, _ Op, c MoveStart, _ *Changes) MetaOutcome {
	t := m.st.Tenants[c.Name]
	if t == nil {
		return tenantNotFound(c.Name)
	}
	if mv := t.Move; mv != nil {
		if mv.Remove == c.Remove && mv.Add != 0 && t.Replicas[mv.Add].Node == c.Node || mv.Add == 0 && c.Node == 0 && mv.Remove == c.Remove {
			return MetaOutcome{Tenant: t.clone(), Replica: mv.Add} // a retry
		}
		return metaReject(api.CodeConflict, "tenant %s: a move is under way", c.Name)
	}
	if err := m.checkMoveStart(t, c); err != nil {
		return metaRejectErr(err)
	}
	mv := &Move{Remove: c.Remove, Step: StepPromoted, Reason: c.Reason, StartedMs: c.NowMs}
	if c.Node != 0 {
		mv.Add, mv.Step = m.st.NextReplicaID, StepAdding
		m.st.NextReplicaID++
		t.Replicas[mv.Add] = Replica{Node: c.Node, RaftAddress: c.RaftAddress, Join: true, NonVoting: true, Staged: true}
	}
	t.Move = mv
	return MetaOutcome{Tenant: t.clone(), Replica: mv.Add, Created: true}
}

// checkMoveStart checks a move's start against its tenant t, which has
// no move under way.
func (m *Meta) checkMoveStart(t *TenantRecord, c MoveStart) *api.Error {
	if c.Node == 0 && c.Remove == 0 {
		return api.Errorf(api.CodeBadRequest, "move_start: neither a node to add a replica on nor a replica to remove")
	}
	if c.Remove != 0 {
		if _, ok := t.Replicas[c.Remove]; !ok {
			return api.Errorf(api.CodeNotFound, "tenant %s has no replica %d", c.Name, c.Remove)
		}
		if c.Node == 0 && len(t.Replicas) < 2 {
			return api.Errorf(api.CodeConflict, "tenant %s: replica %d is its last", c.Name, c.Remove)
		}
	}
	if c.Node != 0 {
		if _, _, ok := t.ReplicaOn(c.Node); ok {
			return api.Errorf(api.CodeConflict, "tenant %s has a replica on node %d", c.Name, c.Node)
		}
		if _, gone := m.st.Removed[c.Node]; gone {
			return api.Errorf(api.CodeConflict, "node %d was removed from the cluster", c.Node)
		}
		if c.RaftAddress == "" {
			return api.Errorf(api.CodeBadRequest, "move_start: raft_address is required with node")
		}
	}
	return nil
}

func (m *Meta) applyMoveStep(_ uint64, _ Op, c MoveStep, _ *Changes) MetaOutcome {
	t := m.st.Tenants[c.Name]
	if t == nil {
		return tenantNotFound(c.Name)
	}
	if stepOrder[c.Step] == 0 {
		return metaReject(api.CodeBadRequest, "move_step: step %q", c.Step)
	}
	mv := t.Move
	if mv == nil || mv.Add != c.Add || mv.Remove != c.Remove {
		return metaReject(api.CodeConflict, "tenant %s: no such move under way", c.Name)
	}
	if stepOrder[c.Step] <= stepOrder[mv.Step] {
		return MetaOutcome{Tenant: t.clone()} // a retry, or late
	}
	mv.Step = c.Step
	if c.Step == StepPromoted && mv.Add != 0 {
		r := t.Replicas[mv.Add]
		r.NonVoting = false
		t.Replicas[mv.Add] = r
	}
	return MetaOutcome{Tenant: t.clone()}
}

func (m *Meta) applyMoveEnd(_ uint64, _ Op, c MoveEnd, _ *Changes) MetaOutcome {
	t := m.st.Tenants[c.Name]
	if t == nil {
		return tenantNotFound(c.Name)
	}
	mv := t.Move
	if mv == nil || mv.Add != c.Add || mv.Remove != c.Remove {
		return MetaOutcome{Tenant: t.clone()} // ended already
	}
	gone := mv.Remove
	if c.Undo {
		if mv.Step == StepPromoted && mv.Add != 0 {
			return metaReject(api.CodeConflict, "tenant %s: the move's new replica %d votes already: the move is finished, not undone", c.Name, mv.Add)
		}
		gone = mv.Add
	} else if mv.Step != StepPromoted {
		return metaReject(api.CodeConflict, "tenant %s: the move's new replica %d is not promoted yet", c.Name, mv.Add)
	}
	if r, ok := t.Replicas[gone]; ok && gone != 0 {
		if t.Retired == nil {
			t.Retired = map[uint64]uint64{}
		}
		t.Retired[gone] = r.Node
		delete(t.Replicas, gone)
	}
	t.Move = nil
	return MetaOutcome{Tenant: t.clone()}
}

// place picks up to n of candidates (ascending IDs) for new replicas of a
// shard whose replicas are on have: a node in a zone with fewer of the
// shard's replicas first, then one with fewer replicas of every shard,
// then the lowest ID. m.mu is held.
func (m *Meta) place(candidates, have []uint64, n int) []uint64 {
	return Place(candidates, have, n, m.loadLocked(), m.zonesLocked())
}

// Place picks up to n of candidates for new replicas of a shard whose
// replicas are on nodes have: zones with fewer of the shard's replicas
// first, then the nodes with the fewest replicas (load), then the lowest
// ID. It is deterministic (the meta state machine places with it).
func Place(candidates, have []uint64, n int, load map[uint64]int, zones map[uint64]string) []uint64 {
	inZone := map[string]int{}
	taken := map[uint64]bool{}
	for _, h := range have {
		inZone[zones[h]]++
		taken[h] = true
	}
	var out []uint64
	for len(out) < n {
		best, found := uint64(0), false
		for _, c := range candidates {
			if taken[c] {
				continue
			}
			if !found {
				best, found = c, true
				continue
			}
			zc, zb := inZone[zones[c]], inZone[zones[best]]
			if zc < zb || zc == zb && (load[c] < load[best] || load[c] == load[best] && c < best) {
				best = c
			}
		}
		if !found {
			break
		}
		out = append(out, best)
		taken[best] = true
		inZone[zones[best]]++
	}
	return out
}

// loadLocked counts each node's replicas of every tenant shard; m.mu held.
func (m *Meta) loadLocked() map[uint64]int {
	load := map[uint64]int{}
	for _, t := range m.st.Tenants {
		for _, r := range t.Replicas {
			load[r.Node]++
		}
	}
	return load
}

func (m *Meta) zonesLocked() map[uint64]string {
	z := map[uint64]string{}
	for id, n := range m.st.Nodes {
		z[id] = n.Zone
	}
	return z
}

// Replicas is R, the voting replicas each tenant shard should have.
func (m *Meta) Replicas() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.st.Replicas == 0 {
		return DefaultReplicas
	}
	return int(m.st.Replicas)
}

// ReplicasSet reports whether set_replicas recorded R.
func (m *Meta) ReplicasSet() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.Replicas != 0
}

// Load counts each node's replicas of every tenant shard.
func (m *Meta) Load() map[uint64]int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.loadLocked()
}

// Zones is each registered node's zone.
func (m *Meta) Zones() map[uint64]string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.zonesLocked()
}

// VotingOn lists the nodes holding a voting replica of the tenant, sorted.
func (r *TenantRecord) VotingOn() []uint64 {
	var out []uint64
	for _, rep := range r.Replicas {
		if !rep.NonVoting {
			out = append(out, rep.Node)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// NodesOf lists the nodes holding any replica of the tenant, sorted.
func (r *TenantRecord) NodesOf() []uint64 {
	var out []uint64
	for _, rep := range r.Replicas {
		out = append(out, rep.Node)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
