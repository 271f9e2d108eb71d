package balancer

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the package and balancertest on the standard library
// (test files included); they may import each other only.
func TestImports(t *testing.T) {
	allowed := map[string]bool{
		"github.com/rafting/rafting/balancer":              true,
		"github.com/rafting/rafting/balancer/balancertest": true,
	}
	var files []string
	for _, pattern := range []string{"*.go", "balancertest/*.go"} {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, matches...)
	}
	if len(files) == 0 {
		t.Fatal("no Go files found")
	}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			std := !strings.Contains(strings.Split(path, "/")[0], ".")
			if !std && !allowed[path] {
				t.Errorf("%s imports %s: balancer may import only the standard library", name, path)
			}
		}
	}
}
