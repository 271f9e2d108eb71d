package fence_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStandardLibraryOnly: a resource imports fence without the SDK, the
// servers or anything else outside the standard library.
func TestStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/rafting/rafting/sdk/fence" {
			t.Errorf("fence depends on %s: it must use the standard library only", p)
		}
	}
}
