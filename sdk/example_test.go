package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
)

// A farm instance joins with its address; callers spread requests over
// every ready instance.
func ExampleJoin() {
	ctx := context.Background()
	m, err := sdk.Join(ctx, sdk.Instance{Service: "orders", Address: "10.0.0.5:8080"})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Leave(context.Background())
	// ... serve until told to stop ...
}

// A master-standby instance runs its job only while it is master:
// RunAsMaster calls it in each of the member's terms, with the term's
// fencing token and a ctx that ends with the term, or at SIGTERM. Then
// Leave hands the mastership over at once.
func ExampleJoin_masterStandby() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, err := sdk.Join(ctx, sdk.Instance{Service: "billing", Mode: sdk.MasterStandby},
		sdk.WithRoleChange(func(c sdk.RoleChange) { log.Printf("billing %s: %s", c.Member.ID(), c) }))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Leave(context.Background())
	err = m.RunAsMaster(ctx, func(t sdk.Term) error {
		return runBatches(t.Ctx, t.Token) // until t.Ctx ends
	})
	if !errors.Is(err, context.Canceled) {
		log.Print(err)
	}
}

// runBatches writes under token, which the store checks, until ctx ends.
func runBatches(ctx context.Context, token uint64) error {
	<-ctx.Done()
	return ctx.Err()
}

// A caller watches a service and lets balancer.Do pick an instance per
// request: another one on each retry, the outcome always reported.
func ExampleClient_Service() {
	ctx := context.Background()
	c, err := sdk.Connect(ctx, sdk.WithServers("127.0.0.1:7070", "127.0.0.1:7170", "127.0.0.1:7270"),
		sdk.WithTenant("default"), sdk.WithToken("rft_default_..."))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	svc, err := c.Service(ctx, "orders")
	if err != nil {
		log.Fatal(err)
	}
	b := svc.Balancer(balancer.LeastLoaded()) // the same one on every call
	err = balancer.Do(ctx, b, 3, func(ctx context.Context, e balancer.Endpoint) error {
		return call(ctx, e.Address) // an error: tried on another instance
	})
	if err != nil {
		log.Print(err) // names the service when it has no ready instance
	}
}

func call(ctx context.Context, addr string) error { return nil }

// An HTTP caller of a farm: the Service's HTTPClient picks an instance
// per request (least loaded here), reports how each ended to the
// balancer (a 5xx as the instance's failure), and sends an idempotent
// request that failed to connect once more to another instance (a 5xx is
// returned as it is). The URL's host is the service's
// name; the Transport puts the instance's address in its place.
func ExampleService_HTTPClient() {
	ctx := context.Background()
	cl, err := sdk.Connect(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	orders, err := cl.Service(ctx, "orders")
	if err != nil {
		log.Fatal(err)
	}
	hc := orders.HTTPClient(balancer.LeastLoaded())
	resp, err := hc.Get("http://orders/v1/orders/42")
	if err != nil {
		log.Fatal(err) // errors.Is(err, balancer.ErrNoEndpoints) when none is ready
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
}

// Watch yields the current snapshot, then the latest after each change.
func ExampleService_Watch() {
	ctx := context.Background()
	c, err := sdk.Connect(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	svc, err := c.Service(ctx, "orders")
	if err != nil {
		log.Fatal(err)
	}
	for snap := range svc.Watch(ctx) {
		log.Printf("orders: %d ready, stale=%v", len(snap.Ready()), snap.Stale)
	}
}

// Two-step startup: registered but not picked nor elected until Ready.
func ExampleWithTwoStepStartup() {
	ctx := context.Background()
	m, err := sdk.Join(ctx, sdk.Instance{Service: "search", Address: "10.0.0.9:9200"}, sdk.WithTwoStepStartup())
	if err != nil {
		log.Fatal(err)
	}
	defer m.Leave(context.Background())
	warmCaches()
	if err := m.Ready(ctx); err != nil {
		log.Fatal(err)
	}
}

func warmCaches() {}

func ExampleRole() {
	for _, r := range []sdk.Role{sdk.Starting, sdk.Standby, sdk.Master, sdk.Suspended, sdk.Draining, sdk.Left} {
		fmt.Print(r, " ")
	}
	fmt.Println()
	// Output: starting standby master suspended draining left
}

func ExampleSnapshot_Ready() {
	snap := sdk.Snapshot{Instances: []api.Instance{
		{ID: "a", State: api.StateReady, Weight: 100},
		{ID: "b", State: api.StateStarting, Weight: 100},
		{ID: "c", State: api.StateReady, Weight: 0},
		{ID: "d", State: api.StateDraining, Weight: 100},
	}}
	for _, in := range snap.Ready() {
		fmt.Println(in.ID)
	}
	// Output: a
}
