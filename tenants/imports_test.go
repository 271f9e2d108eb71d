package tenants

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the package a leaf: the standard library, x/time/rate and
// the api package only (test files included).
func TestImports(t *testing.T) {
	allowed := map[string]bool{
		"golang.org/x/time/rate":             true,
		"github.com/rafting/rafting/api":     true,
		"github.com/rafting/rafting/tenants": true, // external tests
	}
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("Glob(*.go) = %v, %v", files, err)
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
				t.Errorf("%s imports %s: tenants may import only std, x/time/rate and api", name, path)
			}
		}
	}
}
