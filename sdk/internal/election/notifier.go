package election

import (
	"sync"
	"sync/atomic"
)

// Notifier calls its subscribers' callbacks with changes: one at a time,
// in the order they were published, on the one goroutine that runs Run,
// outside every lock — so a callback may call back into whatever
// published, and one that blocks holds back the later callbacks but never
// a Publish. Publish under the lock that orders the changes, and the
// callbacks see them in that order.
type Notifier[C any] struct {
	mu     sync.Mutex
	subs   []*sub[C] // copied on write: a notice keeps the slice it was queued for
	queue  []notice[C]
	closed bool

	wake  chan struct{} // Run has work
	quiet chan struct{} // closed when Run has returned
}

type sub[C any] struct {
	fn  func(C)
	off atomic.Bool
}

// notice is a change for the subscribers there were when it happened.
type notice[C any] struct {
	change C
	to     []*sub[C]
}

// NewNotifier returns a Notifier; start its Run on a goroutine.
func NewNotifier[C any]() *Notifier[C] {
	return &Notifier[C]{wake: make(chan struct{}, 1), quiet: make(chan struct{})}
}

// Subscribe adds fn, and queues first for it alone (the state it starts
// from). Once the Notifier is closed it queues nothing: it returns false,
// and the caller tells fn itself. stop ends the subscription: fn is not
// called after stop returns, unless it runs then.
func (n *Notifier[C]) Subscribe(fn func(C), first C) (stop func(), ok bool) {
	s := &sub[C]{fn: fn}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return func() {}, false
	}
	n.subs = append(n.subs[:len(n.subs):len(n.subs)], s)
	n.queueLocked(notice[C]{change: first, to: []*sub[C]{s}})
	return func() {
		s.off.Store(true)
		n.mu.Lock()
		defer n.mu.Unlock()
		for i, x := range n.subs {
			if x == s {
				n.subs = append(n.subs[:i:i], n.subs[i+1:]...)
				break
			}
		}
	}, true
}

// Publish queues c for every subscriber there is now.
func (n *Notifier[C]) Publish(c C) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.queueLocked(notice[C]{change: c, to: n.subs})
}

func (n *Notifier[C]) queueLocked(x notice[C]) {
	if len(x.to) == 0 || n.closed {
		return
	}
	n.queue = append(n.queue, x)
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Close ends the Notifier: nothing is queued after it, and Run returns
// once it has delivered what was queued before.
func (n *Notifier[C]) Close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Closed reports whether Close was called.
func (n *Notifier[C]) Closed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// Quiet is closed when Run has returned: every change queued before Close
// was delivered.
func (n *Notifier[C]) Quiet() <-chan struct{} { return n.quiet }

// Run delivers the changes until the Notifier is closed and its queue is
// empty. Call it once.
func (n *Notifier[C]) Run() {
	defer close(n.quiet)
	for {
		n.mu.Lock()
		q, closed := n.queue, n.closed
		n.queue = nil
		n.mu.Unlock()
		for _, x := range q {
			for _, s := range x.to {
				if !s.off.Load() {
					s.fn(x.change)
				}
			}
		}
		switch {
		case closed && len(q) == 0:
			return
		case len(q) == 0:
			<-n.wake
		}
	}
}
