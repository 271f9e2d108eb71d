package layout

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/rafting/rafting"

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
	Standard   bool
}

func list(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json", mod+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// prometheus says whether `to` is Prometheus's Go client, which the
// server's metrics are built on.
func prometheus(to string) bool { return under(to, "github.com/prometheus/client_golang") }

// allowed says whether package from may import `to` (a non-standard path).
func allowed(from, to string) bool {
	local := func(p string) bool { return under(to, mod+"/"+p) }
	switch {
	case under(from, mod+"/balancer"), under(from, mod+"/api"):
		return local("balancer") && under(from, mod+"/balancer") // std only (balancertest: balancer)
	case under(from, mod+"/tenants"):
		return local("tenants") || local("api") || to == "golang.org/x/time/rate"
	case under(from, mod+"/sdk/sdktest"):
		return local("sdk") || local("api") || local("balancer") || local("server/servertest") || local("server")
	case under(from, mod+"/sdk/sdkprom"): // the SDK's metrics for Prometheus, apart so sdk links none
		return local("sdk") || local("api") || prometheus(to)
	case under(from, mod+"/sdk"):
		return local("sdk") || local("api") || local("balancer") ||
			under(to, "github.com/cenkalti/backoff/v4") || under(to, "github.com/sony/gobreaker/v2") || under(to, "golang.org/x/sync")
	case under(from, mod+"/server/fsm"):
		return local("server/fsm") || local("api") || local("tenants")
	case under(from, mod+"/server/cluster"):
		return local("server/cluster") || local("server/fsm") || local("server/session") || local("server/config") ||
			local("server/metrics") || local("api") || local("tenants") || strings.HasPrefix(to, "github.com/lni/") ||
			prometheus(to)
	case under(from, mod+"/server/servertest"):
		return local("server") || local("api") || local("tenants") || local("internal/restclient")
	case under(from, mod+"/server"):
		if strings.HasPrefix(to, "github.com/lni/") {
			return false // only server/cluster imports Dragonboat
		}
		return local("server") || local("api") || local("tenants") || under(to, "golang.org/x/time") || prometheus(to)
	case under(from, mod+"/cmd/rafting"):
		return local("server") || local("sdk") || local("api") || local("tenants") || local("balancer") || local("internal/restclient") ||
			to == "github.com/spf13/cobra" || to == "github.com/spf13/pflag" || under(to, "github.com/cenkalti/backoff/v4")
	case under(from, mod+"/examples"):
		return local("sdk") || local("balancer") || local("api")
	case under(from, mod+"/internal"):
		return true
	}
	return false
}

func TestDependencyRules(t *testing.T) {
	pkgs := list(t)
	for path, p := range pkgs {
		if !under(path, mod) {
			continue
		}
		for _, imp := range p.Imports {
			if dep, ok := pkgs[imp]; ok && dep.Standard {
				continue
			}
			if !allowed(path, imp) {
				t.Errorf("%s imports %s: forbidden by DESIGN.md's layout", path, imp)
			}
		}
	}
	// balancer and api are standard library only, transitively.
	for _, leaf := range []string{mod + "/balancer", mod + "/api"} {
		for _, d := range pkgs[leaf].Deps {
			if dep := pkgs[d]; !dep.Standard && !under(d, leaf) {
				t.Errorf("%s depends on %s: it must use the standard library only", leaf, d)
			}
		}
	}
}
