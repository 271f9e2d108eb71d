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

// Done reports the end of a request started with PickTracked. It is a small
// value, made without allocating; copy it freely, but call Finish on exactly
// one of the copies, exactly once.
//
// The zero Done is valid and its Finish does nothing; it is what Pickers
// outside this package and failed picks return.
type Done struct {
	l        *load
	inflight bool // whether the pick counted an in-flight request on l
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
	if d.inflight {
		d.l.inflight.Add(-1)
	}
	d.l.report(err)
}

// track starts tracking a request to e, counting it in flight if count.
func track(e *entry, count bool) Done {
	if count {
		e.l.inflight.Add(1)
	}
	return Done{l: e.l, inflight: count}
}

// load is the state an endpoint keeps across Pickers: its in-flight count
// (LeastLoaded) and its failure record (every built-in policy). It is
// padded to a cache line so that counters of different endpoints do not
// share one.
type load struct {
	inflight atomic.Int64 // requests picked and not yet finished
	fails    atomic.Int64 // consecutive failures
	until    atomic.Int64 // clock() time at which the ejection ends
	_        [40]byte
}

// report records the outcome of a request.
func (l *load) report(err error) {
	switch {
	case err == nil:
		if l.fails.Load() != 0 { // no write, so no cache-line steal, when healthy
			l.fails.Store(0)
		}
	case errors.Is(err, context.Canceled):
	default:
		if l.fails.Add(1) >= EjectAfter {
			l.until.Store(clock() + int64(EjectFor))
		}
	}
}

// healthy reports whether the endpoint may be picked. It reads the clock
// only for an endpoint that has failed EjectAfter times in a row, once per
// pick: *now is 0 until the first read.
func (l *load) healthy(now *int64) bool {
	if l.fails.Load() < EjectAfter {
		return true
	}
	if *now == 0 {
		*now = clock()
	}
	return *now >= l.until.Load()
}

// maxProbes bounds the endpoints a pick tries when it meets ejected ones;
// past it the pick fails open, on an ejected endpoint, rather than spend
// more time or return an error.
const maxProbes = 8

var epoch = time.Now()

// clock returns monotonic nanoseconds, never 0.
func clock() int64 {
	return int64(time.Since(epoch)) | 1
}
