package tenants

import (
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Fixed buckets. A tenant's own buckets come from its Quotas
// (requests_per_second and burst; writes_per_second and WriteBurst).
const (
	// UnauthenticatedRate and UnauthenticatedBurst size the bucket that all
	// requests without a valid token from one remote address share (per
	// node): enough for a client to learn that its token is wrong, too little
	// to guess tokens or to load the meta replica's ReadIndex path that a
	// missed token hash takes.
	UnauthenticatedRate  = 5  // per second
	UnauthenticatedBurst = 10 // requests

	// LaneRate and LaneBurst size the keepalive lane's bucket of one session:
	// keepalives and stream attaches, which never count against the tenant's
	// request or write rates. The fastest keepalive cadence is 20 a second
	// (lease_ms 200); a few times that lets an SDK retry and re-attach
	// freely while keeping the lane from being a flood vector.
	LaneRate  = 25 // per second
	LaneBurst = 50 // requests

	// LaneTenantFloor is the least a tenant's whole lane refills a second
	// on a node (LaneTenantRate).
	LaneTenantFloor = 1000
)

// LaneTenantRate is how many keepalives and attaches a second a tenant
// whose max_sessions is maxSessions gets on a node, all its sessions
// together, with a burst of twice that: one a second for each session it
// may hold (a farm session at the shortest TTL, 3 s, renews once a second;
// a master's, at the default lease, five times, and masters are few), and
// at least LaneTenantFloor (50 masters with leases of 200 ms). Without it
// a tenant's sessions, each within its own LaneRate, renewed 25 ×
// max_sessions a second: about a core of its leader at the defaults. At
// the default 10,000 the ceiling costs the node about 3 % of a core.
func LaneTenantRate(maxSessions int64) int {
	return int(min(max(maxSessions, LaneTenantFloor), 1<<29))
}

// DefaultIdleTimeout is how long a bucket of Limiters must go unused before a
// sweep may evict it.
const DefaultIdleTimeout = 10 * time.Minute

// usedGranularity is how far apart two recorded uses of a bucket must be: the
// hot path writes the bucket's last-use time at most once a second.
const usedGranularity = time.Second

// Limiters is a set of token buckets (golang.org/x/time/rate), one per key,
// on one node: per tenant for requests, per tenant for writes, per remote
// address for unauthenticated requests, per session for the keepalive lane
// (one Limiters each). It is safe for concurrent use, and the zero value is
// ready to use with DefaultIdleTimeout.
//
// A bucket is created on a key's first Allow, full, and follows the rate and
// burst of its latest Allow (so a quota change applies at a tenant's next
// request). A bucket unused for the idle timeout and full again is evicted:
// since a new bucket starts full, eviction is invisible to the key's owner.
// Sweeps happen inside Allow, at most once per idle timeout, or when the
// owner calls Sweep; Limiters starts no goroutine.
//
// Allow on different keys contends on nothing shared but reads; on the same
// key it serialises on that key's bucket. A Limiters must not be copied after
// first use.
type Limiters struct {
	idle      time.Duration // 0 means DefaultIdleTimeout
	maxKeys   int64         // 0: no bound; past it new keys share one bucket
	buckets   sync.Map      // string -> *bucket
	n         atomic.Int64  // buckets held
	groups    sync.Map      // string -> *atomic.Int64: buckets held per group (AllowIn)
	nextSweep atomic.Int64  // Unix nanoseconds before which Allow does not sweep
}

// NewLimiters returns an empty set whose buckets are evicted after idle
// without use (idle <= 0 means DefaultIdleTimeout).
func NewLimiters(idle time.Duration) *Limiters {
	return &Limiters{idle: max(idle, 0)}
}

// NewCappedLimiters is NewLimiters with at most maxKeys buckets of their
// own: while that many are held, a new key shares one overflow bucket with
// every other such key. For keys an attacker can mint (source addresses):
// 150,000 addresses held 86 MB of buckets unbounded.
func NewCappedLimiters(idle time.Duration, maxKeys int) *Limiters {
	return &Limiters{idle: max(idle, 0), maxKeys: int64(max(maxKeys, 1))}
}

// overflowKey is the bucket keys share once a capped set is full; a
// group's overflow bucket (AllowIn) is overflowKey, a NUL and the group.
const overflowKey = "\x00overflow"

type bucket struct {
	lim *rate.Limiter

	// limit and burst are what lim was last set to: Allow compares them,
	// without taking lim's lock, to notice a quota change. mu serialises the
	// changes, so that lim and these two always end in agreement.
	mu    sync.Mutex
	limit atomic.Uint64 // math.Float64bits(float64(rate.Limit))
	burst atomic.Int64

	used atomic.Int64 // Unix nanoseconds of the last use, to usedGranularity

	group *atomic.Int64 // the count of its group (AllowIn), which it is in; nil: none
}

// Allow takes one token from key's bucket at now, the bucket refilling at rps
// tokens a second up to burst. When no token is left it reports false and
// retryAfter, the time until one is (rounded up to the millisecond, at least
// 1 ms); when ok, retryAfter is 0.
//
// burst below 1 counts as 1. rps math.Inf(1) allows every call. rps <= 0 or
// NaN allows none (retryAfter 1 s) and creates no bucket: Resolve never
// leaves such a quota, so it is a caller's bug, and failing closed is the
// safe side of it.
//
// now is the caller's clock (time.Now() in the server); calls on one key
// should pass non-decreasing times.
func (l *Limiters) Allow(key string, rps float64, burst int, now time.Time) (ok bool, retryAfter time.Duration) {
	return l.AllowN(key, 1, rps, burst, now)
}

// AllowN is Allow for n tokens at once (a budget in bytes: n is the size
// of what is charged). n above burst is charged as burst: a thing larger
// than the bucket takes all of a full one, rather than never passing.
func (l *Limiters) AllowN(key string, n int, rps float64, burst int, now time.Time) (ok bool, retryAfter time.Duration) {
	return l.allow("", 0, key, n, rps, burst, now)
}

// AllowIn is Allow for a key of group, of whose keys at most maxKeys (at
// least 1) hold buckets of their own: while that many do, the group's new
// keys share one overflow bucket of the group's, never another group's
// nor the set's own cap (NewCappedLimiters), which AllowIn's keys neither
// count against nor fall under. maxKeys follows the latest call: a lower
// one takes no bucket away, it only sends new keys to the overflow.
//
// For keys an owner mints on behalf of a tenant (its sessions): the
// group is the tenant, so that however many keys one tenant mints, the
// others' keep buckets of their own. The set holds at most the sum of its
// groups' maxKeys buckets, plus one overflow bucket and a counter per
// group (never evicted: groups are few, and named by the caller).
func (l *Limiters) AllowIn(group string, maxKeys int, key string, rps float64, burst int, now time.Time) (ok bool, retryAfter time.Duration) {
	return l.allow(group, max(maxKeys, 1), key, 1, rps, burst, now)
}

// allow is AllowN of a key of group ("": none) capped at maxKeys.
func (l *Limiters) allow(group string, maxKeys int, key string, n int, rps float64, burst int, now time.Time) (ok bool, retryAfter time.Duration) {
	if !(rps > 0) {
		return false, time.Second
	}
	limit := rate.Limit(rps)
	if math.IsInf(rps, 1) {
		limit = rate.Inf
	}
	burst = max(burst, 1)

	l.maybeSweep(now)
	b := l.bucket(group, maxKeys, key, limit, burst)
	b.touch(now)
	b.configure(limit, burst, now)
	n = min(max(n, 1), burst)
	if b.lim.AllowN(now, n) {
		return true, 0
	}
	return false, retryDelay(b.lim.TokensAt(now)-float64(n-1), limit)
}

// bucket returns key's bucket, creating it (full) if there is none: one
// of group's ("": none), which holds at most maxKeys, or, past the caps,
// the overflow bucket of group or of the set.
func (l *Limiters) bucket(group string, maxKeys int, key string, limit rate.Limit, burst int) *bucket {
	if v, ok := l.buckets.Load(key); ok {
		return v.(*bucket)
	}
	var count *atomic.Int64
	switch {
	case group != "":
		v, _ := l.groups.Load(group)
		if v == nil {
			v, _ = l.groups.LoadOrStore(strings.Clone(group), new(atomic.Int64))
		}
		count = v.(*atomic.Int64)
		if count.Add(1) > int64(maxKeys) { // taken, then given back: never over the cap
			count.Add(-1)
			count, key = nil, overflowKey+"\x00"+group
			if v, ok := l.buckets.Load(key); ok {
				return v.(*bucket)
			}
		}
	case l.maxKeys > 0 && l.n.Load() >= l.maxKeys:
		key = overflowKey
		if v, ok := l.buckets.Load(key); ok {
			return v.(*bucket)
		}
	}
	nb := &bucket{lim: rate.NewLimiter(limit, burst), group: count}
	nb.limit.Store(math.Float64bits(float64(limit)))
	nb.burst.Store(int64(burst))
	// Clone: the key is often a slice of a larger string (a header) that the
	// map would otherwise keep alive.
	v, loaded := l.buckets.LoadOrStore(strings.Clone(key), nb)
	switch {
	case !loaded:
		l.n.Add(1)
	case count != nil:
		count.Add(-1) // another call made it first
	}
	return v.(*bucket)
}

// touch records a use at now, writing only when the record is a
// usedGranularity old, so that a busy key's callers mostly just read it.
func (b *bucket) touch(now time.Time) {
	t := now.UnixNano()
	if t-b.used.Load() >= int64(usedGranularity) {
		b.used.Store(t)
	}
}

// configure makes the bucket refill at limit up to burst, if it does not.
func (b *bucket) configure(limit rate.Limit, burst int, now time.Time) {
	bits := math.Float64bits(float64(limit))
	if b.limit.Load() == bits && b.burst.Load() == int64(burst) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lim.Limit() != limit {
		b.lim.SetLimitAt(now, limit)
	}
	if b.lim.Burst() != burst {
		b.lim.SetBurstAt(now, burst)
	}
	b.limit.Store(bits)
	b.burst.Store(int64(burst))
}

// retryDelay is how long a bucket holding tokens (< 1) takes to hold one at
// limit tokens a second, rounded up to the millisecond, at least 1 ms.
func retryDelay(tokens float64, limit rate.Limit) time.Duration {
	const minDelay = time.Millisecond
	need := 1 - tokens
	if need <= 0 || limit == rate.Inf {
		return minDelay // refilled since the refusal
	}
	ns := math.Ceil(need / float64(limit) * float64(time.Second))
	if ns >= math.MaxInt64/2 {
		return math.MaxInt64 / 2 / minDelay * minDelay // a rate this low never refills
	}
	d := (time.Duration(ns) + minDelay - 1) / minDelay * minDelay
	return max(d, minDelay)
}

// maybeSweep sweeps if no sweep has happened for the idle timeout. At most
// one of the callers that find it due does the work.
func (l *Limiters) maybeSweep(now time.Time) {
	next := l.nextSweep.Load()
	if now.UnixNano() < next || !l.nextSweep.CompareAndSwap(next, now.Add(l.idleTimeout()).UnixNano()) {
		return
	}
	l.sweep(now)
}

// Sweep evicts every bucket that has gone unused for the idle timeout at now
// and is full again, and returns how many it evicted. It costs a walk of all
// buckets; a server with many keys may call it from its own ticker, which
// also spares Allow's callers the walk (Allow sweeps only when no sweep has
// happened for the idle timeout).
//
// A call that raced an eviction may take its token from the evicted bucket,
// so a key's first burst after minutes of silence can exceed burst by the
// number of its calls that were in flight during the sweep.
func (l *Limiters) Sweep(now time.Time) int {
	l.nextSweep.Store(now.Add(l.idleTimeout()).UnixNano())
	return l.sweep(now)
}

func (l *Limiters) sweep(now time.Time) int {
	cutoff := now.Add(-l.idleTimeout()).UnixNano()
	evicted := 0
	l.buckets.Range(func(k, v any) bool {
		b := v.(*bucket)
		if b.used.Load() > cutoff || b.lim.TokensAt(now) < float64(b.burst.Load()) {
			return true
		}
		if l.delete(k, b) {
			evicted++
		}
		return true
	})
	return evicted
}

// Evict evicts every bucket whose key drop reports true for, used lately
// or not, and returns how many it evicted: for an owner that knows a key
// is done with (a session that ended), rather than let its bucket take
// room for the idle timeout. A key evicted while in use gets a new, full
// bucket at its next Allow. It costs a walk of all buckets; drop must not
// call the set.
func (l *Limiters) Evict(drop func(key string) bool) int {
	evicted := 0
	l.buckets.Range(func(k, v any) bool {
		if drop(k.(string)) && l.delete(k, v.(*bucket)) {
			evicted++
		}
		return true
	})
	return evicted
}

// delete deletes k's bucket b, if it is still k's.
func (l *Limiters) delete(k any, b *bucket) bool {
	if !l.buckets.CompareAndDelete(k, b) {
		return false
	}
	l.n.Add(-1)
	if b.group != nil {
		b.group.Add(-1)
	}
	return true
}

// Len returns how many buckets the set holds.
func (l *Limiters) Len() int { return int(l.n.Load()) }

// LenIn returns how many buckets of group's own keys (AllowIn) the set
// holds, its overflow bucket apart.
func (l *Limiters) LenIn(group string) int {
	if v, ok := l.groups.Load(group); ok {
		return int(v.(*atomic.Int64).Load())
	}
	return 0
}

func (l *Limiters) idleTimeout() time.Duration {
	if l.idle <= 0 {
		return DefaultIdleTimeout
	}
	return l.idle
}
