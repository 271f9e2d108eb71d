package watchcache

import (
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
)

// Config is a Cache's configuration. The zero Config is a cache of the
// service "" without quarantine, on the wall clock, that logs nothing.
type Config struct {
	// Service is the service's name, in every View and log line.
	Service string
	// Quarantine is how long a mass removal's vanished instances stay in
	// the Endpoints; zero or less: they leave at once.
	Quarantine time.Duration
	// Now is the clock (Synced, quarantines); nil is time.Now.
	Now func() time.Time
	// Logger hears staleness, mass removals and epoch changes; nil logs
	// nothing.
	Logger *slog.Logger
}

// Outcome is what Apply did with an answer.
type Outcome int

const (
	// Applied: the view is the answer's (or was confirmed by it).
	Applied Outcome = iota + 1
	// Older: the answer is before the view; dropped.
	Older
	// BelowFloor: the first answer is below the floor; dropped.
	BelowFloor
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Older:
		return "older"
	case BelowFloor:
		return "below floor"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Cache is one service's cache (see the package doc for its rules).
type Cache struct {
	cfg    Config
	log    *slog.Logger
	cur    atomic.Pointer[View]
	filled chan struct{} // closed by the first applied answer

	mu        sync.Mutex // serializes every change; guards the fields below
	isFilled  bool
	floor     Pos // read-your-writes: the first answer must reach it
	failures  int // failed requests in a row
	err       error
	listeners []listener // in the order they came
	nextID    int
}

type listener struct {
	id int
	fn func(*View)
}

// New returns an empty Cache: its View has no instances, at position zero,
// and Filled is open until an answer is applied.
func New(cfg Config) *Cache {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{cfg: cfg, log: log, filled: make(chan struct{})}
	c.cur.Store(&View{Service: cfg.Service, changed: make(chan struct{})})
	return c
}

// View returns the current view, without a lock.
func (c *Cache) View() *View { return c.cur.Load() }

// Filled is closed once an answer has been applied.
func (c *Cache) Filled() <-chan struct{} { return c.filled }

// Err is the last failed request's error; nil once an answer is applied.
func (c *Cache) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// RaiseFloor makes the first answer wait for a position: an answer below
// the highest floor raised is BelowFloor until one is applied.
func (c *Cache) RaiseFloor(p Pos) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.floor.Compare(p) < 0 {
		c.floor = p
	}
}

// Listen calls fn with every View of a new content, in order, under the
// Cache's lock — and at once with the current one, if an answer has been
// applied. The returned func stops it (not from inside fn).
func (c *Cache) Listen(fn func(*View)) (stop func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.nextID
	c.nextID++
	c.listeners = append(c.listeners, listener{id, fn})
	if c.isFilled {
		fn(c.cur.Load())
	}
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.listeners = slices.DeleteFunc(c.listeners, func(l listener) bool { return l.id == id })
	}
}

// Apply applies one answer, of the tenant's epoch, unless it is older than
// the view (or, before the first, below the floor). It sorts r.Instances
// by ID in place and keeps r's slices: the caller must not modify them
// after.
func (c *Cache) Apply(r *api.ServiceResponse, epoch uint64) Outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.cur.Load()
	pos := Pos{Epoch: epoch, Index: r.Index}
	switch {
	case c.isFilled && pos.Compare(old.Pos) < 0:
		return Older
	case !c.isFilled && pos.Compare(c.floor) < 0:
		return BelowFloor
	}
	now := c.cfg.Now()
	c.failures, c.err = 0, nil
	if c.isFilled && r.ModifyIndex == old.modify && epoch == old.Epoch {
		// Same content: a wait that ended, or a refresh.
		next := *old
		next.Pos, next.Synced, next.Stale = pos, now, false
		c.publishLocked(&next, old.Stale)
		return Applied
	}
	if c.isFilled && epoch != old.Epoch {
		c.log.Info("the tenant's Raft log started over (created again, or restored): following the new one",
			"service", c.cfg.Service, "epoch", epoch, "was", old.Epoch)
	}
	if !slices.IsSortedFunc(r.Instances, byID) {
		slices.SortFunc(r.Instances, byID)
	}
	next := &View{Service: c.cfg.Service, Pos: pos, Instances: r.Instances, Master: r.Master, Policy: r.Policy,
		Synced: now, modify: r.ModifyIndex}
	if c.isFilled {
		next.held, next.holdEnd = c.quarantine(old, next.Instances, now)
	}
	if len(next.held) > 0 {
		next.Quarantined = make([]string, len(next.held))
		for i, e := range next.held {
			next.Quarantined[i] = e.ID
		}
	}
	c.publishLocked(next, true)
	if !c.isFilled {
		c.isFilled = true
		close(c.filled)
	}
	for _, l := range c.listeners {
		l.fn(next)
	}
	return Applied
}

func byID(a, b api.Instance) int { return strings.Compare(a.ID, b.ID) }

// quarantine returns the endpoints kept after the update from old to the
// instances next (sorted by ID), and until when: those already held that
// are neither back nor due, and, when more than half of old's pickable
// instances (at least two) vanished at once, those.
func (c *Cache) quarantine(old *View, next []api.Instance, now time.Time) ([]balancer.Endpoint, time.Time) {
	q := c.cfg.Quarantine
	if q <= 0 {
		return nil, time.Time{}
	}
	var held []balancer.Endpoint
	end := old.holdEnd
	if now.Before(old.holdEnd) {
		for _, e := range old.held {
			if _, back := slices.BinarySearchFunc(next, e.ID, func(in api.Instance, id string) int { return strings.Compare(in.ID, id) }); !back {
				held = append(held, e)
			}
		}
	}
	// Count first, in one walk of the two sorted lists: the endpoints are
	// made only for a mass removal.
	before, vanished := 0, 0
	j, here := 0, false
	for _, in := range old.Instances {
		if j, here = seek(next, j, in.ID); Pickable(in) {
			before++
			if !here {
				vanished++
			}
		}
	}
	if vanished >= 2 && 2*vanished > before {
		c.log.Warn("mass removal: balancers keep the vanished instances for a quarantine",
			"service", c.cfg.Service, "vanished", vanished, "of", before, "quarantine", q)
		j = 0
		for _, in := range old.Instances {
			if j, here = seek(next, j, in.ID); Pickable(in) && !here {
				held = append(held, endpoint(in))
			}
		}
		end = now.Add(q)
	}
	if len(held) == 0 {
		return nil, time.Time{}
	}
	return held, end
}

// seek advances j in ins (sorted by ID) to the first instance not before
// id, and reports whether it is id's.
func seek(ins []api.Instance, j int, id string) (int, bool) {
	for j < len(ins) && ins[j].ID < id {
		j++
	}
	return j, j < len(ins) && ins[j].ID == id
}

// publishLocked makes next current; notify wakes the watchers of the
// replaced View.
func (c *Cache) publishLocked(next *View, notify bool) {
	old := c.cur.Load()
	if !notify {
		next.changed = old.changed
		c.cur.Store(next)
		return
	}
	next.changed = make(chan struct{})
	c.cur.Store(next)
	close(old.changed)
}

// Failed records a failed request. After servers of them in a row (the
// servers there are to ask; 1 when none can be asked) the view is marked
// Stale and kept as it is.
func (c *Cache) Failed(err error, servers int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures++
	c.err = err
	old := c.cur.Load()
	if c.failures < servers || old.Stale || !c.isFilled {
		return
	}
	c.log.Warn("service watch failing: serving the last known membership", "service", c.cfg.Service, "err", err)
	next := *old
	next.Stale = true
	c.publishLocked(&next, true)
}

// EndQuarantine drops the held endpoints if their quarantine is over
// (Config.Now at or after View().HoldEnd()), and reports whether it did:
// the owner then gives its balancers the view's Endpoints.
func (c *Cache) EndQuarantine() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.cur.Load()
	if len(old.held) == 0 || c.cfg.Now().Before(old.holdEnd) {
		return false
	}
	next := *old
	next.Quarantined, next.held, next.holdEnd = nil, nil, time.Time{}
	c.publishLocked(&next, true)
	return true
}
