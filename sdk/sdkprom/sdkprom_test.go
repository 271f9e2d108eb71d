package sdkprom_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/sdk/sdkprom"
	"github.com/rafting/rafting/sdk/sdktest"
)

// value is the sample of name with the labels (name=value pairs) in reg,
// and whether there is one.
func value(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue(), true
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetrics: a Client given sdkprom's Metrics reports, on a real
// cluster, its Transports' picks and pick errors, its cache's staleness
// and age, its members' role changes and its stream's reconnections, and
// the counters stay once it closes.
func TestMetrics(t *testing.T) {
	c := sdktest.Start(t)
	reg := prometheus.NewRegistry()
	m := sdkprom.New(reg)
	if sdkprom.New(reg) != m {
		t.Fatal("New on a registry that has a Metrics returned another")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.Connect(t, sdk.WithMetrics(m))

	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	if _, err := cl.Join(ctx, sdk.Instance{Service: "web", ID: "w1", Address: strings.TrimPrefix(backend.URL, "http://")}); err != nil {
		t.Fatal(err)
	}
	master, err := cl.Join(ctx, sdk.Instance{Service: "jobs", ID: "j1", Address: "10.0.0.1:80", Mode: sdk.MasterStandby})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the master-standby member to be master", master.IsMaster)

	web, err := cl.Service(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	c.WaitEndpoints(t, web, 1)
	hc := web.HTTPClient(nil)
	for range 3 {
		resp, err := hc.Get("http://web/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	none, err := cl.Service(ctx, "none")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := none.HTTPClient(nil).Get("http://none/x"); !errors.Is(err, balancer.ErrNoEndpoints) {
		t.Fatalf("a request to a service with no instance: %v, want ErrNoEndpoints", err)
	}

	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP rafting_sdk_picks_total Instances picked by the service's Transports (one per request, two for a request retried on another instance).
# TYPE rafting_sdk_picks_total counter
rafting_sdk_picks_total{service="jobs"} 0
rafting_sdk_picks_total{service="none"} 0
rafting_sdk_picks_total{service="web"} 3
# HELP rafting_sdk_pick_errors_total Requests a Transport of the service found no instance for.
# TYPE rafting_sdk_pick_errors_total counter
rafting_sdk_pick_errors_total{service="jobs"} 0
rafting_sdk_pick_errors_total{service="none"} 1
rafting_sdk_pick_errors_total{service="web"} 0
# HELP rafting_sdk_cache_stale 1 while a Client's view of the service is stale (no server confirmed it within the staleness bound).
# TYPE rafting_sdk_cache_stale gauge
rafting_sdk_cache_stale{service="jobs"} 0
rafting_sdk_cache_stale{service="none"} 0
rafting_sdk_cache_stale{service="web"} 0
# HELP rafting_sdk_clients SDK Clients observed.
# TYPE rafting_sdk_clients gauge
rafting_sdk_clients 1
`), "rafting_sdk_picks_total", "rafting_sdk_pick_errors_total", "rafting_sdk_cache_stale", "rafting_sdk_clients"); err != nil {
		t.Fatal(err)
	}
	if v, ok := value(t, reg, "rafting_sdk_role_changes_total", "role", "master"); !ok || v < 1 {
		t.Fatalf("role changes to master: %v (listed %v), want at least 1", v, ok)
	}
	if v, ok := value(t, reg, "rafting_sdk_cache_age_seconds", "service", "web"); !ok || v < 0 || v > 60 {
		t.Fatalf("the web view's age: %v s (listed %v)", v, ok)
	}

	// The stream is kept on the tenant's leader: stop it, and the Client
	// opens its stream again on another node.
	// (A stream opened on a follower that answered moved counts too.)
	leader := c.Servers.TenantLeader(c.Tenant)
	before, ok := value(t, reg, "rafting_sdk_stream_reconnects_total")
	if !ok {
		t.Fatal("no rafting_sdk_stream_reconnects_total")
	}
	c.Servers.StopNode(leader)
	eventually(t, "a stream reconnection counted", func() bool {
		v, _ := value(t, reg, "rafting_sdk_stream_reconnects_total")
		return v > before
	})
	c.Servers.StartNode(leader)

	cl.Close()
	if v, _ := value(t, reg, "rafting_sdk_picks_total", "service", "web"); v != 3 {
		t.Fatalf("web picks after the Client closed: %v, want 3 (counters never go down)", v)
	}
	if v, _ := value(t, reg, "rafting_sdk_clients"); v != 0 {
		t.Fatalf("clients after Close: %v, want 0", v)
	}
}
