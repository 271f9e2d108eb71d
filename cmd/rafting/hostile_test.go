package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rafting/rafting/api"
)

// recorder is a stand-in API server that records what the CLI sends:
// the point of these tests is the requests, not the answers. Its routes
// go through an http.ServeMux as the real server's do, so a path with
// ".." is redirected to its cleaned form (307) as the real mux did.
type recorder struct {
	mu   sync.Mutex
	reqs []string // "METHOD escaped-path Authorization"
	body []string
	srv  *httptest.Server
}

func newRecorder(t *testing.T, routes map[string]string) *recorder {
	t.Helper()
	rec := &recorder{}
	mux := http.NewServeMux()
	for pattern, answer := range routes {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, answer)
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":{"code":"not_found","message":"no such path"}}`)
	})
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Method+" "+r.URL.EscapedPath()+" "+r.Header.Get("Authorization"))
		rec.body = append(rec.body, string(b))
		rec.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (rec *recorder) addr() string { return strings.TrimPrefix(rec.srv.URL, "http://") }

func (rec *recorder) take() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.reqs
	rec.reqs, rec.body = nil, nil
	return out
}

func (rec *recorder) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	t.Setenv("RAFTING_CA", "")
	var out bytes.Buffer
	err := run(append(args, "--servers", rec.addr()), &out, &out)
	return out.String(), err
}

// TestPathInjection (issue 16, finding 5): a name is one path segment,
// whatever it holds; "." and ".." are refused; and a redirect is never
// followed. `rafting tenant delete ../cluster/nodes/999` used to reach
// DELETE /v1/cluster/nodes/999 through the mux's 307, with the admin token.
func TestPathInjection(t *testing.T) {
	rec := newRecorder(t, map[string]string{
		"DELETE /v1/tenants/{t}":           ``,
		"DELETE /v1/cluster/nodes/{id}":    `{}`,
		"GET /v1/tenants/{t}/services/{s}": `{"service":"x"}`,
		"GET /v1/tenants/{t}/services":     `{"services":[]}`,
	})
	admin := []string{"--token", "rfa_admin"}
	tests := []struct {
		args []string
		want []string // the requests, in order; nil: none at all
	}{
		{[]string{"tenant", "delete", "../cluster/nodes/999"}, []string{"DELETE /v1/tenants/..%2Fcluster%2Fnodes%2F999 Bearer rfa_admin"}},
		{[]string{"tenant", "show", "acme?x=1#y"}, []string{"GET /v1/tenants/acme%3Fx=1%23y Bearer rfa_admin"}},
		{[]string{"tenant", "rotate-token", "../../v1/cluster"}, []string{"POST /v1/tenants/..%2F..%2Fv1%2Fcluster/token Bearer rfa_admin"}},
		{[]string{"service", "show", "../../../cluster/nodes/1", "--tenant", "acme"}, []string{"GET /v1/tenants/acme/services/..%2F..%2F..%2Fcluster%2Fnodes%2F1 Bearer rfa_admin"}},
		{[]string{"service", "list", "--tenant", "../cluster/nodes/2"}, []string{"GET /v1/tenants/..%2Fcluster%2Fnodes%2F2/services Bearer rfa_admin"}},
		{[]string{"tenant", "delete", ".."}, nil},
		{[]string{"tenant", "update", "."}, nil},
		{[]string{"service", "show", "..", "--tenant", "acme"}, nil},
		{[]string{"service", "list", "--tenant", ".."}, nil},
		{[]string{"cluster", "remove", ".."}, nil},
	}
	for _, tt := range tests {
		out, err := rec.cli(t, append(tt.args, admin...)...)
		got := rec.take()
		for _, r := range got {
			if strings.HasPrefix(r, "DELETE /v1/cluster/") || strings.HasPrefix(r, "GET /v1/cluster") {
				t.Errorf("rafting %s reached %s", strings.Join(tt.args, " "), r)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("rafting %s sent %q, want %q (%v)\n%s", strings.Join(tt.args, " "), got, tt.want, err, out)
		}
		if tt.want == nil && err == nil {
			t.Errorf("rafting %s succeeded, want a refusal", strings.Join(tt.args, " "))
		}
	}
}

// TestRedirectNotFollowed: an answer that redirects is an error; the
// redirect's target never sees the request or the token.
func TestRedirectNotFollowed(t *testing.T) {
	var stolen []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			mu.Lock()
			stolen = append(stolen, r.Method+" "+r.Header.Get("Authorization"))
			mu.Unlock()
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	for _, args := range [][]string{{"tenant", "delete", "acme"}, {"tenant", "show", "acme"}, {"cluster"}} {
		var out bytes.Buffer
		err := run(append(args, "--servers", srv.URL, "--token", "rfa_admin"), &out, &out)
		if err == nil || !strings.Contains(err.Error(), "redirect") {
			t.Errorf("rafting %s after a 307 = %v, want an error naming the redirect", strings.Join(args, " "), err)
		}
	}
	if len(stolen) > 0 {
		t.Fatalf("a redirect was followed: %q", stolen)
	}
}

// hostile is an instance as a tenant may register it (before the server
// refused control characters): escapes that retitle the window, clear the
// screen and forge a row.
const hostile = "\u001b]0;pwned\u0007\u001b[2J\r10.0.0.9:80\tfarm\tready"

// TestPrintsEscaped (issue 16, finding 4): every value from the server is
// printed escaped, in table and text output; JSON output escapes what
// encoding/json leaves raw and still decodes to the same values.
func TestPrintsEscaped(t *testing.T) {
	svc := api.ServiceResponse{Index: 5, Service: "web\u009b2J", Instances: []api.Instance{{
		ID: "w1\u202e", Address: hostile, Mode: api.Mode("farm\x1b[31m"), State: "ready", Weight: 100,
		Zone: "eu-1\x07", SessionTag: "\x7f", Meta: map[string]string{"k": "\x1b[2J"},
	}}, Master: &api.Master{Instance: "w1\x1b]0;x\x07"}}
	svcJSON, _ := json.Marshal(svc)
	list, _ := json.Marshal(api.ServiceList{Services: []api.ServiceSummary{{Name: "web\x1b[2J", Master: "m\x07"}}})
	tenants, _ := json.Marshal(api.TenantList{Tenants: []api.Tenant{{Name: "acme\x1b[2J"}}})
	tenant, _ := json.Marshal(api.Tenant{Name: "acme", Token: "rft_acme_\x1b[2J"})
	cluster, _ := json.Marshal(api.Cluster{Nodes: []api.Node{{ID: 1, RaftAddress: "\x1b[2J", APIAddress: hostile,
		Health: "ready\x1b[2J", Build: &api.Build{Version: "v\x1b[2J", Commit: "c\u202e"}}},
		Shards: []api.Shard{{ShardID: 2, Tenant: "t\x1b[2J"}}})
	rec := newRecorder(t, map[string]string{
		"GET /v1/tenants/acme/services/web": string(svcJSON),
		"GET /v1/tenants/acme/services":     string(list),
		"GET /v1/tenants":                   string(tenants),
		"GET /v1/tenants/acme":              string(tenant),
		"GET /v1/cluster":                   string(cluster),
	})
	tok := []string{"--token", "rft_acme_x"}
	for _, args := range [][]string{
		{"service", "show", "web", "--tenant", "acme"},
		{"service", "list", "--tenant", "acme"},
		{"tenant", "list"},
		{"tenant", "show", "acme"},
		{"cluster"},
	} {
		out, err := rec.cli(t, append(args, tok...)...)
		if err != nil {
			t.Fatalf("rafting %s: %v", strings.Join(args, " "), err)
		}
		if i := strings.IndexFunc(out, func(r rune) bool {
			return r < 0x20 && r != '\n' || r == 0x7f || r >= 0x80 && r <= 0x9f || r == '\u202e'
		}); i >= 0 {
			t.Errorf("rafting %s printed a raw control character at %d:\n%q", strings.Join(args, " "), i, out)
		}
		if !strings.Contains(out, `\x1b`) {
			t.Errorf("rafting %s shows no escaped \\x1b:\n%s", strings.Join(args, " "), out)
		}
	}
	out, _ := rec.cli(t, append([]string{"service", "show", "web", "--tenant", "acme"}, tok...)...)
	for _, want := range []string{`\x1b]0;pwned\x07\x1b[2J\x0d10.0.0.9:80\x09farm\x09ready`, `web\u009b2J`, `w1\u202e`, `eu-1\x07`, `farm\x1b[31m`} {
		if !strings.Contains(out, want) {
			t.Errorf("service show lacks %s:\n%s", want, out)
		}
	}

	out, err := rec.cli(t, append([]string{"service", "show", "web", "--tenant", "acme", "-o", "json"}, tok...)...)
	if err != nil {
		t.Fatal(err)
	}
	if i := strings.IndexFunc(out, func(r rune) bool {
		return r < 0x20 && r != '\n' || r == 0x7f || r >= 0x80 && r <= 0x9f || r == '\u202e'
	}); i >= 0 {
		t.Errorf("service show -o json printed a raw control character at %d:\n%q", i, out)
	}
	var back api.ServiceResponse
	if err := json.Unmarshal([]byte(out), &back); err != nil || back.Service != svc.Service || back.Instances[0].ID != svc.Instances[0].ID ||
		back.Instances[0].Address != hostile || back.Instances[0].SessionTag != "\x7f" {
		t.Errorf("service show -o json does not decode to the server's values (%v):\n%s", err, out)
	}
}

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.0.0.5:8080", "10.0.0.5:8080"},
		{"eu-1 zoné 東京", "eu-1 zoné 東京"},
		{"\x1b]0;pwned\x07", `\x1b]0;pwned\x07`},
		{"a\tb\nc\rd", `a\x09b\x0ac\x0dd`},
		{"\x7f\u0085\u009b", `\x7f\u0085\u009b`},
		{"abc\u202edcba\u200b", `abc\u202edcba\u200b`},
		{"\U000e0001x", `\U000e0001x`},
		{"bad\xffutf8", `bad\xffutf8`},
		{`back\slash`, `back\\slash`},
		{`\x1b`, `\\x1b`}, // a literal backslash-x cannot pass for an escape
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := printable("line1\nline2\x1b", '\n'); got != "line1\nline2\\x1b" {
		t.Errorf("printable keeping newlines = %q", got)
	}
}

// TestTokenAndSecretFiles: --token-file and --secret-file read a secret
// from a file that only its owner may read, as ssh reads a key; a file
// open to group or others is refused with what to do.
func TestTokenAndSecretFiles(t *testing.T) {
	rec := newRecorder(t, map[string]string{
		"GET /v1/tenants":            `{"tenants":[]}`,
		"POST /v1/tenants":           `{"name":"acme","token":"rft_acme_s3cret"}`,
		"POST /v1/tenants/{t}/token": `{"name":"acme","token":"rft_acme_s3cret"}`,
	})
	t.Setenv("RAFTING_ADMIN_TOKEN", "")
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, mode); err != nil {
			t.Fatal(err)
		}
		return f
	}
	good := write("admin.token", "rfa_from_file\n", 0o600)
	if _, err := rec.cli(t, "tenant", "list", "--token-file", good); err != nil {
		t.Fatalf("--token-file 0600: %v", err)
	}
	if got := rec.take(); len(got) != 1 || got[0] != "GET /v1/tenants Bearer rfa_from_file" {
		t.Fatalf("--token-file sent %q", got)
	}
	if _, err := rec.cli(t, "tenant", "list", "--token-file", write("ro.token", "rfa_ro", 0o400)); err != nil {
		t.Fatalf("--token-file 0400: %v", err)
	}
	rec.take()
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620} {
		f := write("open.token", "rfa_open", mode)
		_, err := rec.cli(t, "tenant", "list", "--token-file", f)
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("--token-file mode %04o = %v, want a refusal saying chmod 600", mode, err)
		}
	}
	if _, err := rec.cli(t, "tenant", "list", "--token-file", write("empty.token", " \n", 0o600)); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty --token-file = %v, want it refused", err)
	}
	if _, err := rec.cli(t, "tenant", "list", "--token-file", good, "--token", "rfa_x"); err == nil {
		t.Error("--token with --token-file succeeded, want a usage error")
	}
	if got := rec.take(); len(got) != 0 {
		t.Fatalf("refused token files still sent %q", got)
	}
	// The environment's token is a default that --token-file overrides.
	t.Setenv("RAFTING_ADMIN_TOKEN", "rfa_env")
	rec.cli(t, "tenant", "list", "--token-file", good)
	rec.cli(t, "tenant", "list")
	if got := rec.take(); !slices.Equal(got, []string{"GET /v1/tenants Bearer rfa_from_file", "GET /v1/tenants Bearer rfa_env"}) {
		t.Fatalf("token precedence: sent %q", got)
	}

	secret := write("acme.secret", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0\n", 0o600)
	for _, args := range [][]string{{"tenant", "create", "acme"}, {"tenant", "rotate-token", "acme"}} {
		if _, err := rec.cli(t, append(args, "--secret-file", secret)...); err != nil {
			t.Fatalf("rafting %s --secret-file: %v", strings.Join(args, " "), err)
		}
		rec.mu.Lock()
		body := rec.body
		rec.mu.Unlock()
		rec.take()
		if len(body) != 1 || !strings.Contains(body[0], `"secret":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"`) {
			t.Fatalf("rafting %s --secret-file sent %q", strings.Join(args, " "), body)
		}
		if _, err := rec.cli(t, append(args, "--secret-file", write("open.secret", "s", 0o644))...); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("rafting %s with a --secret-file open to others = %v, want a refusal", strings.Join(args, " "), err)
		}
		if _, err := rec.cli(t, append(args, "--secret-file", secret, "--secret", "x")...); err == nil {
			t.Errorf("rafting %s with --secret and --secret-file succeeded", strings.Join(args, " "))
		}
		if got := rec.take(); len(got) != 0 {
			t.Fatalf("refused secret files still sent %q", got)
		}
	}
}

// TestPlaintextRefusedOffLoopback: the CLI never sends a token over plain
// HTTP to an address that is not loopback, unless told to (--insecure).
func TestPlaintextRefusedOffLoopback(t *testing.T) {
	t.Setenv("RAFTING_CA", "")
	t.Setenv("RAFTING_INSECURE", "")
	var out bytes.Buffer
	err := run([]string{"tenant", "list", "--token", "rfa_admin", "--servers", "http://192.0.2.1:7070"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "in the clear") {
		t.Fatalf("tenant list over plain HTTP to 192.0.2.1 = %v, want refused", err)
	}
	err = run([]string{"tenant", "list", "--token", "rfa_admin", "--servers", "192.0.2.1:7070"}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "in the clear") {
		t.Fatalf("tenant list to a bare remote address without --ca = %v, want refused", err)
	}
}
