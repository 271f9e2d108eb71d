package cluster

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/client"
	sm "github.com/lni/dragonboat/v4/statemachine"
)

// Proposals are made under Dragonboat client sessions, so that re-sending
// one is safe. An attempt whose deadline passes may still be applied later
// (a new leader commits it); the attempt after it carries the same client
// ID and series, which the state machine applies at most once, answering
// the copy that arrives second with the first one's result. Idempotent
// commands alone do not give that: a re-sent write applied after another
// client's newer write to the same key undoes it (A, B, A).
//
// Once an attempt timed out (or was cancelled, or its replica or node
// stopped with it pending: ErrShardClosed, ErrClosed) the outcome stays
// unknown, answered 504, whatever later attempts say: a later "no leader" (503, not
// applied) says nothing of the first copy. Answering 503 there is what the
// linearizability check in server/linearizable_test.go caught.
//
// A session carries one proposal at a time, so each node keeps a pool of
// them per shard, registered on first need (one Raft write each) and given
// back after each proposal. A proposal given up on with its outcome unknown
// gives its session back too: the next proposal on it tells the state
// machine that the series was answered, and a copy arriving after that is
// ignored. A node's sessions outlive it in the state machine until
// Dragonboat's LRU of 4,096 per shard drops them; a pooled session the LRU
// dropped is refused (ErrRejected, nothing applied) and replaced.

// propose proposes cmd on a shard with short attempts, retried within ctx
// under one client session, so a command is applied at most once however
// often it is sent. The error is an *api.Error: 503 when nothing was
// applied, 504 when the outcome is unknown.
func (n *Node) propose(ctx context.Context, shard uint64, cmd []byte) (sm.Result, error) {
	return n.proposeWith(ctx, shard, func(ctx context.Context, cs *client.Session) (sm.Result, error) {
		return n.nh.SyncPropose(ctx, cs, cmd)
	})
}

// proposeWith is propose's loop, each attempt made by send.
func (n *Node) proposeWith(ctx context.Context, shard uint64, send func(context.Context, *client.Session) (sm.Result, error)) (sm.Result, error) {
	start := time.Now()
	pool := n.pool(shard)
	var (
		cs      *client.Session
		last    error
		unknown bool // an attempt timed out or was cancelled: it may yet be applied
	)
	defer func() {
		if cs != nil {
			pool.give(cs)
		}
	}()
	for attempt := 0; ; attempt++ {
		timeout := n.cfg.ProposalTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = min(timeout, time.Until(dl))
		}
		if timeout < n.cfg.RTT {
			break
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		var (
			r   sm.Result
			err error
		)
		if cs == nil {
			cs, err = pool.take(actx)
		}
		if err == nil {
			r, err = send(actx, cs)
			switch {
			case errors.Is(err, dragonboat.ErrTimeout), errors.Is(err, dragonboat.ErrCanceled),
				errors.Is(err, dragonboat.ErrShardClosed), errors.Is(err, dragonboat.ErrClosed):
				// A replica (or the node) that stops with the proposal
				// pending answers ErrShardClosed (ErrClosed): the proposal
				// may be in the leader's log already, and commit.
				unknown = true
			case errors.Is(err, dragonboat.ErrRejected): // the LRU dropped the session
				pool.drop()
				cs = nil
			}
		} else if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = dragonboat.ErrSystemBusy // every session busy for a whole attempt
		}
		cancel()
		if err == nil {
			n.metrics.proposed(shard, "ok", time.Since(start))
			return r, nil
		}
		last = err
		if !retryable(err) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff(attempt)):
		}
		if ctx.Err() != nil {
			break
		}
	}
	if unknown {
		last = dragonboat.ErrTimeout // whatever came after, the first may be applied
	}
	e := raftError(last, ctx)
	n.metrics.proposed(shard, string(e.Code), time.Since(start))
	return sm.Result{}, e
}

func retryable(err error) bool {
	return errors.Is(err, dragonboat.ErrSystemBusy) || errors.Is(err, dragonboat.ErrShardNotReady) ||
		errors.Is(err, dragonboat.ErrTimeout) || errors.Is(err, dragonboat.ErrShardNotInitialized) ||
		errors.Is(err, dragonboat.ErrAborted) || errors.Is(err, dragonboat.ErrDeadlineNotSet) ||
		errors.Is(err, dragonboat.ErrTimeoutTooSmall) || errors.Is(err, dragonboat.ErrRejected)
}

// maxSessions bounds the sessions one node registers on one shard, hence
// its proposals in flight there; more wait for one to be given back.
const maxSessions = 256

// sessionPool holds one shard's idle client sessions on this node.
type sessionPool struct {
	idle     chan *client.Session // capacity maxSessions: giving back never blocks
	made     atomic.Int32         // registered or being registered, not dropped
	register func(context.Context) (*client.Session, error)
}

// pool returns the shard's session pool.
func (n *Node) pool(shard uint64) *sessionPool {
	if p, ok := n.pools.Load(shard); ok {
		return p.(*sessionPool)
	}
	p, _ := n.pools.LoadOrStore(shard, &sessionPool{
		idle: make(chan *client.Session, maxSessions),
		register: func(ctx context.Context) (*client.Session, error) {
			return n.nh.SyncGetSession(ctx, shard) // a Raft write
		},
	})
	return p.(*sessionPool)
}

// take returns an idle session, registers a new one while fewer than
// maxSessions exist, or waits within ctx for one to be given back.
func (p *sessionPool) take(ctx context.Context) (*client.Session, error) {
	select {
	case s := <-p.idle:
		return s, nil
	default:
	}
	if p.made.Add(1) <= maxSessions {
		s, err := p.register(ctx)
		if err != nil {
			p.made.Add(-1)
		}
		return s, err
	}
	p.made.Add(-1)
	select {
	case s := <-p.idle:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// give ends the session's current proposal and makes it idle.
func (p *sessionPool) give(s *client.Session) {
	s.ProposalCompleted()
	p.idle <- s
}

// drop forgets a session the state machine no longer knows.
func (p *sessionPool) drop() { p.made.Add(-1) }

// forget drops a stopped shard's pool; its sessions are left to the LRU.
func (n *Node) forget(shard uint64) { n.pools.Delete(shard) }
