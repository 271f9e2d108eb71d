//go:build !chaos

package session

import "time"

// wallSkew is how far the wall clock the leader's stamps read is off: 0,
// except in the chaos campaign's build (wallskew_chaos.go).
func wallSkew() time.Duration { return 0 }
