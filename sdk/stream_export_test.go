package sdk

// Listen calls fn with every snapshot the service's cache applies, in
// order (under the apply lock: fn must not block); the returned func
// stops it.
func Listen(s *Service, fn func(Snapshot)) func() {
	return s.listen(func(snap *Snapshot) { fn(*snap) })
}

// OnStream reports whether a Client follows its services on the client
// stream.
func OnStream(c *Client) bool { return c.stream != nil }

// Position is the cache's index and epoch.
func Position(s *Service) (index, epoch uint64) {
	pos := s.position()
	return indexOf(pos), epochOf(pos)
}

// StreamStats is what a Client's stream did: watches accepted, snapshots
// received, resyncs.
func StreamStats(c *Client) (watched, snapshots, resyncs int64) {
	if c.stream == nil {
		return 0, 0, 0
	}
	s := c.stream.Stats()
	return s.Watched, s.Snapshots, s.Resyncs
}

// StreamWrites is how many write frames a Client's stream had answered.
func StreamWrites(c *Client) int64 {
	if c.stream == nil {
		return 0
	}
	return c.stream.Stats().Writes
}
