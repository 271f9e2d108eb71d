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
	proposals     *metrics.CounterVec
	latency       *metrics.HistogramVec
	entries       *metrics.CounterVec
	leaderChanges *metrics.CounterVec
}

func newNodeMetrics(reg *metrics.Registry, n *Node) *nodeMetrics {
	if reg == nil {
		return nil
	}
	m := &nodeMetrics{
		proposals: reg.NewCounterVec("rafting_raft_proposals_total", "Raft proposals made by this node, by shard kind and result.", "kind", "result"),
		latency:   reg.NewHistogramVec("rafting_raft_proposal_seconds", "Time from proposal to applied result (all attempts).", nil, "kind"),
		entries:   reg.NewCounterVec("rafting_raft_applied_entries_total", "Entries applied by this node's tenant replicas.", "tenant"),
		leaderChanges: reg.NewCounterVec("rafting_shard_leader_changes_total",
			"Leader changes of each shard seen by this node's replica (a new leader known), since it started.", "shard", "tenant"),
	}
	shardLabel := func(shard uint64) string { return strconv.FormatUint(shard, 10) }
	// leaders emits f(shard, tenant, leader node or 0, term, has leader)
	// for the meta shard and every tenant shard.
	leaders := func(emit func(shard uint64, tenant string, node, term uint64, ok bool)) {
		id, term, ok := n.leader(fsm.MetaShardID)
		emit(fsm.MetaShardID, "", id, term, ok)
		for _, rec := range n.meta.Tenants() {
			if _, running := n.Tenant(rec.Name); !running {
				continue
			}
			id, term, ok := n.leader(rec.ShardID)
			emit(rec.ShardID, rec.Name, rec.Replicas[id].Node, term, ok)
		}
	}
	reg.NewGaugeFunc("rafting_shard_has_leader", "1 when this node's replica of the shard knows a leader, else 0.", []string{"shard", "tenant"},
		func(emit func(float64, ...string)) {
			leaders(func(shard uint64, tenant string, _, _ uint64, ok bool) {
				v := 0.0
				if ok {
					v = 1
				}
				emit(v, shardLabel(shard), tenant)
			})
		})
	reg.NewGaugeFunc("rafting_shard_term", "Raft term of each shard as this node's replica sees it.", []string{"shard", "tenant"},
		func(emit func(float64, ...string)) {
			leaders(func(shard uint64, tenant string, _, term uint64, _ bool) {
				emit(float64(term), shardLabel(shard), tenant)
			})
		})
	reg.NewGaugeFunc("rafting_cluster_nodes", "Nodes of the cluster (the meta shard's record).", nil, func(emit func(float64, ...string)) {
		emit(float64(len(n.meta.Nodes())))
	})
	reg.NewGaugeFunc("rafting_node_leaderships", "Shards this node's replicas lead.", nil, func(emit func(float64, ...string)) {
		led := 0
		leaders(func(shard uint64, _ string, node, _ uint64, ok bool) {
			if ok && node == n.cfg.NodeID {
				led++
			}
		})
		emit(float64(led))
	})
	reg.NewGaugeFunc("rafting_peer_reachable", "1 when the other node's API answered this node's last look (every 2 s), else 0.", []string{"node"},
		func(emit func(float64, ...string)) {
			peers, _ := n.peerContact()
			for id, p := range peers {
				v := 0.0
				if p.Answered {
					v = 1
				}
				emit(v, strconv.FormatUint(id, 10))
			}
		})
	reg.NewGaugeFunc("rafting_peer_last_contact_seconds", "Seconds since the other node's API last answered this node (since this node started, if never).", []string{"node"},
		func(emit func(float64, ...string)) {
			peers, _ := n.peerContact()
			for id, p := range peers {
				since := n.removal.since
				if !p.lastContact.IsZero() {
					since = p.lastContact
				}
				emit(time.Since(since).Seconds(), strconv.FormatUint(id, 10))
			}
		})
	reg.NewGaugeFunc("rafting_tenant_previous_token_expiry_timestamp_seconds",
		"When each tenant's previous token stops working (Unix time); no series when it has none.", []string{"tenant"},
		func(emit func(float64, ...string)) {
			for _, rec := range n.meta.Tenants() {
				if c := rec.Credentials; c.Previous != nil && !c.PreviousValidUntil.IsZero() {
					emit(float64(c.PreviousValidUntil.UnixMilli())/1000, rec.Name)
				}
			}
		})
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
	m.leaderChanges.DeleteLabelValues(strconv.FormatUint(t.ShardID, 10), t.Name)
}

// leaderChanged counts a shard's leader change.
func (m *nodeMetrics) leaderChanged(shard uint64, tenant string) {
	if m == nil {
		return
	}
	m.leaderChanges.With(strconv.FormatUint(shard, 10), tenant).Inc()
}
