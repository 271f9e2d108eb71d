package stream

import (
	"encoding/json"
	"sync"
	"sync/atomic"

	"github.com/rafting/rafting/api"
)

// Watch is one service followed on a Client's stream.
type Watch struct {
	c       *Client
	service string // or the key of a watch_kv
	h       Handler
	kh      KVHandler // a watch_kv's (WatchKV): h is nil
	stop    atomic.Bool

	mu    sync.Mutex // guards the fields below
	view  View
	epoch uint64 // of the watch's last result: its snapshot's
	cn    *conn  // the stream it was last started on
	w     uint64 // its number there
}

func (w *Watch) stopped() bool { return w.stop.Load() }

func (w *Watch) from() (uint64, uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.view.From()
}

// From is the index and epoch of the watch's last frame (0, 0: none yet).
func (w *Watch) From() (index, epoch uint64) { return w.from() }

func (w *Watch) setConn(cn *conn, id uint64) {
	w.mu.Lock()
	w.cn, w.w = cn, id
	w.mu.Unlock()
}

// started handles the watch's result: without a snapshot the view is
// current at r.Index, and the handler hears so (a stale cache learns it is
// fresh again); with one, the snapshot frame follows.
func (w *Watch) started(r api.WatchResponse) {
	if r.Snapshot {
		w.mu.Lock()
		w.epoch = r.Epoch // the snapshot that follows is of it
		w.mu.Unlock()
		return
	}
	w.mu.Lock()
	ok := w.view.Covered(r.Index, r.Epoch)
	w.mu.Unlock()
	if ok {
		w.hand()
	}
}

// hand hands the view on to the watch's handler.
func (w *Watch) hand() {
	w.mu.Lock()
	epoch := w.view.epoch
	if w.kh != nil {
		index, kvs := w.view.index, w.view.KVs()
		w.mu.Unlock()
		w.kh.UpdateKV(index, kvs, epoch)
		return
	}
	svc := w.view.Service(w.service)
	w.mu.Unlock()
	w.h.Update(svc, epoch)
}

// failed tells the watch's handler that the stream, or the watch, failed.
func (w *Watch) failed(err error) {
	if w.kh != nil {
		w.kh.Failed(err)
		return
	}
	w.h.Failed(err)
}

// apply applies a snapshot or changes frame and hands the service on.
func (w *Watch) apply(f *api.ServerFrame) error {
	w.mu.Lock()
	if f.Type == api.FrameSnapshot {
		w.view.Snapshot(f, w.epoch)
	} else if err := w.view.Changes(f); err != nil {
		w.mu.Unlock()
		return err
	}
	w.mu.Unlock()
	w.hand()
	return nil
}

// reset forgets the view: the next watch asks for a snapshot.
func (w *Watch) reset() {
	w.mu.Lock()
	w.view = View{kv: w.kh != nil}
	w.mu.Unlock()
}

// Stop ends the watch: no Update follows once it returns, except one
// already under way. It does not wait for the server's answer.
func (w *Watch) Stop() {
	if w.stop.Swap(true) {
		return
	}
	c := w.c
	c.mu.Lock()
	delete(c.watches, w)
	c.mu.Unlock()
	w.mu.Lock()
	cn, id := w.cn, w.w
	w.mu.Unlock()
	if cn == nil {
		return
	}
	cn.mu.Lock()
	_, open := cn.watches[id]
	delete(cn.watches, id)
	cn.mu.Unlock()
	if open {
		cn.request(func(req uint64) Frame {
			b, _ := json.Marshal(api.ClientFrame{Type: api.FrameUnwatch, Req: req, W: id})
			return Frame{Data: b}
		}, func(*api.ServerFrame) {})
	}
}
