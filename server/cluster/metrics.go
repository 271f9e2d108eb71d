package cluster

import (
	"strconv"
	"time"

	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/metrics"
)

// nodeMetrics are the Raft side's metrics. A nil *nodeMetrics (no
// registry) records nothing.
type nodeMetrics struct {
	proposals *metrics.CounterVec
	latency   *metrics.HistogramVec
	entries   *metrics.CounterVec
}

func newNodeMetrics(reg *metrics.Registry, n *Node) *nodeMetrics {
	if reg == nil {
		return nil
	}
	m := &nodeMetrics{
		proposals: reg.NewCounterVec("rafting_raft_proposals_total", "Raft proposals made by this node, by shard kind and result.", "kind", "result"),
		latency:   reg.NewHistogramVec("rafting_raft_proposal_seconds", "Time from proposal to applied result (all attempts).", nil, "kind"),
		entries:   reg.NewCounterVec("rafting_raft_applied_entries_total", "Entries applied by this node's tenant replicas.", "tenant"),
	}
	reg.NewGaugeFunc("rafting_shard_applied_index", "Last applied Raft index of each shard replica on this node.", []string{"shard", "tenant"},
		func(emit func(float64, ...string)) {
			emit(float64(n.meta.Applied()), strconv.FormatUint(fsm.MetaShardID, 10), "")
			for _, t := range n.Tenants() {
				emit(float64(t.SM.Applied()), strconv.FormatUint(t.ShardID, 10), t.Name)
			}
		})
	reg.NewGaugeFunc("rafting_shard_leader_node", "Node ID of each shard's leader as this node sees it (0: unknown).", []string{"shard", "tenant"},
		func(emit func(float64, ...string)) {
			if id, _, ok := n.leader(fsm.MetaShardID); ok {
				emit(float64(id), strconv.FormatUint(fsm.MetaShardID, 10), "")
			} else {
				emit(0, strconv.FormatUint(fsm.MetaShardID, 10), "")
			}
			for _, rec := range n.meta.Tenants() {
				node := uint64(0)
				if id, _, ok := n.leader(rec.ShardID); ok {
					node = rec.Replicas[id].Node
				}
				emit(float64(node), strconv.FormatUint(rec.ShardID, 10), rec.Name)
			}
		})
	reg.NewGaugeFunc("rafting_tenant_sessions", "Live sessions per tenant.", []string{"tenant"}, func(emit func(float64, ...string)) {
		for _, t := range n.Tenants() {
			emit(float64(t.SM.Usage().Sessions), t.Name)
		}
	})
	reg.NewGaugeFunc("rafting_tenant_instances", "Registered instances per tenant.", []string{"tenant"}, func(emit func(float64, ...string)) {
		for _, t := range n.Tenants() {
			emit(float64(t.SM.Usage().Instances), t.Name)
		}
	})
	reg.NewGaugeFunc("rafting_tenant_services", "Services per tenant.", []string{"tenant"}, func(emit func(float64, ...string)) {
		for _, t := range n.Tenants() {
			emit(float64(t.SM.Usage().Services), t.Name)
		}
	})
	reg.NewGaugeFunc("rafting_session_streams", "Session streams attached on this node (tenant leaders only).", []string{"tenant"}, func(emit func(float64, ...string)) {
		for _, t := range n.Tenants() {
			if s := t.Sessions.Stats(); s.Leading {
				emit(float64(s.Streams), t.Name)
			}
		}
	})
	return m
}

func kind(shard uint64) string {
	if shard == fsm.MetaShardID {
		return "meta"
	}
	return "tenant"
}

func (m *nodeMetrics) proposed(shard uint64, result string, d time.Duration) {
	if m == nil {
		return
	}
	k := kind(shard)
	m.proposals.With(k, result).Inc()
	m.latency.With(k).Observe(d.Seconds())
}

func (m *nodeMetrics) applied(t *Tenant, entries int) {
	if m == nil {
		return
	}
	m.entries.With(t.Name).Add(float64(entries))
}

func (m *nodeMetrics) forget(t *Tenant) {
	if m == nil {
		return
	}
	m.entries.DeleteLabelValues(t.Name)
}
