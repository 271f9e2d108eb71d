package httpapi

import (
	"fmt"
	"time"
)

// FillLane charges the keepalive lane of n made-up sessions of tenant on
// s, once each, as n sessions opened and kept alive once would.
func FillLane(s *Server, tenant string, n int) {
	now := time.Now()
	for i := range n {
		s.chargeLane(tenant, fmt.Sprintf("f%015d", i), now)
	}
}

// LaneBuckets is how many lane buckets of its own tenant holds on s.
func LaneBuckets(s *Server, tenant string) int { return s.lane.LenIn(tenant) }
