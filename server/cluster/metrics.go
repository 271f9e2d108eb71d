package cluster

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/metrics"
)

// nodeMetrics are the Raft side's metrics. A nil *nodeMetrics (no
// registry) records nothing.
type nodeMetrics struct {
	proposals     *prometheus.CounterVec
	latency       [2]prometheus.Observer // by kind: meta, tenant
	entries       *prometheus.CounterVec
	leaderChanges *prometheus.CounterVec

	// The proposal counters by kind and result, resolved once: a
	// proposal's count is a read-locked map lookup and an atomic add,
	// never a hash of its labels.
	mu       sync.RWMutex
	resolved [2]map[string]prometheus.Counter
}

func newNodeMetrics(reg prometheus.Registerer, n *Node) *nodeMetrics {
	if reg == nil {
		return nil
	}
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "rafting_raft_proposal_seconds",
		Help: "Time from proposal to applied result (all attempts).", Buckets: metrics.DefBuckets}, []string{"kind"})
	m := &nodeMetrics{
		proposals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rafting_raft_proposals_total",
			Help: "Raft proposals made by this node, by shard kind and result."}, []string{"kind", "result"}),
		latency: [2]prometheus.Observer{latency.WithLabelValues("meta"), latency.WithLabelValues("tenant")},
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rafting_raft_applied_entries_total",
			Help: "Entries applied by this node's tenant replicas."}, []string{"tenant"}),
		leaderChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rafting_shard_leader_changes_total",
			Help: "Leader changes of each shard seen by this node's replica (a new leader known), since it started."}, []string{"shard", "tenant"}),
		resolved: [2]map[string]prometheus.Counter{{}, {}},
	}
	reg.MustRegister(m.proposals, latency, m.entries, m.leaderChanges)
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
	metrics.NewGaugeFunc(reg, "rafting_shard_has_leader", "1 when this node's replica of the shard knows a leader, else 0.", []string{"shard", "tenant"},
		func(emit func(float64, ...string)) {
			leaders(func(shard uint64, tenant string, _, _ uint64, ok bool) {
				v := 0.0
				if ok {
					v = 1
				}
				emit(v, shardLabel(shard), tenant)
			})
		})
	metrics.NewGaugeFunc(reg, "rafting_shard_term", "Raft term of each shard as this node's replica sees it.", []string{"shard", "tenant"},
		func(emit func(float64, ...string)) {
			leaders(func(shard uint64, tenant string, _, term uint64, _ bool) {
				emit(float64(term), shardLabel(shard), tenant)
			})
		})
	metrics.NewGaugeFunc(reg, "rafting_cluster_nodes", "Nodes of the cluster (the meta shard's record).", nil, func(emit func(float64, ...string)) {
		emit(float64(len(n.meta.Nodes())))
	})
	metrics.NewGaugeFunc(reg, "rafting_placement_replicas", "Tenant shard replicas the meta shard places on each node (placement).", []string{"node"},
		func(emit func(float64, ...string)) {
			load := n.meta.Load()
			for _, rec := range n.meta.Nodes() {
				emit(float64(load[rec.ID]), strconv.FormatUint(rec.ID, 10))
			}
		})
	metrics.NewGaugeFunc(reg, "rafting_placement_moves", "Replica moves under way (placement), by the meta shard.", nil, func(emit func(float64, ...string)) {
		moves := 0
		for _, rec := range n.meta.Tenants() {
			if rec.Move != nil {
				moves++
			}
		}
		emit(float64(moves))
	})
	metrics.NewGaugeFunc(reg, "rafting_node_leaderships", "Shards this node's replicas lead.", nil, func(emit func(float64, ...string)) {
		led := 0
		leaders(func(shard uint64, _ string, node, _ uint64, ok bool) {
			if ok && node == n.cfg.NodeID {
				led++
			}
		})
		emit(float64(led))
	})
	metrics.NewGaugeFunc(reg, "rafting_peer_reachable", "1 when the other node's API answered this node's last look (every 2 s), else 0.", []string{"node"},
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
	metrics.NewGaugeFunc(reg, "rafting_peer_last_contact_seconds", "Seconds since the other node's API last answered this node (since this node started, if never).", []string{"node"},
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
	metrics.NewGaugeFunc(reg, "rafting_tenant_previous_token_expiry_timestamp_seconds",
		"When each tenant's previous token stops working (Unix time); no series when it has none.", []string{"tenant"},
		func(emit func(float64, ...string)) {
			for _, rec := range n.meta.Tenants() {
				if c := rec.Credentials; c.Previous != nil && !c.PreviousValidUntil.IsZero() {
					emit(float64(c.PreviousValidUntil.UnixMilli())/1000, rec.Name)
				}
			}
		})
	metrics.NewGaugeFunc(reg, "rafting_shard_applied_index", "Last applied Raft index of each shard replica on this node.", []string{"shard", "tenant"},
		func(emit func(float64, ...string)) {
			emit(float64(n.meta.Applied()), strconv.FormatUint(fsm.MetaShardID, 10), "")
			for _, t := range n.Tenants() {
				emit(float64(t.SM.Applied()), strconv.FormatUint(t.ShardID, 10), t.Name)
			}
		})
	metrics.NewGaugeFunc(reg, "rafting_shard_leader_node", "Node ID of each shard's leader as this node sees it (0: unknown).", []string{"shard", "tenant"},
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
	metrics.NewGaugeFunc(reg, "rafting_tenant_sessions", "Live sessions per tenant.", []string{"tenant"}, func(emit func(float64, ...string)) {
		for _, t := range n.Tenants() {
			emit(float64(t.SM.Usage().Sessions), t.Name)
		}
	})
	metrics.NewGaugeFunc(reg, "rafting_tenant_instances", "Registered instances per tenant.", []string{"tenant"}, func(emit func(float64, ...string)) {
		for _, t := range n.Tenants() {
			emit(float64(t.SM.Usage().Instances), t.Name)
		}
	})
	metrics.NewGaugeFunc(reg, "rafting_tenant_services", "Services per tenant.", []string{"tenant"}, func(emit func(float64, ...string)) {
		for _, t := range n.Tenants() {
			emit(float64(t.SM.Usage().Services), t.Name)
		}
	})
	metrics.NewGaugeFunc(reg, "rafting_session_streams", "Session streams attached on this node (tenant leaders only).", []string{"tenant"}, func(emit func(float64, ...string)) {
		for _, t := range n.Tenants() {
			if s := t.Sessions.Stats(); s.Leading {
				emit(float64(s.Streams), t.Name)
			}
		}
	})
	return m
}

// kinds are the values of the label kind, by index: the meta shard, a
// tenant shard.
var kinds = [2]string{"meta", "tenant"}

func kind(shard uint64) int {
	if shard == fsm.MetaShardID {
		return 0
	}
	return 1
}

func (m *nodeMetrics) proposed(shard uint64, result string, d time.Duration) {
	if m == nil {
		return
	}
	k := kind(shard)
	m.mu.RLock()
	c := m.resolved[k][result]
	m.mu.RUnlock()
	if c == nil {
		c = m.proposals.WithLabelValues(kinds[k], result)
		m.mu.Lock()
		m.resolved[k][result] = c
		m.mu.Unlock()
	}
	c.Inc()
	m.latency[k].Observe(d.Seconds())
}

func (m *nodeMetrics) applied(t *Tenant, entries int) {
	if m == nil {
		return
	}
	m.entries.WithLabelValues(t.Name).Add(float64(entries))
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
	m.leaderChanges.WithLabelValues(strconv.FormatUint(shard, 10), tenant).Inc()
}
