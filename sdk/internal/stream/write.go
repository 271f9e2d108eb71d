package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
)

// WriteResult is a write frame's answer: what the REST request would have
// been answered (Status, and Body: an api.ErrorBody for a status >= 400),
// from the stream's server, whose tenant epoch is Epoch.
type WriteResult struct {
	Status int
	Body   []byte
	Server string
	Epoch  uint64
}

// ErrLost: a write frame was sent, and the stream ended before its result
// came. The write may have been applied.
var ErrLost = errors.New("stream: ended before the result of a write sent")

// Write sends one request frame (a write: put_instance, delete_instance,
// open_session, close_session, resign, set_policy) in order with the
// ordinary frames, and waits for its result; writes of concurrent callers
// are in flight together (pipelined). f.Req is set here.
//
// The error says what happened to the write: ErrNoStream when it was not
// sent (no stream open, or the stream ended before the frame was written:
// send it some other way), ErrLost when it was sent and no result came,
// ctx's error when ctx ended first (sent or not: unknown).
func (c *Client) Write(ctx context.Context, f api.ClientFrame) (WriteResult, error) {
	if frameBound(&f) > api.MaxFrameBytes {
		// The server would end the stream for it: REST answers it (413).
		return WriteResult{}, fmt.Errorf("%w: the frame may exceed %d bytes", ErrNoStream, api.MaxFrameBytes)
	}
	c.mu.Lock()
	cn := c.cur
	c.mu.Unlock()
	if cn == nil {
		return WriteResult{}, ErrNoStream
	}
	r := WriteResult{Server: cn.server, Epoch: cn.epoch}
	var sent atomic.Bool
	done := make(chan *api.ServerFrame, 1)
	if !cn.request(func(req uint64) Frame {
		f.Req = req
		b, _ := json.Marshal(f)
		return Frame{Data: b, OnWrite: func(time.Time) { sent.Store(true) }}
	}, func(res *api.ServerFrame) { done <- res }) {
		return r, ErrNoStream
	}
	select {
	case res := <-done:
		c.writes.Add(1)
		r.Status, r.Body = res.Status, res.Body
		return r, nil
	case <-cn.ended:
		select {
		case res := <-done: // read before the end
			c.writes.Add(1)
			r.Status, r.Body = res.Status, res.Body
			return r, nil
		default:
		}
		if !sent.Load() {
			return r, fmt.Errorf("%w: %w", ErrNoStream, cn.reason())
		}
		return r, fmt.Errorf("%w: %w", ErrLost, cn.reason())
	case <-ctx.Done():
		return r, ctx.Err()
	}
}

// frameBound bounds the length of f's line: its body as it is, each string
// at most six bytes a byte once escaped, and the names and numbers.
func frameBound(f *api.ClientFrame) int {
	return len(f.Body) + 6*(len(f.Type)+len(f.Session)+len(f.Service)+len(f.ID)+len(f.Key)) + 256
}
