package httpapi

// SetHeldPerKey lowers the holds one tenant or address may take (MaxHeldPerKey).
func SetHeldPerKey(s *Server, n int) {
	s.holds.mu.Lock()
	s.holds.perKey = n
	s.holds.mu.Unlock()
}

// SetRestoreHook makes a restore on s call fn before it writes each tenant.
func SetRestoreHook(s *Server, fn func(tenant string)) { s.restoreHook.Store(&fn) }
