package fsm

import (
	"fmt"
	"sort"
	"strings"

	"github.com/rafting/rafting/api"
)

// Dump renders the whole state as canonical text: the same state always
// gives the same text. Tests compare replicas and script expectations with it.
func (t *Tenant) Dump() string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var b strings.Builder
	st := &t.st
	fmt.Fprintf(&b, "tenant %s epoch=%d applied=%d now=%d barrier=%d services_index=%d quotas_version=%d\n",
		st.Name, st.Epoch, st.Applied, st.NowMs, st.BarrierTerm, st.ServicesIndex, st.QuotasVersion)
	for _, id := range sortedKeys(st.Sessions) {
		s := st.Sessions[id]
		fmt.Fprintf(&b, "session %s ttl=%d lease=%d grace=%d remaining=%d created=%d\n",
			id, s.TTLMs, s.LeaseMs, s.DropGraceMs, s.RemainingMs, s.CreatedIndex)
	}
	for _, name := range sortedKeys(st.Services) {
		dumpService(&b, name, st.Services[name])
	}
	for _, id := range st.TombOrder {
		fmt.Fprintf(&b, "tomb %s @%d\n", id, st.Tombs[id])
	}
	t.dumpKV(&b)
	return b.String()
}

// dumpService renders a service: its instances and master record.
func dumpService(b *strings.Builder, name string, svc *service) {
	fmt.Fprintf(b, "service %s modify=%d cold=%t waiting=%t wait_from=%d policy=%s",
		name, svc.ModifyIndex, svc.Cold, svc.Waiting, svc.WaitFromMs, csString(svc.Policy))
	if svc.Carried != nil {
		fmt.Fprintf(b, " carried=%s", csString(svc.Carried))
	}
	b.WriteByte('\n')
	for _, id := range sortedKeys(svc.Instances) {
		in := svc.Instances[id]
		fmt.Fprintf(b, "  instance %s %s %s addr=%s w=%d p=%d ready_index=%d registered=%d",
			id, in.Mode, in.State, in.Address, in.Weight, in.Priority, in.ReadyIndex, in.RegisteredMs)
		if in.Zone != "" {
			fmt.Fprintf(b, " zone=%s", in.Zone)
		}
		if in.Session != "" {
			fmt.Fprintf(b, " session=%s", in.Session)
		}
		if len(in.Meta) > 0 {
			fmt.Fprintf(b, " meta=%s", metaString(in.Meta))
		}
		b.WriteByte('\n')
	}
	if m := svc.Master; m != nil {
		fmt.Fprintf(b, "  master %s session=%s token=%s since=%d", m.Instance, m.Session, TokenString(m.Token), m.SinceMs)
		if m.Releasing {
			fmt.Fprintf(b, " releasing to=%q", m.To)
		}
		b.WriteByte('\n')
	}
}

// dumpKV renders the configuration store: its keys, then its subtrees'
// indexes and its size. t.mu is held.
func (t *Tenant) dumpKV(b *strings.Builder) {
	st := &t.st
	for _, key := range t.kv.keys {
		e := st.KV[key]
		fmt.Fprintf(b, "kv %s create=%d mod=%d version=%d", key, e.CreateIndex, e.ModIndex, e.Version)
		if e.Session != "" {
			fmt.Fprintf(b, " session=%s", e.Session)
		}
		fmt.Fprintf(b, " value=%q\n", e.Value)
	}
	if len(st.KV) > 0 || len(st.KVTree) > 0 {
		fmt.Fprintf(b, "kv_tree")
		for _, p := range sortedKeys(st.KVTree) {
			fmt.Fprintf(b, " %q=%d", p, st.KVTree[p])
		}
		fmt.Fprintf(b, " bytes=%d\n", t.kv.bytes)
	}
}

// Dump renders the meta state as canonical text, as Tenant.Dump does:
// token hashes by their first 8 hex digits, quotas as JSON.
func (m *Meta) Dump() string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var b strings.Builder
	st := &m.st
	fmt.Fprintf(&b, "meta version=%d applied=%d next_shard=%d next_replica=%d replicas=%d\n",
		st.Version, st.Applied, st.NextShardID, st.NextReplicaID, st.Replicas)
	for _, name := range sortedKeys(st.Epochs) {
		fmt.Fprintf(&b, "epoch %s=%d\n", name, st.Epochs[name])
	}
	for _, id := range sortedKeys(st.Nodes) {
		n := st.Nodes[id]
		fmt.Fprintf(&b, "node %d raft=%s api=%s incarnation=%d", n.ID, n.RaftAddress, n.APIAddress, n.Incarnation)
		if n.Zone != "" {
			fmt.Fprintf(&b, " zone=%s", n.Zone)
		}
		b.WriteByte('\n')
	}
	for _, id := range sortedKeys(st.Removed) {
		fmt.Fprintf(&b, "removed %d at=%d\n", id, st.Removed[id])
	}
	for _, name := range sortedKeys(st.Tenants) {
		dumpTenantRecord(&b, st.Tenants[name])
	}
	for _, id := range sortedKeys(st.Tombstones) {
		ts := st.Tombstones[id]
		fmt.Fprintf(&b, "tombstone %d tenant=%s deleted=%d\n", ts.ShardID, ts.Tenant, ts.DeletedMs)
		dumpReplicas(&b, ts.Replicas)
	}
	return b.String()
}

// dumpTenantRecord renders a tenant's record in the meta state.
func dumpTenantRecord(b *strings.Builder, t *TenantRecord) {
	q, _ := Marshal(t.Quotas)
	iq, _ := Marshal(t.InitialQuotas)
	fmt.Fprintf(b, "tenant %s shard=%d epoch=%d version=%d created=%d quotas=%s initial_quotas=%s quotas_version=%d\n",
		t.Name, t.ShardID, t.Epoch, t.Version, t.CreatedMs, q, iq, t.QuotasVersion)
	c := t.Credentials
	fmt.Fprintf(b, "  token %.8s", c.Current)
	if c.Previous != nil {
		fmt.Fprintf(b, " previous=%.8s until=%d", *c.Previous, c.PreviousValidUntil.UnixMilli())
	}
	if r := t.Rotation; r != nil {
		fmt.Fprintf(b, " rotation=%d@%d", r.PreviousValidMs, r.AtMs)
	}
	b.WriteByte('\n')
	if r := t.Restore; r != nil {
		fmt.Fprintf(b, "  restore pending=%t index=%d backup_index=%d\n", r.Pending, r.Index, r.BackupIndex)
	}
	dumpReplicas(b, t.Replicas)
	if mv := t.Move; mv != nil {
		fmt.Fprintf(b, "  move add=%d remove=%d step=%s reason=%q started=%d\n", mv.Add, mv.Remove, mv.Step, mv.Reason, mv.StartedMs)
	}
	for _, id := range sortedKeys(t.Retired) {
		fmt.Fprintf(b, "  retired %d node=%d\n", id, t.Retired[id])
	}
}

// dumpReplicas renders a shard's replicas, by ID.
func dumpReplicas(b *strings.Builder, replicas map[uint64]Replica) {
	for _, id := range sortedKeys(replicas) {
		r := replicas[id]
		fmt.Fprintf(b, "  replica %d node=%d raft=%s", id, r.Node, r.RaftAddress)
		for _, f := range []struct {
			set  bool
			name string
		}{{r.Join, "join"}, {r.NonVoting, "non_voting"}, {r.Staged, "staged"}} {
			if f.set {
				b.WriteString(" " + f.name)
			}
		}
		b.WriteByte('\n')
	}
}

// TokenString renders a fencing token as epoch:index.
func TokenString(token uint64) string {
	return fmt.Sprintf("%d:%d", token>>40, token&(1<<40-1))
}

func csString(cs *api.ColdStart) string {
	if cs == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%dms", cs.MinReady, cs.SettleMs)
}

func metaString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}
