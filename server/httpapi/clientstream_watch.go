package httpapi

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/cluster"
)

// Watches on client streams.
//
// A feed follows one service of one tenant replica on this node, for every
// watch of it on every stream: one goroutine that wakes at each change of
// the service (fsm's Watch), reads the service once and publishes it as an
// immutable view, with the change from the previous view encoded once.
// A watch keeps the view it last sent (its client's state); when the
// writer gets to the watch it sends the change from that view to the
// feed's current one — the shared encoding when it is the previous view,
// a diff of its own otherwise. So one change costs one read, one diff and
// one encoding per node, however many watch it; and a watch holds at most
// one view beyond the feed's own (one service's instances).

// view is what a feed follows (a service, or a key or subtree of the
// configuration store) as of one modify index; never changed once
// published.
type view struct {
	modify  uint64 // the service's (or key's, or subtree's) modify index
	applied uint64 // the replica's applied index when it was read
	body    content

	prevModify uint64 // the view it follows (0: none)
	delta      []byte // changes from that view, encoded: `"index":...}\n`; nil when none
	deltaErr   error

	snapOnce sync.Once
	snap     []byte // `"instances":...}\n`, or `"kvs":...}\n`
	snapErr  error
}

// content is a view's body: how its snapshot and its changes from an
// earlier view are encoded.
type content interface {
	// snapshot encodes a snapshot frame's fields after its "index".
	snapshot() ([]byte, error)
	// deltaFrom encodes a changes frame's fields after its "w", from the
	// content prev (of the same kind) to this one at index; nil when
	// nothing a client sees changed.
	deltaFrom(prev content, index uint64) ([]byte, error)
}

func newView(modify, applied uint64, body content, prev *view) *view {
	v := &view{modify: modify, applied: applied, body: body}
	if prev != nil {
		v.prevModify = prev.modify
		v.delta, v.deltaErr = encodeDelta(prev, v)
	}
	return v
}

// snapshot returns the view's snapshot frame body after its "index".
func (v *view) snapshot() ([]byte, error) {
	v.snapOnce.Do(func() { v.snap, v.snapErr = v.body.snapshot() })
	return v.snap, v.snapErr
}

// encodeDelta encodes the change from a to b after a changes frame's
// "w"; nil when nothing a client sees changed.
func encodeDelta(a, b *view) ([]byte, error) { return b.body.deltaFrom(a.body, b.modify) }

// serviceContent is a service as a watch sends it.
type serviceContent struct {
	instances []api.Instance
	master    *api.Master
	policy    api.Policy
}

func newServiceContent(r api.ServiceResponse) *serviceContent {
	c := &serviceContent{instances: r.Instances, master: r.Master, policy: r.Policy}
	if c.instances == nil {
		c.instances = []api.Instance{}
	}
	return c
}

func (c *serviceContent) snapshot() ([]byte, error) {
	b, err := json.Marshal(struct {
		Instances []api.Instance `json:"instances"`
		Master    *api.Master    `json:"master"`
		Policy    api.Policy     `json:"policy"`
	}{c.instances, c.master, c.policy})
	if err != nil {
		return nil, err
	}
	return append(b[1:], '\n'), nil
}

func (c *serviceContent) deltaFrom(prev content, index uint64) ([]byte, error) {
	a := prev.(*serviceContent)
	var d struct {
		Index  uint64           `json:"index"`
		Upsert []api.Instance   `json:"upsert,omitempty"`
		Delete []string         `json:"delete,omitempty"`
		Master api.MasterUpdate `json:"master,omitzero"`
		Policy *api.Policy      `json:"policy,omitempty"`
	}
	d.Index = index
	i, j := 0, 0
	for i < len(a.instances) || j < len(c.instances) {
		switch {
		case j == len(c.instances) || i < len(a.instances) && a.instances[i].ID < c.instances[j].ID:
			d.Delete = append(d.Delete, a.instances[i].ID)
			i++
		case i == len(a.instances) || c.instances[j].ID < a.instances[i].ID:
			d.Upsert = append(d.Upsert, c.instances[j])
			j++
		default:
			if !sameInstance(&a.instances[i], &c.instances[j]) {
				d.Upsert = append(d.Upsert, c.instances[j])
			}
			i++
			j++
		}
	}
	if !sameMaster(a.master, c.master) {
		d.Master = api.MasterUpdate{Set: true, Master: c.master}
	}
	if a.policy != c.policy {
		p := c.policy
		d.Policy = &p
	}
	if d.Upsert == nil && d.Delete == nil && !d.Master.Set && d.Policy == nil {
		return nil, nil
	}
	out, err := json.Marshal(&d)
	if err != nil {
		return nil, err
	}
	return append(out[1:], '\n'), nil
}

func sameInstance(a, b *api.Instance) bool {
	return a.ID == b.ID && a.Address == b.Address && a.Mode == b.Mode && a.State == b.State &&
		a.Weight == b.Weight && a.Priority == b.Priority && a.Zone == b.Zone &&
		a.SessionTag == b.SessionTag && a.RegisteredAt.Equal(b.RegisteredAt) && maps.Equal(a.Meta, b.Meta)
}

func sameMaster(a, b *api.Master) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Instance == b.Instance && a.SessionTag == b.SessionTag && a.FencingToken == b.FencingToken &&
		a.Since.Equal(b.Since) && a.Releasing == b.Releasing
}

// feeds are a Server's feeds, one per (tenant replica, service or key or
// subtree) watched.
type feeds struct {
	mu sync.Mutex
	m  map[feedKey]*feed
	wg sync.WaitGroup

	// charge takes n bytes of tenant's answer bytes (nil: nothing is
	// charged); false says when to try again.
	charge func(tenant string, n int, now time.Time) (bool, time.Duration)
}

type feedKey struct {
	t      *cluster.Tenant
	kv     bool   // the configuration store: name is a key, or with prefix a subtree
	name   string // the service, or the key
	prefix bool
}

// wait is the feed's fsm Watch: its modify index now, and a channel closed
// at its next change.
func (k feedKey) wait() (modify uint64, wake <-chan struct{}, done func()) {
	if k.kv {
		modify, _, wake, done = k.t.SM.WatchKV(k.name, k.prefix, 0)
	} else {
		modify, _, wake, done = k.t.SM.Watch(k.name, 0)
	}
	return modify, wake, done
}

// read reads what the feed follows, consistently.
func (k feedKey) read() (modify, applied uint64, body content) {
	if k.kv {
		return readKV(k.t, k.name, k.prefix)
	}
	r := k.t.SM.Service(k.name)
	return r.ModifyIndex, r.Index, newServiceContent(r)
}

func newFeeds() *feeds { return &feeds{m: map[feedKey]*feed{}} }

// feed follows one service of one replica for the watches of it.
type feed struct {
	key    feedKey
	cur    atomic.Pointer[view]
	stop   chan struct{}
	charge func(tenant string, n int, now time.Time) (bool, time.Duration)

	mu   sync.Mutex // publishing, subs; taken before any stream's mu
	subs map[*watch]struct{}
}

// subscribe adds w to the feed of k, starting the feed if needed.
func (fs *feeds) subscribe(k feedKey, w *watch) *feed {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := fs.m[k]
	if f == nil {
		f = &feed{key: k, stop: make(chan struct{}), subs: map[*watch]struct{}{}, charge: fs.charge}
		fs.m[k] = f
		fs.wg.Add(1)
		go f.run(&fs.wg)
	}
	f.mu.Lock()
	f.subs[w] = struct{}{}
	f.mu.Unlock()
	return f
}

// unsubscribe removes w; the last one out stops the feed.
func (fs *feeds) unsubscribe(f *feed, w *watch) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f.mu.Lock()
	delete(f.subs, w)
	empty := len(f.subs) == 0
	f.mu.Unlock()
	if empty && fs.m[f.key] == f {
		delete(fs.m, f.key)
		close(f.stop)
	}
}

func (f *feed) run(wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		modify, wake, done := f.key.wait()
		if v := f.cur.Load(); v == nil || modify > v.modify {
			if v != nil && !f.afford(v) {
				done()
				return // stopped while it waited
			}
			f.refresh()
		}
		select {
		case <-wake:
			done()
		case <-f.stop:
			done()
			return
		}
	}
}

// afford charges the read that follows v (a subtree of the configuration
// store, read again whole at each change under it) to the tenant's answer
// bytes, at what v's read cost, and waits while the budget refuses it;
// false when the feed stopped meanwhile. The changes that come while it
// waits are read together, once. A service's read takes its instances'
// pointers (fsm.Answer) and is not charged.
//
// Without it a change cost a read of the whole subtree per prefix watched
// (TestRedTeam2KVPrefixWatchAmplification: a 1-byte put under 32 watched
// prefixes of a 4,000-key subtree took 45 ms of CPU, 124 times its cost
// unwatched: 9 cores at the default writes_per_second).
func (f *feed) afford(v *view) bool {
	c, ok := v.body.(*kvContent)
	if !ok || f.charge == nil {
		return true
	}
	for {
		ok, retry := f.charge(f.key.t.Name, c.cost, time.Now())
		if ok {
			return true
		}
		t := time.NewTimer(max(retry, time.Millisecond))
		select {
		case <-t.C:
		case <-f.stop:
			t.Stop()
			return false
		}
	}
}

// latest returns a view that is current now: the feed's, or a new one if
// what it follows changed since.
func (f *feed) latest() *view {
	modify, _, done := f.key.wait()
	done()
	if v := f.cur.Load(); v != nil && v.modify >= modify {
		return v
	}
	return f.refresh()
}

// refresh reads what the feed follows and publishes it if it moved on.
func (f *feed) refresh() *view {
	modify, applied, body := f.key.read()
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.cur.Load()
	if old != nil && modify <= old.modify {
		return old
	}
	v := newView(modify, applied, body, old)
	f.cur.Store(v)
	if old != nil && v.delta == nil && v.deltaErr == nil {
		return v // nothing a client sees changed
	}
	now := time.Now()
	for w := range f.subs {
		w.cs.changed(w, now)
	}
	return v
}

// watch is one watch of a stream.
type watch struct {
	cs      *clientStream
	id      uint64
	req     uint64
	key     feedKey // what it follows
	service string  // the service, or the key, for logs
	feed    *feed
	release func() // its max_watchers count
	floor   uint64 // the asked index, when of this epoch: no frame goes below it

	// guarded by cs.mu
	active bool      // its result was queued: frames may follow
	queued bool      // a marker is queued for the writer
	ended  bool      // unwatched, resynced, or the stream ends
	since  time.Time // when the marker was queued

	// the writer's (set before the watch is active)
	last *view // what the client holds; nil: a snapshot is due
	sent uint64
}

// changed is a feed's notice that w's service changed.
func (cs *clientStream) changed(w *watch, now time.Time) {
	cs.mu.Lock()
	cs.queueWatchLocked(w, now)
	cs.mu.Unlock()
	cs.signal()
}

// startWatch opens a watch: it is checked and counted here, and set up in
// a goroutine of its own (it may wait for this replica to catch up).
func (cs *clientStream) startWatch(f *api.ClientFrame) bool {
	cs.mu.Lock()
	_, dup := cs.watches[f.W]
	n := len(cs.watches)
	cs.mu.Unlock()
	switch {
	case dup:
		return cs.sendResultErr(false, f.Req, api.Errorf(api.CodeConflict, "w: watch %d is open on this stream", f.W))
	case n >= cs.lim.Watches:
		return cs.sendResultErr(false, f.Req, api.Errorf(api.CodeConflict, "w: this stream has %d watches open, the most it may", n))
	}
	rec, ok := cs.s.node.Meta().Brief(cs.t.Name)
	if !ok {
		return cs.sendResultErr(false, f.Req, api.Errorf(api.CodeNotFound, "tenant %s not found", cs.t.Name))
	}
	release, err := cs.s.takeWatcher(cs.t.Name, cs.who, rec.Quotas)
	if err != nil {
		return cs.sendResultErr(false, f.Req, err)
	}
	w := &watch{cs: cs, id: f.W, req: f.Req, service: f.Service, release: release,
		key: feedKey{t: cs.t, name: f.Service}}
	if f.Type == api.FrameWatchKV {
		w.key = feedKey{t: cs.t, kv: true, name: f.Key, prefix: f.Prefix}
		w.service = "kv " + f.Key
	}
	if f.Epoch == 0 || f.Epoch == cs.t.Epoch {
		w.floor = f.Index
	}
	cs.mu.Lock()
	cs.watches[f.W] = w
	cs.mu.Unlock()
	if !cs.startOp(f.Req, 0, func() { cs.setUpWatch(w) }) {
		cs.dropWatch(w)
		return !cs.isEnding()
	}
	return true
}

// setUpWatch applies the blocking query's index rules, then activates w:
// its result, then (unless its index is current) a snapshot.
func (cs *clientStream) setUpWatch(w *watch) {
	fail := func(err error) {
		cs.sendResultErr(false, w.req, err)
		cs.dropWatch(w)
	}
	t := cs.t
	ctx, cancel := context.WithTimeout(cs.ctx, 2*time.Second)
	err := t.CaughtUp(ctx)
	cancel()
	if err != nil {
		fail(&api.Error{Code: api.CodeUnavailable, Message: "tenant " + t.Name + ": its replica on this node is catching up",
			RetryAfter: 200 * time.Millisecond, Leader: t.LeaderAPI()})
		return
	}
	if w.floor > 0 && !cs.catchUp(w.floor) {
		fail(&api.Error{Code: api.CodeStaleReplica, Message: "this node's replica is behind the asked index and cannot catch up",
			RetryAfter: 100 * time.Millisecond, Leader: t.LeaderAPI()})
		return
	}
	// A snapshot is charged to the tenant's answer bytes as a REST read
	// is, at the answer's last size; changes are not (they are the
	// tenant's own writes, already charged).
	if cs.who.tenant != "" && !w.key.kv {
		if size := t.SM.AnswerSize(w.service); size > 0 {
			if err := cs.s.chargeAnswer(cs.who.tenant, size, time.Now()); err != nil {
				fail(err)
				return
			}
		}
	}
	fd := cs.s.cs.feeds.subscribe(w.key, w)
	cs.mu.Lock()
	if w.ended { // unwatched meanwhile: dropWatch did not see the feed
		cs.mu.Unlock()
		cs.s.cs.feeds.unsubscribe(fd, w)
		cs.sendResultErr(false, w.req, api.Errorf(api.CodeConflict, "w: watch %d was unwatched before it started", w.id))
		return
	}
	w.feed = fd
	cs.mu.Unlock()
	v := fd.latest()
	if w.key.kv {
		// A subtree's snapshot is charged at its size, and must fit a frame.
		if err := cs.kvWatchable(v); err != nil {
			cs.mu.Lock()
			w.feed = nil
			cs.mu.Unlock()
			cs.s.cs.feeds.unsubscribe(fd, w)
			fail(err)
			return
		}
	}
	resp := api.WatchResponse{W: w.id, Epoch: t.Epoch, Snapshot: true}
	if w.floor > 0 && v.modify <= w.floor {
		// The client's state at its index is the service's now.
		w.last = v
		w.sent = max(w.floor, v.applied)
		resp.Index, resp.Snapshot = w.sent, false
	}
	body, err := json.Marshal(resp)
	if err != nil {
		fail(err)
		return
	}
	// The result first, then the watch's frames: both in the lo queue.
	if !cs.sendResult(false, w.req, http.StatusOK, body) {
		return
	}
	cs.mu.Lock()
	w.active = true
	if w.last == nil || fd.cur.Load() != w.last {
		cs.queueWatchLocked(w, time.Now())
	}
	cs.mu.Unlock()
	cs.signal()
}

// catchUp waits until this replica applied index, up to CatchUp, then
// confirms with a ReadIndex; false: it cannot (stale_replica).
func (cs *clientStream) catchUp(index uint64) bool {
	t := cs.t
	timer := time.NewTimer(cs.lim.CatchUp)
	defer timer.Stop()
	for {
		applied, next := t.SM.WaitApplied()
		if applied >= index {
			return true
		}
		select {
		case <-next:
			continue
		case <-cs.ctx.Done():
			return false
		case <-timer.C:
		}
		break
	}
	err := t.Fresh(cs.ctx, time.Second)
	return err == nil && t.SM.Applied() >= index
}

// watchFrame appends w's next frame to buf: its snapshot, the changes since
// its last frame, or resync when it waited more than WatchLag. A part that
// other watches share and that is larger than sharedMin is returned as
// shared instead of copied: the frame is buf's end followed by shared.
func (cs *clientStream) watchFrame(buf []byte, w *watch, waited time.Duration) (_, shared []byte) {
	if waited > cs.lim.WatchLag {
		return cs.resync(buf, w), nil
	}
	v := w.feed.cur.Load()
	if w.last == nil {
		snap, err := v.snapshot()
		if err != nil {
			cs.s.log.Error("encode snapshot", "tenant", cs.t.Name, "service", w.service, "err", err)
			return cs.resync(buf, w), nil
		}
		index := max(v.applied, w.floor)
		buf = append(buf, `{"type":"snapshot","w":`...)
		buf = strconv.AppendUint(buf, w.id, 10)
		buf = append(buf, `,"index":`...)
		buf = strconv.AppendUint(buf, index, 10)
		buf = append(buf, ',')
		w.last, w.sent = v, index
		return appendOrShare(buf, snap)
	}
	if v.modify <= w.last.modify {
		return buf, nil
	}
	delta, err := v.delta, v.deltaErr
	if v.prevModify != w.last.modify {
		delta, err = encodeDelta(w.last, v)
	}
	if err != nil {
		cs.s.log.Error("encode changes", "tenant", cs.t.Name, "service", w.service, "err", err)
		return cs.resync(buf, w), nil
	}
	w.last = v
	if delta == nil {
		return buf, nil
	}
	w.sent = v.modify
	buf = append(buf, `{"type":"changes","w":`...)
	buf = strconv.AppendUint(buf, w.id, 10)
	buf = append(buf, ',')
	return appendOrShare(buf, delta)
}

// sharedMin is the size from which a frame's shared part is written as it
// is rather than copied into the writer's buffer.
const sharedMin = 16 << 10

func appendOrShare(buf, part []byte) (_, shared []byte) {
	if len(part) >= sharedMin {
		return buf, part
	}
	return append(buf, part...), nil
}

func (cs *clientStream) resync(buf []byte, w *watch) []byte {
	cs.dropWatch(w)
	buf = append(buf, `{"type":"resync","w":`...)
	buf = strconv.AppendUint(buf, w.id, 10)
	return append(buf, "}\n"...)
}

// unwatch ends a watch (204; a watch that is not open is 204 too).
func (cs *clientStream) unwatch(f *api.ClientFrame) bool {
	cs.mu.Lock()
	w := cs.watches[f.W]
	cs.mu.Unlock()
	if w != nil {
		cs.dropWatch(w)
	} else if cs.who.tenant != "" {
		// Freeing nothing, it is a request like a ping.
		if err := cs.s.limit(cs.who.tenant, cs.r, false, time.Now()); err != nil {
			return cs.sendResultErr(false, f.Req, err)
		}
	}
	return cs.sendResult(false, f.Req, http.StatusNoContent, nil)
}

// dropWatch ends a watch: no frame of it follows.
func (cs *clientStream) dropWatch(w *watch) {
	cs.mu.Lock()
	if w.ended {
		cs.mu.Unlock()
		return
	}
	w.ended = true
	if cs.watches[w.id] == w {
		delete(cs.watches, w.id)
	}
	f := w.feed
	last := cs.eof && len(cs.watches) == 0
	cs.mu.Unlock()
	if last {
		cs.end(endClientEOF, nil) // the client sends nothing more, and nothing is watched
	}
	if f != nil {
		cs.s.cs.feeds.unsubscribe(f, w)
	}
	w.release()
}

// closeWatches ends every watch of the stream.
func (cs *clientStream) closeWatches() {
	cs.mu.Lock()
	ws := make([]*watch, 0, len(cs.watches))
	for _, w := range cs.watches {
		ws = append(ws, w)
	}
	cs.mu.Unlock()
	for _, w := range ws {
		cs.dropWatch(w)
	}
}
