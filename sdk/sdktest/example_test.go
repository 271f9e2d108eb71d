package sdktest_test

import (
	"context"
	"testing"

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
