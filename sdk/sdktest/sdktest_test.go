package sdktest_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStart(t *testing.T) {
	c := sdktest.Start(t)
	if c.Tenant != sdktest.DefaultTenant || c.Token == "" || len(c.Options()) != 3 {
		t.Fatalf("cluster %+v", c)
	}
	c.Join(t, sdk.Instance{Service: "orders", ID: "o1", Address: "127.0.0.1:8080"})
	client := c.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc, err := client.Service(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	b := svc.Balancer(balancer.RoundRobin())
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ep, err := b.Pick(); err == nil && ep.Address == "127.0.0.1:8080" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the joined instance never reached the caller's balancer")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
