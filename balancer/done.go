package balancer

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Ejection: an endpoint whose last EjectAfter reported outcomes were all
// failures is skipped for EjectFor.
const (
	// EjectAfter is the number of consecutive failures, reported through
	// Done.Finish, after which an endpoint is ejected.
	EjectAfter = 5

	// EjectFor is how long an ejected endpoint is skipped. After it the
	// endpoint is picked again on probation: one success clears its record,
	// one more failure ejects it for another EjectFor.
	EjectFor = 10 * time.Second
)

// Done reports the end of a request started with PickTracked or
// PickExcept. It is a small value, made without allocating; copy it freely,
// but end the request on exactly one of the copies, exactly once: with
// Finish when the request was made, with Release when it was not.
//
// A Done is a value, with no state of its own to mark it used, so a second
// Finish or Release is not caught: it ends one more request on the
// endpoint than was started. The Balancer's Stats show it as more Finished
// than Picked, as they show a missing Finish as requests in flight that
// only grow. (Catching it would take a flag per pick, that is an
// allocation per pick.) Do ends every pick it makes exactly once.
//
// The zero Done is valid and its Finish and Release do nothing; it is what
// Pickers outside this package and failed picks return.
type Done struct {
	l *load
}

// Finish reports the end of the request, and its outcome: err is nil on
// success. A non-nil err counts as a failure of the endpoint towards
// ejection, except for an error that is context.Canceled, which tells
// nothing about the endpoint and is not counted either way. Pass nil, too,
// for failures that are not the endpoint's fault (a request the endpoint
// rejected as invalid, say).
//
// Finish is safe for concurrent use, takes no lock and does not allocate.
func (d Done) Finish(err error) {
	if d.l == nil {
		return
	}
	d.l.finished.Add(1)
	d.l.report(err)
}

// Release ends a pick that was not used: no request was made to the
// endpoint, or its outcome tells nothing about the endpoint. It ends the
// request in flight, as Finish does, and reports no outcome.
//
// Release is safe for concurrent use, takes no lock and does not allocate.
func (d Done) Release() {
	if d.l == nil {
		return
	}
	d.l.finished.Add(1)
}

// track starts tracking a request to l's endpoint.
func track(l *load) Done {
	l.picked.Add(1)
	return Done{l: l}
}

// load is the state an endpoint keeps across Pickers: its tracked picks
// and their ends (in flight, for LeastLoaded and Stats) and its failure
// record (every built-in policy). It is padded to a cache line so that
// counters of different endpoints do not share one.
type load struct {
	picked   atomic.Uint64 // tracked picks
	finished atomic.Uint64 // Finish and Release calls
	fails    atomic.Int64  // consecutive failures
	until    atomic.Int64  // clock() time at which the ejection ends
	h        *health       // of the endpoint's Balancer
	_        [24]byte
}

// health counts the endpoints of one Balancer (or of one Picker built
// outside a Balancer) that have failed EjectAfter times in a row. While it
// is 0, which is almost always, a pick need not look at its endpoint's
// failure record: one read of a word that stays in every core's cache,
// rather than of the endpoint's load.
type health struct {
	failing atomic.Int64
	_       [56]byte // alone on its cache line: read by every pick
}

// count returns the requests in flight: tracked picks not yet finished
// or released. finished is read first: as neither counter goes down, and
// a request is finished after it is picked, the difference is never
// negative unless a Done was ended twice, which reads as 0.
func (l *load) count() uint64 {
	f := l.finished.Load()
	return uint64(max(int64(l.picked.Load()-f), 0))
}

// report records the outcome of a request.
//
// l.h.failing goes up when l.fails reaches EjectAfter and down when it is
// reset from EjectAfter or more; as both are atomic steps of l.fails, every
// rise is matched by one fall, whatever the interleaving.
func (l *load) report(err error) {
	switch {
	case err == nil:
		if l.fails.Load() != 0 { // no write, so no cache-line steal, when healthy
			l.reset()
		}
	case errors.Is(err, context.Canceled):
	default:
		n := l.fails.Add(1)
		if n >= EjectAfter {
			l.until.Store(clock() + int64(EjectFor))
		}
		if n == EjectAfter {
			l.h.failing.Add(1)
		}
	}
}

// reset clears the failure record.
func (l *load) reset() {
	if l.fails.Swap(0) >= EjectAfter {
		l.h.failing.Add(-1)
	}
}

// healthy reports whether the endpoint may be picked. It reads the clock
// only for an endpoint that has failed EjectAfter times in a row.
func (l *load) healthy(now *instant) bool {
	return l.fails.Load() < EjectAfter || now.get() >= l.until.Load()
}

// maxProbes is the number of endpoints a pick tries the policy's way when
// it meets ejected ones, before it looks for a healthy one in list order
// (set.scan). If every endpoint is ejected, the pick fails open: it
// returns an ejected endpoint rather than an error.
const maxProbes = 8

var epoch = time.Now()

// clock returns monotonic nanoseconds.
func clock() int64 {
	return int64(time.Since(epoch))
}

// instant is the clock read once, when first needed: a pick that meets
// several ejected endpoints reads it once.
type instant struct {
	t    int64
	read bool
}

func (n *instant) get() int64 {
	if !n.read {
		n.t, n.read = clock(), true
	}
	return n.t
}
