package sdk_test

import (
	"slices"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdktest"
)

// TestServerSync: a Client configured with one server's address learns
// the others from the cluster, and goes on working when that one server
// stops.
func TestServerSync(t *testing.T) {
	c := sdktest.Start(t)
	addrs := c.Servers.Addrs()
	tn := &tenant{c: c, name: "sync", tok: c.CreateTenant(t, "sync", api.Quotas{})}
	opts := append(tn.opts(), sdk.WithServers(addrs[0]), sdk.WithServerSync(50*time.Millisecond))
	cl, err := sdk.Connect(ctxT(t, 30*time.Second), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	eventually(t, 5*time.Second, "the Client to learn every server", func() bool {
		got := sdk.Servers(cl)
		slices.Sort(got)
		want := slices.Clone(addrs)
		slices.Sort(want)
		return slices.Equal(got, want)
	})
	svc, err := cl.Service(ctxT(t, 10*time.Second), "web")
	if err != nil {
		t.Fatal(err)
	}
	c.Servers.StopNode(1)
	m := tn.join(t, sdk.Instance{Service: "web", ID: "w1", Address: "10.0.0.1:80"}, sdk.WithServers(addrs[1:]...))
	defer m.Leave(ctxT(t, 10*time.Second))
	eventually(t, 20*time.Second, "the Client's cache to follow with its one configured server down", func() bool {
		_, ok := svc.Snapshot().Instance("w1")
		return ok
	})
}
