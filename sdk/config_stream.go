package sdk

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rafting/rafting/api"
)

// The client stream (WithClientStream) for configuration views: once a
// Config's first fill — a linearizable REST read, as without the stream —
// is done, the subtree is followed by a watch_kv on the Client's one
// stream instead of a blocking-read loop. The watch keeps its own view
// (snapshot plus put/delete changes, in index order) and hands each whole
// subtree to apply, so the view's rules hold as they are: never back in
// time, stale after every server failed in a row, never emptied by a
// failed watch. A subtree too large for one watch (the servers refuse it
// 413: more than 10,000 keys or 256 KiB of values) goes back to blocking
// reads, which page.

// runStream follows the view on the Client's stream until ctx ends
// (false), or until the servers refuse the watch as too large (true).
func (v *Config) runStream(ctx context.Context) (tooLarge bool) {
	h := configWatch{v: v, tooLarge: make(chan struct{}), once: new(sync.Once)}
	w := v.c.stream.WatchKV(v.prefix, h)
	defer w.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-h.tooLarge:
		v.c.log.Info("configuration view too large for a stream watch: following it by blocking reads", "prefix", v.prefix)
		return true
	}
}

// configWatch hands a stream watch's subtrees to a view.
type configWatch struct {
	v        *Config
	tooLarge chan struct{} // closed once the servers refuse the watch as too large
	once     *sync.Once
}

func (h configWatch) UpdateKV(index uint64, kvs []api.KV, epoch uint64) {
	pos := position(epoch, index)
	h.v.apply(&listing{pos: pos, top: pos, kvs: tidy(kvs, h.v.prefix)}, time.Now())
}

func (h configWatch) Failed(err error) {
	if errors.Is(err, api.ErrTooLarge) {
		h.once.Do(func() { close(h.tooLarge) })
		return
	}
	h.v.failed(err)
}
