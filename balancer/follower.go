package balancer

import (
	"reflect"
	"runtime"
	"weak"
)

// follower is a Balancer that follows another one: strong holds it for the
// leader's life, weak until nothing else refers to it.
type follower struct {
	strong *Balancer
	weak   weak.Pointer[Balancer]
}

func (f follower) value() *Balancer {
	if f.strong != nil {
		return f.strong
	}
	return f.weak.Value()
}

// Follower returns a Balancer with policy p (nil: RoundRobin) that picks
// from b's endpoints: it starts with the list of b's last Update, and every
// Update (and SetNotReady) of b updates it too. It has b's name. Its counts
// are its own: requests in flight and failures reported through it do not
// show in b, nor b's in it. Several policies over one membership are one
// Balancer and its followers; the SDK's Service.Balancer is Follower.
//
// Asking again costs a map lookup and returns the same Balancer: b itself
// for a policy equal to b's own, and the follower made for an equal policy
// otherwise, if it is still alive:
//
//   - b keeps the followers of the built-in policies (RoundRobin,
//     MonteCarlo, MonteCarloSeed, LeastLoaded), one per configuration, for
//     its own life: it is safe to ask for one per request.
//   - b holds the followers of other policies weakly: once nothing else
//     refers to one it is collected, and b stops updating it. Asking again
//     may then make a new one, with counts of its own, so keep the
//     Balancer for as long as you pick from it.
//   - A policy that is not comparable (a Func, or a struct holding a
//     func, slice or map) is never equal to another: each call makes a
//     new follower, held weakly.
//
// Follower on a follower asks its leader. Calling Update on a follower is
// allowed, but its leader's next Update replaces the list. Follower is safe
// for concurrent use with every method of b.
func (b *Balancer) Follower(p Policy) *Balancer {
	if b.leader != nil {
		return b.leader.Follower(p)
	}
	if p == nil {
		p = roundRobin{}
	}
	builtin, comparable := kind(p)
	if comparable {
		own := b.policy
		if own == nil {
			own = roundRobin{}
		}
		if _, ownComparable := kind(own); ownComparable && own == p {
			return b
		}
		if f := b.lookup(p); f != nil {
			return f
		}
	}

	b.mu.Lock() // so that no Update is missed
	defer b.mu.Unlock()
	b.fmu.Lock()
	defer b.fmu.Unlock()
	if comparable {
		if f, ok := b.followers[p]; ok {
			if v := f.value(); v != nil {
				return v
			}
		}
	}
	f := &Balancer{policy: p, name: b.name, leader: b, notReady: b.notReady}
	if s := b.cur.Load(); s != nil {
		f.mu.Lock()
		f.update(s.all)
		f.mu.Unlock()
	}
	if b.followers == nil {
		b.followers = map[any]follower{}
	}
	if builtin {
		b.followers[p] = follower{strong: f}
		return f
	}
	w := weak.Make(f)
	var key any = w
	if comparable {
		key = p
	}
	b.followers[key] = follower{weak: w}
	b.peak = max(b.peak, len(b.followers))
	runtime.AddCleanup(f, b.forget, dead{key, w})
	return f
}

// kind reports whether p is a built-in policy (whose followers a leader
// keeps), and whether it is comparable, i.e. can be a map key without a
// panic.
func kind(p Policy) (builtin, comparable bool) {
	switch p.(type) {
	case roundRobin, monteCarlo, leastLoaded:
		return true, true
	}
	t := reflect.TypeOf(p)
	if !t.Comparable() {
		return false, false
	}
	if holdsInterface(t) {
		// Comparable as a type, but an interface inside may hold a value
		// that is not. (Value.Comparable allocates: only for these.)
		return false, reflect.ValueOf(p).Comparable()
	}
	return false, true
}

// holdsInterface reports whether a value of t, a comparable type, holds an
// interface value.
func holdsInterface(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Interface:
		return true
	case reflect.Array:
		return holdsInterface(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if holdsInterface(t.Field(i).Type) {
				return true
			}
		}
	}
	return false
}

// lookup returns the live follower of policy p, which is comparable, or
// nil.
func (b *Balancer) lookup(p Policy) *Balancer {
	b.fmu.Lock()
	defer b.fmu.Unlock()
	f, ok := b.followers[p]
	if !ok {
		return nil
	}
	return f.value()
}

// dead is the follower, under key, that a cleanup forgets.
type dead struct {
	key any
	w   weak.Pointer[Balancer]
}

// forget drops the entry of a follower that was collected, unless a new
// follower took its key. A map that fell to a quarter of its peak is
// copied into one its size, so that a burst of short-lived followers does
// not keep its room for good.
func (b *Balancer) forget(d dead) {
	b.fmu.Lock()
	defer b.fmu.Unlock()
	if f, ok := b.followers[d.key]; ok && f.weak == d.w {
		delete(b.followers, d.key)
	}
	if n := len(b.followers); b.peak >= 64 && n <= b.peak/4 {
		smaller := make(map[any]follower, n)
		for k, f := range b.followers {
			smaller[k] = f
		}
		b.followers, b.peak = smaller, n
	}
}

// following returns the followers alive, to update. b.mu is held.
func (b *Balancer) following() []*Balancer {
	b.fmu.Lock()
	defer b.fmu.Unlock()
	if len(b.followers) == 0 {
		return nil
	}
	out := make([]*Balancer, 0, len(b.followers))
	for _, f := range b.followers {
		if v := f.value(); v != nil {
			out = append(out, v)
		}
	}
	return out
}
