// Package sdktest starts a real Rafting cluster inside a test, in one
// call: three servers on loopback with free ports and temporary data, and
// a tenant, for the test's own members and clients.
//
//	func TestBilling(t *testing.T) {
//		c := sdktest.Start(t)
//		m := c.Join(t, sdk.Instance{Service: "billing", Address: "127.0.0.1:8080"})
//		client := c.Connect(t)
//		svc, err := client.Service(ctx, "billing")
//		...
//	}
//
// Everything it starts stops in the test's cleanup: members leave, clients
// close, then the servers stop, so go.uber.org/goleak finds nothing left.
// The servers are real (Raft, state machines, REST API); fault injection
// (stopping or crashing a node) goes through Cluster.Servers.
package sdktest

import (
	"context"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/server/servertest"
)

// DefaultTenant is the tenant Start creates.
const DefaultTenant = "test"

// Options tune a test cluster. The zero value is Start's.
type Options struct {
	Tenant string     // [DefaultTenant]
	Quotas api.Quotas // the tenant's quotas; zero fields take the defaults
	Nodes  int        // [3]
}

// Cluster is a running test cluster and its tenant.
type Cluster struct {
	// Servers is the cluster itself, for fault injection: StopNode,
	// AbortNode, StartNode, TenantLeader...
	Servers *servertest.Cluster
	Tenant  string
	Token   string
}

// Start starts a three-node cluster with one tenant and waits until the
// tenant's shard has a leader; the test's cleanup stops it.
func Start(t testing.TB) *Cluster {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Tenant == "" {
		o.Tenant = DefaultTenant
	}
	sc := servertest.Start(t, servertest.Options{Nodes: o.Nodes})
	c := &Cluster{Servers: sc, Tenant: o.Tenant}
	c.Token = c.CreateTenant(t, o.Tenant, o.Quotas)
	return c
}

// CreateTenant creates another tenant on the cluster and returns its
// token; TenantOptions gives the options that use it.
func (c *Cluster) CreateTenant(t testing.TB, name string, q api.Quotas) string {
	t.Helper()
	tok := c.Servers.CreateTenant(name, q)
	c.Servers.WaitTenantLeader(name)
	return tok
}

// Options returns the options that connect to the cluster's tenant:
// WithServers, WithTenant and WithToken.
func (c *Cluster) Options() []sdk.Option {
	return c.TenantOptions(c.Tenant, c.Token)
}

// TenantOptions returns the options that connect to another tenant.
func (c *Cluster) TenantOptions(tenant, token string) []sdk.Option {
	return []sdk.Option{sdk.WithServers(c.Servers.Addrs()...), sdk.WithTenant(tenant), sdk.WithToken(token)}
}

// Connect connects a Client to the tenant, closed in the test's cleanup.
func (c *Cluster) Connect(t testing.TB, opts ...sdk.Option) *sdk.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := sdk.Connect(ctx, append(c.Options(), opts...)...)
	if err != nil {
		t.Fatalf("sdktest: connect: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// Join joins an instance on a Client of its own; it leaves in the test's
// cleanup (if it has not left before).
func (c *Cluster) Join(t testing.TB, inst sdk.Instance, opts ...sdk.Option) *sdk.Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := sdk.Join(ctx, inst, append(c.Options(), opts...)...)
	if err != nil {
		t.Fatalf("sdktest: join %s: %v", inst.Service, err)
	}
	t.Cleanup(func() { m.Leave(context.Background()) })
	return m
}
