package sdk

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk/internal/transport"
)

// Config is the Client's live view of a subtree of the tenant's
// configuration store: the key Prefix and every key under Prefix + "/"
// (every key for the prefix ""), never a key beside it ("app/cfgx" is not
// in "app/cfg"). It is kept as a Service is: filled first by a
// linearizable read (whatever was committed before Client.Config was
// called, in this process or another, is in it), then kept current by one
// blocking-read loop — GET .../kv/{prefix}?prefix=true&index=N&wait=60s,
// which the servers answer when a key of the subtree is put or deleted, or
// when the wait ends. Answers older than the view are dropped, so it never
// goes back in time. When no server answers, the last values known stay,
// marked Stale: a failed watch never empties the view.
//
// A subtree of more than a page (api.MaxKVPage keys, or about 1 MiB of
// values) is read page by page, each page at or after the one before; the
// view then blocks from the first page's index, so a change made while the
// later pages were read wakes it at once. Such a view may show, until that
// next answer, a transaction that touched two pages as applied on one of
// them only.
//
// The Client's own writes (Put, CompareAndSet, Delete, Txn,
// Member.PutEphemeral) are in its views of their keys when they return.
//
// Every method is safe for concurrent use.
type Config struct {
	c      *Client
	prefix string
	path   string

	pub    atomic.Pointer[configPub]
	filled chan struct{} // closed by the first applied answer
	cancel context.CancelFunc

	applyMu  sync.Mutex // serializes apply; guards the fields below
	isFilled bool
	floor    uint64 // read-your-writes: the first fill must reach it
	failures int    // consecutive failed reads
	lastErr  error
}

// ConfigSnapshot is one state of a Config view. Its KVs (and their
// values) are shared with the view: treat them as read-only.
type ConfigSnapshot struct {
	Prefix string
	// Index is the Raft index of the tenant's replica the view was read
	// at (for a subtree of several pages, the first page's). It never
	// goes backwards within a Client, except when the tenant's Raft log
	// starts over (the tenant created again, or restored from a backup).
	Index uint64
	// KVs is every key of the subtree, sorted by key.
	KVs []api.KV
	// Stale is true while the servers do not answer the view's watch: the
	// values are the last known and may be out of date.
	Stale bool
	// Synced is when a server last answered the watch. A blocking read
	// answers only on a change or after its wait (60 s), so an old Synced
	// alone does not mean stale.
	Synced time.Time

	pos uint64 // the tenant's epoch and Index (see position)
	top uint64 // the position of the listing's last page
}

// Get returns a key of the snapshot.
func (s ConfigSnapshot) Get(key string) (api.KV, bool) {
	i, ok := slices.BinarySearchFunc(s.KVs, key, func(kv api.KV, key string) int { return strings.Compare(kv.Key, key) })
	if !ok {
		return api.KV{}, false
	}
	return s.KVs[i], true
}

// Keys returns the snapshot's keys, sorted.
func (s ConfigSnapshot) Keys() []string {
	out := make([]string, len(s.KVs))
	for i, kv := range s.KVs {
		out[i] = kv.Key
	}
	return out
}

// configPub is a snapshot and the channel closed when it is replaced.
type configPub struct {
	snap    *ConfigSnapshot
	changed chan struct{}
}

// Config returns the Client's live view of the subtree at prefix ("": every
// key), starting to watch it on the first call, and waits until the view
// holds a first answer (or ctx ends). The first answer is a linearizable
// read: it needs a quorum of the tenant's replicas, and without one Config
// waits until ctx ends. Later calls with the same prefix return the same
// *Config at once (Sync reads again). A prefix is a key (api.ValidateKey)
// or "".
func (c *Client) Config(ctx context.Context, prefix string) (*Config, error) {
	if err := api.ValidateKeyPrefix("prefix", prefix); err != nil {
		return nil, fmt.Errorf("sdk: config: %w", err)
	}
	v, err := c.view(prefix)
	if err != nil {
		return nil, err
	}
	select {
	case <-v.filled:
		return v, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("sdk: config %q: no answer yet: %w", prefix, errors.Join(ctx.Err(), v.lastError()))
	}
}

// view returns the prefix's view, starting it if needed.
func (c *Client) view(prefix string) (*Config, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if v := c.configs[prefix]; v != nil {
		return v, nil
	}
	if c.configs == nil {
		c.configs = map[string]*Config{}
	}
	v := &Config{c: c, prefix: prefix, path: c.kvPath(prefix), filled: make(chan struct{})}
	v.pub.Store(&configPub{snap: &ConfigSnapshot{Prefix: prefix}, changed: make(chan struct{})})
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	c.configs[prefix] = v
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		v.run(ctx)
	}()
	return v, nil
}

// viewsOf returns the Client's views that hold any of keys.
func (c *Client) viewsOf(keys []string) []*Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Config
	for prefix, v := range c.configs {
		if slices.ContainsFunc(keys, func(k string) bool { return api.InSubtree(k, prefix) }) {
			out = append(out, v)
		}
	}
	return out
}

// stopConfigs stops every view's watch (Close).
func (c *Client) stopConfigs() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range c.configs {
		v.cancel()
	}
}

// Prefix is the view's subtree.
func (v *Config) Prefix() string { return v.prefix }

func (v *Config) current() (*ConfigSnapshot, <-chan struct{}) {
	p := v.pub.Load()
	return p.snap, p.changed
}

// Snapshot returns the view's current snapshot.
func (v *Config) Snapshot() ConfigSnapshot {
	snap, _ := v.current()
	return *snap
}

// Get returns a key of the view; false when it does not exist or is not
// in the view's subtree.
func (v *Config) Get(key string) (api.KV, bool) {
	snap, _ := v.current()
	return snap.Get(key)
}

// Keys returns the view's keys, sorted.
func (v *Config) Keys() []string {
	snap, _ := v.current()
	return snap.Keys()
}

// All returns the view's keys with their values, sorted by key (a new
// slice; the values are shared with the view: treat them as read-only).
func (v *Config) All() []api.KV {
	snap, _ := v.current()
	return slices.Clone(snap.KVs)
}

// Index is the Raft index of the current snapshot.
func (v *Config) Index() uint64 {
	snap, _ := v.current()
	return snap.Index
}

// Stale reports whether the servers are not answering the view's watch:
// it serves the last values known meanwhile.
func (v *Config) Stale() bool {
	snap, _ := v.current()
	return snap.Stale
}

// Synced is when a server last answered the view's watch.
func (v *Config) Synced() time.Time {
	snap, _ := v.current()
	return snap.Synced
}

// Watch returns an iterator over the view's snapshots: the current one
// first, then each change (a key put or deleted, staleness). A slow
// consumer skips intermediate snapshots and always gets the latest. It
// ends when ctx ends or the Client closes.
//
//	for snap := range view.Watch(ctx) {
//		kv, ok := snap.Get("app/flags/dark-mode")
//		...
//	}
func (v *Config) Watch(ctx context.Context) iter.Seq[ConfigSnapshot] {
	return func(yield func(ConfigSnapshot) bool) {
		var last *ConfigSnapshot
		for {
			snap, changed := v.current()
			if snap != last {
				if !yield(*snap) {
					return
				}
				last = snap
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			case <-v.c.done:
				return
			}
		}
	}
}

// OnChange calls fn with the view's current snapshot, then with each
// change, as Watch yields them: one call at a time, in order, on a
// goroutine of the view's, never under a lock of the SDK's (fn may call
// any method). A slow fn skips intermediate snapshots and gets the
// latest. stop ends the calls: after stop returns fn is not called again,
// though a call already running (when stop is called from another
// goroutine) finishes. Close waits for a call that is running.
func (v *Config) OnChange(fn func(ConfigSnapshot)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var stopped atomic.Bool
	v.c.mu.Lock()
	if v.c.closed {
		v.c.mu.Unlock()
		cancel()
		return func() {}
	}
	v.c.wg.Add(1)
	v.c.mu.Unlock()
	go func() {
		defer v.c.wg.Done()
		for snap := range v.Watch(ctx) {
			if stopped.Load() {
				return
			}
			fn(snap)
		}
	}()
	return func() {
		stopped.Store(true)
		cancel()
	}
}

// Sync brings the view up to date now: a linearizable read of the
// subtree, applied before Sync returns. A Get, Snapshot or Watch after
// Sync shows every change committed before Sync was called — in this
// process or any other. The view never goes back: when it already holds
// something newer than the answer, Sync changes nothing. Sync retries on
// other servers until ctx ends; when it fails the view keeps what it had.
func (v *Config) Sync(ctx context.Context) error {
	j := transport.NewJitter(20*time.Millisecond, time.Second)
	for {
		select {
		case <-v.c.done:
			return ErrClosed
		default:
		}
		l, _, err := v.list(ctx, "", true, writeRetry)
		if err != nil {
			return fmt.Errorf("sdk: sync config %q: %w", v.prefix, err)
		}
		if v.apply(l, time.Now()) != belowFloor {
			return nil
		}
		// Below a write of this Client's, though linearizable: only a
		// server that ignores consistent=true answers so. Ask again.
		if !sleep(ctx, j.NextBackOff()) {
			return fmt.Errorf("sdk: sync config %q: no answer at this Client's writes: %w", v.prefix, ctx.Err())
		}
	}
}

func (v *Config) lastError() error {
	v.applyMu.Lock()
	defer v.applyMu.Unlock()
	return v.lastErr
}

func (v *Config) filledNow() bool {
	select {
	case <-v.filled:
		return true
	default:
		return false
	}
}

// position is the current snapshot's position (see position).
func (v *Config) position() uint64 {
	snap, _ := v.current()
	return snap.pos
}

// listing is a whole subtree as read: its keys in order, at the
// positions of its first and last pages.
type listing struct {
	pos, top uint64
	kvs      []api.KV
}

// list reads the whole subtree. The first page is asked with query (a
// blocking read's index and wait, or nothing), linearizably when
// consistent; the pages after it follow `next` on the server that
// answered, each at least at the first page's position and at the last
// page the view holds, so no part of the view goes back (a page that
// would is asked again, linearizably). retry is the transport's policy
// for each page (nil: one attempt). server is the one that answered last,
// or was tried.
func (v *Config) list(ctx context.Context, query string, consistent bool, retry *transport.Retry) (l *listing, server string, err error) {
	return v.listFrom(ctx, transport.Request{Method: http.MethodGet, Path: v.pagePath(query, "", consistent), Retry: retry}, consistent)
}

func (v *Config) pagePath(query, start string, consistent bool) string {
	p := v.path + "?prefix=true" + query
	if start != "" {
		p += "&start=" + url.QueryEscape(start)
	}
	if consistent {
		p += "&consistent=true"
	}
	return p
}

func (v *Config) listFrom(ctx context.Context, first transport.Request, consistent bool) (*listing, string, error) {
	resp, err := v.c.tr.Do(ctx, first)
	if err != nil {
		return nil, serverOf(err, first.Server), err
	}
	var page api.KVListResponse
	if err := jsonUnmarshal(resp.Body, &page); err != nil {
		return nil, resp.Server, err
	}
	epoch := resp.Epoch()
	l := &listing{pos: position(epoch, page.Index), kvs: page.KVs}
	l.top = l.pos
	floor := max(l.pos, v.top(epoch))
	server := resp.Server
	for page.Next != "" {
		req := transport.Request{Method: http.MethodGet, Path: v.pagePath("", page.Next, consistent), Server: server, Retry: first.Retry}
		for attempt := 0; ; attempt++ {
			resp, err = v.c.tr.Do(ctx, req)
			if err != nil {
				return nil, serverOf(err, req.Server), err
			}
			next := api.KVListResponse{}
			if err := jsonUnmarshal(resp.Body, &next); err != nil {
				return nil, resp.Server, err
			}
			server = resp.Server
			if resp.Epoch() != epoch {
				return nil, server, fmt.Errorf("%w: the tenant's Raft log started over while its keys were read", api.ErrUnavailable)
			}
			if pos := position(epoch, next.Index); pos >= floor || attempt == 2 {
				if pos < floor {
					return nil, server, fmt.Errorf("%w: no replica answered a page at index %d", api.ErrUnavailable, indexOf(floor))
				}
				l.top = max(l.top, pos)
				page = next
				break
			}
			// A replica behind the pages before: ask for the page
			// linearizably.
			req.Path, req.Server = v.pagePath("", page.Next, true), ""
		}
		l.kvs = append(l.kvs, page.KVs...)
	}
	l.kvs = tidy(l.kvs, v.prefix)
	return l, server, nil
}

// top is the position of the last page of the view's snapshot, when it is
// of the epoch (a listing of a new epoch owes nothing to an older one).
func (v *Config) top(epoch uint64) uint64 {
	snap, _ := v.current()
	if epochOf(snap.top) != epoch {
		return 0
	}
	return snap.top
}

// tidy keeps the keys of the subtree, sorted, each once. The servers send
// nothing else; a view must never show a key outside its subtree, whoever
// answers.
func tidy(kvs []api.KV, prefix string) []api.KV {
	kvs = slices.DeleteFunc(kvs, func(kv api.KV) bool { return !api.InSubtree(kv.Key, prefix) })
	if !slices.IsSortedFunc(kvs, func(a, b api.KV) int { return strings.Compare(a.Key, b.Key) }) {
		slices.SortStableFunc(kvs, func(a, b api.KV) int { return strings.Compare(a.Key, b.Key) })
	}
	return slices.CompactFunc(kvs, func(a, b api.KV) bool { return a.Key == b.Key })
}

// serverOf is the server a failed request went to, when the error says.
func serverOf(err error, tried string) string {
	var ne *transport.NetError
	if errors.As(err, &ne) {
		return ne.Server
	}
	return tried
}

// run is the watch loop (watchLoop) for a subtree, on the client stream
// once filled (config_stream.go) unless the subtree is too large for a
// watch of it: then by blocking reads.
func (v *Config) run(ctx context.Context) {
	blocking := false // by blocking reads, with a client stream too
	watchLoop{tr: v.c.tr, round: v.round, failed: v.failed,
		applied: func(ctx context.Context) bool {
			if v.c.stream == nil || blocking {
				return true
			}
			blocking = true
			return v.runStream(ctx)
		}}.run(ctx)
}

// round is one read of the watch loop: every page of the subtree, a
// blocking query for the first once filled.
func (v *Config) round(ctx context.Context, server string, consistent bool) (outcome, string, error) {
	wait := v.c.cfg.conn.watchWait
	req := transport.Request{Method: http.MethodGet, Server: server}
	filled := v.filledNow()
	if filled {
		pos := v.position()
		q := "&index=" + strconv.FormatUint(indexOf(pos), 10) + "&wait=" + strconv.FormatInt(wait.Milliseconds(), 10)
		if e := epochOf(pos); e > 0 {
			q += "&epoch=" + strconv.FormatUint(e, 10) // a server of another epoch answers at once
		}
		req.Path = v.pagePath(q, "", false)
		req.Long, req.Timeout = true, wait+wait/16+10*time.Second
	} else {
		req.Path = v.pagePath("", "", consistent)
	}
	l, used, err := v.listFrom(ctx, req, !filled && consistent)
	if err != nil {
		return 0, used, err
	}
	return v.apply(l, time.Now()), used, nil
}

// failed records a failed read: after every server failed in a row the
// snapshot is marked stale (and kept).
func (v *Config) failed(err error) {
	v.applyMu.Lock()
	defer v.applyMu.Unlock()
	v.failures++
	v.lastErr = err
	if v.failures < len(v.c.tr.Servers()) && !errors.Is(err, transport.ErrNoServer) {
		return
	}
	p := v.pub.Load()
	if p.snap.Stale || !v.isFilled {
		return
	}
	v.c.log.Warn("configuration watch failing: serving the last known values", "prefix", v.prefix, "err", err)
	next := *p.snap
	next.Stale = true
	v.publishLocked(&next, true)
}

// apply applies a listing, of the tenant's epoch, atomically, if it is not
// older than the view.
func (v *Config) apply(l *listing, now time.Time) outcome {
	v.applyMu.Lock()
	defer v.applyMu.Unlock()
	old := v.pub.Load().snap
	switch {
	case v.isFilled && l.pos < old.pos:
		return older
	case !v.isFilled && l.pos < v.floor:
		return belowFloor
	}
	v.failures, v.lastErr = 0, nil
	if v.isFilled && epochOf(l.pos) == epochOf(old.pos) && sameKVs(old.KVs, l.kvs) {
		// Same content: a wait that ended, or a refresh.
		next := *old
		next.pos, next.top = max(l.pos, old.pos), max(l.top, old.top)
		next.Index, next.Synced, next.Stale = indexOf(next.pos), now, false
		v.publishLocked(&next, old.Stale)
		return applied
	}
	if v.isFilled && epochOf(l.pos) != epochOf(old.pos) {
		v.c.log.Info("the tenant's Raft log started over (created again, or restored): following the new one",
			"prefix", v.prefix, "epoch", epochOf(l.pos), "was", epochOf(old.pos))
	}
	v.publishLocked(&ConfigSnapshot{Prefix: v.prefix, Index: indexOf(l.pos), KVs: l.kvs, Synced: now, pos: l.pos, top: l.top}, true)
	if !v.isFilled {
		v.isFilled = true
		close(v.filled)
	}
	return applied
}

// sameKVs reports whether two listings hold the same keys at the same
// mod_index: the same content (a key's value changes only with it).
func sameKVs(a, b []api.KV) bool {
	return slices.EqualFunc(a, b, func(x, y api.KV) bool { return x.Key == y.Key && x.ModIndex == y.ModIndex })
}

// publishLocked makes snap current; notify wakes watchers.
func (v *Config) publishLocked(snap *ConfigSnapshot, notify bool) {
	p := v.pub.Load()
	if !notify {
		v.pub.Store(&configPub{snap: snap, changed: p.changed})
		return
	}
	v.pub.Store(&configPub{snap: snap, changed: make(chan struct{})})
	close(p.changed)
}

// raiseFloor makes the first fill wait for a position (read-your-writes).
func (v *Config) raiseFloor(pos uint64) {
	v.applyMu.Lock()
	defer v.applyMu.Unlock()
	v.floor = max(v.floor, pos)
}

// caughtUp returns once the view holds a position (read-your-writes): a
// view still without its first fill gets a floor for it, a filled one is
// refreshed.
func (v *Config) caughtUp(ctx context.Context, pos uint64) error {
	if !v.filledNow() {
		v.raiseFloor(pos)
		select {
		case <-v.filled:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return v.refresh(ctx, pos)
}

// refresh brings the view to at least a position: refreshTo, by fetch.
func (v *Config) refresh(ctx context.Context, pos uint64) error {
	return v.c.refreshTo(ctx, "config\x00"+v.prefix, pos, v.position, v.fetch)
}

func (v *Config) fetch(ctx context.Context, pos uint64) error {
	for _, consistent := range []bool{false, true} {
		l, _, err := v.list(ctx, "", consistent, writeRetry)
		if err != nil {
			return err
		}
		if l.pos >= pos {
			v.apply(l, time.Now())
			return nil
		}
	}
	return fmt.Errorf("%w: no replica reached index %d", api.ErrUnavailable, indexOf(pos))
}
