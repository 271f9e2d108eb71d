package ui

import "time"

// SetWriteTimeout sets the feed's write timeout until the returned func
// puts it back.
func SetWriteTimeout(d time.Duration) (restore func()) {
	old := writeTimeout
	writeTimeout = d
	return func() { writeTimeout = old }
}

// SetFeedPace sets the feed's service answer bytes a second until the
// returned func puts FeedBytesPerSecond back.
func SetFeedPace(bytesPerSecond int64) (restore func()) {
	old := feedPace.Swap(bytesPerSecond)
	return func() { feedPace.Store(old) }
}
