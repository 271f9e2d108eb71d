package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

// requesterKey keys the requester of a change in a context.
type requesterKey struct{}

// WithRequester marks ctx as carrying a request from who (a client's
// address): the INFO lines of the membership, tenant and token changes
// made under it say who asked.
func WithRequester(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, requesterKey{}, who)
}

// requester is who asked for the change made under ctx ("this node" when
// no request did).
func requester(ctx context.Context) string {
	if who, ok := ctx.Value(requesterKey{}).(string); ok && who != "" {
		return who
	}
	return "this node"
}

// logMeta writes the INFO line of a tenant or token change that this node
// proposed and the meta shard applied; other commands log nothing here.
// Only the tenant's name and the rotation's window are read from the
// command: never a token or its hash.
func (n *Node) logMeta(ctx context.Context, cmd []byte, o fsm.MetaOutcome) {
	if len(cmd) < 2 {
		return
	}
	var what string
	switch op := fsm.Op(cmd[1]); op {
	case fsm.OpCreateTenant:
		what = "tenant created"
		if !o.Created {
			what = "tenant create retried: it exists as asked"
		}
	case fsm.OpDeleteTenant:
		what = "tenant deleted"
	case fsm.OpUpdateQuotas:
		what = "tenant quotas changed"
	case fsm.OpRotateToken:
		what = "tenant token rotated"
	case fsm.OpRevokePrevious:
		what = "tenant previous token revoked"
	case fsm.OpRestore:
		what = "restore: tenants created from a backup"
	case fsm.OpRestoreDone:
		what = "restore: tenant written"
	default:
		return
	}
	var body struct {
		Name            string `json:"name"`
		PreviousValidMs *int64 `json:"previous_valid_ms"`
	}
	_ = json.Unmarshal(cmd[2:], &body) // a field it lacks is left out of the line
	args := []any{"index", o.Index, "by", requester(ctx)}
	if body.Name != "" {
		args = append(args, "tenant", body.Name)
	}
	if body.PreviousValidMs != nil {
		args = append(args, "previous_valid", (time.Duration(*body.PreviousValidMs) * time.Millisecond).String())
	}
	n.log.Info(what, args...)
}

// TransferLeader moves a shard's leadership to node to's replica (to 0:
// to any replica not on the node that leads now) and waits, within ctx,
// until that replica leads. It answers the node that leads after.
func (n *Node) TransferLeader(ctx context.Context, shard, to uint64) (uint64, error) {
	replicas, err := n.shardReplicas(shard)
	if err != nil {
		return 0, err
	}
	id, _, ok := n.leader(shard)
	if !ok {
		return 0, &api.Error{Code: api.CodeUnavailable, Message: fmt.Sprintf("shard %d has no leader now", shard), RetryAfter: time.Second}
	}
	from := replicas[id]
	var target uint64
	for rid, node := range replicas {
		if (to != 0 && node == to) || (to == 0 && node != from && (target == 0 || node == n.cfg.NodeID)) {
			target = rid
		}
	}
	if target == 0 {
		if to != 0 {
			return 0, api.Errorf(api.CodeNotFound, "node %d holds no replica of shard %d", to, shard)
		}
		return 0, api.Errorf(api.CodeConflict, "shard %d has no other replica to lead it", shard)
	}
	if target == id {
		return from, nil
	}
	n.log.Info("leader transfer requested", "shard", shard, "from_node", from, "to_node", replicas[target], "by", requester(ctx))
	if err := n.transfer(ctx, shard, target); err != nil {
		return 0, err
	}
	return replicas[target], nil
}

// transfer asks a shard's leader (through the local replica, which
// forwards it) to hand its leadership to replica target, again every two
// election timeouts, until target leads or ctx ends.
func (n *Node) transfer(ctx context.Context, shard, target uint64) error {
	per := 2 * n.cfg.ElectionTimeout()
	for {
		if err := n.nh.RequestLeaderTransfer(shard, target); err != nil {
			return raftError(err, ctx)
		}
		try := time.Now().Add(per)
		for time.Now().Before(try) {
			if id, _, ok := n.leader(shard); ok && id == target {
				return nil
			}
			select {
			case <-ctx.Done():
				return &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second,
					Message: fmt.Sprintf("shard %d: replica %d did not take the leadership in time", shard, target)}
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

// MoveLeadersOff hands every shard's leadership that node holds to another
// replica (this node's, when it has one) and waits, within ctx, until it
// leads none: before the node is removed or stopped for maintenance. It
// answers how many it moved.
func (n *Node) MoveLeadersOff(ctx context.Context, node uint64) (int, error) {
	moved := 0
	shards := []uint64{fsm.MetaShardID}
	for _, rec := range n.meta.Tenants() {
		shards = append(shards, rec.ShardID)
	}
	for _, shard := range shards {
		replicas, err := n.shardReplicas(shard)
		if err != nil {
			continue // deleted meanwhile
		}
		id, _, ok := n.leader(shard)
		if !ok || replicas[id] != node {
			continue
		}
		if len(replicas) < 2 {
			continue // its only replica: nowhere to move it
		}
		if _, err := n.TransferLeader(ctx, shard, 0); err != nil {
			e := &api.Error{Code: api.CodeUnavailable, RetryAfter: time.Second}
			if errors.As(err, &e) {
				e = &api.Error{Code: e.Code, RetryAfter: e.RetryAfter}
			}
			e.Message = fmt.Sprintf("move the leadership of shard %d off node %d: %v", shard, node, err)
			return moved, e
		}
		moved++
	}
	return moved, nil
}

// shardReplicas maps a shard's voting replica IDs to their nodes (the meta
// shard's replica IDs are its nodes' IDs).
func (n *Node) shardReplicas(shard uint64) (map[uint64]uint64, error) {
	out := map[uint64]uint64{}
	if shard == fsm.MetaShardID {
		for _, rec := range n.meta.Nodes() {
			out[rec.ID] = rec.ID
		}
		return out, nil
	}
	rec, ok := n.meta.TenantByShard(shard)
	if !ok {
		return nil, api.Errorf(api.CodeNotFound, "no shard %d", shard)
	}
	for rid, rep := range rec.Replicas {
		if !rep.NonVoting { // a non-voting replica cannot lead
			out[rid] = rep.Node
		}
	}
	return out, nil
}

// ShardOf is the shard ID of a tenant's shard.
func (n *Node) ShardOf(tenant string) (uint64, bool) {
	rec, ok := n.meta.Tenant(tenant)
	if !ok {
		return 0, false
	}
	return rec.ShardID, true
}
