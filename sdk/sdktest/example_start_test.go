package sdktest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestExampleStartNeverMisses runs ExampleStart's sequence 200 times on
// one cluster: join a fresh instance of a fresh service on a member of its
// own, then a fresh Client, Service and an immediate Pick, which must find
// it. A new Client's first fill was once a plain read that a follower
// behind the registration could serve: 9 runs of 55 missed the instance.
func TestExampleStartNeverMisses(t *testing.T) {
	c := sdktest.Start(t)
	const runs = 200
	var missed []string
	start := time.Now()
	for i := range runs {
		name, addr := fmt.Sprintf("orders-%d", i), fmt.Sprintf("127.0.0.1:%d", 10000+i)
		m := c.Join(t, sdk.Instance{Service: name, Address: addr}, sdk.WithDrainDelay(0))
		client := c.Connect(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		svc, err := client.Service(ctx, name)
		cancel()
		if err != nil {
			t.Fatalf("run %d: Service(%s) = %v", i, name, err)
		}
		if ep, err := svc.Balancer(balancer.RoundRobin()).Pick(); err != nil || ep.Address != addr {
			missed = append(missed, fmt.Sprintf("run %d: Pick() = %v, %v, want %s", i, ep.Address, err, addr))
		}
		client.Close()
		if err := m.Leave(context.Background()); err != nil {
			t.Fatalf("run %d: Leave() = %v", i, err)
		}
	}
	t.Logf("%d runs in %v", runs, time.Since(start).Round(time.Millisecond))
	if len(missed) > 0 {
		t.Fatalf("%d of %d runs missed the instance whose Join had returned; the first: %s", len(missed), runs, missed[0])
	}
}
