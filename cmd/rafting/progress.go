package main

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// ticking writes "<prefix>: still <doing>, <elapsed> elapsed" on w every
// interval until the returned stop is called; stop waits for the last
// line, so nothing is written after it returns, and may be called again. It is for the commands
// that wait long on one answer (restore, dev's start): a line on stderr
// says they have not hung.
func ticking(w io.Writer, prefix, doing string, interval time.Duration) (stop func()) {
	start := time.Now()
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(w, "%s: still %s, %s elapsed\n", prefix, doing, time.Since(start).Round(time.Second))
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-exited
	}
}
