//go:build race

package fsm

// raceEnabled: the race detector slows the randomized tests about 15×; they
// run fewer seeds under it (make test) and all of them without it.
const raceEnabled = true
