package stream

import (
	"bufio"
	"context"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestWriterAhead: a frame sent ahead leaves before every ordinary frame
// still waiting, and its OnWrite runs before its bytes reach the
// transport, with the writer's clock (the anchor of a promise).
func TestWriterAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr, pw := io.Pipe()
		body, bodyW := io.Pipe()
		_, cancel := context.WithCancel(context.Background())
		cn := newConn("s", cancel, pw, body, time.Now)
		cn.wg.Add(1)
		go cn.writeLoop()
		var mu sync.Mutex
		var log []string
		note := func(s string) {
			mu.Lock()
			log = append(log, s)
			mu.Unlock()
		}
		for _, d := range []string{"a", "b", "c"} {
			cn.send(Frame{Data: []byte(d)})
		}
		synctest.Wait() // the writer is blocked writing "a": nobody reads yet
		var anchor time.Time
		cn.send(Frame{Data: []byte("k"), Ahead: true, OnWrite: func(at time.Time) { anchor = at; note("anchor") }})
		time.Sleep(time.Second) // the frame waits a second before it is written
		sent := time.Now()
		sc := bufio.NewScanner(pr)
		for range 4 {
			if !sc.Scan() {
				t.Fatal(sc.Err())
			}
			note(sc.Text())
		}
		cn.end(io.EOF)
		bodyW.Close()
		cn.wg.Wait()
		// "a" was being written when "k" came: "k" overtakes b and c, and
		// is anchored before it is written.
		var reads []string
		ai, ki := -1, -1
		for i, s := range log {
			switch s {
			case "anchor":
				ai = i
			default:
				if s == "k" {
					ki = i
				}
				reads = append(reads, s)
			}
		}
		if got, want := join(reads), "a k b c"; got != want || ai < 0 || ai > ki {
			t.Fatalf("order = %s, want a k b c with the anchor before k", join(log))
		}
		if !anchor.Equal(sent) {
			t.Fatalf("anchored at %v, want the write's time %v (not the queueing's)", anchor, sent)
		}
	})
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}
