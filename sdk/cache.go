package sdk

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/balancer"
	"github.com/rafting/rafting/sdk/internal/transport"
	"github.com/rafting/rafting/sdk/internal/watchcache"
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
	c     *Client
	name  string
	path  string
	cache *watchcache.Cache // the rules answers are applied by

	filled <-chan struct{} // the cache's: closed by the first applied answer
	cancel context.CancelFunc
	kick   chan struct{} // a new content: rebuild balancers
	known  known         // the watch loop's last answer (run only)

	balMu     sync.Mutex // guards balancers and built
	balancers []*balancer.Balancer
	built     []balancer.Endpoint // the list the balancers hold
	rebuilds  atomic.Int64        // for tests

	picks, pickErrs atomic.Uint64 // by its Transports (metrics.go)
}

func newService(c *Client, name string) *Service {
	s := &Service{c: c, name: name, path: c.tenantPath("/services/" + url.PathEscape(name)), kick: make(chan struct{}, 1),
		cache: watchcache.New(watchcache.Config{Service: name, Quarantine: c.cfg.conn.quarantine, Logger: c.log})}
	s.filled = s.cache.Filled()
	s.cache.Listen(func(*watchcache.View) { s.rebuildSoon() })
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

// current returns the cache's view, and the channel closed when a change
// replaces it.
func (s *Service) current() (*watchcache.View, <-chan struct{}) {
	v := s.cache.View()
	return v, v.Changed()
}

// snapshotOf is v as a Snapshot.
func snapshotOf(v *watchcache.View) Snapshot {
	return Snapshot{Service: v.Service, Index: v.Index, Instances: v.Instances, Master: v.Master, Policy: v.Policy,
		Stale: v.Stale, Synced: v.Synced, Quarantined: v.Quarantined, pos: position(v.Epoch, v.Index)}
}

func (s *Service) lastError() error { return s.cache.Err() }

// raiseFloor makes the first fill wait for a position (read-your-writes).
func (s *Service) raiseFloor(pos uint64) {
	s.cache.RaiseFloor(watchcache.Pos{Epoch: epochOf(pos), Index: indexOf(pos)})
}

// listen calls fn with every new content's snapshot (under the cache's
// lock, in order) and with the current one if filled; the returned func
// stops it.
func (s *Service) listen(fn func(*Snapshot)) func() {
	return s.cache.Listen(func(v *watchcache.View) {
		snap := snapshotOf(v)
		fn(&snap)
	})
}

// run is the watch loop (watchLoop), on the client stream once filled
// (cache_stream.go).
func (s *Service) run(ctx context.Context) {
	watchLoop{tr: s.c.tr, round: s.round, failed: s.failed,
		before: func(ctx context.Context) bool {
			if s.c.stream != nil && s.filledNow() {
				s.runStream(ctx)
				return false
			}
			return true
		}}.run(ctx)
}

// round is one read of the watch loop: a blocking query once filled.
func (s *Service) round(ctx context.Context, server string, consistent bool) (outcome, string, error) {
	wait := s.c.cfg.conn.watchWait
	v := s.cache.View()
	req := transport.Request{Method: http.MethodGet, Path: s.path, Server: server}
	if s.filledNow() {
		req.Path += "?index=" + strconv.FormatUint(v.Index, 10) + "&wait=" + strconv.FormatInt(wait.Milliseconds(), 10)
		if e := v.Epoch; e > 0 {
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
		if resp != nil {
			server = resp.Server
		}
		return 0, server, err
	}
	return s.apply(r, resp.Epoch()), resp.Server, nil
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
	servers := len(s.c.tr.Servers())
	if errors.Is(err, transport.ErrNoServer) {
		servers = 1 // none to ask
	}
	s.cache.Failed(err, servers)
}

// outcome is what an apply did, a Service's or a Config's (config.go).
type outcome = watchcache.Outcome

const (
	applied    = watchcache.Applied
	older      = watchcache.Older
	belowFloor = watchcache.BelowFloor
)

// apply applies one answer, of the tenant's epoch, if it is not older than
// the cache. An epoch no position can hold (a broken server's) is taken as
// 0, as position does.
func (s *Service) apply(r *api.ServiceResponse, epoch uint64) outcome {
	return s.cache.Apply(r, epochOf(position(epoch, 0)))
}

// refresh brings the cache to at least a position (read-your-writes):
// refreshTo, by fetch.
func (s *Service) refresh(ctx context.Context, pos uint64) error {
	err := s.c.refreshTo(ctx, "refresh/"+s.name, pos, s.position, s.fetch)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("sdk: service %s: read-your-writes at index %d: %w", s.name, indexOf(pos), ctx.Err())
	}
	return err
}

// refreshTo brings a view (a Service's, a Config's) to at least pos: fetch
// makes one plain read, then a linearizable one if that replica was
// behind. Concurrent refreshes of one view (key) share one fetch, made
// under the first caller's ctx (bounded to 5 s): if that ctx ends, the
// others ask again.
func (c *Client) refreshTo(ctx context.Context, key string, pos uint64, position func() uint64,
	fetch func(context.Context, uint64) error) error {
	for position() < pos {
		ch := c.flight.DoChan(key, func() (any, error) {
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return nil, fetch(fctx, pos)
		})
		select {
		case res := <-ch:
			err := res.Err
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case err == nil:
			case transport.Retryable(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
				sleep(ctx, 20*time.Millisecond)
			default:
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
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
		if s.apply(r, resp.Epoch()) != belowFloor {
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
			s.apply(r, resp.Epoch())
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
		case <-hold.C:
			if s.cache.EndQuarantine() {
				s.rebuildSoon()
			}
		}
		if end := s.cache.View().HoldEnd(); !end.IsZero() {
			hold.Reset(time.Until(end))
		} else {
			hold.Stop()
		}
	}
}

// rebuildSoon tells publish that the balancers' endpoints may have
// changed.
func (s *Service) rebuildSoon() {
	select {
	case s.kick <- struct{}{}:
	default:
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
	eps := s.cache.View().Endpoints()
	if s.built != nil && slices.EqualFunc(eps, s.built, watchcache.SameEndpoint) {
		return
	}
	s.built = eps
	for _, b := range s.balancers {
		b.Update(eps)
	}
	s.rebuilds.Add(1)
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
