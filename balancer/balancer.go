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
	// calling Update. MonteCarlo picks in proportion to Weight, LeastLoaded
	// divides requests in flight by it, and RoundRobin only tells 0 from
	// positive.
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
// must not change after it is returned (a nil Picker counts as one that
// answers ErrNoEndpoints).
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
// Pick, PickTracked and PickExcept are safe for concurrent use, take no
// lock and do not allocate: they load the current Picker from an atomic
// pointer. Update, SetNotReady, Endpoints, Stats and Follower are safe for
// concurrent use with them and with each other.
//
// The zero value is a Balancer with no endpoints, no name and the
// RoundRobin policy. A Balancer must not be copied after first use.
type Balancer struct {
	cur    atomic.Pointer[snapshot]
	policy Policy // nil: RoundRobin
	name   string // WithName's

	mu       sync.Mutex       // serializes updates
	loads    map[string]*load // by endpoint ID; guarded by mu
	health   *health          // of loads; guarded by mu
	notReady int              // SetNotReady's; guarded by mu

	// leader is the Balancer this one follows (Follower), nil if none.
	leader *Balancer
	// followers are this Balancer's (Follower); guarded by fmu, which is
	// taken after mu when both are.
	fmu       sync.Mutex
	followers map[any]follower
	// peak is the most entries followers held since it was last made:
	// a Go map keeps the room of its peak, so forget copies it into a
	// smaller one once it falls to a quarter of that.
	peak int
}

// snapshot is what one update published.
type snapshot struct {
	// rr is the Picker of a round-robin Balancer, held here rather than
	// behind picker so that Pick reaches its counter one load sooner.
	rr     rrPicker
	isRR   bool // whether picker is &rr
	picker Picker
	fast   chooser    // picker, if it is a built-in one
	all    []Endpoint // as given to Update, for Endpoints
	live   set        // the endpoints of positive weight and their counts

	// spent is what PickExcept returns when it excludes every endpoint;
	// the error of an empty list is its Picker's (none).
	spent error
}

// tracker is implemented by the built-in policies, which keep per-endpoint
// counts that must outlive a Picker: the Balancer hands them the counts of
// the endpoints that persist across Updates.
type tracker interface {
	// build returns a Picker over s, which is not empty.
	build(s set) Picker
}

// set is the endpoints of a built-in Picker and their counts, loads[i]
// being eps[i]'s. They are two slices, not one of pairs, so that an
// Endpoint (64 bytes) fills one cache line.
type set struct {
	eps    []Endpoint
	loads  []*load
	health *health // of loads
}

// scan returns the first endpoint from i on, cyclically, that is not
// ejected, or i if all are. It is the last resort of a pick that met
// ejected endpoints maxProbes times, and costs O(len(s.eps)) only when
// most endpoints are ejected.
func (s *set) scan(i int, now *instant) int {
	for k := range len(s.eps) {
		if j := (i + k) % len(s.eps); s.loads[j].healthy(now) {
			return j
		}
	}
	return i
}

// scanExcept returns the first endpoint from i on, cyclically, that ids
// do not exclude, preferring one that is not ejected; -1 if ids exclude
// every endpoint. It is the last resort of PickExcept.
func (s *set) scanExcept(i int, ids []string) int {
	var now instant
	open := -1
	for k := range len(s.eps) {
		j := (i + k) % len(s.eps)
		if excluded(s.eps[j].ID, ids) {
			continue
		}
		if s.health.failing.Load() == 0 || s.loads[j].healthy(&now) {
			return j
		}
		if open < 0 {
			open = j // ejected: fail open to it if nothing else is left
		}
	}
	return open
}

// usable reports whether a pick that excludes ids may return endpoint i
// at once: ids do not exclude it, and it is not ejected.
func (s *set) usable(i int, ids []string, now *instant) bool {
	return !excluded(s.eps[i].ID, ids) && (s.health.failing.Load() == 0 || s.loads[i].healthy(now))
}

// exceptScan is the last resort of a PickExcept that drew maxProbes times
// without finding a usable endpoint: scanExcept from i.
func (s *set) exceptScan(i int, ids []string) (*Endpoint, *load) {
	j := s.scanExcept(i, ids)
	if j < 0 {
		return nil, nil
	}
	return &s.eps[j], s.loads[j]
}

// excluded reports whether id is one of ids.
func excluded(id string, ids []string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// chooser is implemented by the built-in Pickers. It lets the Balancer skip
// what Pick's signature costs on the hot path: copying the Endpoint out
// through an interface call, and the count of a tracked pick that Pick
// will not report.
type chooser interface {
	choose() (*Endpoint, *load)
}

// An Option configures a Balancer made by New.
type Option func(*Balancer)

// WithName names the Balancer in its errors: a pick that finds no endpoint
// returns a *NoEndpointsError whose message begins with name, and Do's
// errors begin with it too. Name it after what it balances, as the SDK
// does: `sdk: service "orders"`. Without a name, errors begin "balancer".
func WithName(name string) Option {
	return func(b *Balancer) { b.name = name }
}

// New returns a Balancer with no endpoints that picks with p; a nil p means
// RoundRobin. Until the first Update, Pick returns ErrNoEndpoints (a
// *NoEndpointsError naming the Balancer, if it has a name).
func New(p Policy, opts ...Option) *Balancer {
	b := &Balancer{policy: p}
	for _, o := range opts {
		o(b)
	}
	if b.name != "" {
		b.Update(nil) // to publish the named error
	}
	return b
}

// Update replaces the Balancer's endpoints with a copy of endpoints and
// rebuilds its Picker, which Pick starts using atomically: a concurrent Pick
// sees either the old list or the new one. Picks in flight on an endpoint
// that stays in the list (same ID) keep counting against it. Update then
// updates the Balancer's followers (Follower) with the same list.
//
// Update does what it is told, an empty list included: after it, Pick
// returns ErrNoEndpoints. Keeping the last known-good list when a watch
// fails, and debouncing a burst of changes, are the caller's job (the SDK
// does both). Update costs a Build; it is meant for membership changes, not
// per request.
func (b *Balancer) Update(endpoints []Endpoint) {
	all := slices.Clone(endpoints)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.update(all)
}

// SetNotReady tells the Balancer that n more endpoints exist than the list
// given to Update holds: registered, but not ready to be picked (the SDK's
// instances that are starting or draining), so left out of the list. They
// are never picked; they only count in the error of a pick that finds no
// endpoint, which says how many endpoints are registered and how many are
// not ready. It applies to the Balancer's followers too.
//
// Endpoints of weight 0 in the list count as not ready already: SetNotReady
// is for those the caller leaves out. A negative n counts as 0.
func (b *Balancer) SetNotReady(n int) {
	n = max(n, 0)
	b.mu.Lock()
	defer b.mu.Unlock()
	if n == b.notReady && b.cur.Load() != nil {
		return
	}
	b.notReady = n
	var all []Endpoint
	if s := b.cur.Load(); s != nil {
		all = s.all
	}
	b.update(all)
}

// update publishes a snapshot of all, which it keeps, and updates the
// followers. b.mu is held.
func (b *Balancer) update(all []Endpoint) {
	live := set{eps: make([]Endpoint, 0, len(all))}
	for _, e := range all {
		if e.Weight > 0 {
			live.eps = append(live.eps, e)
		}
	}

	if b.health == nil {
		b.health = new(health)
	}
	live.health = b.health
	live.loads = make([]*load, len(live.eps))
	loads := make(map[string]*load, len(live.eps))
	var slab []load // one allocation for the endpoints that are new
	for i, e := range live.eps {
		l := loads[e.ID]
		if l == nil {
			l = b.loads[e.ID]
		}
		if l == nil {
			if len(slab) == 0 {
				slab = make([]load, len(live.eps)-i)
			}
			l, slab = &slab[0], slab[1:]
			l.h = b.health
		}
		loads[e.ID] = l
		live.loads[i] = l
	}
	for id, l := range b.loads {
		if loads[id] == nil {
			l.reset() // not to keep b.health.failing up
		}
	}
	b.loads = loads

	p := b.policy
	if p == nil {
		p = roundRobin{}
	}
	s := &snapshot{all: all, live: live}
	switch t, ok := p.(tracker); {
	case len(live.eps) == 0:
		s.picker = none{b.noEndpoints(all, 0)}
	case p == roundRobin{}:
		s.rr.init(live)
		s.picker, s.isRR = &s.rr, true
	case ok:
		s.picker = t.build(live)
	default:
		s.picker = p.Build(live.eps)
	}
	if s.picker == nil {
		s.picker = none{b.noEndpoints(all, 0)}
	}
	if len(live.eps) > 0 {
		s.spent = b.noEndpoints(all, len(live.eps))
	}
	s.fast, _ = s.picker.(chooser)
	b.cur.Store(s)

	for _, f := range b.following() {
		f.mu.Lock()
		f.notReady = b.notReady
		f.update(all)
		f.mu.Unlock()
	}
}

// noEndpoints returns the error of a pick from all that finds no
// endpoint, excluded of them being excluded by PickExcept. b.mu is held.
func (b *Balancer) noEndpoints(all []Endpoint, excluded int) error {
	notReady := b.notReady
	for _, e := range all {
		if e.Weight <= 0 {
			notReady++
		}
	}
	registered := len(all) + b.notReady
	if b.name == "" && registered == 0 {
		return ErrNoEndpoints
	}
	return &NoEndpointsError{Name: b.name, Registered: registered, NotReady: notReady, Excluded: excluded}
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
// Done. Use Do, or PickTracked, when the policy or ejection should learn
// from the request.
func (b *Balancer) Pick() (Endpoint, error) {
	s := b.cur.Load()
	if s == nil {
		return Endpoint{}, ErrNoEndpoints
	}
	if s.isRR && s.rr.health.failing.Load() == 0 {
		// s.rr.choose, inlined by hand as it is over the compiler's
		// budget: the call would be a sixth of this cheapest pick's cost.
		return s.rr.eps[s.rr.mod(s.rr.next.Add(1))], nil
	}
	if p, ok := s.picker.(*funcPicker); ok {
		return p.f(p.eps) // saves a call and a copy of the Endpoint
	}
	if s.fast == nil { // a custom Picker, whose Done is the zero Done
		e, _, err := s.picker.Pick()
		return e, err
	}
	e, _ := s.fast.choose()
	return *e, nil
}

// PickTracked is Pick for a request whose completion the caller will report:
// it returns a Done on which the caller must call Finish exactly once, when
// the request ends, whatever the outcome, or Release if the request is not
// made. On error the Done is the zero Done and Finish may be skipped. It is
// safe for concurrent use, takes no lock and does not allocate.
//
// Do picks, ends every pick and retries on other endpoints for you: prefer
// it to a loop of your own.
func (b *Balancer) PickTracked() (Endpoint, Done, error) {
	s := b.cur.Load()
	if s == nil {
		return Endpoint{}, Done{}, ErrNoEndpoints
	}
	if s.fast == nil {
		return s.picker.Pick()
	}
	e, l := s.fast.choose()
	return *e, track(l), nil
}

// PickExcept is PickTracked avoiding the endpoints whose ID is one of ids:
// a retry's pick, which excludes the endpoints already tried. When ids
// exclude every endpoint of positive weight it returns a *NoEndpointsError
// (errors.Is ErrNoEndpoints) that counts them as excluded. It is safe for
// concurrent use, takes no lock and does not allocate.
//
// The built-in policies pick the way they always do among the endpoints
// left: RoundRobin gives an excluded endpoint's turn to the next one,
// MonteCarlo draws again, and LeastLoaded draws its two choices among the
// others. An endpoint that is ejected is picked only if every endpoint
// left is (picks fail open, as Pick's do). A Func or custom Picker is
// asked again, up to a few times; then PickExcept takes the first
// endpoint of the list that is not excluded.
func (b *Balancer) PickExcept(ids ...string) (Endpoint, Done, error) {
	s := b.cur.Load()
	if s == nil {
		return Endpoint{}, Done{}, ErrNoEndpoints
	}
	if len(ids) == 0 {
		return b.PickTracked()
	}
	var e *Endpoint
	var l *load
	switch p := s.picker.(type) {
	case *rrPicker:
		e, l = p.except(ids)
	case *mcPicker:
		e, l = p.except(ids)
	case *llPicker:
		e, l = p.except(ids)
	case none:
		return Endpoint{}, Done{}, p.err
	default: // a Func or custom Picker: its Done is the zero Done
		for range maxProbes {
			e, d, err := s.picker.Pick()
			if err != nil || !excluded(e.ID, ids) {
				return e, d, err
			}
			d.Release()
		}
		if j := s.live.scanExcept(0, ids); j >= 0 {
			return s.live.eps[j], Done{}, nil
		}
		return Endpoint{}, Done{}, s.spent
	}
	if e == nil {
		return Endpoint{}, Done{}, s.spent
	}
	return *e, track(l), nil
}

// none is the Picker of an empty list, with the error it answers.
type none struct{ err error }

func (n none) Pick() (Endpoint, Done, error) { return Endpoint{}, Done{}, n.err }

// fresh makes the set of a direct Build call: a copy of the
// positive-weight endpoints, each with counts of its own.
func fresh(eps []Endpoint) set {
	s := set{health: new(health)}
	for _, e := range eps {
		if e.Weight > 0 {
			s.eps = append(s.eps, e)
		}
	}
	loads := make([]load, len(s.eps))
	s.loads = make([]*load, len(s.eps))
	for i := range loads {
		loads[i].h = s.health
		s.loads[i] = &loads[i]
	}
	return s
}

// buildFresh serves the Build method of a built-in policy.
func buildFresh(t tracker, eps []Endpoint) Picker {
	s := fresh(eps)
	if len(s.eps) == 0 {
		return none{ErrNoEndpoints}
	}
	return t.build(s)
}
