package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestOneRESTClient: the commands send every request through
// internal/restclient, whose retries are cenkalti/backoff's. No file of
// the binary makes a request of its own (http.Get, http.NewRequest,
// http.DefaultClient), builds a second http.Client, or waits by hand
// (time.Sleep, or time.After of anything but a backoff policy's
// NextBackOff): what a hand-written retry loop is made of.
func TestOneRESTClient(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	clients := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		imported := map[string]string{} // local name -> import path
		for _, im := range f.Imports {
			p := strings.Trim(im.Path.Value, `"`)
			local := p[strings.LastIndex(p, "/")+1:]
			if im.Name != nil {
				local = im.Name.Name
			}
			imported[local] = p
		}
		// pkgSel is "path.Name" for a selector on an imported package.
		pkgSel := func(e ast.Expr) string {
			sel, ok := e.(*ast.SelectorExpr)
			if !ok {
				return ""
			}
			id, ok := sel.X.(*ast.Ident)
			if !ok || imported[id.Name] == "" {
				return ""
			}
			return imported[id.Name] + "." + sel.Sel.Name
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				if pkgSel(n.Type) == "net/http.Client" {
					clients++
				}
			case *ast.SelectorExpr:
				switch s := pkgSel(n); s {
				case "net/http.Get", "net/http.Head", "net/http.Post", "net/http.PostForm", "net/http.NewRequest",
					"net/http.NewRequestWithContext", "net/http.DefaultClient", "net/http.DefaultTransport", "time.Sleep":
					t.Errorf("%s: %s: send through internal/restclient, wait with its backoff policy", fset.Position(n.Pos()), s)
				}
			case *ast.CallExpr:
				if pkgSel(n.Fun) == "time.After" && !nextBackOff(n.Args) {
					t.Errorf("%s: time.After of a wait of its own: take it from a cenkalti/backoff policy", fset.Position(n.Pos()))
				}
			}
			return true
		})
	}
	if clients != 1 {
		t.Errorf("the binary builds %d http.Clients, want the one commonFlags.client gives internal/restclient", clients)
	}
}

// nextBackOff says whether args is one call of a NextBackOff method.
func nextBackOff(args []ast.Expr) bool {
	if len(args) != 1 {
		return false
	}
	call, ok := args[0].(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "NextBackOff"
}
