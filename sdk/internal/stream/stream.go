package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/rafting/rafting/api"
)

// Opener opens one client stream on server ("": the next server in turn
// whose breaker allows it), with body as the request body. It returns the
// answer (status 200; the caller closes its body) and the server used, or
// an error (*api.Error for an error answer).
type Opener func(ctx context.Context, server string, body io.Reader) (*http.Response, string, error)

// Config configures a Client.
type Config struct {
	Open Opener // required
	// Backoff returns the backoff between failed opens (the transport's
	// full jitter); nil: 50 ms up to 2 s, exponential, jittered.
	Backoff func() backoff.BackOff
	// IdleTimeout: a stream on which nothing arrived for this long is
	// given up (the server pings a quiet stream every second). Zero: 5 s.
	IdleTimeout time.Duration
	// Now is the clock of OnWrite anchors; nil: time.Now.
	Now    func() time.Time
	Logger *slog.Logger // nil: silent
}

// Handler receives a watch's service. Its methods are called from the
// stream's reader goroutine, one at a time, and must not block.
type Handler interface {
	// Update is the whole service at r.Index, of the tenant's epoch; calls
	// come in index order (an index may repeat, when a new watch found
	// nothing changed since).
	Update(r *api.ServiceResponse, epoch uint64)
	// Failed says that the stream, or this watch on it, failed; the
	// Client retries on its own.
	Failed(err error)
}

// Client is the SDK's client stream: one stream at a time, reopened until
// Close, and the watches on it.
type Client struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	opens, watched, snapshots, resyncs, writes atomic.Int64 // Stats

	mu       sync.Mutex
	watches  map[*Watch]struct{}
	sessions map[string]*Attachment // by session tag
	cur      *conn
	closed   bool
}

// New returns a Client and starts its stream.
func New(cfg Config) *Client {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Backoff == nil {
		cfg.Backoff = func() backoff.BackOff {
			b := backoff.NewExponentialBackOff()
			b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 50*time.Millisecond, 2*time.Second, 0
			return b
		}
	}
	c := &Client{cfg: cfg, log: cfg.Logger, watches: map[*Watch]struct{}{}, sessions: map[string]*Attachment{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.run()
	return c
}

// Close ends the stream and waits for every goroutine the Client started.
// Watches end with it.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	cur := c.cur
	c.mu.Unlock()
	c.cancel()
	if cur != nil {
		cur.end(ErrClosed)
	}
	c.wg.Wait()
}

// Stats counts what a Client did.
type Stats struct {
	Opens     int64 // streams opened
	Watched   int64 // watches the servers accepted
	Snapshots int64 // snapshot frames received
	Resyncs   int64 // resync frames received
	Writes    int64 // write frames answered (Write)
}

// Stats returns the Client's counts.
func (c *Client) Stats() Stats {
	return Stats{Opens: c.opens.Load(), Watched: c.watched.Load(), Snapshots: c.snapshots.Load(), Resyncs: c.resyncs.Load(), Writes: c.writes.Load()}
}

// run keeps a stream open until Close.
func (c *Client) run() {
	defer c.wg.Done()
	bo := c.cfg.Backoff()
	server := ""
	for c.ctx.Err() == nil {
		cn, leader, err := c.open(server)
		if err == nil && leader != "" && leader != cn.server {
			// Keep the stream on the tenant leader, where session work
			// belongs: go there at once, once.
			cn.end(errors.New("stream: to the leader"))
			cn.wg.Wait()
			cn, _, err = c.open(leader)
		}
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			c.failed(err)
			server = ""
			if !c.sleep(bo.NextBackOff()) {
				return
			}
			continue
		}
		c.log.Debug("client stream open", "server", cn.server)
		lived := time.Now()
		moved := c.serve(cn)
		err = cn.reason()
		if c.ctx.Err() != nil {
			return
		}
		c.log.Debug("client stream ended", "server", cn.server, "err", err)
		if time.Since(lived) > 10*time.Second {
			bo.Reset()
		}
		if len(moved) > 0 {
			// The server handed its work over: to the first it names,
			// at once (a short pause keeps a loop of moves from spinning).
			server = moved[0]
			bo.Reset()
			c.failed(err)
			if !c.sleep(10 * time.Millisecond) {
				return
			}
			continue
		}
		c.failed(err)
		server = ""
		cn.mu.Lock()
		reopen := cn.reopen
		cn.mu.Unlock()
		if reopen {
			// Ended on purpose (Attachment.Again): its sessions' deadlines
			// are drop_grace away until they attach again.
			bo.Reset()
			if !c.sleep(10 * time.Millisecond) {
				return
			}
			continue
		}
		if !c.sleep(bo.NextBackOff()) {
			return
		}
	}
}

// attachments lists the sessions kept attached (c.mu held).
func (c *Client) attachments() []*Attachment {
	as := make([]*Attachment, 0, len(c.sessions))
	for _, a := range c.sessions {
		as = append(as, a)
	}
	return as
}

// failed tells every watch that the stream failed.
func (c *Client) failed(err error) {
	c.mu.Lock()
	ws := make([]*Watch, 0, len(c.watches))
	for w := range c.watches {
		ws = append(ws, w)
	}
	c.mu.Unlock()
	for _, w := range ws {
		w.failed(err)
	}
}

func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// open opens a stream on server and starts its goroutines; it returns the
// leader the server named.
func (c *Client) open(server string) (*conn, string, error) {
	ctx, cancel := context.WithCancel(c.ctx)
	pr, pw := io.Pipe()
	resp, used, err := c.cfg.Open(ctx, server, pr)
	if err != nil {
		pw.CloseWithError(err)
		cancel()
		return nil, "", err
	}
	c.opens.Add(1)
	cn := newConn(used, cancel, pw, resp.Body, c.cfg.Now)
	cn.epoch, _ = strconv.ParseUint(resp.Header.Get(api.HeaderEpoch), 10, 64)
	cn.wg.Add(2)
	go cn.writeLoop()
	go cn.readLoop(c.cfg.IdleTimeout, func(f *api.ServerFrame) error { return c.dispatch(cn, f) })
	return cn, resp.Header.Get(api.HeaderLeader), nil
}

// serve makes cn the current stream, starts every watch on it and waits
// until it ends; it returns the servers of a moved frame that ended it.
func (c *Client) serve(cn *conn) []string {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cn.end(ErrClosed)
		cn.wg.Wait()
		return nil
	}
	c.cur = cn
	ws := make([]*Watch, 0, len(c.watches))
	for w := range c.watches {
		ws = append(ws, w)
	}
	as := c.attachments()
	c.mu.Unlock()
	for _, a := range as {
		c.attach(cn, a)
	}
	for _, w := range ws {
		c.start(cn, w)
	}
	<-cn.ended
	cn.wg.Wait()
	c.mu.Lock()
	c.cur = nil
	as = c.attachments()
	c.mu.Unlock()
	for _, a := range as {
		a.detach(cn, cn.reason())
	}
	cn.mu.Lock()
	moved := cn.moved
	cn.mu.Unlock()
	return moved
}

// dispatch handles a server frame other than a result (reader goroutine).
func (c *Client) dispatch(cn *conn, f *api.ServerFrame) error {
	switch f.Type {
	case api.FrameSnapshot, api.FrameChanges:
		if f.Type == api.FrameSnapshot {
			c.snapshots.Add(1)
		}
		cn.mu.Lock()
		w := cn.watches[f.W]
		cn.mu.Unlock()
		if w == nil || w.stopped() {
			return nil // an unwatched watch's last frames
		}
		if err := w.apply(f); err != nil {
			// The server broke a watch's order: watch again from the
			// view's index, which a snapshot will replace.
			c.log.Warn("client stream: watch out of order: watching again", "service", w.service, "err", err)
			w.reset()
			c.restart(cn, f.W, w)
		}
	case api.FrameResync:
		c.resyncs.Add(1)
		cn.mu.Lock()
		w := cn.watches[f.W]
		cn.mu.Unlock()
		if w != nil && !w.stopped() {
			c.restart(cn, f.W, w)
		}
	case api.FrameMoved:
		if f.SessionTag != "" {
			c.sessionFrame(cn, f) // a session's attachment ended
			return nil
		}
		// The session work of the stream belongs on f.Servers; when the
		// server ends the stream, this is its last frame, and the next
		// stream opens there. Watches alone may stay where they are; a
		// stream that carries sessions goes there now.
		cn.mu.Lock()
		cn.moved = f.Servers
		cn.mu.Unlock()
		c.mu.Lock()
		carries := len(c.sessions) > 0
		c.mu.Unlock()
		if carries && len(f.Servers) > 0 && f.Servers[0] != cn.server {
			c.move(cn, f.Servers)
		}
	case api.EventMaster, api.EventInstance, api.EventExpired:
		if f.SessionTag != "" {
			c.sessionFrame(cn, f)
		}
	case api.FrameError:
		if f.Error != nil {
			return fmt.Errorf("stream: ended by the server: %s: %s", f.Error.Code, f.Error.Message)
		}
		return errors.New("stream: ended by the server")
	}
	return nil
}

// restart starts w again on cn under a new w number, from its view.
func (c *Client) restart(cn *conn, old uint64, w *Watch) {
	cn.mu.Lock()
	delete(cn.watches, old)
	cn.mu.Unlock()
	c.start(cn, w)
}

// start sends w's watch frame on cn, from the index of its view.
func (c *Client) start(cn *conn, w *Watch) {
	if w.stopped() {
		return
	}
	index, epoch := w.from()
	cn.mu.Lock()
	cn.nextW++
	id := cn.nextW
	cn.watches[id] = w
	cn.mu.Unlock()
	w.setConn(cn, id)
	cn.request(func(req uint64) Frame {
		f := api.ClientFrame{Type: api.FrameWatch, Req: req, W: id, Service: w.service, Index: index, Epoch: epoch}
		if w.kh != nil {
			f = api.ClientFrame{Type: api.FrameWatchKV, Req: req, W: id, Key: w.service, Prefix: true, Index: index, Epoch: epoch}
		}
		b, _ := json.Marshal(f)
		return Frame{Data: b}
	}, func(f *api.ServerFrame) {
		if w.stopped() {
			return
		}
		if f.Status != http.StatusOK {
			err := api.Decode(f.Status, f.Body, "")
			w.failed(fmt.Errorf("watch %s: %w", w.service, err))
			cn.mu.Lock()
			delete(cn.watches, id)
			cn.mu.Unlock()
			c.retryLater(cn, w, err)
			return
		}
		r, err := decodeWatch(f.Body)
		if err != nil {
			cn.end(fmt.Errorf("stream: watch result: %w", err))
			return
		}
		c.watched.Add(1)
		w.started(r)
	})
}

// retryLater starts a watch that the server refused again after a pause,
// on the same stream if it still lives (a new stream starts it anyway).
func (c *Client) retryLater(cn *conn, w *Watch, err error) {
	d := 200 * time.Millisecond
	var ae *api.Error
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		d = max(d, ae.RetryAfter)
	}
	if errors.As(err, &ae) && !ae.Code.Retryable() {
		d = 5 * time.Second // refused for what it asks (a subtree too large): rarely
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			if cn.reason() == nil {
				c.start(cn, w)
			}
		case <-cn.ended:
		}
	}()
}

// KVHandler receives a watch_kv's subtree, as Handler a service.
type KVHandler interface {
	// UpdateKV is the whole subtree at index, of the tenant's epoch,
	// sorted by key; calls come in index order.
	UpdateKV(index uint64, kvs []api.KV, epoch uint64)
	Failed(err error)
}

// WatchKV follows the subtree of prefix ("": every key) of the tenant's
// configuration store on the stream until Stop, calling h with it, as
// Watch does a service.
func (c *Client) WatchKV(prefix string, h KVHandler) *Watch {
	return c.watch(&Watch{c: c, service: prefix, kh: h, view: View{kv: true}})
}

// Watch follows a service on the stream until Stop, calling h with it: a
// first Update when the watch has a snapshot, then one per change.
func (c *Client) Watch(service string, h Handler) *Watch {
	return c.watch(&Watch{c: c, service: service, h: h})
}

func (c *Client) watch(w *Watch) *Watch {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		w.stop.Store(true)
		return w
	}
	c.watches[w] = struct{}{}
	cur := c.cur
	c.mu.Unlock()
	if cur != nil {
		c.start(cur, w)
	}
	return w
}
