package stream

import "errors"

// Errors.
var (
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("stream: closed")
	// ErrIdle: nothing came from the server for IdleTimeout.
	ErrIdle = errors.New("stream: server silent")
	// ErrMoved: the server ended the stream with a moved frame.
	ErrMoved = errors.New("stream: moved")
	// ErrNoStream: no stream is open to send on (it is being opened).
	ErrNoStream = errors.New("stream: no stream open")
	// ErrTooLarge: a server frame over api.MaxFrameBytes.
	ErrTooLarge = errors.New("stream: frame too large")
)
