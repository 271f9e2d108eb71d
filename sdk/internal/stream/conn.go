package stream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/rafting/rafting/api"
)

// Frame is a client frame to send.
type Frame struct {
	Data []byte // one JSON object, without its newline
	// Ahead sends the frame before every ordinary frame waiting (the
	// keepalive lane).
	Ahead bool
	// OnWrite, if set, is called by the writer with the time just before
	// the frame's bytes are handed to the transport: where a promise is
	// anchored.
	OnWrite func(time.Time)
}

// conn is one open stream: a writer goroutine (the only writer of the
// request body), a reader goroutine (the only reader of the answer) and
// the requests waiting for their results.
type conn struct {
	server string
	epoch  uint64 // the tenant's, on server (the answer's X-Rafting-Epoch)
	now    func() time.Time
	cancel context.CancelFunc
	pw     *io.PipeWriter
	body   io.ReadCloser

	mu      sync.Mutex
	queue   []Frame // ordinary frames, in order
	hi      []Frame // frames sent ahead
	wake    chan struct{}
	err     error // set once: why the conn ended
	ended   chan struct{}
	pending map[uint64]func(*api.ServerFrame) // req -> its result's handler (reader goroutine)
	nextReq uint64
	watches map[uint64]*Watch // w -> the watch (reader goroutine and run)
	nextW   uint64
	moved   []string // the servers of a moved frame without a session tag
	reopen  bool     // the Client ended it on purpose: open the next at once

	wg sync.WaitGroup
}

func newConn(server string, cancel context.CancelFunc, pw *io.PipeWriter, body io.ReadCloser, now func() time.Time) *conn {
	return &conn{server: server, now: now, cancel: cancel, pw: pw, body: body, wake: make(chan struct{}, 1),
		ended: make(chan struct{}), pending: map[uint64]func(*api.ServerFrame){}, watches: map[uint64]*Watch{}}
}

// end ends the conn with err (the first one sticks): the request body
// closes (cancelling the ctx alone does not end a stream whose body the
// transport is reading), the ctx ends, the answer's body closes.
func (c *conn) end(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	close(c.ended)
	c.mu.Unlock()
	c.pw.CloseWithError(err)
	c.cancel()
	c.body.Close()
}

// reason is why the conn ended (nil while it lives).
func (c *conn) reason() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// send queues a frame; false when the conn has ended.
func (c *conn) send(f Frame) bool {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return false
	}
	if f.Ahead {
		c.hi = append(c.hi, f)
	} else {
		c.queue = append(c.queue, f)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// request sends a frame built around a new req number and calls onResult
// with its result, from the reader; false when the conn has ended (then
// onResult is never called).
func (c *conn) request(build func(req uint64) Frame, onResult func(*api.ServerFrame)) bool {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return false
	}
	c.nextReq++
	req := c.nextReq
	c.pending[req] = onResult
	c.mu.Unlock()
	if !c.send(build(req)) {
		c.mu.Lock()
		delete(c.pending, req)
		c.mu.Unlock()
		return false
	}
	return true
}

// next takes the next frame to write: ahead first.
func (c *conn) next() (Frame, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.hi) > 0 {
		f := c.hi[0]
		c.hi[0] = Frame{}
		c.hi = c.hi[1:]
		return f, true
	}
	if len(c.queue) > 0 {
		f := c.queue[0]
		c.queue[0] = Frame{}
		c.queue = c.queue[1:]
		return f, true
	}
	return Frame{}, false
}

// writeLoop writes queued frames to the request body until the conn ends.
func (c *conn) writeLoop() {
	defer c.wg.Done()
	var line []byte
	for {
		f, ok := c.next()
		if !ok {
			select {
			case <-c.wake:
				continue
			case <-c.ended:
				return
			}
		}
		line = append(append(line[:0], f.Data...), '\n')
		if f.OnWrite != nil {
			// Before the write: a promise anchored here can only be
			// shorter than the one the server grants on receipt.
			f.OnWrite(c.now())
		}
		if _, err := c.pw.Write(line); err != nil {
			c.end(fmt.Errorf("stream: write: %w", err))
			return
		}
	}
}

// readLoop reads server frames until the conn ends, handing each to
// dispatch; it ends the conn with the reason it stopped.
func (c *conn) readLoop(idle time.Duration, dispatch func(*api.ServerFrame) error) {
	defer c.wg.Done()
	// The server pings a quiet stream every second: silence this long
	// means it is gone.
	timer := time.AfterFunc(idle, func() { c.end(ErrIdle) })
	defer timer.Stop()
	br := bufio.NewReaderSize(c.body, 64<<10)
	for {
		line, err := readLine(br)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			c.end(fmt.Errorf("stream: read: %w", err))
			return
		}
		timer.Reset(idle)
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var f api.ServerFrame
		if err := json.Unmarshal(line, &f); err != nil {
			c.end(fmt.Errorf("stream: frame: %w", err))
			return
		}
		if f.Type == api.FrameResult {
			c.mu.Lock()
			fn := c.pending[f.Req]
			delete(c.pending, f.Req)
			c.mu.Unlock()
			if fn != nil {
				fn(&f)
			}
			continue
		}
		if err := dispatch(&f); err != nil {
			c.end(err)
			return
		}
	}
}

// readLine reads one line, at most api.MaxFrameBytes long.
func readLine(br *bufio.Reader) ([]byte, error) {
	var long []byte
	for {
		part, err := br.ReadSlice('\n')
		if err == nil || !errors.Is(err, bufio.ErrBufferFull) {
			if long != nil {
				part = append(long, part...)
			}
			if len(part) > api.MaxFrameBytes+1 {
				return nil, ErrTooLarge
			}
			if err != nil && len(part) > 0 && errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return part, err
		}
		long = append(long, part...)
		if len(long) > api.MaxFrameBytes+1 {
			return nil, ErrTooLarge
		}
	}
}
