package balancer

// Stats is what a Balancer knows of its requests: those in flight, and the
// endpoints ejected. A Finish that is missing shows as InFlight that only
// grows; a Done ended twice as Finished above Picked.
//
// Only tracked picks count (PickTracked, PickExcept and Do), and only with
// the built-in policies: a Func or custom Picker tracks nothing, and its
// counts stay 0.
type Stats struct {
	// InFlight is the sum of the endpoints' InFlight.
	InFlight int64
	// Ejected counts the endpoints ejected now.
	Ejected int
	// Endpoints are the endpoints of positive weight of the last Update,
	// in its order.
	Endpoints []EndpointStats
}

// EndpointStats is one endpoint's part of Stats.
type EndpointStats struct {
	ID string
	// InFlight is Picked - Finished: the requests picked and not yet
	// finished or released.
	InFlight int64
	// Picked counts the tracked picks of the endpoint, and Finished the
	// Finish and Release calls on their Done, since the endpoint joined
	// the list (they carry over Updates that keep its ID).
	Picked, Finished uint64
	// Failures counts the failures reported in a row.
	Failures int64
	// Ejected reports whether the endpoint is ejected now.
	Ejected bool
}

// Stats returns the Balancer's counts, read from the atomic counters that
// picks keep: it costs nothing on the pick path, takes no lock, and
// allocates only its result. The counts of different endpoints are not
// read at one instant.
func (b *Balancer) Stats() Stats {
	s := b.cur.Load()
	if s == nil || len(s.live.eps) == 0 {
		return Stats{}
	}
	st := Stats{Endpoints: make([]EndpointStats, len(s.live.eps))}
	var now instant
	for i, e := range s.live.eps {
		l := s.live.loads[i]
		f := l.finished.Load() // first: see count
		p := l.picked.Load()
		es := EndpointStats{
			ID:       e.ID,
			InFlight: int64(p - f),
			Picked:   p,
			Finished: f,
			Failures: l.fails.Load(),
			Ejected:  !l.healthy(&now),
		}
		st.Endpoints[i] = es
		st.InFlight += es.InFlight
		if es.Ejected {
			st.Ejected++
		}
	}
	return st
}
