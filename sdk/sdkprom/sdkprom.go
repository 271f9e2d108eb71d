// Package sdkprom reports SDK Clients' counts to Prometheus:
//
//	cl, err := sdk.Connect(ctx, sdk.WithMetrics(sdkprom.New(prometheus.DefaultRegisterer)))
//
// The metrics, summed over the Clients given the same Metrics (a Client's
// counters keep counting after it closes, so totals never go down):
//
//	rafting_sdk_picks_total{service}          instances picked by the service's Transports
//	rafting_sdk_pick_errors_total{service}    requests a Transport found no instance for
//	rafting_sdk_cache_stale{service}          1 while a Client's view of the service is stale
//	rafting_sdk_cache_age_seconds{service}    since a server last confirmed the view (the oldest)
//	rafting_sdk_role_changes_total{role}      members' changes of role, by the role taken
//	rafting_sdk_stream_reconnects_total       client streams opened again after the first
//	rafting_sdk_clients                       Clients observed
//
// It lives apart from package sdk so that a program that does not use
// Prometheus does not link it.
package sdkprom

import (
	"errors"
	"maps"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rafting/rafting/sdk"
)

// Metrics is an sdk.Metrics that reports to one Prometheus registry.
type Metrics struct {
	mu      sync.Mutex
	clients map[*client]struct{}
	retired totals // the final counts of Clients closed
}

type client struct{ read func() sdk.Stats }

// totals are counters summed over Clients.
type totals struct {
	picks, pickErrs map[string]uint64 // by service
	roles           map[string]uint64
	reconnects      uint64
}

func newTotals() totals {
	return totals{picks: map[string]uint64{}, pickErrs: map[string]uint64{}, roles: map[string]uint64{}}
}

func (t *totals) add(st sdk.Stats) {
	for _, s := range st.Services {
		t.picks[s.Service] += s.Picks
		t.pickErrs[s.Service] += s.PickErrors
	}
	for r, n := range st.RoleChanges {
		t.roles[r] += n
	}
	if st.StreamOpens > 1 {
		t.reconnects += uint64(st.StreamOpens - 1)
	}
}

var (
	descPicks      = prometheus.NewDesc("rafting_sdk_picks_total", "Instances picked by the service's Transports (one per request, two for a request retried on another instance).", []string{"service"}, nil)
	descPickErrs   = prometheus.NewDesc("rafting_sdk_pick_errors_total", "Requests a Transport of the service found no instance for.", []string{"service"}, nil)
	descStale      = prometheus.NewDesc("rafting_sdk_cache_stale", "1 while a Client's view of the service is stale (no server confirmed it within the staleness bound).", []string{"service"}, nil)
	descAge        = prometheus.NewDesc("rafting_sdk_cache_age_seconds", "Seconds since a server last confirmed the service's view (the oldest over Clients).", []string{"service"}, nil)
	descRoles      = prometheus.NewDesc("rafting_sdk_role_changes_total", "Members' changes of role, by the role taken.", []string{"role"}, nil)
	descReconnects = prometheus.NewDesc("rafting_sdk_stream_reconnects_total", "Client streams opened again after a Client's first.", nil, nil)
	descClients    = prometheus.NewDesc("rafting_sdk_clients", "SDK Clients observed.", nil, nil)
)

// New returns the Metrics of reg (nil: prometheus.DefaultRegisterer),
// registering its collector there the first time: New on a registry
// already given one returns that one, so every Client of a process may
// call it.
func New(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	m := &Metrics{clients: map[*client]struct{}{}, retired: newTotals()}
	if err := reg.Register(m); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*Metrics); ok {
				return existing
			}
		}
		panic("sdkprom: " + err.Error())
	}
	return m
}

// Observe implements sdk.Metrics.
func (m *Metrics) Observe(read func() sdk.Stats) (stop func()) {
	c := &client{read: read}
	m.mu.Lock()
	m.clients[c] = struct{}{}
	m.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			final := read()
			m.mu.Lock()
			defer m.mu.Unlock()
			delete(m.clients, c)
			m.retired.add(final)
		})
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPicks, descPickErrs, descStale, descAge, descRoles, descReconnects, descClients} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads every observed
// Client's counts.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	t := newTotals() // the closed Clients' counts, then the open ones'
	maps.Copy(t.picks, m.retired.picks)
	maps.Copy(t.pickErrs, m.retired.pickErrs)
	maps.Copy(t.roles, m.retired.roles)
	t.reconnects = m.retired.reconnects
	reads := make([]func() sdk.Stats, 0, len(m.clients))
	for c := range m.clients {
		reads = append(reads, c.read)
	}
	m.mu.Unlock()

	stale := map[string]bool{}
	age := map[string]float64{}
	for _, read := range reads {
		st := read()
		t.add(st)
		for _, s := range st.Services {
			stale[s.Service] = stale[s.Service] || s.Stale
			age[s.Service] = max(age[s.Service], s.Age.Seconds())
		}
	}
	for s, n := range t.picks {
		ch <- prometheus.MustNewConstMetric(descPicks, prometheus.CounterValue, float64(n), s)
	}
	for s, n := range t.pickErrs {
		ch <- prometheus.MustNewConstMetric(descPickErrs, prometheus.CounterValue, float64(n), s)
	}
	for s, v := range stale {
		ch <- prometheus.MustNewConstMetric(descStale, prometheus.GaugeValue, b2f(v), s)
	}
	for s, v := range age {
		ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, v, s)
	}
	for r, n := range t.roles {
		ch <- prometheus.MustNewConstMetric(descRoles, prometheus.CounterValue, float64(n), r)
	}
	ch <- prometheus.MustNewConstMetric(descReconnects, prometheus.CounterValue, float64(t.reconnects))
	ch <- prometheus.MustNewConstMetric(descClients, prometheus.GaugeValue, float64(len(reads)))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
