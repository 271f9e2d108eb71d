//go:build linux

package httpapi

import (
	"errors"
	"sync"
	"syscall"
)

// waiter holds accepted connections until they have something to read,
// with no goroutine and no buffer each: one epoll set, watched by one
// goroutine. net/http gives a connection a goroutine and 8 KiB of
// buffers as soon as it is accepted, ≈ 27 KB of RSS an idle connection
// (attack pattern 4b: 4,096 unauthenticated connections held by 64
// addresses took 110 MB a node); held here, one costs its descriptor,
// its limitedConn and an epoll entry.
//
// A connection is handed on (ready) once bytes arrived, or closed here
// when the client hung up having sent nothing. It still counts in the
// limits while held, and AuthTimeout runs from its accept.
type waiter struct {
	epfd  int
	wake  [2]int // a pipe, registered as id 0: close writes to wake[1]
	ready func(*limitedConn)

	mu        sync.Mutex
	next      uint32
	pending   map[uint32]*limitedConn
	closed    bool // add refuses
	fdsClosed bool // close was called

	done chan struct{} // the loop ended
}

// newWaiter starts a waiter that calls ready (from its goroutine) with
// each connection that has bytes to read.
func newWaiter(ready func(*limitedConn)) (*waiter, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	w := &waiter{epfd: epfd, ready: ready, pending: map[uint32]*limitedConn{}, done: make(chan struct{})}
	if err := syscall.Pipe2(w.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: 0}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, w.wake[0], &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(w.wake[0])
		syscall.Close(w.wake[1])
		return nil, err
	}
	go w.loop()
	return w, nil
}

// add holds c until it has bytes to read; false when it cannot (not a
// socket, or the waiter is closed): the caller hands it on at once.
func (w *waiter) add(c *limitedConn) bool {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return false
	}
	w.next++
	for w.next == 0 || w.pending[w.next] != nil {
		w.next++
	}
	id := w.next
	w.pending[id] = c
	c.waitID = id
	w.mu.Unlock()
	var cerr error
	err = rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(id)}
		cerr = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		w.forget(c)
		return false
	}
	return true
}

// holding reports whether c is held (it has not been handed on).
func (w *waiter) holding(c *limitedConn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return c.waitID != 0 && w.pending[c.waitID] == c
}

// forget takes c out of the held connections (it is being closed; the
// kernel drops its epoll entry with its descriptor).
func (w *waiter) forget(c *limitedConn) {
	w.mu.Lock()
	if c.waitID != 0 && w.pending[c.waitID] == c {
		delete(w.pending, c.waitID)
	}
	c.waitID = 0
	w.mu.Unlock()
}

// take takes c out of the held connections and reports whether it was
// held: false once it was handed on (or closed), so that a timer closing
// an idle held connection never closes one net/http now serves.
func (w *waiter) take(c *limitedConn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c.waitID == 0 || w.pending[c.waitID] != c {
		return false
	}
	delete(w.pending, c.waitID)
	c.waitID = 0
	return true
}

func (w *waiter) loop() {
	defer close(w.done)
	defer w.handOver()
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(w.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			id := uint32(ev.Fd)
			if id == 0 {
				return // close
			}
			w.mu.Lock()
			c := w.pending[id]
			if c != nil {
				delete(w.pending, id)
				c.waitID = 0
			}
			w.mu.Unlock()
			if c != nil {
				w.handle(c, id)
			}
		}
	}
}

// handOver, when the loop ends without close (epoll failed), hands on
// the connections still held, and makes add refuse: they go to the
// server as accepted.
func (w *waiter) handOver() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	held := make([]*limitedConn, 0, len(w.pending))
	for id, c := range w.pending {
		c.waitID = 0
		delete(w.pending, id)
		held = append(held, c)
	}
	w.mu.Unlock()
	for _, c := range held {
		w.ready(c)
	}
}

// handle looks at a connection the kernel says is readable: bytes — it
// goes on; the end of the stream with nothing before it, or an error —
// it is closed here; nothing after all — it is watched again.
func (w *waiter) handle(c *limitedConn, id uint32) {
	rc, err := c.Conn.(syscall.Conn).SyscallConn()
	if err != nil {
		c.Close()
		return
	}
	const (
		goOn = iota + 1
		hungUp
		again
	)
	what := hungUp
	err = rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n > 0:
			what = goOn
		case errors.Is(rerr, syscall.EAGAIN):
			what = again
		default: // 0 bytes: hung up; or reset
			return
		}
		if what == goOn {
			_ = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
			return
		}
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			what = hungUp
			return
		}
		w.pending[id] = c
		c.waitID = id
		w.mu.Unlock()
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(id)}
		if syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev) != nil {
			w.forget(c)
			what = hungUp
		}
	})
	switch {
	case err != nil: // closed meanwhile
	case what == goOn:
		w.ready(c)
	case what == hungUp:
		c.Close()
	}
}

// close stops the waiter and closes the connections it holds (they never
// reached the server, which will not close them).
func (w *waiter) close() {
	w.mu.Lock()
	if w.fdsClosed {
		w.mu.Unlock()
		return
	}
	w.closed, w.fdsClosed = true, true
	w.mu.Unlock()
	_, _ = syscall.Write(w.wake[1], []byte{0})
	<-w.done
	w.mu.Lock()
	held := make([]*limitedConn, 0, len(w.pending))
	for _, c := range w.pending {
		held = append(held, c)
	}
	clear(w.pending)
	w.mu.Unlock()
	for _, c := range held {
		c.Close()
	}
	syscall.Close(w.epfd)
	syscall.Close(w.wake[0])
	syscall.Close(w.wake[1])
}
