package sdk

import (
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Metrics receives a Client's counts for a metrics system. Package
// sdk/sdkprom is Prometheus's:
//
//	cl, err := sdk.Connect(ctx, sdk.WithMetrics(sdkprom.New(prometheus.DefaultRegisterer)))
//
// The core SDK links no metrics library: an adapter reads the counts when
// its system asks (a scrape), so counting costs the SDK an atomic add
// where it happens and nothing else.
type Metrics interface {
	// Observe is called once by Connect with a func that reads the
	// Client's counts as of its call; Close calls the stop it returns.
	Observe(read func() Stats) (stop func())
}

// WithMetrics reports the Client's counts to m (see Metrics).
func WithMetrics(m Metrics) Option {
	return func(c *config) { c.conn.metrics, c.connSet = m, true }
}

// Stats are a Client's counts, each read atomically, all at about the
// same moment.
type Stats struct {
	// StreamOpens counts the client streams the Client opened: the first,
	// and one for each reconnection (0 without a stream).
	StreamOpens int64
	// RoleChanges counts its members' changes of role, by the role taken
	// (Role.String(): "master", "standby", ...).
	RoleChanges map[string]uint64
	// Services are the services the Client watches, by name.
	Services []ServiceStats
}

// ServiceStats are one watched service's counts.
type ServiceStats struct {
	Service string
	// Picks counts the instances the Service's Transports picked (one
	// per request, two for one retried on another instance), and
	// PickErrors the requests they found no instance for. A Balancer's
	// own Pick is not counted (it costs nothing more than its pick).
	Picks, PickErrors uint64
	// Stale says the Client's view of the service is stale (see
	// Snapshot.Stale), and Age is how long since a server last confirmed
	// it (Snapshot.Synced); 0 before the first fill.
	Stale bool
	Age   time.Duration
}

// roleCounts counts role changes by the role taken.
type roleCounts [Left + 1]atomic.Uint64

// Stats returns the Client's counts.
func (c *Client) Stats() Stats {
	st := Stats{RoleChanges: map[string]uint64{}}
	if c.stream != nil {
		st.StreamOpens = c.stream.Stats().Opens
	}
	for r := Starting; r <= Left; r++ {
		st.RoleChanges[r.String()] = c.roles[r].Load()
	}
	c.mu.Lock()
	services := make([]*Service, 0, len(c.services))
	for _, s := range c.services {
		services = append(services, s)
	}
	c.mu.Unlock()
	now := time.Now()
	for _, s := range services {
		snap, _ := s.current()
		ss := ServiceStats{Service: s.name, Picks: s.picks.Load(), PickErrors: s.pickErrs.Load(), Stale: snap.Stale}
		if !snap.Synced.IsZero() {
			ss.Age = max(now.Sub(snap.Synced), 0)
		}
		st.Services = append(st.Services, ss)
	}
	slices.SortFunc(st.Services, func(a, b ServiceStats) int { return strings.Compare(a.Service, b.Service) })
	return st
}
