package bench

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// The knobs: every benchmark reads its settings here and nowhere else. A
// knob is an environment variable, RAFTING_<BENCHMARK>_<NAME>, documented
// where the benchmark reads it; a knob that is set but is not a value
// fails the benchmark (the Must forms), naming it, before anything starts.
// The quick mode is a knob too, and also the -quick flag. What is not a
// knob is a constant of the benchmark.

var quick = flag.Bool("quick", false, "the quick mode of a benchmark that has one (fewer rounds, shorter phases); also its RAFTING_<BENCHMARK>_QUICK=1")

// Quick reports the quick mode: the -quick flag (go test ... -args -quick)
// or the boolean knob name.
func Quick(tb testing.TB, name string) bool {
	tb.Helper()
	return *quick || MustBool(tb, name, false)
}

// String is the knob name as it is: def when it is unset or empty.
func String(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Int is the integer knob name: def when it is unset; an error naming it
// when it is not an integer of at least min.
func Int(name string, def, min int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		return 0, fmt.Errorf("%s=%q: want an integer of at least %d", name, v, min)
	}
	return n, nil
}

// Duration is the Go duration knob name: def when it is unset; an error
// naming it when it does not parse or is negative.
func Duration(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 2s", name, v)
	}
	return d, nil
}

// Bool is the boolean knob name (1, true, 0, false, ...): def when it is
// unset; an error naming it when it does not parse.
func Bool(name string, def bool) (bool, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want 1 or 0", name, v)
	}
	return b, nil
}

// MustInt is Int, failing tb on a bad value.
func MustInt(tb testing.TB, name string, def, min int) int {
	tb.Helper()
	n, err := Int(name, def, min)
	check(tb, err)
	return n
}

// MustDuration is Duration, failing tb on a bad value.
func MustDuration(tb testing.TB, name string, def time.Duration) time.Duration {
	tb.Helper()
	d, err := Duration(name, def)
	check(tb, err)
	return d
}

// MustBool is Bool, failing tb on a bad value.
func MustBool(tb testing.TB, name string, def bool) bool {
	tb.Helper()
	b, err := Bool(name, def)
	check(tb, err)
	return b
}

func check(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
