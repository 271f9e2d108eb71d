package sdk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk/internal/transport"
)

// Service is the Client's cached view of one service, filled first by a
// linearizable read (GET .../services/{s}?consistent=true: whatever was
// committed before, a registration whose Join returned in any process
// included, is in it), then kept current by one blocking-query loop:
// GET .../services/{s}?index=N&wait=60s, where N is the index of the last
// answer. Answers older than the cache's index are
// dropped, so the view never goes back in time; a node that cannot reach
// the asked index (503 stale_replica) or does not answer is left for
// another. When no server answers, the last known membership stays, marked
// Stale, and balancers keep picking from it: a failed watch never
// publishes an empty list.
//
// Mass removals: an answer in which more than half of the instances that
// balancers pick vanish at once (at least two; unregistered or expired,
// not drained) is applied to the snapshot as is, but balancers keep the
// vanished instances for a quarantine (WithQuarantine, default 10 s) in
// which PickTracked's failure reports eject the truly dead ones. A
// partition or a burst of expiries then costs callers a few failed
// requests instead of all their capacity at once; instances that drain
// first (Member.Leave) leave balancers at once.
//
// Every method is safe for concurrent use.
type Service struct {
	c    *Client
	name string
	path string

	pub    atomic.Pointer[published]
	filled chan struct{} // closed by the first applied answer
	cancel context.CancelFunc
	kick   chan struct{} // a new snapshot: rebuild balancers
	known  known         // the watch loop's last answer (run only)

	applyMu   sync.Mutex // serializes apply; guards the fields below
	isFilled  bool
	floor     uint64 // read-your-writes: the first fill must reach it
	failures  int    // consecutive failed requests
	lastErr   error
	listeners map[int]func(*Snapshot)
	nextID    int

	balMu     sync.Mutex // guards balancers and built
	balancers []*balancer.Balancer
	built     []balancer.Endpoint // the list the balancers hold
	rebuilds  atomic.Int64        // for tests

	picks, pickErrs atomic.Uint64 // by its Transports (metrics.go)
}

// published is a snapshot and the channel closed when it is replaced by a
// different one.
type published struct {
	snap    *Snapshot
	modify  uint64              // the answer's modify_index: same content when equal
	held    []balancer.Endpoint // quarantined: balancers keep them until holdEnd
	holdEnd time.Time
	changed chan struct{}
}

func newService(c *Client, name string) *Service {
	s := &Service{c: c, name: name, path: c.tenantPath("/services/" + url.PathEscape(name)),
		filled: make(chan struct{}), kick: make(chan struct{}, 1), listeners: map[int]func(*Snapshot){}}
	s.pub.Store(&published{snap: &Snapshot{Service: name}, changed: make(chan struct{})})
	return s
}

// start starts the watch loop and the balancer publisher.
func (s *Service) start(wg *sync.WaitGroup) {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.run(ctx)
	}()
	go func() {
		defer wg.Done()
		s.publish(ctx)
	}()
}

func (s *Service) stop() { s.cancel() }

// Name is the service's name.
func (s *Service) Name() string { return s.name }

func (s *Service) current() (*Snapshot, <-chan struct{}) {
	p := s.pub.Load()
	return p.snap, p.changed
}

func (s *Service) lastError() error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.lastErr
}

// raiseFloor makes the first fill wait for a position (read-your-writes).
func (s *Service) raiseFloor(pos uint64) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.floor = max(s.floor, pos)
}

// listen calls fn with every new snapshot (under the apply lock, in order)
// and with the current one if filled; the returned func stops it.
func (s *Service) listen(fn func(*Snapshot)) func() {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	id := s.nextID
	s.nextID++
	s.listeners[id] = fn
	if s.isFilled {
		snap, _ := s.current()
		fn(snap)
	}
	return func() {
		s.applyMu.Lock()
		defer s.applyMu.Unlock()
		delete(s.listeners, id)
	}
}

// run is the watch loop.
func (s *Service) run(ctx context.Context) {
	j := transport.NewJitter(50*time.Millisecond, 2*time.Second)
	wait := s.c.cfg.conn.watchWait
	server := ""
	// The first fill is a linearizable read (a ReadIndex on the server
	// that answers): a plain one may come from a replica that has not
	// applied a registration whose Join already returned, in this process
	// or another, and the new Client would miss that instance.
	consistent := true
	for ctx.Err() == nil {
		if s.c.stream != nil && s.filledNow() {
			s.runStream(ctx) // cache_stream.go
			return
		}
		snap, _ := s.current()
		req := transport.Request{Method: http.MethodGet, Path: s.path, Server: server}
		if s.filledNow() {
			req.Path += "?index=" + strconv.FormatUint(indexOf(snap.pos), 10) + "&wait=" + strconv.FormatInt(wait.Milliseconds(), 10)
			if e := epochOf(snap.pos); e > 0 {
				// A server of another epoch answers at once.
				req.Path += "&epoch=" + strconv.FormatUint(e, 10)
			}
			req.Long, req.Timeout = true, wait+wait/16+10*time.Second
		} else if consistent {
			req.Path += "?consistent=true"
		}
		resp, err := s.c.tr.Do(ctx, req)
		var r *api.ServiceResponse
		if err == nil {
			r, err = decodeService(resp.Body, &s.known)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.failed(err)
			used := server
			if resp != nil {
				used = resp.Server
			}
			server = s.c.tr.Next(used)
			var ae *api.Error
			if errors.As(err, &ae) && ae.RetryAfter > 0 {
				j.SetFloor(ae.RetryAfter)
			}
			if !sleep(ctx, j.NextBackOff()) {
				return
			}
			continue
		}
		switch s.apply(r, resp.Epoch(), time.Now()) {
		case applied:
			j.Reset()
			server, consistent = resp.Server, false
		case belowFloor:
			// An answer below our own write, though linearizable: only a
			// log that started over answers so (see position). Ask again.
			server, consistent = resp.Server, true
			if !sleep(ctx, j.NextBackOff()) {
				return
			}
		case older:
			// A replica behind what we already saw (a node that lost
			// touch): try another.
			server = s.c.tr.Next(resp.Server)
			if !sleep(ctx, j.NextBackOff()) {
				return
			}
		}
	}
}

func (s *Service) filledNow() bool {
	select {
	case <-s.filled:
		return true
	default:
		return false
	}
}

// failed records a failed watch request: after every server failed in a
// row the snapshot is marked stale (and kept).
func (s *Service) failed(err error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.failures++
	s.lastErr = err
	if s.failures < len(s.c.tr.Servers()) && !errors.Is(err, transport.ErrNoServer) {
		return
	}
	p := s.pub.Load()
	if p.snap.Stale || !s.isFilled {
		return
	}
	s.c.log.Warn("service watch failing: serving the last known membership", "service", s.name, "err", err)
	next := *p.snap
	next.Stale = true
	s.publishLocked(&published{snap: &next, modify: p.modify, held: p.held, holdEnd: p.holdEnd}, true)
}

type outcome int

const (
	applied outcome = iota + 1
	older
	belowFloor
)

// apply applies one answer, of the tenant's epoch, atomically, if it is not
// older than the cache.
func (s *Service) apply(r *api.ServiceResponse, epoch uint64, now time.Time) outcome {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	p := s.pub.Load()
	old := p.snap
	pos := position(epoch, r.Index)
	switch {
	case s.isFilled && pos < old.pos:
		return older
	case !s.isFilled && pos < s.floor:
		return belowFloor
	}
	s.failures, s.lastErr = 0, nil
	if s.isFilled && r.ModifyIndex == p.modify && epochOf(pos) == epochOf(old.pos) {
		// Same content: a wait that ended, or a refresh.
		next := *old
		next.pos = max(pos, old.pos)
		next.Index, next.Synced, next.Stale = indexOf(next.pos), now, false
		s.publishLocked(&published{snap: &next, modify: p.modify, held: p.held, holdEnd: p.holdEnd}, old.Stale)
		return applied
	}
	if s.isFilled && epochOf(pos) != epochOf(old.pos) {
		s.c.log.Info("the tenant's Raft log started over (created again, or restored): following the new one",
			"service", s.name, "epoch", epochOf(pos), "was", epochOf(old.pos))
	}
	slices.SortFunc(r.Instances, func(a, b api.Instance) int { return strings.Compare(a.ID, b.ID) })
	next := &Snapshot{Service: s.name, Index: r.Index, pos: pos, Instances: r.Instances, Master: r.Master, Policy: r.Policy, Synced: now}
	np := &published{snap: next, modify: r.ModifyIndex}
	if s.isFilled {
		np.held, np.holdEnd = s.quarantine(p, next, now)
	}
	for _, e := range np.held {
		next.Quarantined = append(next.Quarantined, e.ID)
	}
	s.publishLocked(np, true)
	if !s.isFilled {
		s.isFilled = true
		close(s.filled)
	}
	for _, fn := range s.listeners {
		fn(next)
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return applied
}

// quarantine returns the endpoints balancers keep after the update from
// p to next: those already held that are neither back nor due, and, when
// more than half of p's ready endpoints (at least two) vanished at once,
// those.
func (s *Service) quarantine(p *published, next *Snapshot, now time.Time) ([]balancer.Endpoint, time.Time) {
	q := s.c.cfg.conn.quarantine
	if q <= 0 {
		return nil, time.Time{}
	}
	present := func(id string) bool { // next.Instances is sorted by ID
		_, ok := slices.BinarySearchFunc(next.Instances, id, func(in api.Instance, id string) int { return strings.Compare(in.ID, id) })
		return ok
	}
	var held []balancer.Endpoint
	end := p.holdEnd
	for _, e := range p.held {
		if !present(e.ID) && now.Before(p.holdEnd) {
			held = append(held, e)
		}
	}
	// Count first: the endpoints are made only for a mass removal.
	before, vanished := 0, 0
	for _, in := range p.snap.Instances {
		if pickable(in) {
			before++
			if !present(in.ID) {
				vanished++
			}
		}
	}
	if vanished >= 2 && 2*vanished > before {
		s.c.log.Warn("mass removal: balancers keep the vanished instances for a quarantine",
			"service", s.name, "vanished", vanished, "of", before, "quarantine", q)
		for _, e := range endpoints(p.snap.Instances) {
			if !present(e.ID) {
				held = append(held, e)
			}
		}
		end = now.Add(q)
	}
	if len(held) == 0 {
		return nil, time.Time{}
	}
	return held, end
}

// endQuarantine drops the held endpoints once their quarantine is over.
func (s *Service) endQuarantine(now time.Time) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	p := s.pub.Load()
	if len(p.held) == 0 || now.Before(p.holdEnd) {
		return
	}
	next := *p.snap
	next.Quarantined = nil
	s.publishLocked(&published{snap: &next, modify: p.modify}, true)
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// publishLocked makes np current; notify wakes watchers.
func (s *Service) publishLocked(np *published, notify bool) {
	p := s.pub.Load()
	if !notify {
		np.changed = p.changed
		s.pub.Store(np)
		return
	}
	np.changed = make(chan struct{})
	s.pub.Store(np)
	close(p.changed)
}

// refresh brings the cache to at least a position (read-your-writes): one plain
// read, then a linearizable one if that replica was behind. Concurrent
// refreshes of one service share one request, made under the first
// caller's ctx (bounded to 5 s): if that ctx ends, the others ask again.
func (s *Service) refresh(ctx context.Context, pos uint64) error {
	for s.position() < pos {
		ch := s.c.flight.DoChan("refresh/"+s.name, func() (any, error) {
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return nil, s.fetch(fctx, pos)
		})
		select {
		case res := <-ch:
			err := res.Err
			switch {
			case ctx.Err() != nil:
				return fmt.Errorf("sdk: service %s: read-your-writes at index %d: %w", s.name, indexOf(pos), ctx.Err())
			case err == nil:
			case transport.Retryable(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
				sleep(ctx, 20*time.Millisecond)
			default:
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("sdk: service %s: read-your-writes at index %d: %w", s.name, indexOf(pos), ctx.Err())
		}
	}
	return nil
}

// Sync brings the cache up to date now: a linearizable read of the
// service (a ReadIndex on the server that answers it), applied before Sync
// returns. A Snapshot, Balancer or Watch after Sync shows every change
// committed before Sync was called — in this process or any other. The
// cache never goes back: when it already holds something newer than the
// answer, Sync changes nothing. Sync retries on other servers until ctx
// ends; when it fails the cache keeps what it had.
func (s *Service) Sync(ctx context.Context) error {
	j := transport.NewJitter(20*time.Millisecond, time.Second)
	for {
		select {
		case <-s.c.done:
			return ErrClosed
		default:
		}
		resp, err := s.c.tr.Do(ctx, transport.Request{Method: http.MethodGet, Path: s.path + "?consistent=true", Retry: writeRetry})
		var r *api.ServiceResponse
		if err == nil {
			r, err = decodeService(resp.Body, nil)
		}
		if err != nil {
			return fmt.Errorf("sdk: sync %s: %w", s.name, err)
		}
		// older: the cache holds a later position, which includes all that
		// this answer does.
		if s.apply(r, resp.Epoch(), time.Now()) != belowFloor {
			return nil
		}
		// Below a write of this Client's, though linearizable: only a
		// server that ignores consistent=true answers so. Ask again.
		if !sleep(ctx, j.NextBackOff()) {
			return fmt.Errorf("sdk: sync %s: no answer at this Client's writes: %w", s.name, ctx.Err())
		}
	}
}

func (s *Service) fetch(ctx context.Context, pos uint64) error {
	path := s.path
	for range 2 {
		resp, err := s.c.tr.Do(ctx, transport.Request{Method: http.MethodGet, Path: path, Retry: writeRetry})
		if err != nil {
			return err
		}
		r, err := decodeService(resp.Body, nil)
		if err != nil {
			return err
		}
		if position(resp.Epoch(), r.Index) >= pos {
			s.apply(r, resp.Epoch(), time.Now())
			return nil
		}
		path = s.path + "?consistent=true"
	}
	return fmt.Errorf("%w: no replica reached index %d", api.ErrUnavailable, indexOf(pos))
}

// publish rebuilds the balancers from the current snapshot. An update
// after a quiet time (WithDebounce) is applied at once (the leading edge);
// the updates that follow it within the quiet time are a burst, applied
// once after a quiet time, and at most 25 quiet times after the burst's
// first update. It also ends quarantines.
func (s *Service) publish(ctx context.Context) {
	d := s.c.cfg.conn.debounce
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	defer debounce.Stop()
	defer hold.Stop()
	var burst time.Time // zero: no burst pending
	var last time.Time  // the latest rebuild
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			now := time.Now()
			if d == 0 || burst.IsZero() && now.Sub(last) >= d {
				last = now
				s.rebuild()
				break
			}
			if burst.IsZero() {
				burst = now
			}
			debounce.Reset(min(d, burst.Add(25*d).Sub(now)))
		case now := <-debounce.C:
			burst, last = time.Time{}, now
			s.rebuild()
		case now := <-hold.C:
			s.endQuarantine(now)
		}
		if p := s.pub.Load(); len(p.held) > 0 {
			hold.Reset(time.Until(p.holdEnd))
		} else {
			hold.Stop()
		}
	}
}

// rebuild gives every balancer the current endpoints, when they changed.
func (s *Service) rebuild() {
	s.balMu.Lock()
	defer s.balMu.Unlock()
	if len(s.balancers) == 0 {
		s.built = nil // Balancer makes them when asked
		return
	}
	eps := s.endpoints()
	if s.built != nil && slices.EqualFunc(eps, s.built, sameEndpoint) {
		return
	}
	s.built = eps
	for _, b := range s.balancers {
		b.Update(eps)
	}
	s.rebuilds.Add(1)
}

// endpoints returns what balancers pick from now: the current snapshot's
// pickable instances and the endpoints held in quarantine.
func (s *Service) endpoints() []balancer.Endpoint {
	p := s.pub.Load()
	return append(endpoints(p.snap.Instances), p.held...)
}

func sameEndpoint(a, b balancer.Endpoint) bool {
	if a.ID != b.ID || a.Address != b.Address || a.Zone != b.Zone || a.Weight != b.Weight || len(a.Meta) != len(b.Meta) {
		return false
	}
	for k, v := range a.Meta {
		if w, ok := b.Meta[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
