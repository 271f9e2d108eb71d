package sdktest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// A test of your own service against a real cluster: join, then call
// through the cache. (Examples cannot take a *testing.T; in a test, pass
// yours.)
func ExampleStart() {
	var t *testing.T // your test's
	c := sdktest.Start(t)
	c.Join(t, sdk.Instance{Service: "orders", Address: "127.0.0.1:8080"})
	client := c.Connect(t)
	svc, err := client.Service(context.Background(), "orders")
	if err != nil {
		t.Fatal(err)
	}
	ep, err := svc.Balancer(balancer.RoundRobin()).Pick()
	if err != nil {
		t.Fatal(err)
	}
	_ = ep.Address // "127.0.0.1:8080"
}

// A failover test: the master crashes as kill -9 would (no Leave, the
// servers find out when its stream drops), and the standby takes over
// with a higher fencing token.
func ExampleCluster_Crash() {
	var t *testing.T // your test's
	c := sdktest.Start(t)
	a := c.Join(t, sdk.Instance{Service: "billing", Mode: sdk.MasterStandby})
	b := c.Join(t, sdk.Instance{Service: "billing", Mode: sdk.MasterStandby})
	master, standby := a, b
	if b.IsMaster() {
		master, standby = b, a
	}
	old, _ := master.Mastership()
	c.Crash(t, master)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := standby.RunAsMaster(ctx, func(term sdk.Term) error {
		if term.Token <= old.Token {
			t.Errorf("token %d not above %d", term.Token, old.Token)
		}
		cancel() // one term is enough for this test
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
