package cluster

import (
	"context"

	sm "github.com/lni/dragonboat/v4/statemachine"
)

// ProposeAgain proposes cmd on the shard under one pooled session, runs
// between, then sends cmd again with the same series, as propose does
// after an attempt whose deadline passed.
func (t *Tenant) ProposeAgain(ctx context.Context, cmd []byte, between func()) (first, second sm.Result, err error) {
	n, p := t.node, t.node.pool(t.ShardID)
	cs, err := p.take(ctx)
	if err != nil {
		return first, second, err
	}
	defer p.give(cs)
	if first, err = n.nh.SyncPropose(ctx, cs, cmd); err != nil {
		return first, second, err
	}
	between()
	second, err = n.nh.SyncPropose(ctx, cs, cmd)
	return first, second, err
}
