package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/rafting/rafting/api"
)

// SessionHandler receives an attached session's news. Its methods are
// called from the stream's reader goroutine (Detached also from the
// goroutine that ends a stream) and must not block.
type SessionHandler interface {
	// Attached: the session is attached on the stream to server, which
	// leads the tenant shard.
	Attached(server string, r api.AttachResponse)
	// Detached: the session's attachment ended (the stream ended, the
	// server moved it, or an attach was refused with err).
	Detached(err error)
	// Event is a session event (master, instance, expired) of the stream
	// that r.Index and the answer's epoch place.
	Event(f *api.ServerFrame, epoch uint64)
}

// Attachment is a session the Client keeps attached: on every stream it
// opens, until Stop.
type Attachment struct {
	c   *Client
	id  string
	tag string
	h   SessionHandler

	mu      sync.Mutex
	cn      *conn     // the stream it is attached on, or being attached on
	since   time.Time // when its attach was answered on cn (zero: not yet)
	stopped bool
}

// Attach keeps session id attached on the Client's stream (DESIGN.md: the
// stream of the session, whose client-side end starts drop_grace) until
// Stop, attaching it again on every new stream.
func (c *Client) Attach(id string, h SessionHandler) *Attachment {
	a := &Attachment{c: c, id: id, tag: api.SessionTag(id), h: h}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		a.stopped = true
		return a
	}
	c.sessions[a.tag] = a
	cur := c.cur
	c.mu.Unlock()
	if cur != nil {
		c.attach(cur, a)
	}
	return a
}

// Stop stops keeping the session attached; the server detaches it when
// the session ends (a session is never detached alone while it lives).
func (a *Attachment) Stop() {
	a.mu.Lock()
	a.stopped = true
	a.cn = nil
	a.mu.Unlock()
	a.c.mu.Lock()
	if a.c.sessions[a.tag] == a {
		delete(a.c.sessions, a.tag)
	}
	a.c.mu.Unlock()
}

// Again handles a keepalive sent at `at` and refused as not attached: if
// the session was attached before then, the stream it is on is not on the
// tenant's leader (or the server dropped the attachment without a word),
// so the stream opens again — on the leader, which the answer to its
// opening names — and every session attaches there. An attach still in
// flight at `at` explains the refusal by itself.
func (a *Attachment) Again(at time.Time) {
	a.mu.Lock()
	cn, since := a.cn, a.since
	a.mu.Unlock()
	if cn != nil && !since.IsZero() && since.Before(at) {
		cn.mu.Lock()
		cn.reopen = true // at once: every session of the Client is on it
		cn.mu.Unlock()
		cn.end(fmt.Errorf("stream: session %s not attached on the leader", a.tag))
	}
}

// attach sends a's attach frame on cn.
func (c *Client) attach(cn *conn, a *Attachment) {
	a.mu.Lock()
	if a.stopped || a.cn == cn {
		a.mu.Unlock()
		return
	}
	a.cn, a.since = cn, time.Time{}
	a.mu.Unlock()
	cn.request(func(req uint64) Frame {
		b, _ := json.Marshal(api.ClientFrame{Type: api.FrameAttach, Req: req, Session: a.id})
		return Frame{Data: b, Ahead: true}
	}, func(f *api.ServerFrame) {
		a.mu.Lock()
		mine := a.cn == cn && !a.stopped
		a.mu.Unlock()
		if !mine {
			return
		}
		if f.Status != http.StatusOK {
			err := api.Decode(f.Status, f.Body, "")
			a.detach(cn, fmt.Errorf("attach session: %w", err))
			if errors.Is(err, api.ErrSessionExpired) {
				return // ended: the member's keepalives learn it and replace it
			}
			// Refused for now: a new leader taking over (503, no moved),
			// the session lane's rate (429), the stream's or the tenant's
			// cap on attached streams (409), a session the leader has not
			// applied yet (404: its opening was answered by a follower; one
			// ended long ago is replaced by its member, whose keepalives
			// learn it, and the attachment stops). Attach again after the
			// pause the server asks for (a refusal after a moved frame was
			// answered there: this attachment is no longer on cn).
			d := 100 * time.Millisecond
			switch f.Status {
			case http.StatusConflict:
				d = time.Second
			case http.StatusNotFound:
				d = 200 * time.Millisecond
			}
			var ae *api.Error
			if errors.As(err, &ae) && ae.RetryAfter > 0 {
				d = max(d, ae.RetryAfter)
			}
			c.later(cn, d, func() { c.attach(cn, a) })
			return
		}
		var r api.AttachResponse
		if err := json.Unmarshal(f.Body, &r); err != nil {
			cn.end(fmt.Errorf("stream: attach result: %w", err))
			return
		}
		a.mu.Lock()
		a.since = cn.now()
		a.mu.Unlock()
		a.h.Attached(cn.server, r)
	})
}

// detach marks a as no longer attached on cn and tells its handler.
func (a *Attachment) detach(cn *conn, err error) {
	a.mu.Lock()
	if a.cn != cn || a.stopped {
		a.mu.Unlock()
		return
	}
	a.cn, a.since = nil, time.Time{}
	a.mu.Unlock()
	a.h.Detached(err)
}

// sessionFrame hands a session event or a session's moved frame to its
// attachment (reader goroutine); a moved frame moves the stream to the
// servers it names when this server is not the first of them.
func (c *Client) sessionFrame(cn *conn, f *api.ServerFrame) {
	c.mu.Lock()
	a := c.sessions[f.SessionTag]
	c.mu.Unlock()
	if f.Type == api.FrameMoved {
		if a != nil {
			a.detach(cn, ErrMoved)
		}
		if len(f.Servers) > 0 && f.Servers[0] != cn.server {
			// Session work belongs on the leader: the stream goes there.
			c.move(cn, f.Servers)
			return
		}
		if a != nil {
			// No other leader known yet (an election): attach again
			// here after a pause, or on the stream that replaces this one.
			c.later(cn, 100*time.Millisecond, func() { c.attach(cn, a) })
		}
		return
	}
	if a == nil {
		return
	}
	a.mu.Lock()
	mine := a.cn == cn
	a.mu.Unlock()
	if mine {
		a.h.Event(f, cn.epoch)
	}
}

// KeepaliveResult is the answer to a keepalive frame.
type KeepaliveResult struct {
	Answers []api.KeepaliveAnswer // one per session, in the frame's order
	// Sent is when the frame was handed to the transport: where the
	// promises it brings are anchored.
	Sent   time.Time
	Server string // the stream's
	Epoch  uint64 // the tenant's epoch on the stream's server
}

// move ends cn so that the next stream opens on servers[0].
func (c *Client) move(cn *conn, servers []string) {
	cn.mu.Lock()
	cn.moved = servers
	cn.mu.Unlock()
	cn.end(ErrMoved)
}

// later runs fn after d (jittered up to 2d) unless cn ends first.
func (c *Client) later(cn *conn, d time.Duration, fn func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTimer(d + rand.N(d))
		defer t.Stop()
		select {
		case <-t.C:
			if cn.reason() == nil {
				fn()
			}
		case <-cn.ended:
		}
	}()
}

// Keepalive sends one keepalive frame for the sessions ids, ahead of every
// ordinary frame, and waits for its answers until ctx ends. A frame the
// server refused as a whole is an *api.Error; no stream is ErrNoStream.
func (c *Client) Keepalive(ctx context.Context, ids []string) (KeepaliveResult, error) {
	c.mu.Lock()
	cn := c.cur
	c.mu.Unlock()
	if cn == nil {
		return KeepaliveResult{}, ErrNoStream
	}
	r := KeepaliveResult{Server: cn.server, Epoch: cn.epoch}
	items := make([]api.KeepaliveItem, len(ids))
	for i, id := range ids {
		items[i] = api.KeepaliveItem{ID: id}
	}
	var mu sync.Mutex
	var sent time.Time
	done := make(chan *api.ServerFrame, 1)
	if !cn.request(func(req uint64) Frame {
		b, _ := json.Marshal(api.ClientFrame{Type: api.FrameKeepalive, Req: req, Sessions: items})
		return Frame{Data: b, Ahead: true, OnWrite: func(t time.Time) { mu.Lock(); sent = t; mu.Unlock() }}
	}, func(f *api.ServerFrame) { done <- f }) {
		return r, ErrNoStream
	}
	var f *api.ServerFrame
	select {
	case f = <-done:
	case <-cn.ended:
		return r, fmt.Errorf("%w: %w", ErrNoStream, cn.reason())
	case <-ctx.Done():
		return r, ctx.Err()
	}
	mu.Lock()
	r.Sent = sent // written before its result was read
	mu.Unlock()
	if f.Status != http.StatusOK {
		return r, api.Decode(f.Status, f.Body, "")
	}
	var res api.KeepaliveResults
	if err := json.Unmarshal(f.Body, &res); err != nil || len(res.Sessions) != len(ids) {
		if err == nil {
			err = fmt.Errorf("%d answers for %d sessions", len(res.Sessions), len(ids))
		}
		err = fmt.Errorf("stream: keepalive result: %w", err)
		cn.end(err)
		return r, err
	}
	for i := range res.Sessions {
		if res.Sessions[i].Status == http.StatusTooManyRequests && res.Sessions[i].Body == nil {
			res.Sessions[i].Body = res.Limited
		}
	}
	r.Answers = res.Sessions
	return r, nil
}
