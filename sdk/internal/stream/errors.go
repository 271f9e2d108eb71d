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
	// ErrTooLarge: a server frame over api.MaxFrameBytes.
	ErrTooLarge = errors.New("stream: frame too large")
)
