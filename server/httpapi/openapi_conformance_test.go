package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/tenants"
)

// The conformance of real answers to api/openapi.yaml, checked by a
// maintained OpenAPI 3.1 validator (github.com/getkin/kin-openapi's
// openapi3filter) rather than by hand: every request a test sends through
// a conformance transport, and every answer it gets, is validated against
// the operation the document gives its method and path.

// expectation says what the validator should make of a request: a test
// that sends a bad request on purpose marks its context.
type expectation int

const (
	validRequest     expectation = iota // the request must validate
	invalidRequest                      // the document must refuse it (the server does too)
	uncheckedRequest                    // the document cannot tell (a rule it does not state): not validated
)

type expectKey struct{}

// expect marks ctx's requests.
func expect(ctx context.Context, e expectation) context.Context {
	return context.WithValue(ctx, expectKey{}, e)
}

// docRoute is one path of the document, as a pattern of real paths.
type docRoute struct {
	path  string
	re    *regexp.Regexp
	names []string
	item  *openapi3.PathItem
}

// conformance is an http.RoundTripper that validates what passes through
// it against the document.
type conformance struct {
	doc    *openapi3.T
	routes []docRoute
	next   http.RoundTripper
	opts   *openapi3filter.Options

	mu       sync.Mutex
	failures []string
	seen     map[string]map[int]bool // "METHOD /path" -> statuses answered
}

func newConformance(t *testing.T, next http.RoundTripper) *conformance {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("api/openapi.yaml does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("api/openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	closeObjects(doc)
	c := &conformance{doc: doc, next: next, seen: map[string]map[int]bool{}}
	c.opts = &openapi3filter.Options{
		IncludeResponseStatus: true, // a status the operation does not list fails (none has a default but errors)
		MultiError:            true,
		AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
			if in.SecurityScheme.Type == "http" && in.SecurityScheme.Scheme == "bearer" {
				if h := in.RequestValidationInput.Request.Header.Get("Authorization"); !strings.HasPrefix(h, "Bearer ") {
					return errors.New("no bearer token")
				}
				return nil
			}
			return fmt.Errorf("security scheme %s %s: unknown to this test", in.SecurityScheme.Type, in.SecurityScheme.Scheme)
		},
	}
	for path, item := range doc.Paths.Map() {
		var names []string
		pattern := regexp.QuoteMeta(path)
		pattern = regexp.MustCompile(`\\\{([A-Za-z0-9_]+)\\\}`).ReplaceAllStringFunc(pattern, func(m string) string {
			name := strings.Trim(m, `\{}`)
			names = append(names, name)
			if name == "key" {
				return "(.+)" // a key is the rest of the path, slashes and all
			}
			return "([^/]+)"
		})
		c.routes = append(c.routes, docRoute{path: path, re: regexp.MustCompile("^" + pattern + "$"), names: names, item: item})
	}
	return c
}

// closeObjects makes every object schema of doc that lists properties
// and says nothing of others refuse any other (additionalProperties:
// false), in this test's copy of the document only: the published one
// leaves clients free to meet fields added later, but an answer with a
// field the document does not list, or a request a test builds from the
// api types with one, is a document that fell behind the server.
func closeObjects(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(r *openapi3.SchemaRef)
	walk = func(r *openapi3.SchemaRef) {
		if r == nil || r.Value == nil || seen[r.Value] {
			return
		}
		s := r.Value
		seen[s] = true
		if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			s.AdditionalProperties.Has = ptr(false)
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		for _, l := range []openapi3.SchemaRefs{s.OneOf, s.AnyOf, s.AllOf} {
			for _, x := range l {
				walk(x)
			}
		}
	}
	content := func(c openapi3.Content) {
		for _, m := range c {
			walk(m.Schema)
		}
	}
	for _, r := range doc.Components.Schemas {
		walk(r)
	}
	for _, r := range doc.Components.Responses {
		content(r.Value.Content)
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				content(op.RequestBody.Value.Content)
			}
			for _, r := range op.Responses.Map() {
				if r.Value != nil {
					content(r.Value.Content)
				}
			}
		}
	}
}

// route finds the document's operation for a request, and its path
// parameters; nil when the document has no such path or method.
func (c *conformance) route(r *http.Request) (*routers.Route, map[string]string) {
	for _, d := range c.routes {
		m := d.re.FindStringSubmatch(r.URL.Path)
		if m == nil {
			continue
		}
		op := d.item.GetOperation(r.Method)
		if op == nil {
			return nil, nil
		}
		params := map[string]string{}
		for i, name := range d.names {
			params[name] = m[i+1]
		}
		return &routers.Route{Spec: c.doc, Path: d.path, PathItem: d.item, Method: r.Method, Operation: op}, params
	}
	return nil, nil
}

func (c *conformance) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures = append(c.failures, fmt.Sprintf(format, args...))
}

func (c *conformance) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	what := req.Method + " " + req.URL.RequestURI()
	exp, _ := req.Context().Value(expectKey{}).(expectation)
	route, params := c.route(req)
	var in *openapi3filter.RequestValidationInput
	if route != nil {
		vreq := req.Clone(context.Background())
		vreq.Body = io.NopCloser(bytes.NewReader(body))
		in = &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route, Options: c.opts}
		err := openapi3filter.ValidateRequest(context.Background(), in)
		switch {
		case exp == validRequest && err != nil:
			c.fail("%s: the request does not validate: %v", what, err)
		case exp == invalidRequest && err == nil:
			c.fail("%s: a request the server refuses validates: the document does not say what it refuses", what)
		}
	} else if exp == validRequest {
		c.fail("%s: the document has no such operation", what)
	}

	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if route != nil {
		c.mu.Lock()
		key := req.Method + " " + route.Path
		if c.seen[key] == nil {
			c.seen[key] = map[int]bool{}
		}
		c.seen[key][resp.StatusCode] = true
		c.mu.Unlock()
	}
	what += fmt.Sprintf(" = %d", resp.StatusCode)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") && resp.StatusCode == http.StatusOK {
		// A stream: its status and headers here, its lines as the test
		// reads them (validateJSON).
		if route == nil {
			c.fail("%s: a stream on a path the document does not have", what)
			return resp, nil
		}
		opts := *c.opts
		opts.ExcludeResponseBody = true
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: &opts}
		if err := openapi3filter.ValidateResponse(context.Background(), out.SetBodyBytes(nil)); err != nil {
			c.fail("%s: the stream's answer does not validate: %v", what, err)
		}
		return resp, nil
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	if err != nil {
		return resp, nil // the caller sees the short body
	}
	if route == nil {
		// No operation (an unknown route, a method the path does not
		// have): the answer must be an error of the document's shape.
		if resp.StatusCode < 400 {
			c.fail("%s: answered a request the document has no operation for", what)
		} else if err := c.validateJSON("Error", answer); err != nil {
			c.fail("%s: the error does not validate: %v", what, err)
		}
		return resp, nil
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: c.opts}
	if err := openapi3filter.ValidateResponse(context.Background(), out.SetBodyBytes(answer)); err != nil {
		c.fail("%s: the answer does not validate: %v\n\t%s", what, err, bytes.TrimSpace(answer[:min(len(answer), 600)]))
	}
	return resp, nil
}

// validateJSON validates a JSON value against one of the document's
// schemas, as openapi3filter validates an answer of a 3.1 document.
func (c *conformance) validateJSON(schema string, b []byte) error {
	ref := c.doc.Components.Schemas[schema]
	if ref == nil {
		return fmt.Errorf("the document has no schema %s", schema)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("not JSON: %v: %q", err, b)
	}
	return ref.Value.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors())
}

// report fails t with every answer or request that did not validate, and
// with every documented operation no request reached (but those in skip).
func (c *conformance) report(t *testing.T, skip map[string]string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.failures {
		t.Error(f)
	}
	var missed, covered []string
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			key := method + " " + path
			if _, ok := skip[key]; ok {
				continue
			}
			if c.seen[key] == nil {
				missed = append(missed, key)
				continue
			}
			var statuses []int
			for s := range c.seen[key] {
				statuses = append(statuses, s)
			}
			sort.Ints(statuses)
			covered = append(covered, fmt.Sprintf("%s %v", key, statuses))
		}
	}
	sort.Strings(missed)
	sort.Strings(covered)
	t.Logf("validated answers:\n\t%s", strings.Join(covered, "\n\t"))
	for _, m := range missed {
		t.Errorf("%s: no request of this test reached it; add one (or say in skip why not)", m)
	}
}

// TestAnswersMatchOpenAPI sends real requests to a real three-node cluster
// — every documented operation but those skipped below, with answers of
// every kind: created, read back, blocked, paged, refused (400, 401, 403,
// 404, 405, 409 conflict and quota, 413, 429) — and validates each request
// and answer against api/openapi.yaml with kin-openapi's openapi3filter.
func TestAnswersMatchOpenAPI(t *testing.T) {
	read := tenants.NewSecret()
	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) {
		cfg.ReadToken = read
		cfg.MaxWait = 2 * time.Second
	}})
	conf := newConformance(t, c.Client.Transport)
	c.Client.Transport = conf
	defer conf.report(t, map[string]string{
		"GET /debug/pprof/":        "served only with --pprof",
		"GET /debug/pprof/cmdline": "served only with --pprof",
		"GET /debug/pprof/profile": "served only with --pprof",
		"GET /debug/pprof/symbol":  "served only with --pprof",
		"POST /debug/pprof/symbol": "served only with --pprof",
		"GET /debug/pprof/trace":   "served only with --pprof",
		"POST /v1/cluster/nodes":   "a join: TestJoin's; here a bad body only would tell nothing of the answer",
	})
	// The validator bites: an answer with a field the document does not
	// list, one missing a required field, one of a wrong type.
	for _, wrong := range []struct{ schema, body string }{
		{"SessionList", `{"index":1,"sessions":[],"extra":1}`},
		{"SessionList", `{"index":1}`},
		{"ServiceResponse", `{"index":"1"}`},
		{"Error", `{"error":{"code":"no_such_code","message":"x"}}`},
	} {
		if err := conf.validateJSON(wrong.schema, []byte(wrong.body)); err == nil {
			t.Errorf("%s %s validates", wrong.schema, wrong.body)
		}
	}
	admin := servertest.AdminToken
	bg := context.Background()
	do := func(ctx context.Context, node int, token, method, path string, body any, want int, header ...string) *servertest.Response {
		t.Helper()
		h := http.Header{}
		if body != nil {
			h.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(header); i += 2 {
			h.Set(header[i], header[i+1])
		}
		// 503 and 504 are retried with the same request, as the document
		// tells clients to (a leadership moved, a replica catching up);
		// each answer is validated. After a 504 the first attempt may
		// have been applied: a retry then answers as a repeat does.
		unknown := false
		for attempt := 0; ; attempt++ {
			r, err := c.DoErr(ctx, node, token, method, path, body, h)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			if (r.Status == http.StatusServiceUnavailable || r.Status == http.StatusGatewayTimeout) && want != r.Status && want != 0 && attempt < 50 {
				unknown = unknown || r.Status == http.StatusGatewayTimeout
				time.Sleep(r.Err().RetryAfter)
				continue
			}
			if want != 0 && r.Status != want && !(unknown && r.Status < 500) {
				t.Fatalf("%s %s = %d %s, want %d", method, path, r.Status, r.Body, want)
			}
			return r
		}
	}
	bad := expect(bg, invalidRequest)
	odd := expect(bg, uncheckedRequest)

	// Health, the document, the cluster.
	do(bg, 1, "", "GET", "/healthz", nil, 200)
	do(bg, 2, "", "GET", "/readyz", nil, 200)
	do(bg, 1, admin, "GET", "/metrics", nil, 200)
	do(bg, 1, read, "GET", "/metrics", nil, 200)
	do(bg, 1, "", "GET", "/v1/openapi.yaml", nil, 200)
	do(bg, 1, "", "GET", "/v1/openapi.json", nil, 200)
	do(bg, 1, admin, "GET", "/v1/cluster", nil, 200)
	do(bg, 1, admin, "GET", "/v1/cluster/meta-applied?index=1&wait=1s", nil, 200)
	do(odd, 1, admin, "GET", "/v1/cluster/meta-applied?wait=forever", nil, 400)
	do(odd, 1, admin, "DELETE", "/v1/cluster/nodes/99", nil, 0)

	// Tenants.
	secret := tenants.NewSecret()
	created := do(bg, 1, admin, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme", Secret: secret,
		Quotas: api.Quotas{MaxInstances: 20}}, 201)
	do(bg, 2, admin, "POST", "/v1/tenants", api.CreateTenantRequest{Name: "acme", Secret: secret,
		Quotas: api.Quotas{MaxInstances: 20}}, 200)
	var acme api.Tenant
	created.JSON(t, &acme)
	tok := acme.Token
	servertest.Eventually(t, 30*time.Second, "acme's leader", func() bool { return c.TenantLeader("acme") != 0 })
	do(bad, 1, admin, "POST", "/v1/tenants", map[string]any{"name": "Not A Name"}, 400)
	do(bad, 1, admin, "POST", "/v1/tenants", `{"name":`, 400)
	do(bg, 1, admin, "GET", "/v1/tenants", nil, 200)
	do(bg, 1, read, "GET", "/v1/tenants/acme", nil, 200)
	do(bg, 3, tok, "GET", "/v1/tenants/acme", nil, 200)
	do(bg, 1, admin, "GET", "/v1/tenants/nobody", nil, 404)
	do(bg, 1, admin, "PATCH", "/v1/tenants/acme", map[string]any{"quotas": api.Quotas{MaxServices: 50}}, 200)
	do(bg, 1, read, "PATCH", "/v1/tenants/acme", map[string]any{"quotas": api.Quotas{MaxServices: 5}}, 403)
	do(bg, 1, tok, "GET", "/v1/servers", nil, 200)
	do(bg, 1, tok, "GET", "/v1/cluster", nil, 403)
	do(bg, 1, "rft_acme_"+tenants.NewSecret(), "GET", "/v1/tenants/acme/services", nil, 401)
	do(bad, 1, "", "GET", "/v1/tenants/acme/services", nil, 401)

	tmp := c.CreateTenant("temp", api.Quotas{})
	rotated := do(bg, 1, admin, "POST", "/v1/tenants/temp/token", map[string]any{"previous_valid_ms": 60_000}, 200)
	var temp api.Tenant
	rotated.JSON(t, &temp)
	if temp.Token == "" || temp.Token == tmp {
		t.Fatalf("a rotation answered token %q", temp.Token)
	}
	do(bg, 1, admin, "DELETE", "/v1/tenants/temp/token/previous", nil, 200)
	do(bg, 1, admin, "POST", "/v1/cluster/leaders", map[string]any{"tenant": "temp"}, 200)
	do(odd, 1, admin, "POST", "/v1/cluster/leaders", map[string]any{"tenant": "nobody"}, 0)
	do(bg, 1, admin, "DELETE", "/v1/tenants/temp", nil, 204)
	do(bg, 1, admin, "DELETE", "/v1/tenants/temp", nil, 204)

	// Sessions and services.
	farm, master := "sess-oas-farm-0000001", "sess-oas-master-00002"
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/sessions/"+farm, api.SessionRequest{TTLMs: 60_000}, 201)
	do(bg, 2, tok, "PUT", "/v1/tenants/acme/sessions/"+farm, api.SessionRequest{TTLMs: 60_000}, 200)
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/sessions/"+master, api.SessionRequest{TTLMs: 60_000, LeaseMs: 1000}, 201)
	do(odd, 1, tok, "PUT", "/v1/tenants/acme/sessions/"+farm+"x", api.SessionRequest{TTLMs: 1}, 400)
	do(bg, 2, tok, "PUT", "/v1/tenants/acme/sessions/"+farm+"/keepalive", nil, 200)
	w := func(n int) *int { return &n }
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/services/web/instances/web-1", api.RegisterRequest{Address: "10.0.0.1:80",
		Zone: "eu-1", Weight: w(50), Meta: map[string]string{"version": "1"}, Session: farm}, 201)
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/services/web/instances/web-1", api.RegisterRequest{Address: "10.0.0.1:80",
		Zone: "eu-1", Weight: w(60), Session: farm}, 200)
	do(bg, 2, tok, "PUT", "/v1/tenants/acme/services/web/instances/web-2", api.RegisterRequest{Address: "10.0.0.2:80",
		State: api.StateStarting}, 201)
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/services/db/instances/db-1", api.RegisterRequest{Address: "10.0.1.1:5432",
		Mode: api.ModeMasterStandby, Session: master, Priority: 2}, 201)
	do(bg, 2, tok, "PUT", "/v1/tenants/acme/services/db/instances/db-2", api.RegisterRequest{Address: "10.0.1.2:5432",
		Mode: api.ModeMasterStandby, Session: farm}, 201)
	do(bad, 1, tok, "PUT", "/v1/tenants/acme/services/web/instances/w-3", map[string]any{"address": "a:1", "mode": "bogus"}, 400)
	do(bad, 1, tok, "PUT", "/v1/tenants/acme/services/web/instances/w-3", map[string]any{"weight": 5}, 400)
	do(odd, 1, tok, "PUT", "/v1/tenants/acme/services/web/instances/w-3", api.RegisterRequest{Address: "a\u001b[2J"}, 400)
	do(odd, 1, tok, "PUT", "/v1/tenants/acme/services/web/instances/w-3", bytes.Repeat([]byte("x"), 2<<20), 413)
	// A session that seeks a mastership renews only with a stream attached.
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/sessions/"+master+"/keepalive", nil, 409)

	var db api.ServiceResponse
	servertest.Eventually(t, 10*time.Second, "db's master", func() bool {
		do(bg, 1, tok, "GET", "/v1/tenants/acme/services/db?consistent=true", nil, 200).JSON(t, &db)
		return db.Master != nil
	})
	do(bg, 1, tok, "GET", "/v1/tenants/acme/services", nil, 200)
	do(bg, 3, read, "GET", "/v1/tenants/acme/services", nil, 200)
	var web api.ServiceResponse
	do(bg, 2, tok, "GET", "/v1/tenants/acme/services/web", nil, 200).JSON(t, &web)
	// A blocking query that times out, and one a change ends.
	do(bg, 2, tok, "GET", fmt.Sprintf("/v1/tenants/acme/services/web?index=%d&wait=100ms&epoch=%d", web.Index+1_000_000, acme.Epoch), nil, 0)
	woke := make(chan *servertest.Response, 1)
	go func() {
		r, _ := c.DoErr(bg, 3, tok, "GET", fmt.Sprintf("/v1/tenants/acme/services/web?index=%d&wait=10s", web.ModifyIndex), nil, nil)
		woke <- r
	}()
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/services/web/instances/web-2", api.RegisterRequest{Address: "10.0.0.2:80"}, 200)
	if r := <-woke; r == nil || r.Status != 200 {
		t.Fatalf("a blocking query a change ends: %+v", r)
	}
	do(bg, 1, tok, "GET", "/v1/tenants/acme/services/nothing", nil, 200)
	do(bad, 1, tok, "GET", "/v1/tenants/acme/services/web?index=-1", nil, 400)
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/services/db/policy", api.PolicyRequest{ColdStart: &api.ColdStart{MinReady: 1, SettleMs: 100}}, 200)
	do(odd, 1, tok, "PUT", "/v1/tenants/acme/services/db/policy", map[string]any{"cold_start": map[string]any{"min_ready": -1}}, 400)
	// A resign with a stale token is refused; with the holder's session it hands over at once.
	do(bg, 1, tok, "POST", "/v1/tenants/acme/services/db/master/resign", api.ResignRequest{Instance: db.Master.Instance, FencingToken: db.Master.FencingToken + 1}, 409)
	do(bg, 1, tok, "POST", "/v1/tenants/acme/services/db/master/resign", api.ResignRequest{Instance: db.Master.Instance, FencingToken: db.Master.FencingToken}, 200,
		api.HeaderSession, map[string]string{"db-1": master, "db-2": farm}[db.Master.Instance])
	do(bad, 1, tok, "POST", "/v1/tenants/acme/services/db/master/resign", map[string]any{"instance": "db-1"}, 400)

	// The session list and a session's stream on the tenant's leader: its
	// first line is a StreamEvent.
	do(bg, 1, tok, "GET", "/v1/tenants/acme/sessions?limit=1", nil, 200)
	do(bg, 2, read, "GET", "/v1/tenants/acme/sessions", nil, 200)
	do(bad, 1, tok, "GET", "/v1/tenants/acme/sessions?limit=0", nil, 400)
	do(bad, 1, tok, "GET", "/v1/tenants/acme/sessions?start=xyz", nil, 400)
	leader := c.WaitTenantLeader("acme")
	sctx, stop := context.WithCancel(bg)
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, "http://"+c.Addr(leader)+"/v1/tenants/acme/sessions/"+master+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadBytes('\n')
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a session stream = %d, %q %v", resp.StatusCode, line, err)
	}
	if err := conf.validateJSON("StreamEvent", line); err != nil {
		t.Errorf("a session stream's line %s does not validate: %v", line, err)
	}
	do(bg, leader, tok, "PUT", "/v1/tenants/acme/sessions/"+master+"/keepalive", nil, 200)
	do(bg, leader, tok, "GET", "/v1/tenants/acme/sessions", nil, 200)
	stop()
	resp.Body.Close()
	do(bg, 1, read, "GET", "/v1/tenants/acme/sessions/"+master+"/stream", nil, 403)
	// The client stream: its status and type here (openapi3filter has no
	// NDJSON decoder, and the frames are the client stream's own tests').
	do(odd, 1, tok, "POST", "/v1/tenants/acme/stream", `{"type":"ping","req":1}`+"\n", 200, "Content-Type", "application/x-ndjson")

	// The configuration store.
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/kv/app/flag", api.KVPutRequest{Text: ptr("on")}, 201)
	put := do(bg, 2, tok, "PUT", "/v1/tenants/acme/kv/app/flag", api.KVPutRequest{Text: ptr("off")}, 200)
	var flag api.KVPutResponse
	put.JSON(t, &flag)
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/kv/app/blob", api.KVPutRequest{Value: []byte{0, 1, 2, 255}}, 201)
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/kv/app/eph", api.KVPutRequest{Text: ptr("x"), Session: farm}, 201)
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/kv/other", api.KVPutRequest{Text: ptr("y")}, 201)
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/kv/app/raw?if_index=0", []byte{0xff, 0}, 201, "Content-Type", "application/octet-stream")
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/kv/app/flag", map[string]any{"text": "z", "if_index": 1}, 409)
	do(odd, 1, tok, "PUT", "/v1/tenants/acme/kv/app/flag", map[string]any{"text": "z", "value": "eg=="}, 400)
	do(bg, 3, tok, "GET", "/v1/tenants/acme/kv/app/flag?consistent=true", nil, 200)
	do(bg, 3, tok, "GET", "/v1/tenants/acme/kv/app/blob?raw=true", nil, 200)
	do(bg, 1, tok, "GET", "/v1/tenants/acme/kv/app/missing", nil, 404)
	do(bg, 1, tok, "GET", fmt.Sprintf("/v1/tenants/acme/kv/app/flag?index=%d&wait=100ms", flag.KV.ModIndex), nil, 200)
	var page api.KVListResponse
	do(bg, 1, tok, "GET", "/v1/tenants/acme/kv/app?prefix=true&limit=2", nil, 200).JSON(t, &page)
	if page.Next == "" {
		t.Fatalf("a page of 2 of 3 keys has no next: %+v", page)
	}
	do(bg, 1, tok, "GET", "/v1/tenants/acme/kv/app?prefix=true&limit=2&start="+page.Next, nil, 200)
	do(bg, 2, tok, "GET", "/v1/tenants/acme/kv?prefix=true", nil, 200)
	do(bad, 1, tok, "GET", "/v1/tenants/acme/kv/app?prefix=true&limit=0", nil, 400)
	do(odd, 1, tok, "GET", "/v1/tenants/acme/kv/a//b", nil, 400)
	do(bg, 1, tok, "POST", "/v1/tenants/acme/kv:txn", api.KVTxnRequest{
		Compare: []api.KVCompare{{Key: "app/flag", ModIndex: ptr(flag.KV.ModIndex)}},
		Put:     []api.KVTxnPut{{Key: "app/new", Text: ptr("1")}},
		Delete:  []api.KVTxnDelete{{Key: "other"}}}, 200)
	do(bg, 1, tok, "POST", "/v1/tenants/acme/kv:txn", api.KVTxnRequest{
		Compare: []api.KVCompare{{Key: "app/flag", Exists: ptr(false)}},
		Put:     []api.KVTxnPut{{Key: "app/new", Text: ptr("2")}}}, 409)
	do(bad, 1, tok, "POST", "/v1/tenants/acme/kv:txn", `{"put":[{"text":"no key"}]}`, 400)
	do(bg, 1, tok, "DELETE", "/v1/tenants/acme/kv/app/new", nil, 200)
	do(bg, 1, tok, "DELETE", "/v1/tenants/acme/kv/app?prefix=true", nil, 200)

	// Backups and restores.
	backup := do(bg, 1, admin, "GET", "/v1/backup", nil, 200)
	do(bg, 1, read, "GET", "/v1/backup", nil, 403)
	do(bg, 1, admin, "POST", "/v1/restore", backup.Body, 200) // the same tenants, unchanged: a no-op

	// Deregistration, the end of a session, and what no route serves.
	do(bg, 1, tok, "DELETE", "/v1/tenants/acme/services/web/instances/web-2", nil, 204)
	do(bg, 1, tok, "DELETE", "/v1/tenants/acme/services/web/instances/web-2", nil, 204)
	do(bg, 1, tok, "DELETE", "/v1/tenants/acme/sessions/"+farm, nil, 204)
	do(odd, 1, tok, "GET", "/v1/nothing", nil, 404)
	do(odd, 1, tok, "PATCH", "/v1/tenants/acme/services", nil, 405)

	// Quotas and rates.
	do(bg, 1, admin, "PATCH", "/v1/tenants/acme", map[string]any{"quotas": api.Quotas{MaxInstances: 2}}, 200) // db-1 and one more
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/services/web/instances/web-9", api.RegisterRequest{Address: "10.0.0.9:80"}, 201)
	do(bg, 1, tok, "PUT", "/v1/tenants/acme/services/web/instances/web-8", api.RegisterRequest{Address: "10.0.0.8:80"}, 409)
	slow := c.CreateTenant("slow", api.Quotas{RequestsPerSecond: 1, Burst: 1})
	limited := false
	for range 3 {
		if r := do(bg, 1, slow, "GET", "/v1/tenants/slow/services", nil, 0); r.Status == http.StatusTooManyRequests {
			limited = true
			if r.Header.Get("Retry-After") == "" || r.Err() == nil || r.Err().RetryAfter == 0 {
				t.Errorf("a 429 without Retry-After or retry_after_ms: %v %s", r.Header, r.Body)
			}
			break
		}
	}
	if !limited {
		t.Error("a tenant of 1 request a second was not refused three in a row")
	}
}

func ptr[T any](v T) *T { return &v }
