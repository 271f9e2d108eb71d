package cluster_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
	"github.com/rafting/rafting/server/servertest"
)

// TestResentProposalAppliedOnce: a command sent again under its session
// and series (a retry after a timed-out attempt) is not applied again, so
// it cannot undo a newer write that landed in between (A, B, A), and it is
// answered with the first copy's result.
func TestResentProposalAppliedOnce(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	c.CreateTenant("once", api.Quotas{})
	c.WaitTenantLeader("once")
	ten, ok := c.Server(1).Node().Tenant("once")
	if !ok {
		t.Fatal("node 1 does not run the tenant's shard")
	}
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
