package sdk

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
)

// logBuffer is how many records the SDK holds for a slow logger before it
// drops them (and says how many it dropped).
const logBuffer = 1024

// logQueue hands the application's logger the SDK's records from one
// goroutine of the Client's, in order. The SDK logs under a member's lock
// (a role change, a state an operator gave), and the logger is the
// application's: a stalled sink (a full pipe on stdout) must not hold the
// lock, or nothing could end a Term whose promise ran out — not the role
// loop, not a keepalive — while a successor is granted and acts.
type logQueue struct {
	ch      chan logItem
	stop    chan struct{}
	done    chan struct{}
	closed  atomic.Bool
	dropped atomic.Uint64
	once    sync.Once
}

type logItem struct {
	h slog.Handler
	r slog.Record
}

// asyncLogger returns l with its records handed over through a new
// queue, and the func that stops the queue's goroutine once the records
// already queued are written.
func asyncLogger(l *slog.Logger) (*slog.Logger, func()) {
	q := &logQueue{ch: make(chan logItem, logBuffer), stop: make(chan struct{}), done: make(chan struct{})}
	go q.run()
	return slog.New(asyncHandler{q: q, h: l.Handler()}), q.close
}

func (q *logQueue) run() {
	defer close(q.done)
	for {
		select {
		case it := <-q.ch:
			q.write(it)
		case <-q.stop:
			for {
				select {
				case it := <-q.ch:
					q.write(it)
				default:
					return
				}
			}
		}
	}
}

func (q *logQueue) write(it logItem) {
	if n := q.dropped.Swap(0); n > 0 {
		r := slog.NewRecord(it.r.Time, slog.LevelWarn, "sdk: log records dropped: the logger is slower than the SDK", 0)
		r.AddAttrs(slog.Uint64("dropped", n))
		_ = it.h.Handle(context.Background(), r)
	}
	_ = it.h.Handle(context.Background(), it.r)
}

// close stops the goroutine after it wrote what was queued; later records
// go to the logger directly (the Client's loops have ended by then).
func (q *logQueue) close() {
	q.once.Do(func() {
		q.closed.Store(true)
		close(q.stop)
		<-q.done
	})
}

// asyncHandler queues records for the logQueue's goroutine; it never
// blocks.
type asyncHandler struct {
	q *logQueue
	h slog.Handler
}

func (a asyncHandler) Enabled(ctx context.Context, l slog.Level) bool { return a.h.Enabled(ctx, l) }

func (a asyncHandler) Handle(ctx context.Context, r slog.Record) error {
	if a.q.closed.Load() {
		return a.h.Handle(ctx, r)
	}
	select {
	case a.q.ch <- logItem{h: a.h, r: r.Clone()}:
	default:
		a.q.dropped.Add(1)
	}
	return nil
}

func (a asyncHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return asyncHandler{q: a.q, h: a.h.WithAttrs(attrs)}
}

func (a asyncHandler) WithGroup(name string) slog.Handler {
	return asyncHandler{q: a.q, h: a.h.WithGroup(name)}
}
