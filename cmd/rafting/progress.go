package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// ttyRefresh is how often the progress line on a terminal is redrawn.
const ttyRefresh = time.Second

// progress says on w that a command still waits on one answer (restore,
// backup, dev's start), so it is not taken for hung. On a terminal it is
// one line redrawn in place every ttyRefresh ("<prefix>: <doing>… 12s"),
// erased by Stop; anywhere else (a file, a pipe, a log collector) a plain
// line "<prefix>: still <doing>, <elapsed> elapsed" every interval.
type progress struct {
	w             io.Writer
	tty           bool
	prefix, doing string
	start         time.Time
	mu            sync.Mutex
	drawn         bool // a progress line without its newline is on the terminal
	once          sync.Once
	done, exited  chan struct{}
}

// ticking starts a progress on w, a terminal or not as w says (see
// isTerminal).
func ticking(w io.Writer, prefix, doing string, interval time.Duration) *progress {
	return tickingOn(w, isTerminal(w), prefix, doing, interval)
}

func tickingOn(w io.Writer, tty bool, prefix, doing string, interval time.Duration) *progress {
	p := &progress{w: w, tty: tty, prefix: prefix, doing: doing, start: time.Now(),
		done: make(chan struct{}), exited: make(chan struct{})}
	every := interval
	if tty {
		every = ttyRefresh
	}
	go func() {
		defer close(p.exited)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				p.mu.Lock()
				p.erase()
				p.mu.Unlock()
				return
			case <-t.C:
				p.mu.Lock()
				elapsed := time.Since(p.start).Round(time.Second)
				if tty {
					fmt.Fprintf(w, "\r\x1b[K%s: %s… %s", prefix, doing, elapsed)
					p.drawn = true
				} else {
					fmt.Fprintf(w, "%s: still %s, %s elapsed\n", prefix, doing, elapsed)
				}
				p.mu.Unlock()
			}
		}
	}()
	return p
}

// erase takes the progress line off the terminal; p.mu is held.
func (p *progress) erase() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// Printf writes a line of its own on w meanwhile, not in the middle of
// the progress line (which the next tick draws again below it).
func (p *progress) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.erase()
	fmt.Fprintf(p.w, format, args...)
}

// Write writes b, whole lines, on w meanwhile, as Printf does: a logger
// may write through it.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.erase()
	return p.w.Write(b)
}

// switchWriter writes to the writer it was last set to: a logger's lines
// go through a progress while there is one.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

func (s *switchWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// Stop ends the progress and erases its line; nothing is written after it
// returns. It may be called again.
func (p *progress) Stop() {
	p.once.Do(func() { close(p.done) })
	<-p.exited
}
