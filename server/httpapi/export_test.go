package httpapi

// SetHeldPerKey lowers the holds one tenant or address may take (MaxHeldPerKey).
func SetHeldPerKey(s *Server, n int) {
	s.holds.mu.Lock()
	s.holds.perKey = n
	s.holds.mu.Unlock()
}
