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
// The servers are real (Raft, state machines, REST API). Crash kills a
// member as kill -9 would its process, and WaitEndpoints waits for a
// Client's cache to follow; fault injection on the servers (stopping or
// crashing a node) goes through Cluster.Servers.
//
// A Client made after a Join returned always sees that instance (its first
// fill is a consistent read), so a test may Pick at once, as above.
//
// Importing sdktest leaves the standard library's logger as Go sets it up:
// Dragonboat's logging package (capnslog) takes log's output, flags and
// prefix over in its init, and sdktest's init gives them back.
//
// With Options.TLS the servers speak HTTPS, with certificates of a CA made
// for the test (Cluster.CA), as a production cluster does; Options then
// names the servers with https:// and verifies them with WithCA.
package sdktest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/internal/testhook"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
)

// DefaultTenant is the tenant Start creates.
const DefaultTenant = "test"

// Options tune a test cluster. The zero value is Start's.
type Options struct {
	Tenant string     // [DefaultTenant]
	Quotas api.Quotas // the tenant's quotas; zero fields take the defaults
	Nodes  int        // [3]
	// TLS serves the API over HTTPS with certificates of a CA made for
	// the test (Cluster.CA); Raft peers use mutual TLS with it.
	TLS bool
}

// Cluster is a running test cluster and its tenant.
type Cluster struct {
	// Servers is the cluster itself, for fault injection: StopNode,
	// AbortNode, StartNode, TenantLeader...
	Servers *servertest.Cluster
	Tenant  string
	Token   string
	// CA is the PEM file of the servers' CA with Options.TLS, else "".
	CA string
	// WaitTimeout bounds WaitEndpoints; zero is DefaultWaitTimeout.
	WaitTimeout time.Duration

	admin *http.Client // the tenant creation's, verifying with CA
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
	so := servertest.Options{Nodes: o.Nodes}
	var ca *servertest.CA
	if o.TLS {
		ca = servertest.NewCA(t, t.TempDir(), "sdktest")
		so.Configure = func(cfg *config.Config) { ca.Secure(t, cfg) }
	}
	sc := servertest.Start(t, so)
	c := &Cluster{Servers: sc, Tenant: o.Tenant, admin: sc.Client}
	if ca != nil {
		c.CA = ca.File
		pem, err := os.ReadFile(ca.File)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		c.admin = &http.Client{Timeout: 30 * time.Second, Transport: tr}
		t.Cleanup(tr.CloseIdleConnections)
	}
	c.Token = c.CreateTenant(t, o.Tenant, o.Quotas)
	return c
}

// scheme is the servers' URL scheme.
func (c *Cluster) scheme() string {
	if c.CA != "" {
		return "https"
	}
	return "http"
}

// adminPost posts body to path on node id with the admin token.
func (c *Cluster) adminPost(ctx context.Context, id int, path string, body any) (*servertest.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme()+"://"+c.Servers.Addr(id)+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+servertest.AdminToken)
	resp, err := c.admin.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &servertest.Response{Status: resp.StatusCode, Header: resp.Header, Body: rb}, nil
}

// CreateTenant creates another tenant on the cluster, waits until every
// running node runs its shard and knows its leader, and returns
// its token; TenantOptions gives the options that use it. Failures fail t
// (not the test that started the cluster), so subtests may call it.
func (c *Cluster) CreateTenant(t testing.TB, name string, q api.Quotas) string {
	t.Helper()
	var b [32]byte
	_, _ = rand.Read(b[:])
	req := api.CreateTenantRequest{Name: name, Quotas: q, Secret: base64.RawURLEncoding.EncodeToString(b[:])}
	deadline := time.Now().Add(30 * time.Second)
	var token string
	for token == "" {
		r, err := c.adminPost(context.Background(), c.anyNode(t), "/v1/tenants", req)
		switch {
		case err == nil && (r.Status == http.StatusCreated || r.Status == http.StatusOK):
			var tn api.Tenant
			if err := json.Unmarshal(r.Body, &tn); err != nil {
				t.Fatalf("sdktest: create tenant %s: %v", name, err)
			}
			token = tn.Token
			continue
		case err == nil && r.Err() != nil && !r.Err().Code.Retryable():
			t.Fatalf("sdktest: create tenant %s: %d %s", name, r.Status, r.Body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("sdktest: create tenant %s: no success in 30s (last: %v)", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for !c.tenantReady(name) {
		if time.Now().After(deadline) {
			t.Fatalf("sdktest: tenant %s: not running with a leader on every node after 30s", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return token
}

// tenantReady reports whether every running node runs the tenant's shard
// and knows its leader.
func (c *Cluster) tenantReady(name string) bool {
	for i := range c.Servers.Addrs() {
		s := c.Servers.Server(i + 1)
		if s == nil {
			continue
		}
		tr, ok := s.Node().Tenant(name)
		if !ok {
			return false
		}
		if _, _, known := tr.Leader(); !known {
			return false
		}
	}
	return true
}

func (c *Cluster) anyNode(t testing.TB) int {
	for i := range c.Servers.Addrs() {
		if c.Servers.Server(i+1) != nil {
			return i + 1
		}
	}
	t.Fatal("sdktest: no node is running")
	return 0
}

// Options returns the options that connect to the cluster's tenant:
// WithServers, WithTenant and WithToken.
func (c *Cluster) Options() []sdk.Option {
	return c.TenantOptions(c.Tenant, c.Token)
}

// TenantOptions returns the options that connect to another tenant. The
// servers are named with their scheme (http:// or https://), so a
// RAFTING_CA in the environment changes nothing; with Options.TLS,
// WithCA(c.CA) is among them.
func (c *Cluster) TenantOptions(tenant, token string) []sdk.Option {
	servers := c.Servers.Addrs()
	for i, s := range servers {
		servers[i] = c.scheme() + "://" + s
	}
	opts := []sdk.Option{sdk.WithServers(servers...), sdk.WithTenant(tenant), sdk.WithToken(token)}
	if c.CA != "" {
		opts = append(opts, sdk.WithCA(c.CA))
	}
	return opts
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

// Crash kills a member's process as kill -9 would. The process is the
// member's Client: a member made by Join (and Cluster.Join) is alone in
// it, but one made by (*Client).Join dies with every other member of that
// Client — the farm members among them share one session, which cannot
// outlive the process anyway. To take one member away alone, give it a
// Client of its own (Cluster.Join). Streams and connections drop and
// keepalives stop, and nothing is said to the servers — no drain, no
// deregistration, no session end. The servers find out as they would in
// production: the dropped stream starts each session's drop_grace (500
// ms by default), after which the session ends with its instances, and a
// master's standby is granted once the dead master's promise has run out
// too.
//
// The members are over locally: Done is closed, Err matches
// sdk.ErrSessionLost, and their OnRoleChange callbacks are told Left (a
// killed process would run none; they report what the test did). Leave
// after Crash sends nothing.
func (c *Cluster) Crash(t testing.TB, m *sdk.Member) {
	t.Helper()
	testhook.Crash(m)
}

// DefaultWaitTimeout bounds WaitEndpoints unless Cluster.WaitTimeout says
// otherwise: long enough for a crashed member's drop_grace or TTL, and a
// master's promise, to run out.
const DefaultWaitTimeout = 30 * time.Second

// WaitEndpoints waits until svc's balancers pick from exactly n endpoints,
// and fails t if they do not within WaitTimeout, naming what the cache
// held. Endpoints are the ready instances with a weight, and those
// kept through a quarantine after a mass removal (sdk.WithQuarantine; use
// WithQuarantine(0) to see removals at once).
func (c *Cluster) WaitEndpoints(t testing.TB, svc *sdk.Service, n int) {
	t.Helper()
	b := svc.Balancer(balancer.RoundRobin()) // the service's own: asking costs nothing
	timeout := c.WaitTimeout
	if timeout <= 0 {
		timeout = DefaultWaitTimeout
	}
	deadline := time.Now().Add(timeout)
	for len(b.Endpoints()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("sdktest: service %s: %d endpoints after %v, want %d: %s",
				svc.Name(), len(b.Endpoints()), timeout, n, describe(svc.Snapshot(), b.Endpoints()))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// describe tells what a cache held, for a failure.
func describe(snap sdk.Snapshot, eps []balancer.Endpoint) string {
	var picked, listed []string
	for _, e := range eps {
		picked = append(picked, e.ID+"@"+e.Address)
	}
	for _, in := range snap.Instances {
		listed = append(listed, fmt.Sprintf("%s@%s (%s, weight %d)", in.ID, in.Address, in.State, in.Weight))
	}
	return fmt.Sprintf("picked [%s]; the cache at index %d lists [%s], quarantined [%s], stale %v, synced %s ago",
		strings.Join(picked, " "), snap.Index, strings.Join(listed, ", "), strings.Join(snap.Quarantined, " "),
		snap.Stale, time.Since(snap.Synced).Round(time.Millisecond))
}
