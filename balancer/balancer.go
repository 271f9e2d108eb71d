package balancer

import (
	"slices"
	"sync"
	"sync/atomic"
)

// DefaultWeight is the weight a caller gives an endpoint that registered
// none. The SDK applies it when it turns instances into endpoints; the
// balancer itself never does, so an Endpoint with Weight 0 is never picked.
const DefaultWeight = 100

// Endpoint is one instance a Balancer can pick.
type Endpoint struct {
	// ID identifies the endpoint, and should be unique within one list. It
	// keys the in-flight and failure counts that LeastLoaded and ejection
	// keep across Updates; endpoints that share an ID share those counts.
	ID string

	// Address is where to reach the endpoint, e.g. "10.0.0.7:8080".
	Address string

	// Zone is the endpoint's failure domain, for policies that prefer one.
	Zone string

	// Weight is the endpoint's capacity relative to the others. An endpoint
	// with Weight 0 is never picked (draining, or out of rotation); a
	// negative Weight counts as 0. The balancer gives 0 no "unset" meaning:
	// callers resolve a missing weight to DefaultWeight (the SDK does) before
	// calling Update. MonteCarlo and LeastLoaded are proportional to Weight;
	// RoundRobin only tells 0 from positive.
	Weight int

	// Meta is the instance's metadata. It is shared, not copied: every Pick
	// that returns the endpoint returns the same map, so treat it as
	// read-only once it is passed to Update.
	Meta map[string]string
}

// Picker chooses endpoints from one immutable snapshot of the list a Policy
// built it from.
//
// Pick is called on the hot path of every request, from many goroutines at
// once: it must be safe for concurrent use, must not block, and should not
// allocate (balancertest checks that it does not). When it cannot choose it
// returns an error, usually ErrNoEndpoints, and the zero Done; the Balancer
// hands the error to its caller unchanged.
//
// Done is the completion handle described on Done. A Picker outside this
// package cannot make a tracking Done and returns the zero Done, which
// tracks nothing.
type Picker interface {
	Pick() (Endpoint, Done, error)
}

// Policy builds Pickers. Any type implementing it can be given to New.
//
// The Balancer calls Build off the hot path, on every Update, with the
// Update's endpoints that have a positive Weight (never an empty list: the
// Balancer answers ErrNoEndpoints itself then), in a new slice that the
// Picker may keep. Build is never called concurrently for one Balancer, but
// one Policy may serve several Balancers at once. Build must not modify the
// endpoints, must not call back into the Balancer, and the Picker it returns
// must not change after it is returned.
//
// The built-in policies also accept direct calls: their Build copies the
// list, skips weight-0 endpoints, and answers ErrNoEndpoints when none is
// left.
type Policy interface {
	Build(endpoints []Endpoint) Picker
}

// Balancer chooses an endpoint for each request with its Policy, from the
// list given to its last Update.
//
// Pick and PickTracked are safe for concurrent use, take no lock and do not
// allocate: they load the current Picker from an atomic pointer. Update and
// Endpoints are safe for concurrent use with them and with each other.
//
// The zero value is a Balancer with no endpoints and the RoundRobin policy.
// A Balancer must not be copied after first use.
type Balancer struct {
	cur    atomic.Pointer[snapshot]
	policy Policy

	mu    sync.Mutex       // serializes Update
	loads map[string]*load // by endpoint ID; guarded by mu
}

// snapshot is what one Update published.
type snapshot struct {
	picker Picker
	fast   chooser    // picker's own chooser, if it is a built-in one
	all    []Endpoint // as given to Update, for Endpoints
}

// tracker is implemented by the built-in policies, which keep per-endpoint
// counts that must outlive a Picker: the Balancer hands them the counts of
// the endpoints that persist across Updates.
type tracker interface {
	build(es []entry) Picker
}

// chooser is implemented by the built-in Pickers. It lets the Balancer skip
// what Pick's signature costs on the hot path (copying the Endpoint out
// through an interface call, and for LeastLoaded counting a request that
// Pick will not report).
type chooser interface {
	// choose returns the entry to pick, and whether PickTracked should count
	// it in flight.
	choose() (e *entry, count bool)
}

// entry is an endpoint of a built-in Picker with its counts.
type entry struct {
	Endpoint
	l *load
}

// New returns a Balancer with no endpoints that picks with p; a nil p means
// RoundRobin. Until the first Update, Pick returns ErrNoEndpoints.
func New(p Policy) *Balancer {
	return &Balancer{policy: p}
}

// Update replaces the Balancer's endpoints with a copy of endpoints and
// rebuilds its Picker, which Pick starts using atomically: a concurrent Pick
// sees either the old list or the new one. Picks in flight on an endpoint
// that stays in the list (same ID) keep counting against it.
//
// Update does what it is told, an empty list included: after it, Pick
// returns ErrNoEndpoints. Keeping the last known-good list when a watch
// fails, and debouncing a burst of changes, are the caller's job (the SDK
// does both). Update costs a Build; it is meant for membership changes, not
// per request.
func (b *Balancer) Update(endpoints []Endpoint) {
	all := slices.Clone(endpoints)
	var es []entry
	for _, e := range all {
		if e.Weight > 0 {
			es = append(es, entry{Endpoint: e})
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	loads := make(map[string]*load, len(es))
	var fresh []load // one allocation for the endpoints that are new
	for i := range es {
		id := es[i].ID
		l := loads[id]
		if l == nil {
			l = b.loads[id]
		}
		if l == nil {
			if len(fresh) == 0 {
				fresh = make([]load, len(es)-i)
			}
			l, fresh = &fresh[0], fresh[1:]
		}
		loads[id] = l
		es[i].l = l
	}
	b.loads = loads

	p := b.policy
	if p == nil {
		p = roundRobin{}
	}
	var pk Picker
	switch t, ok := p.(tracker); {
	case len(es) == 0:
		pk = none{}
	case ok:
		pk = t.build(es)
	default:
		eps := make([]Endpoint, len(es))
		for i := range es {
			eps[i] = es[i].Endpoint
		}
		pk = p.Build(eps)
	}
	fast, _ := pk.(chooser)
	b.cur.Store(&snapshot{picker: pk, fast: fast, all: all})
}

// Endpoints returns a copy of the list given to the last Update, in order,
// weight-0 endpoints included, or nil before the first Update.
func (b *Balancer) Endpoints() []Endpoint {
	s := b.cur.Load()
	if s == nil || len(s.all) == 0 {
		return nil
	}
	return slices.Clone(s.all)
}

// Pick returns an endpoint for one request, or ErrNoEndpoints when there is
// none with a positive weight. It is safe for concurrent use, takes no lock
// and does not allocate.
//
// Pick reports nothing back: a LeastLoaded Balancer sees only the requests
// started with PickTracked, and ejection sees only failures reported through
// Done. Use PickTracked when the policy or ejection should learn from the
// request.
func (b *Balancer) Pick() (Endpoint, error) {
	s := b.cur.Load()
	if s == nil {
		return Endpoint{}, ErrNoEndpoints
	}
	if s.fast != nil {
		e, _ := s.fast.choose()
		return e.Endpoint, nil
	}
	e, _, err := s.picker.Pick() // only built-in Pickers make a Done that counts
	return e, err
}

// PickTracked is Pick for a request whose completion the caller will report:
// it returns a Done on which the caller must call Finish exactly once, when
// the request ends, whatever the outcome. On error the Done is the zero Done
// and Finish may be skipped. It is safe for concurrent use, takes no lock and
// does not allocate.
func (b *Balancer) PickTracked() (Endpoint, Done, error) {
	s := b.cur.Load()
	if s == nil {
		return Endpoint{}, Done{}, ErrNoEndpoints
	}
	if s.fast != nil {
		e, count := s.fast.choose()
		return e.Endpoint, track(e, count), nil
	}
	return s.picker.Pick()
}

// none is the Picker of an empty list.
type none struct{}

func (none) Pick() (Endpoint, Done, error) { return Endpoint{}, Done{}, ErrNoEndpoints }

// prepare makes the entries of a direct Build call: a copy of the
// positive-weight endpoints, each with counts of its own.
func prepare(eps []Endpoint) []entry {
	var es []entry
	for _, e := range eps {
		if e.Weight > 0 {
			es = append(es, entry{Endpoint: e})
		}
	}
	loads := make([]load, len(es))
	for i := range es {
		es[i].l = &loads[i]
	}
	return es
}

// buildFresh serves the Build method of a built-in policy.
func buildFresh(t tracker, eps []Endpoint) Picker {
	es := prepare(eps)
	if len(es) == 0 {
		return none{}
	}
	return t.build(es)
}
