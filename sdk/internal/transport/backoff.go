package transport

import (
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Jitter is a backoff.BackOff with full jitter: the n-th wait is uniform in
// [0, min(Cap, Base·2^n)] (the AWS architecture blog's "full jitter"), so
// many clients retrying after one outage spread out instead of moving in
// step. A floor set by SetFloor (a server's Retry-After) raises the next
// wait only. MaxElapsed, when positive, stops the retries once that much
// time has passed since Reset.
//
// A Jitter is used by one retry loop at a time.
type Jitter struct {
	Base, Cap  time.Duration
	MaxElapsed time.Duration

	attempt int
	floor   time.Duration
	start   time.Time
}

var _ backoff.BackOff = (*Jitter)(nil)

// NewJitter returns a Jitter; a zero base is 10 ms and a zero cap 1 s.
func NewJitter(base, cap time.Duration) *Jitter {
	j := &Jitter{Base: base, Cap: cap}
	j.Reset()
	return j
}

// Reset starts over: the next wait is drawn from [0, Base].
func (j *Jitter) Reset() {
	j.attempt, j.floor, j.start = 0, 0, time.Now()
}

// SetFloor makes the next wait at least d (a Retry-After).
func (j *Jitter) SetFloor(d time.Duration) {
	j.floor = max(j.floor, d)
}

// NextBackOff returns the next wait, or backoff.Stop past MaxElapsed.
func (j *Jitter) NextBackOff() time.Duration {
	base, limit := j.Base, j.Cap
	if base <= 0 {
		base = 10 * time.Millisecond
	}
	if limit <= 0 {
		limit = time.Second
	}
	d := limit
	if j.attempt < 30 && base<<j.attempt < limit {
		d = base << j.attempt
	}
	j.attempt++
	wait := rand.N(d + 1)
	if wait < j.floor {
		wait = j.floor
	}
	j.floor = 0
	if j.MaxElapsed > 0 && time.Since(j.start)+wait > j.MaxElapsed {
		return backoff.Stop
	}
	return wait
}
