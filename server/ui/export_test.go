package ui

import "time"

// SetWriteTimeout sets the feed's write timeout until the returned func
// puts it back.
func SetWriteTimeout(d time.Duration) (restore func()) {
	old := writeTimeout
	writeTimeout = d
	return func() { writeTimeout = old }
}
