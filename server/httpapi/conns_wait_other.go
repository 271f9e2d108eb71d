//go:build !linux

package httpapi

import "errors"

// waiter is Linux's (conns_wait_linux.go); elsewhere connections are
// handed on as they are accepted.
type waiter struct{}

func newWaiter(func(*limitedConn)) (*waiter, error) { return nil, errors.ErrUnsupported }

func (w *waiter) add(*limitedConn) bool     { return false }
func (w *waiter) forget(*limitedConn)       {}
func (w *waiter) holding(*limitedConn) bool { return false }
func (w *waiter) take(*limitedConn) bool    { return false }
func (w *waiter) close()                    {}
