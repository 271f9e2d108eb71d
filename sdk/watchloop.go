package sdk

import (
	"context"
	"errors"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/transport"
)

// watchLoop is a blocking-query watch's loop, a Service's (cache.go) and a
// Config's (config.go): one read at a time (round), then by its outcome —
// applied: the next from the server that answered, a plain read;
// below the floor: that server again, linearizably, after a backoff (only
// a log that started over answers below our own write: see position);
// older: the next server, after a backoff (a replica behind what was
// already seen); failed: failed(err), the next server, after a backoff of
// at least the answer's Retry-After.
type watchLoop struct {
	tr *transport.Client
	// round reads once from server (any, when ""), linearizably when
	// consistent, and applies the answer; used is the server that
	// answered, or was tried.
	round func(ctx context.Context, server string, consistent bool) (out outcome, used string, err error)
	// failed records a failed round.
	failed func(err error)
	// before, when set, runs before each round; false ends the loop.
	before func(ctx context.Context) bool
	// applied, when set, runs after an applied round; false ends the loop.
	applied func(ctx context.Context) bool
}

func (w watchLoop) run(ctx context.Context) {
	j := transport.NewJitter(50*time.Millisecond, 2*time.Second)
	server := ""
	// The first fill is a linearizable read (a ReadIndex on the server
	// that answers): a plain one may come from a replica that has not
	// applied a write whose call already returned, in this process or
	// another, and the new view would miss it.
	consistent := true
	for ctx.Err() == nil {
		if w.before != nil && !w.before(ctx) {
			return
		}
		out, used, err := w.round(ctx, server, consistent)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.failed(err)
			server = w.tr.Next(used)
			var ae *api.Error
			if errors.As(err, &ae) && ae.RetryAfter > 0 {
				j.SetFloor(ae.RetryAfter)
			}
			if !sleep(ctx, j.NextBackOff()) {
				return
			}
			continue
		}
		switch out {
		case applied:
			j.Reset()
			server, consistent = used, false
			if w.applied != nil && !w.applied(ctx) {
				return
			}
		case belowFloor:
			server, consistent = used, true
			if !sleep(ctx, j.NextBackOff()) {
				return
			}
		case older:
			server = w.tr.Next(used)
			if !sleep(ctx, j.NextBackOff()) {
				return
			}
		}
	}
}
