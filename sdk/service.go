package sdk

import (
	"context"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk/internal/watchcache"
)

// Snapshot is one consistent state of a service as the cache holds it.
// Its slices and maps are shared with the cache: treat them as read-only.
type Snapshot struct {
	Service string
	// Index is the Raft index of the tenant's replica the answer was read
	// at. It never goes backwards within a Client, except when the tenant's
	// Raft log starts over (the tenant created again, or restored from a
	// backup, under a higher epoch).
	Index uint64
	// Instances is every registered instance, whatever its state, sorted
	// by ID. Balancers take only the ready ones with a positive weight.
	Instances []api.Instance
	// Master is the service's master record; nil when it has none.
	Master *api.Master
	// Policy is the service's election policy.
	Policy api.Policy
	// Stale is true while the servers do not answer this service's watch:
	// the snapshot is the last one known and may be out of date.
	Stale bool
	// Synced is when a server last answered the watch (or confirmed the
	// snapshot). A blocking query answers only on a change or after its
	// wait (60 s), so an old Synced alone does not mean stale.
	Synced time.Time
	// Quarantined lists instances that left in a mass removal and that
	// balancers still keep, until the quarantine ends (see Service).
	Quarantined []string

	pos uint64 // the tenant's epoch and Index (see position)
}

// Ready returns the instances balancers take: ready, with a positive
// weight.
func (s Snapshot) Ready() []api.Instance {
	var out []api.Instance
	for _, in := range s.Instances {
		if in.State == api.StateReady && in.Weight > 0 {
			out = append(out, in)
		}
	}
	return out
}

// Instance returns the instance with the given ID.
func (s Snapshot) Instance(id string) (api.Instance, bool) {
	i, ok := slices.BinarySearchFunc(s.Instances, id, func(in api.Instance, id string) int {
		switch {
		case in.ID < id:
			return -1
		case in.ID > id:
			return 1
		}
		return 0
	})
	if !ok {
		return api.Instance{}, false
	}
	return s.Instances[i], true
}

// Snapshot returns the service's current snapshot.
func (s *Service) Snapshot() Snapshot { return snapshotOf(s.cache.View()) }

// Instances returns a copy of every registered instance, whatever its
// state, sorted by ID.
func (s *Service) Instances() []api.Instance {
	snap, _ := s.current()
	return slices.Clone(snap.Instances)
}

// Master returns the service's master record, if it has one.
func (s *Service) Master() (api.Master, bool) {
	snap, _ := s.current()
	if snap.Master == nil {
		return api.Master{}, false
	}
	return *snap.Master, true
}

// Index is the Raft index of the current snapshot.
func (s *Service) Index() uint64 {
	snap, _ := s.current()
	return snap.Index
}

// position is the current snapshot's position (see position).
func (s *Service) position() uint64 {
	v := s.cache.View()
	return position(v.Epoch, v.Index)
}

// Stale reports whether the servers are not answering this service's
// watch: the cache serves the last known membership meanwhile.
func (s *Service) Stale() bool {
	snap, _ := s.current()
	return snap.Stale
}

// Synced is when a server last answered this service's watch.
func (s *Service) Synced() time.Time {
	snap, _ := s.current()
	return snap.Synced
}

// Balancer returns the service's Balancer of policy p (nil: RoundRobin)
// over its ready instances, kept current by the cache: every membership
// change rebuilds it, after a burst of changes once. Pick never talks to a
// server; call a farm with balancer.Do.
//
// A Service keeps one Balancer per policy: asking again with an equal
// policy returns the same Balancer, with no allocation, so asking per
// request is fine. The built-in policies (RoundRobin, MonteCarlo,
// MonteCarloSeed, LeastLoaded) are equal when their configuration is, and
// their Balancers live as long as the Client. A Balancer of another policy
// lives as long as the caller keeps it (the Service holds it weakly), and
// one of a policy that is not comparable, such as a balancer.Func, is new
// on each call: keep it, rather than ask per request. (It is the Service's
// Balancer's Follower: see balancer.Balancer.Follower.)
//
// When there is no instance to pick, picks return a
// *balancer.NoEndpointsError (errors.Is ErrNoEndpoints) that names the
// service and counts the instances registered and not ready:
//
//	sdk: service "orders": no endpoints to pick (2 registered, 2 not ready: starting/draining/weight 0)
func (s *Service) Balancer(p balancer.Policy) *balancer.Balancer {
	return s.leader().Follower(p)
}

// leader returns the service's own Balancer, the one the cache updates
// (s.balancers holds it alone): a RoundRobin one, whose followers are the
// others. The first call makes it, and has every new snapshot tell it how
// many instances are not ready, for its error.
//
// Lock order: balMu, then the cache's (Listen), then the Balancer's.
func (s *Service) leader() *balancer.Balancer {
	s.balMu.Lock()
	defer s.balMu.Unlock()
	if len(s.balancers) > 0 {
		return s.balancers[0]
	}
	b := balancer.New(nil, balancer.WithName(fmt.Sprintf("sdk: service %q", s.name)))
	if s.built == nil {
		s.built = s.cache.View().Endpoints()
	}
	snap, _ := s.current()
	b.SetNotReady(notReady(snap.Instances))
	b.Update(s.built)
	s.balancers = append(s.balancers, b)
	// Called under the cache's lock with each new content, before the
	// balancers are rebuilt from it (debounced); lives as long as the
	// Service.
	s.cache.Listen(func(v *watchcache.View) { b.SetNotReady(notReady(v.Instances)) })
	return b
}

// notReady counts the instances that balancers do not pick.
func notReady(ins []api.Instance) int {
	n := 0
	for _, in := range ins {
		if !watchcache.Pickable(in) {
			n++
		}
	}
	return n
}

// Watch returns an iterator over the service's snapshots: the current one
// first, then each change (membership, master, policy, staleness). A slow
// consumer skips intermediate snapshots and always gets the latest. It
// ends when ctx ends or the Client closes.
//
//	for snap := range svc.Watch(ctx) {
//		log.Println(len(snap.Ready()), "ready")
//	}
func (s *Service) Watch(ctx context.Context) iter.Seq[Snapshot] {
	return func(yield func(Snapshot) bool) {
		var last *watchcache.View
		for {
			v, changed := s.current()
			if v != last {
				if !yield(snapshotOf(v)) {
					return
				}
				last = v
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			case <-s.c.done:
				return
			}
		}
	}
}
