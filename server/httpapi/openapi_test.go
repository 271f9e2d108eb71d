package httpapi_test

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v2"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// routeTable is every "METHOD /path" the server registers: the first
// argument of each h(...) call in server.go's routes.
func routeTable(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "server.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if id, ok := call.Fun.(*ast.Ident); !ok || id.Name != "h" || len(call.Args) == 0 {
			return true
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Errorf("an h(...) call in server.go does not name its route with a string literal: %T", call.Args[0])
			return true
		}
		route, _ := strconv.Unquote(lit.Value)
		routes = append(routes, route)
		return true
	})
	if len(routes) < 30 {
		t.Fatalf("found %d routes in server.go, want the whole table: %v", len(routes), routes)
	}
	return routes
}

// openapiDoc is the part of an OpenAPI document this test reads.
type openapiDoc struct {
	OpenAPI string                          `yaml:"openapi"`
	Info    struct{ Title, Version string } `yaml:"info"`
	Paths   map[string]map[string]any       `yaml:"paths"`
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// wildcard is a ServeMux wildcard: {name} or {name...}.
var wildcard = regexp.MustCompile(`\{([A-Za-z0-9_]+)(\.\.\.)?\}`)

// TestOpenAPIRoutes: api/openapi.yaml, as a server answers it on GET
// /v1/openapi.yaml without a token, is OpenAPI 3.1 and lists exactly the
// routes of server.go's table: each route with its method (a {name...}
// wildcard as {name}), and no path or method the server does not have.
func TestOpenAPIRoutes(t *testing.T) {
	var doc openapiDoc
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("api/openapi.yaml does not parse: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") || doc.Info.Title == "" || doc.Info.Version == "" {
		t.Errorf("openapi %q, info %+v: want 3.1.x with a title and a version", doc.OpenAPI, doc.Info)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for key, op := range item {
			if !slices.Contains(httpMethods, key) {
				continue // parameters, summary
			}
			documented[strings.ToUpper(key)+" "+path] = true
			if op, ok := op.(map[any]any); !ok || op["responses"] == nil {
				t.Errorf("%s %s has no responses", strings.ToUpper(key), path)
			}
		}
	}
	served := map[string]bool{}
	for _, route := range routeTable(t) {
		route = wildcard.ReplaceAllString(route, "{$1}")
		served[route] = true
		if !documented[route] {
			t.Errorf("the server has %s; api/openapi.yaml does not list it", route)
		}
	}
	for route := range documented {
		if !served[route] {
			t.Errorf("api/openapi.yaml lists %s; the server has no such route", route)
		}
	}

	// Every $ref resolves.
	var whole map[string]any
	if err := yaml.Unmarshal(api.OpenAPI, &whole); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[any]any:
			if ref, ok := v["$ref"].(string); ok && !resolves(whole, ref) {
				t.Errorf("api/openapi.yaml: $ref %q resolves to nothing", ref)
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(map[any]any{"paths": whole["paths"], "components": whole["components"]})

	c := servertest.Start(t, servertest.Options{Nodes: 1})
	r := c.Do(1, "", http.MethodGet, "/v1/openapi.yaml", nil)
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/yaml" || !bytes.Equal(r.Body, api.OpenAPI) {
		t.Errorf("GET /v1/openapi.yaml without a token = %d %q, %d bytes; want 200 application/yaml, the document",
			r.Status, r.Header.Get("Content-Type"), len(r.Body))
	}
}

// resolves says whether a local $ref ("#/components/schemas/X") names
// something in doc.
func resolves(doc map[string]any, ref string) bool {
	parts, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	var v any = doc
	for _, p := range strings.Split(parts, "/") {
		switch m := v.(type) {
		case map[string]any:
			v = m[p]
		case map[any]any:
			v = m[p]
		default:
			return false
		}
		if v == nil {
			return false
		}
	}
	return true
}
