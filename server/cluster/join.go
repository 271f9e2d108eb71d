package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/fsm"
)

// A node joins the meta shard as etcd's learners do: AddNode adds it as a
// non-voting member, and the node promotes itself to a voter once its
// meta replica has caught up (a ReadIndex through it succeeded: it applied
// what the leader had committed when the read began). Until then it
// counts in no quorum, so a join while a member is down never leaves the
// meta shard with more voters than answer (four members, two running: no
// quorum, and the join wedged until the down member returned).
//
// Each step is read back from the membership before it is made: a join
// asked again (the node that took it crashed) adds nothing twice, and a
// joiner that crashes before its promotion promotes itself when it
// restarts. A joiner that never starts stays non-voting and costs the
// meta shard nothing; `rafting cluster remove` takes it out.
//
// Dragonboat replays a replica's log from its adding, so a replica added
// non-voting is started non-voting at every start, promoted or not (one
// started as a voter panics when it meets its own AddNonVoting); it makes
// itself a voter when it meets its promotion. The data dir remembers it
// (metaNonVotingFile), as a tenant's staged replica's record does.

// metaNonVotingFile marks a data dir whose meta replica joined non-voting.
const metaNonVotingFile = "meta-joined-non-voting"

// metaJoinedNonVoting reports whether the data dir's meta replica was
// added non-voting (a join from this version on).
func metaJoinedNonVoting(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, metaNonVotingFile))
	return err == nil
}

// markMetaNonVoting records, before the meta replica first starts as a
// joiner, that it starts non-voting.
func markMetaNonVoting(dataDir string) error {
	return config.WriteFile(filepath.Join(dataDir, metaNonVotingFile), []byte("the meta replica joined as a non-voting member: it starts non-voting at every start\n"))
}

// MetaVoting reports whether this node's meta replica votes: false from a
// join until its promotion.
func (n *Node) MetaVoting() bool { return !n.metaLearner.Load() }

// promoteMeta promotes this node's meta replica to a voter once it has
// caught up, retrying until the membership shows it voting (a node that
// joined before this version, or bootstrapped, votes from the start).
func (n *Node) promoteMeta() {
	defer n.wg.Done()
	for attempt := 0; n.metaLearner.Load(); attempt++ {
		if !n.sleep(min(backoff(attempt), placeEvery)) {
			return
		}
		if n.closing.Load() || n.RemovedReason() != "" {
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RequestTimeout)
		voting, err := n.promoteOnce(ctx)
		cancel()
		if voting {
			n.metaLearner.Store(false)
			return
		}
		if err != nil && attempt%10 == 9 {
			n.log.Warn("promote this node's meta replica to a voter", "err", err)
		}
	}
}

// errNotMember: the meta shard's membership has this node neither as a
// voter nor as a non-voting member (not added yet, or removed).
var errNotMember = errors.New("cluster: this node is not a member of the meta shard")

// promoteOnce makes one step of the promotion and reports whether the
// meta replica votes.
func (n *Node) promoteOnce(ctx context.Context) (bool, error) {
	me := n.cfg.NodeID
	if err := n.SyncMeta(ctx); err != nil {
		return false, err // not caught up yet
	}
	m, err := n.nh.SyncGetShardMembership(ctx, fsm.MetaShardID)
	if err != nil {
		return false, raftError(err, ctx)
	}
	if _, ok := m.Nodes[me]; ok {
		return true, nil
	}
	if _, ok := m.NonVotings[me]; !ok {
		return false, errNotMember
	}
	start := time.Now()
	if err := n.addVoter(ctx, fsm.MetaShardID, me, nodeHostID(me), m.ConfigChangeID); err != nil {
		return false, err
	}
	n.log.Info("this node's meta replica caught up and was promoted to a voter", "took", time.Since(start))
	return true, nil
}

// MetaVoters is the meta shard's voting members: node ID -> Raft address.
func (n *Node) MetaVoters(ctx context.Context) (map[uint64]string, error) {
	m, err := n.nh.SyncGetShardMembership(ctx, fsm.MetaShardID)
	if err != nil {
		return nil, raftError(err, ctx)
	}
	out := map[uint64]string{}
	for id := range m.Nodes {
		addr, _ := n.reg.addr(id)
		out[id] = addr
	}
	return out, nil
}
