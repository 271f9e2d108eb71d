package sdk_test

import (
	"context"
	"testing"
	"time"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

func TestSmoke(t *testing.T) {
	c := sdktest.Start(t)
	ctx := context.Background()
	m := c.Join(t, sdk.Instance{Service: "web", Address: "127.0.0.1:1"})
	cl := c.Connect(t)
	svc, err := cl.Service(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("instances %+v index %d", svc.Instances(), svc.Index())
	b := svc.Balancer(balancer.RoundRobin())
	e, err := b.Pick()
	t.Logf("pick %v %v role %v", e, err, m.Role())
	ms := c.Join(t, sdk.Instance{Service: "db", Mode: sdk.MasterStandby})
	t.Logf("ms role %v master %v token %d", ms.Role(), ms.IsMaster(), ms.FencingToken())
	start := time.Now()
	if err := m.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("leave took %v; instances %v", time.Since(start), svc.Instances())
}
