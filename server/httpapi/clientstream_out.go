package httpapi

import (
	"context"
	"time"

	"github.com/rafting/rafting/api"
)

// outItem is one thing waiting for the writer: an encoded frame, or a
// watch whose service changed (its frame is encoded when it is written).
type outItem struct {
	b []byte
	w *watch
}

// fifo is a queue of outItems.
type fifo struct {
	items []outItem
	head  int
}

func (q *fifo) len() int { return len(q.items) - q.head }

func (q *fifo) push(it outItem) { q.items = append(q.items, it) }

func (q *fifo) pop() (outItem, bool) {
	if q.head == len(q.items) {
		return outItem{}, false
	}
	it := q.items[q.head]
	q.items[q.head] = outItem{}
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
		if cap(q.items) > 1024 {
			q.items = nil // a burst's backing array is not kept
		}
	}
	return it, true
}

// send queues a frame for the client, keepalive answers and session
// events (hi) ahead of the rest. While the queues are full it waits; a
// stream whose queues stay full for StallClose is ended with `moved`.
// False means the stream is ending: the frame is dropped, and the caller
// stops.
func (cs *clientStream) send(hi bool, b []byte) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		cs.mu.Lock()
		if cs.ending != nil && !cs.ending.drain || cs.room == nil {
			cs.mu.Unlock()
			return false
		}
		if cs.queued == 0 || cs.queued < cs.lim.QueueFrames && cs.queuedBytes+len(b) <= cs.lim.QueueBytes {
			if hi {
				cs.hi.push(outItem{b: b})
			} else {
				cs.lo.push(outItem{b: b})
			}
			cs.queued++
			cs.queuedBytes += len(b)
			cs.mu.Unlock()
			cs.signal()
			return true
		}
		now := time.Now()
		if cs.fullSince.IsZero() {
			cs.fullSince = now
		}
		left := cs.lim.StallClose - now.Sub(cs.fullSince)
		room := cs.room
		cs.mu.Unlock()
		if left <= 0 {
			cs.end(endOverload, cs.movedFrame(""))
			return false
		}
		if timer == nil {
			timer = time.NewTimer(left)
		} else {
			timer.Reset(left)
		}
		select {
		case <-room:
		case <-timer.C:
		case <-cs.ctx.Done():
			return false
		}
	}
}

// queueWatch queues a changed watch for the writer, once; cs.mu is held.
func (cs *clientStream) queueWatchLocked(w *watch, now time.Time) {
	if w.queued || w.ended || !w.active {
		return
	}
	w.queued = true
	w.since = now
	cs.lo.push(outItem{w: w})
}

// pop takes the next item for the writer: hi first.
func (cs *clientStream) popLocked() (outItem, bool) {
	it, ok := cs.hi.pop()
	if !ok {
		it, ok = cs.lo.pop()
	}
	if !ok {
		return it, false
	}
	if it.w == nil {
		cs.queued--
		cs.queuedBytes -= len(it.b)
		if cs.queued <= cs.lim.QueueFrames/2 && cs.queuedBytes <= cs.lim.QueueBytes/2 {
			cs.fullSince = time.Time{}
			if cs.room != nil {
				close(cs.room) // wake every sender waiting for room
				cs.room = make(chan struct{})
			}
		}
	}
	return it, true
}

// maxBatch is about how many bytes the writer sends in one write.
const maxBatch = 64 << 10

var pingFrame = []byte(`{"type":"ping"}` + "\n")

// writeLoop is the writer: the only user of the ResponseWriter. It returns
// when the stream ends.
func (cs *clientStream) writeLoop() {
	ping := time.NewTimer(cs.lim.PingAfter)
	defer ping.Stop()
	cs.lastWrite = time.Now()
	lastHouse := cs.lastWrite
	_, metaWake := cs.s.node.Meta().WaitApplied()
	var buf []byte
	for {
		now := time.Now()
		if now.Sub(lastHouse) >= time.Second {
			lastHouse = now
			cs.housekeep(now)
		}
		select {
		case <-metaWake:
			_, metaWake = cs.s.node.Meta().WaitApplied()
			cs.checkToken(now)
		default:
		}
		cs.mu.Lock()
		e := cs.ending
		cs.mu.Unlock()
		if e != nil && !e.drain {
			if e.final != nil {
				cs.write(e.final)
			}
			return
		}
		var shared []byte
		buf, shared = cs.fill(buf[:0], now)
		if len(buf) > 0 {
			if !cs.write(buf, shared) {
				return
			}
			if cap(buf) > 16<<10 {
				buf = nil // a busy moment's buffer is not kept
			}
			continue
		}
		if e != nil { // drained
			return
		}
		quiet := cs.lim.PingAfter - now.Sub(cs.lastWrite)
		if quiet <= 0 {
			if !cs.write(pingFrame) {
				return
			}
			continue
		}
		ping.Reset(quiet)
		select {
		case <-cs.wake:
		case <-ping.C:
		case <-metaWake:
			_, metaWake = cs.s.node.Meta().WaitApplied()
			cs.checkToken(time.Now())
		case <-cs.ctx.Done():
			cs.end(cs.goneReason(), nil)
			return
		}
		if !ping.Stop() {
			select {
			case <-ping.C:
			default:
			}
		}
	}
}

// fill encodes what is queued into buf, up to about maxBatch bytes. A
// watch frame's large part that many watches share (a snapshot, a change)
// is not copied into buf: it is returned as shared, to be written after
// buf, and ends the batch.
func (cs *clientStream) fill(buf []byte, now time.Time) (_, shared []byte) {
	for len(buf) < maxBatch {
		cs.mu.Lock()
		it, ok := cs.popLocked()
		var since time.Time
		if ok && it.w != nil {
			if it.w.ended {
				cs.mu.Unlock()
				continue
			}
			it.w.queued = false
			since = it.w.since
		}
		cs.mu.Unlock()
		if !ok {
			break
		}
		if it.w != nil {
			if buf, shared = cs.watchFrame(buf, it.w, now.Sub(since)); shared != nil {
				return buf, shared
			}
			continue
		}
		buf = append(buf, it.b...)
	}
	return buf, nil
}

// write sends its parts and flushes them, within WriteTimeout; false ends
// the stream.
func (cs *clientStream) write(parts ...[]byte) bool {
	cs.stall.Reset(cs.lim.WriteTimeout)
	var err error
	for _, b := range parts {
		if len(b) > 0 && err == nil {
			_, err = cs.w.Write(b)
		}
	}
	if err == nil {
		err = cs.rc.Flush()
	}
	cs.stall.Stop()
	if err != nil {
		cs.end(cs.goneReason(), nil)
		return false
	}
	cs.lastWrite = time.Now()
	return true
}

// onStall runs when a write has waited WriteTimeout for the client: the
// stream is ended from the server's side (a write deadline in the past
// resets it, and the blocked write returns).
func (cs *clientStream) onStall() {
	cs.stallMu.Lock()
	defer cs.stallMu.Unlock()
	if cs.handlerDone {
		return
	}
	cs.stalled.Store(true)
	_ = cs.rc.SetWriteDeadline(time.Now().Add(-time.Second))
}

// housekeep runs about once a second: the token, the replica, and watches
// of a replica that left this node.
func (cs *clientStream) housekeep(now time.Time) {
	cs.checkToken(now)
	if t, ok := cs.s.node.Serving(cs.t.Name); !ok || t != cs.t ||
		cs.s.node.RemovedError() != nil || cs.s.node.TooOldError(cs.t.Name) != nil {
		// Gone from this node, or the node serves no tenant any more
		// (removed from the cluster, or its build too old for it).
		cs.end(endReplicaGone, cs.movedFrame(""))
		return
	}
	cs.mu.Lock()
	watching := len(cs.watches) > 0
	cs.mu.Unlock()
	if watching && now.Sub(cs.freshAt) >= cs.lim.FreshEvery && !cs.freshBusy.Load() {
		cs.freshAt = now
		cs.freshBusy.Store(true)
		cs.fresh.Add(1)
		go cs.checkFresh()
	}
}

// checkFresh confirms the replica is current (a ReadIndex, shared by every
// caller on the shard), three tries a second apart so that an election
// does not count; failing, the stream ends with moved.
func (cs *clientStream) checkFresh() {
	defer cs.fresh.Done()
	defer cs.freshBusy.Store(false)
	for try := 0; try < 3; try++ {
		if try > 0 {
			select {
			case <-time.After(time.Second):
			case <-cs.ctx.Done():
				return
			}
		}
		ctx, cancel := context.WithTimeout(cs.ctx, 2*time.Second)
		err := cs.t.Fresh(ctx, time.Second)
		cancel()
		if err == nil || cs.ctx.Err() != nil {
			return
		}
	}
	cs.end(endStale, cs.movedFrame(""))
}

// checkToken ends the stream when its token is no longer valid (revoked,
// rotated out, its tenant deleted), and reports whether it is.
func (cs *clientStream) checkToken(now time.Time) bool {
	if _, ok := cs.s.authenticate(cs.r, now); !ok {
		cs.end(endRevoked, errorFrame(errTokenGone))
		return false
	}
	return true
}

var errTokenGone = api.Errorf(api.CodeUnauthorized, "the stream's token is no longer valid (revoked or rotated out): open a stream with a current one")

// goneReason is why a stream whose client seems gone (its stream reset,
// a write or a read failed) ended: a write the client did not take within
// WriteTimeout (the server reset the stream), or else the client.
func (cs *clientStream) goneReason() endReason {
	if cs.stalled.Load() {
		return endStalled
	}
	return endClientGone
}
