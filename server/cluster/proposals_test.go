package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/cluster"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/servertest"
)

// TestProposals runs the proposal tests on one cluster.
func TestProposals(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	t.Run("ResentAppliedOnce", func(t *testing.T) { testResentProposalAppliedOnce(t, c) })
	t.Run("Attempts", func(t *testing.T) { testProposeAttempts(t, c) })
}

// replicaOn1 creates a tenant and returns its replica on node 1.
func replicaOn1(t *testing.T, c *servertest.Cluster, name string) *cluster.Tenant {
	t.Helper()
	c.CreateTenant(name, api.Quotas{})
	c.WaitTenantLeader(name)
	ten, ok := c.Server(1).Node().Tenant(name)
	if !ok {
		t.Fatalf("node 1 does not run %s's shard", name)
	}
	return ten
}

// testResentProposalAppliedOnce: a command sent again under its session
// and series (a retry after a timed-out attempt) is not applied again, so
// it cannot undo a newer write that landed in between (A, B, A), and it is
// answered with the first copy's result.
func testResentProposalAppliedOnce(t *testing.T, c *servertest.Cluster) {
	ten := replicaOn1(t, c, "once")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	write := func(weight int) []byte {
		return fsm.Encode(fsm.OpRegister, fsm.Register{Service: "web", ID: "x",
			Instance: api.RegisterRequest{Address: "a:1", Weight: &weight}})
	}
	first, second, err := ten.ProposeAgain(ctx, write(2), func() {
		if _, err := ten.Propose(ctx, write(3)); err != nil {
			t.Fatal(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := ten.SM.Service("web").Instances; len(got) != 1 || got[0].Weight != 3 {
		t.Fatalf("instances after A, B, A again = %+v, want x at weight 3 (B's)", got)
	}
	if !bytes.Equal(first.Data, second.Data) {
		t.Fatalf("the copy's answer %s differs from the first's %s", second.Data, first.Data)
	}
}

// testProposeAttempts: propose's loop keeps one session and series across
// attempts, replaces a session the state machine refused, and once an attempt timed out
// answers 504 (outcome unknown) even when the attempts after it found no
// leader (503 alone: nothing applied).
func testProposeAttempts(t *testing.T, c *servertest.Cluster) {
	ten := replicaOn1(t, c, "tries")
	run := func(d time.Duration, errs ...error) ([][2]uint64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return ten.ProposeScripted(ctx, errs...)
	}
	code := func(err error) api.Code {
		var e *api.Error
		if !errors.As(err, &e) {
			return ""
		}
		return e.Code
	}

	ids, err := run(10*time.Second, dragonboat.ErrTimeout, dragonboat.ErrShardNotReady, nil)
	if err != nil || len(ids) != 3 || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("timeout, not ready, applied: sent under %v, err %v; want one session and series, no error", ids, err)
	}
	ids, err = run(time.Second, dragonboat.ErrTimeout, dragonboat.ErrShardNotReady)
	if code(err) != api.CodeTimeout {
		t.Fatalf("timeout, then no leader until the deadline = %v, want 504 timeout", err)
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("the attempts after a timeout were sent under %v, want one session and series", ids)
		}
	}
	for _, closed := range []error{dragonboat.ErrShardClosed, dragonboat.ErrClosed} {
		if _, err := run(time.Second, closed); code(err) != api.CodeTimeout {
			t.Fatalf("%v = %v, want 504 timeout: a proposal pending when the replica stopped may still commit", closed, err)
		}
	}
	if _, err := run(time.Second, dragonboat.ErrShardNotReady); code(err) != api.CodeUnavailable {
		t.Fatalf("no leader until the deadline = %v, want 503 unavailable", err)
	}
	ids, err = run(10*time.Second, dragonboat.ErrRejected, nil)
	if err != nil || len(ids) != 2 || ids[0][0] == ids[1][0] {
		t.Fatalf("refused, then applied: sent under %v, err %v; want a new session, no error", ids, err)
	}
	// A request whose time ran out before anything was sent: surely not
	// applied, so 503, never 504's "the outcome is unknown".
	if ids, err = run(time.Nanosecond, nil); len(ids) != 0 || code(err) != api.CodeUnavailable {
		t.Fatalf("no time left: sent %d attempts, err %v; want none sent, 503 unavailable", len(ids), err)
	}
}
