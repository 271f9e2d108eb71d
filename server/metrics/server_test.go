package metrics_test

import (
	"bytes"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server"
	"github.com/rafting/rafting/server/servertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// family is what the server exports under one name: docs/OPERATIONS.md
// lists them, dashboards and alerts use these names and labels.
type family struct {
	typ    dto.MetricType
	labels []string // sorted
	always bool     // has a series in TestServerMetrics' scrape
}

var (
	counter   = dto.MetricType_COUNTER
	gauge     = dto.MetricType_GAUGE
	histogram = dto.MetricType_HISTOGRAM
)

// exported is every rafting_* family the server registers. A family added
// to the server and not here, or here and gone from the server, fails
// TestServerMetrics: list it in docs/OPERATIONS.md too.
var exported = map[string]family{
	"rafting_build_info":                                     {gauge, []string{"commit", "go_version", "state_version", "version"}, true},
	"rafting_client_streams":                                 {gauge, []string{"tenant"}, false}, // only while one is open
	"rafting_cluster_nodes":                                  {gauge, nil, true},
	"rafting_http_request_seconds":                           {histogram, []string{"route"}, true},
	"rafting_http_requests_total":                            {counter, []string{"code", "route"}, true},
	"rafting_http_unauthorized_total":                        {counter, []string{"tenant"}, true},
	"rafting_node_leaderships":                               {gauge, nil, true},
	"rafting_peer_last_contact_seconds":                      {gauge, []string{"node"}, true},
	"rafting_peer_reachable":                                 {gauge, []string{"node"}, true},
	"rafting_placement_moves":                                {gauge, nil, true},
	"rafting_placement_replicas":                             {gauge, []string{"node"}, true},
	"rafting_raft_applied_entries_total":                     {counter, []string{"tenant"}, true},
	"rafting_raft_proposal_seconds":                          {histogram, []string{"kind"}, true},
	"rafting_raft_proposals_total":                           {counter, []string{"kind", "result"}, true},
	"rafting_session_streams":                                {gauge, []string{"tenant"}, false}, // on the tenant's leader only
	"rafting_shard_applied_index":                            {gauge, []string{"shard", "tenant"}, true},
	"rafting_shard_has_leader":                               {gauge, []string{"shard", "tenant"}, true},
	"rafting_shard_leader_changes_total":                     {counter, []string{"shard", "tenant"}, true},
	"rafting_shard_leader_node":                              {gauge, []string{"shard", "tenant"}, true},
	"rafting_shard_term":                                     {gauge, []string{"shard", "tenant"}, true},
	"rafting_tenant_instances":                               {gauge, []string{"tenant"}, true},
	"rafting_tenant_previous_token_expiry_timestamp_seconds": {gauge, []string{"tenant"}, true},
	"rafting_tenant_services":                                {gauge, []string{"tenant"}, true},
	"rafting_tenant_sessions":                                {gauge, []string{"tenant"}, true},
	"rafting_tenant_watchers":                                {gauge, []string{"tenant"}, true},
}

// TestServerMetrics scrapes a real node after some traffic and parses the
// answer with Prometheus's own parser: every rafting_* family has the name,
// type and labels above, the values say what happened, and the Go runtime's
// and the process's families are there.
func TestServerMetrics(t *testing.T) {
	c := servertest.Start(t, servertest.Options{})
	acme := c.CreateTenant("acme", api.Quotas{})
	do := func(token, method, path string, body any, want int) {
		t.Helper()
		if r := c.Do(1, token, method, path, body); r.Status != want {
			t.Fatalf("%s %s = %d %s, want %d", method, path, r.Status, r.Body, want)
		}
	}
	do(acme, http.MethodPut, "/v1/tenants/acme/sessions/s-metrics-0123456789abcdef", map[string]any{"ttl_ms": 30000}, http.StatusCreated)
	do(acme, http.MethodPut, "/v1/tenants/acme/services/web/instances/web-1", map[string]any{"address": "127.0.0.1:8080"}, http.StatusCreated)
	do(acme, http.MethodPut, "/v1/tenants/acme/services/web/instances/web-2", map[string]any{"address": "127.0.0.1:8081"}, http.StatusCreated)
	do(acme, http.MethodPut, "/v1/tenants/acme/services/web/instances/bad", map[string]any{"address": "bad\naddress"}, http.StatusBadRequest)
	do(acme, http.MethodGet, "/v1/tenants/acme/services/web?index=1&wait=10ms", nil, http.StatusOK)
	do(servertest.AdminToken, http.MethodPost, "/v1/tenants/acme/token", map[string]any{"previous_valid_ms": 3600000}, http.StatusOK)
	for range 3 {
		do("rft_acme_not-the-token", http.MethodGet, "/v1/tenants/acme/services", nil, http.StatusUnauthorized)
	}

	var fams map[string]*dto.MetricFamily
	servertest.Eventually(t, 10*time.Second, "the new instances and the peers in node 1's metrics", func() bool {
		fams = scrape(t, c)
		return value(fams, "rafting_tenant_instances", "tenant", "acme") == 2 &&
			value(fams, "rafting_peer_reachable", "node", "2") == 1 && value(fams, "rafting_peer_reachable", "node", "3") == 1
	})

	for name, want := range exported {
		f, ok := fams[name]
		if !ok {
			if want.always {
				t.Errorf("/metrics has no %s", name)
			}
			continue
		}
		if f.GetType() != want.typ {
			t.Errorf("%s is a %v, want a %v", name, f.GetType(), want.typ)
		}
		for _, m := range f.GetMetric() {
			var names []string
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
			}
			sort.Strings(names)
			if !slices.Equal(names, want.labels) {
				t.Errorf("%s has a series labelled %v, want %v", name, names, want.labels)
			}
		}
	}
	for name := range fams {
		if _, ok := exported[name]; strings.HasPrefix(name, "rafting_") && !ok {
			t.Errorf("/metrics has %s, which this test (and docs/OPERATIONS.md) does not list", name)
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "go_info", "process_resident_memory_bytes",
		"process_cpu_seconds_total", "process_open_fds"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}

	tests := []struct {
		name   string
		labels []string // name, value, ...
		want   func(float64) bool
		what   string
	}{
		{"rafting_build_info", []string{"version", server.Build().Version, "commit", server.Build().Commit}, eq(1), "1"},
		{"rafting_cluster_nodes", nil, eq(3), "3"},
		{"rafting_tenant_instances", []string{"tenant", "acme"}, eq(2), "2"},
		{"rafting_tenant_services", []string{"tenant", "acme"}, eq(1), "1"},
		{"rafting_tenant_sessions", []string{"tenant", "acme"}, eq(1), "1"},
		{"rafting_tenant_watchers", []string{"tenant", "acme"}, eq(0), "0: the blocking query answered"},
		{"rafting_http_unauthorized_total", []string{"tenant", "acme"}, eq(3), "3"},
		{"rafting_http_requests_total", []string{"route", "PUT /v1/tenants/{t}/services/{s}/instances/{id}", "code", "201"}, eq(2), "2"},
		{"rafting_http_requests_total", []string{"route", "PUT /v1/tenants/{t}/services/{s}/instances/{id}", "code", "400"}, eq(1), "1"},
		{"rafting_http_request_seconds", []string{"route", "PUT /v1/tenants/{t}/services/{s}/instances/{id}"}, eq(3), "3 observations"},
		{"rafting_raft_proposals_total", []string{"kind", "tenant", "result", "ok"}, atLeast(3), "≥ 3: a session, two instances"},
		{"rafting_raft_proposal_seconds", []string{"kind", "meta"}, atLeast(2), "≥ 2 observations: the tenant, the token"},
		{"rafting_raft_applied_entries_total", []string{"tenant", "acme"}, atLeast(3), "≥ 3"},
		{"rafting_shard_has_leader", []string{"shard", "1", "tenant", ""}, eq(1), "1"},
		{"rafting_shard_has_leader", []string{"tenant", "acme"}, eq(1), "1"},
		{"rafting_shard_term", []string{"tenant", "acme"}, atLeast(1), "≥ 1"},
		{"rafting_shard_leader_node", []string{"shard", "1", "tenant", ""}, between(1, 3), "a node of 1-3"},
		{"rafting_shard_leader_changes_total", []string{"shard", "1", "tenant", ""}, atLeast(1), "≥ 1"},
		{"rafting_shard_applied_index", []string{"tenant", "acme"}, atLeast(3), "≥ 3"},
		{"rafting_peer_reachable", []string{"node", "2"}, eq(1), "1"},
		{"rafting_peer_last_contact_seconds", []string{"node", "3"}, between(0, 10), "0-10 s"},
		{"rafting_tenant_previous_token_expiry_timestamp_seconds", []string{"tenant", "acme"},
			between(float64(time.Now().Add(59*time.Minute).Unix()), float64(time.Now().Add(61*time.Minute).Unix())), "in an hour"},
	}
	for _, tt := range tests {
		if got := value(fams, tt.name, tt.labels...); !tt.want(got) {
			t.Errorf("%s%v = %v, want %s", tt.name, tt.labels, got, tt.what)
		}
	}
	leads := value(fams, "rafting_node_leaderships")
	if leads < 0 || leads > 2 {
		t.Errorf("rafting_node_leaderships = %v, want 0-2 (of the meta and acme's shards)", leads)
	}
}

// scrape reads node 1's /metrics as Prometheus does and parses it.
func scrape(t *testing.T, c *servertest.Cluster) map[string]*dto.MetricFamily {
	t.Helper()
	r := c.Do(1, servertest.AdminToken, http.MethodGet, "/metrics", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("GET /metrics: Content-Type %q, want the text format 0.0.4", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, r.Body)
	}
	return fams
}

// value is the value of the first series of the named family whose labels
// include the given name, value pairs (a histogram's: its count), or -1.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}) {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func eq(want float64) func(float64) bool     { return func(v float64) bool { return v == want } }
func atLeast(min float64) func(float64) bool { return func(v float64) bool { return v >= min } }
func between(lo, hi float64) func(float64) bool {
	return func(v float64) bool { return v >= lo && v <= hi }
}
