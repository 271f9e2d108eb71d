package httpapi_test

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
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

// TestOpenAPIJSON: api/openapi.json is api/openapi.yaml as JSON, and a
// server answers it on GET /v1/openapi.json. RAFTING_UPDATE_OPENAPI=1
// writes it from the YAML.
func TestOpenAPIJSON(t *testing.T) {
	var doc any
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("api/openapi.yaml does not parse: %v", err)
	}
	want, err := json.MarshalIndent(jsonable(t, doc), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if os.Getenv("RAFTING_UPDATE_OPENAPI") == "1" {
		if err := os.WriteFile(filepath.Join("..", "..", "api", "openapi.json"), want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(api.OpenAPIJSON, want) {
		t.Fatal("api/openapi.json is not api/openapi.yaml as JSON: RAFTING_UPDATE_OPENAPI=1 go test -run TestOpenAPIJSON ./server/httpapi/ writes it")
	}
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	r := c.Do(1, "", http.MethodGet, "/v1/openapi.json", nil)
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/json" || !bytes.Equal(r.Body, api.OpenAPIJSON) {
		t.Fatalf("GET /v1/openapi.json = %d %s, %d bytes", r.Status, r.Header.Get("Content-Type"), len(r.Body))
	}
}

// jsonable turns what the YAML decoder gives (maps keyed by any) into what
// encoding/json takes.
func jsonable(t *testing.T, v any) any {
	switch v := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			ks, ok := k.(string)
			if !ok {
				t.Fatalf("a key that is not a string: %v", k)
			}
			m[ks] = jsonable(t, x)
		}
		return m
	case []any:
		for i := range v {
			v[i] = jsonable(t, v[i])
		}
		return v
	}
	return v
}

// TestAPIDocListsEveryOperation: docs/API.md, the document's human
// version, lists every operation of api/openapi.yaml as `METHOD /path`,
// and no operation the document does not have.
func TestAPIDocListsEveryOperation(t *testing.T) {
	md, err := os.ReadFile(filepath.Join("..", "..", "docs", "API.md"))
	if err != nil {
		t.Fatal(err)
	}
	var doc openapiDoc
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for key := range item {
			if slices.Contains(httpMethods, key) {
				op := strings.ToUpper(key) + " " + path
				documented[op] = true
				if !strings.Contains(string(md), "`"+op+"`") {
					t.Errorf("docs/API.md does not list `%s`", op)
				}
			}
		}
	}
	for _, m := range regexp.MustCompile("`((?:GET|PUT|POST|DELETE|PATCH) /[^`]*)`").FindAllStringSubmatch(string(md), -1) {
		if !documented[m[1]] {
			t.Errorf("docs/API.md lists `%s`; api/openapi.yaml does not", m[1])
		}
	}
}
