package sdktest_test

import (
	"io"
	"log"
	"os"
	"testing"

	"github.com/rafting/rafting/sdk/sdktest"
)

// TestStandardLoggerUntouched: importing sdktest and starting a cluster
// leave the standard library's logger as Go sets it up (Dragonboat's
// capnslog takes it over in its init).
func TestStandardLoggerUntouched(t *testing.T) {
	check := func(when string) {
		t.Helper()
		if w, f, p := log.Writer(), log.Flags(), log.Prefix(); w != io.Writer(os.Stderr) || f != log.LstdFlags || p != "" {
			t.Fatalf("%s: log writes to %T with flags %d and prefix %q, want os.Stderr, log.LstdFlags (%d) and no prefix",
				when, w, f, p, log.LstdFlags)
		}
	}
	check("before Start")
	sdktest.Start(t)
	check("after Start")
}
