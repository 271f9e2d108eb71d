package sdk_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the dependency rules of DESIGN.md: package sdk (and
// its internal packages) imports only api, balancer, the standard library,
// cenkalti/backoff, sony/gobreaker and golang.org/x/sync, and never depends
// on the server, tenants or Dragonboat, even indirectly (sdk/sdktest and
// the Prometheus adapter sdk/sdkprom excepted); examples/farm
// imports only sdk, balancer and the standard library.
func TestImports(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go tool")
	}
	const mod = "github.com/rafting/rafting/"
	sdkAllowed := []string{mod + "api", mod + "balancer", mod + "sdk", "github.com/cenkalti/backoff/v4",
		"github.com/sony/gobreaker/v2", "golang.org/x/sync/"}
	rules := []struct {
		pkgs    string
		allowed []string
	}{
		{mod + "sdk/...", sdkAllowed},
		{mod + "examples/farm", []string{mod + "sdk", mod + "balancer"}},
	}
	for _, r := range rules {
		out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}: {{join .Imports " "}}`, r.pkgs).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", r.pkgs, err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			pkg, imports, _ := strings.Cut(line, ": ")
			if strings.HasSuffix(pkg, "/sdktest") {
				continue // starts a real cluster for tests: it may import server/servertest
			}
			if strings.HasSuffix(pkg, "/sdkprom") {
				continue // the Prometheus adapter, apart so that sdk links none (internal/layout allows it)
			}
			for _, imp := range strings.Fields(imports) {
				if !allowedImport(imp, r.allowed) {
					t.Errorf("%s imports %s", pkg, imp)
				}
			}
		}
	}
	out, err := exec.Command("go", "list", "-deps", mod+"sdk").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{mod + "server", mod + "tenants", "github.com/lni/"} {
			if strings.HasPrefix(dep, bad) {
				t.Errorf("sdk depends on %s", dep)
			}
		}
	}
}

func allowedImport(imp string, allowed []string) bool {
	if !strings.Contains(strings.Split(imp, "/")[0], ".") {
		return true // the standard library
	}
	for _, a := range allowed {
		if imp == a || strings.HasPrefix(imp, strings.TrimSuffix(a, "/")+"/") {
			return true
		}
	}
	return false
}
