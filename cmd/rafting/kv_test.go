package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/internal/proctest"
	"github.com/rafting/rafting/server/servertest"
)

// kvCluster is a real in-process cluster with one tenant, and the kv
// commands run against it as the binary runs them (runKV, with the
// connection in flags: the tenant comes from the token).
type kvCluster struct {
	c       *servertest.Cluster
	token   string
	servers string
}

func startKV(t *testing.T) *kvCluster {
	t.Helper()
	t.Setenv("RAFTING_TENANT", "")
	t.Setenv("RAFTING_CA", "")
	c := servertest.Start(t, servertest.Options{})
	return &kvCluster{c: c, token: c.CreateTenant("acme", api.Quotas{}), servers: strings.Join(c.Addrs(), ",")}
}

// run runs `rafting kv args...` with stdin, writing to stdout (a
// bytes.Buffer when nil); it returns what it wrote and the error.
func (k *kvCluster) run(ctx context.Context, stdin string, stdout, stderr interface{ Write([]byte) (int, error) }, args ...string) error {
	args = append([]string{args[0], "--servers", k.servers, "--token", k.token}, args[1:]...)
	return runKV(ctx, args, strings.NewReader(stdin), stdout, stderr)
}

func (k *kvCluster) cli(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := k.run(context.Background(), stdin, &out, &errb, args...)
	if errb.Len() > 0 {
		t.Logf("rafting kv %s: stderr: %s", strings.Join(args, " "), errb.String())
	}
	return out.String(), err
}

func (k *kvCluster) must(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := k.cli(t, stdin, args...)
	if err != nil {
		t.Fatalf("rafting kv %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// terminal is a bytes.Buffer that says it is a character device, as a
// terminal's file does.
type terminal struct{ bytes.Buffer }

func (*terminal) Stat() (os.FileInfo, error) { return charDevice{}, nil }

type charDevice struct{ os.FileInfo }

func (charDevice) Mode() fs.FileMode { return fs.ModeDevice | fs.ModeCharDevice | 0o620 }

// syncBuffer is written by a running command while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls until out holds want, failing after timeout; it returns
// how long that took.
func waitFor(t *testing.T, out *syncBuffer, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for !strings.Contains(out.String(), want) {
		if time.Since(start) > timeout {
			t.Fatalf("no %q within %v; got:\n%s", want, timeout, out.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// TestKVCLI drives `rafting kv` against a real cluster.
func TestKVCLI(t *testing.T) {
	k := startKV(t)

	t.Run("round trip", func(t *testing.T) {
		if out := k.must(t, "", "put", "app/greeting", "hello world"); !strings.Contains(out, "put app/greeting: created, mod_index ") {
			t.Fatalf("put = %q", out)
		}
		if out := k.must(t, "", "get", "app/greeting"); out != "hello world" {
			t.Fatalf("get = %q, want the bytes as written", out)
		}
		// Not UTF-8, NUL, an escape, trailing newline: from stdin, and
		// back byte for byte where the output is not a terminal.
		binary := "\x00\xff\xfe\x1b[2J\nend\n"
		k.must(t, binary, "put", "app/blob", "-")
		if out := k.must(t, "", "get", "app/blob"); out != binary {
			t.Fatalf("get of a binary value = %q, want %q", out, binary)
		}
		var r api.KVResponse
		if err := json.Unmarshal([]byte(k.must(t, "", "get", "app/blob", "-o", "json")), &r); err != nil || string(r.KV.Value) != binary || r.KV.Text != nil || r.KV.Version != 1 {
			t.Fatalf("get -o json = %+v (%v), want the value in base64 and no text", r, err)
		}
		// --file, and an empty value.
		f := filepath.Join(t.TempDir(), "v")
		os.WriteFile(f, []byte(binary+"2"), 0o600)
		k.must(t, "", "put", "app/blob", "--file", f)
		if out := k.must(t, "", "get", "app/blob"); out != binary+"2" {
			t.Fatalf("get after put --file = %q", out)
		}
		k.must(t, "", "put", "app/empty", "")
		if out, err := k.cli(t, "", "get", "app/empty"); err != nil || out != "" {
			t.Fatalf("get of an empty value = %q, %v", out, err)
		}
		// A missing key: status 4. A bad key: a usage error naming KEY,
		// nothing sent.
		if _, err := k.cli(t, "", "get", "app/nope"); exitCode(err) != exitNotFound || !strings.Contains(err.Error(), "app/nope: no such key") {
			t.Fatalf("get of a missing key = %v (status %d), want status %d", err, exitCode(err), exitNotFound)
		}
		if _, err := k.cli(t, "", "put", "app/../x", "v"); exitCode(err) != 2 || !strings.Contains(err.Error(), "KEY: segment \"..\"") {
			t.Fatalf("put of a bad key = %v", err)
		}
		if _, err := k.cli(t, "", "put", "app/x"); exitCode(err) != 2 || !strings.Contains(err.Error(), "a VALUE is required") {
			t.Fatalf("put without a value = %v", err)
		}
		// A tenant that is not the token's is refused before anything is
		// sent, saying what to do.
		if _, err := k.cli(t, "", "get", "app/greeting", "--tenant", "other"); exitCode(err) != 2 || !strings.Contains(err.Error(), "the token is tenant \"acme\"'s") {
			t.Fatalf("get with another tenant = %v", err)
		}
		// Flags may follow the arguments; "--" ends them.
		k.must(t, "", "put", "app/neg", "--", "-5")
		if out := k.must(t, "", "get", "app/neg"); out != "-5" {
			t.Fatalf("get of -5 = %q", out)
		}
	})

	t.Run("prefix pages", func(t *testing.T) {
		for i := range 7 {
			k.must(t, "", "put", fmt.Sprintf("list/k%d", i), fmt.Sprintf("v%d", i))
		}
		k.must(t, "", "put", "list", "root")
		k.must(t, "", "put", "listx", "not in the subtree")
		out := k.must(t, "", "get", "--prefix", "list", "--page-size", "2")
		want := "list root\n"
		for i := range 7 {
			want += fmt.Sprintf("list/k%d v%d\n", i, i)
		}
		if out != want {
			t.Fatalf("get --prefix list --page-size 2 =\n%s\nwant\n%s", out, want)
		}
		var l api.KVListResponse
		if err := json.Unmarshal([]byte(k.must(t, "", "get", "--prefix", "list", "--page-size", "3", "-o", "json")), &l); err != nil || len(l.KVs) != 8 || l.Next != "" || l.Index == 0 {
			t.Fatalf("get --prefix -o json = %d keys, next %q, index %d (%v); want 8, none, an index", len(l.KVs), l.Next, l.Index, err)
		}
		if out := k.must(t, "", "get", "--prefix", "list", "--keys-only", "--page-size", "1"); strings.Count(out, "\n") != 8 || strings.Contains(out, "v1") {
			t.Fatalf("get --prefix --keys-only =\n%s", out)
		}
		if _, err := k.cli(t, "", "get", "--prefix", "list/"); exitCode(err) != 2 || !strings.Contains(err.Error(), "KEY: empty segment") {
			t.Fatalf("get --prefix list/ = %v, want a usage error naming KEY", err)
		}
	})

	t.Run("CAS", func(t *testing.T) {
		var put api.KVPutResponse
		json.Unmarshal([]byte(k.must(t, "", "put", "cas/x", "v1", "-o", "json")), &put)
		m := put.KV.ModIndex
		k.must(t, "", "put", "cas/x", "v2", "--if-index", fmt.Sprint(m))
		_, err := k.cli(t, "", "put", "cas/x", "v3", "--if-index", fmt.Sprint(m))
		if exitCode(err) != exitCompareFailed || !strings.Contains(err.Error(), "compare failed, nothing changed") ||
			!strings.Contains(err.Error(), fmt.Sprintf("not %d", m)) || !strings.Contains(err.Error(), "then --if-index ") {
			t.Fatalf("a stale --if-index = %v (status %d), want status %d naming the key's mod_index", err, exitCode(err), exitCompareFailed)
		}
		if out := k.must(t, "", "get", "cas/x"); out != "v2" {
			t.Fatalf("after a failed CAS get = %q, want v2", out)
		}
		if _, err := k.cli(t, "", "put", "cas/x", "v4", "--if-index", "0"); exitCode(err) != exitCompareFailed || !strings.Contains(err.Error(), "exists, at mod_index") {
			t.Fatalf("--if-index 0 on an existing key = %v", err)
		}
		if _, err := k.cli(t, "", "delete", "cas/x", "--if-index", fmt.Sprint(m)); exitCode(err) != exitCompareFailed {
			t.Fatalf("delete with a stale --if-index = %v", err)
		}
		k.must(t, "", "put", "cas/new", "v", "--if-index", "0")
		if out := k.must(t, "", "delete", "cas", "--prefix"); !strings.Contains(out, "2 deleted") {
			t.Fatalf("delete --prefix cas = %q", out)
		}
		if _, err := k.cli(t, "", "delete", "", "--prefix"); exitCode(err) != 2 {
			t.Fatalf("delete --prefix of every key = %v, want refused", err)
		}
	})

	t.Run("txn", func(t *testing.T) {
		var put api.KVPutResponse
		json.Unmarshal([]byte(k.must(t, "", "put", "txn/guard", "open", "-o", "json")), &put)
		m := put.KV.ModIndex
		bad := fmt.Sprintf(`{"compare":[{"key":"txn/guard","text":"open"},{"key":"txn/guard","mod_index":%d}],
			"put":[{"key":"txn/a","text":"1"},{"key":"txn/b","value":"AP8="}],"delete":[{"key":"txn/guard"}]}`, m+1000)
		var out, errb bytes.Buffer
		err := k.run(context.Background(), bad, &out, &errb, "txn", "-o", "json")
		if exitCode(err) != exitCompareFailed || !strings.Contains(err.Error(), "compare[1] failed") || !strings.Contains(err.Error(), "nothing applied") {
			t.Fatalf("txn with a failing compare = %v (status %d)", err, exitCode(err))
		}
		var res txnResult
		if json.Unmarshal(out.Bytes(), &res) != nil || res.Succeeded || res.Failed == nil || *res.Failed.Compare != 1 || res.Failed.ModIndex != m {
			t.Fatalf("txn -o json on failure printed %s", out.String())
		}
		for _, key := range []string{"txn/a", "txn/b"} {
			if _, err := k.cli(t, "", "get", key); exitCode(err) != exitNotFound {
				t.Fatalf("after a failed txn get %s = %v, want no such key", key, err)
			}
		}
		if got := k.must(t, "", "get", "txn/guard"); got != "open" {
			t.Fatalf("after a failed txn the guard = %q", got)
		}
		good := strings.Replace(bad, fmt.Sprint(m+1000), fmt.Sprint(m), 1)
		f := filepath.Join(t.TempDir(), "txn.json")
		os.WriteFile(f, []byte(good), 0o600)
		if out := k.must(t, "", "txn", "--file", f); !strings.Contains(out, "applied at index") {
			t.Fatalf("txn = %q", out)
		}
		if a, b := k.must(t, "", "get", "txn/a"), k.must(t, "", "get", "txn/b"); a != "1" || b != "\x00\xff" {
			t.Fatalf("after the txn a = %q, b = %q", a, b)
		}
		if _, err := k.cli(t, "", "get", "txn/guard"); exitCode(err) != exitNotFound {
			t.Fatalf("the txn's delete: %v", err)
		}
		// A field that is not the API's is named, nothing sent.
		if _, err := k.cli(t, `{"puts":[]}`, "txn"); exitCode(err) != 2 || !strings.Contains(err.Error(), `unknown field "puts"`) {
			t.Fatalf("txn with an unknown field = %v", err)
		}
	})

	t.Run("watch", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			key  string
		}{{[]string{"watch", "w/flag"}, "w/flag"}, {[]string{"watch", "--prefix", "w2", "--page-size", "1"}, "w2/flag"}} {
			k.must(t, "", "put", "w2/other", "x") // a subtree of more than one page
			ctx, cancel := context.WithCancel(context.Background())
			var out, errb syncBuffer
			done := make(chan error, 1)
			go func() { done <- k.run(ctx, "", &out, &errb, tt.args...) }()
			waitFor(t, &errb, "watching", 10*time.Second)

			// Another client, through another node.
			start := time.Now()
			if r := k.c.Do(2, k.token, http.MethodPut, "/v1/tenants/acme/kv/"+tt.key, []byte("on\x1b[2J")); r.Status >= 300 {
				t.Fatalf("put through node 2: %d %s", r.Status, r.Body)
			}
			waitFor(t, &out, "PUT "+tt.key+" ", 5*time.Second)
			if d := time.Since(start); d > time.Second {
				t.Errorf("%s: the change printed after %v, want within 1s", strings.Join(tt.args, " "), d)
			}
			if !strings.Contains(out.String(), `on\x1b[2J`) || strings.Contains(out.String(), "\x1b") {
				t.Errorf("watch printed the value unescaped: %q", out.String())
			}
			k.c.Do(3, k.token, http.MethodDelete, "/v1/tenants/acme/kv/"+tt.key, nil)
			waitFor(t, &out, "DELETE "+tt.key+" ", 5*time.Second)
			if strings.Contains(out.String(), "w2/other") {
				t.Errorf("watch printed a key that did not change:\n%s", out.String())
			}

			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("watch ended with %v, want a clean end", err)
				}
			case <-time.After(time.Second):
				t.Fatal("watch still runs 1s after its context ended")
			}
		}
		// -o json: one event a line.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out, errb syncBuffer
		done := make(chan error, 1)
		go func() { done <- k.run(ctx, "", &out, &errb, "watch", "w3", "-o", "json") }()
		waitFor(t, &errb, "watching", 10*time.Second)
		k.c.Do(1, k.token, http.MethodPut, "/v1/tenants/acme/kv/w3", []byte("\xff"))
		waitFor(t, &out, "\n", 5*time.Second)
		var ev kvEvent
		if err := json.Unmarshal([]byte(out.String()), &ev); err != nil || ev.Type != "put" || ev.Key != "w3" || ev.KV == nil || string(ev.KV.Value) != "\xff" || ev.Index != ev.KV.ModIndex {
			t.Fatalf("watch -o json printed %q (%v)", out.String(), err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("escaped on a terminal", func(t *testing.T) {
		hostile := "\x1b]0;pwned\x07\x1b[2J\r\u202eok\\n\xff\nline 2\tend"
		k.must(t, hostile, "put", "esc/v", "-")
		var term terminal
		if err := k.run(context.Background(), "", &term, &term, "get", "esc/v"); err != nil {
			t.Fatal(err)
		}
		got := term.String()
		if want := `\x1b]0;pwned\x07\x1b[2J\x0d\u202eok\\n\xff` + "\nline 2\tend\n"; got != want {
			t.Fatalf("get on a terminal = %q, want %q", got, want)
		}
		// Listings are lines: escaped wherever they go, newlines too.
		out := k.must(t, "", "get", "--prefix", "esc")
		if strings.ContainsAny(out[:len(out)-1], "\x1b\x07\r\n\u202e") || !strings.Contains(out, `\x1b]0;pwned`) || !strings.Contains(out, `\x0aline 2\x09end`) {
			t.Fatalf("get --prefix = %q, want one escaped line", out)
		}
		// JSON: escaped as JSON, and the same bytes decoded.
		out = k.must(t, "", "get", "esc/v", "-o", "json")
		var r api.KVResponse
		if strings.ContainsAny(out, "\x1b\x07\r\u202e") || json.Unmarshal([]byte(out), &r) != nil || string(r.KV.Value) != hostile {
			t.Fatalf("get -o json = %q", out)
		}
	})
}

// TestKVProcess runs the binary: its exit statuses, and a watch that ends
// on SIGINT and SIGTERM.
func TestKVProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts processes")
	}
	k := startKV(t)
	bin := proctest.Build(t, binPkg)
	env := []string{"RAFTING_SERVERS=" + k.servers, "RAFTING_TOKEN=" + k.token, "RAFTING_TENANT=", "RAFTING_CA="}
	status := func(args ...string) (int, string) {
		cmd := exec.Command(bin, append([]string{"kv"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := status("put", "p/x", "v1", "--if-index", "0"); code != 0 {
		t.Fatalf("put = %d %s", code, out)
	}
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"put", "p/x", "v2", "--if-index", "0"}, exitCompareFailed},
		{[]string{"get", "p/missing"}, exitNotFound},
		{[]string{"get", "p/x/../y"}, 2},
		{[]string{"get", "p/x", "--servers", "127.0.0.1:1"}, 1},
	} {
		if code, out := status(tt.args...); code != tt.want {
			t.Errorf("rafting kv %s exited %d, want %d\n%s", strings.Join(tt.args, " "), code, tt.want, out)
		}
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		p := proctest.Start(t, "watch", bin, env, "kv", "watch", "--prefix", "p")
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(p.Stderr(), "watching") {
			if time.Now().After(deadline) {
				t.Fatalf("watch did not start: %s", p.Stderr())
			}
			time.Sleep(5 * time.Millisecond)
		}
		k.c.Do(1, k.token, http.MethodPut, "/v1/tenants/acme/kv/p/x", []byte("v3"))
		for !strings.Contains(strings.Join(p.Lines(), "\n"), "PUT p/x ") {
			if time.Now().After(deadline) {
				t.Fatalf("watch printed no change: %q", p.Lines())
			}
			time.Sleep(5 * time.Millisecond)
		}
		p.Signal(sig)
		select {
		case <-p.Exited():
			if err := p.ExitErr(); err != nil {
				t.Errorf("watch after %v: %v, want status 0", sig, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("watch still runs 2s after %v", sig)
		}
	}
}

// stubKV is a stand-in server answering each request with the next of its
// scripted answers (status and body; a missing key's 404 with an index).
func stubKV(t *testing.T, answers ...string) (addr string, requests func() []string) {
	t.Helper()
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.RequestURI())
		a := answers[min(len(got), len(answers))-1]
		mu.Unlock()
		status, body, _ := strings.Cut(a, " ")
		code, _ := strconv.Atoi(status)
		w.Header().Set(api.HeaderIndex, "40")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// TestKVCASOutcomeUnknown: a compare-and-set whose first attempt timed
// out (504) and whose retry then fails its compare may have failed
// against its own first attempt: reported as unknown (status 1), never
// as someone else's write (status 3).
func TestKVCASOutcomeUnknown(t *testing.T) {
	t.Setenv("RAFTING_CA", "")
	t.Setenv("RAFTING_TENANT", "")
	conflict := `409 {"error":{"code":"conflict","message":"key p/x: mod_index 41, not 7","key":"p/x","mod_index":41}}`
	timeout := `504 {"error":{"code":"timeout","message":"outcome unknown","retry_after_ms":1}}`
	for _, tt := range []struct {
		answers []string
		want    int
		text    string
	}{
		{[]string{conflict}, exitCompareFailed, "p/x is at mod_index 41, not 7"},
		{[]string{timeout, conflict}, 1, "outcome unknown"},
	} {
		addr, requests := stubKV(t, tt.answers...)
		var out bytes.Buffer
		err := runKV(context.Background(), []string{"put", "p/x", "v", "--if-index", "7", "--servers", addr, "--token", stubToken}, strings.NewReader(""), &out, &out)
		if exitCode(err) != tt.want || err == nil || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("after %q: %v (status %d), want status %d saying %q", tt.answers, err, exitCode(err), tt.want, tt.text)
		}
		if r := requests(); len(r) == 0 || r[0] != "PUT /v1/tenants/acme/kv/p/x?if_index=7" {
			t.Errorf("sent %q", r)
		}
	}
}

// TestKVWatchRetries: a watch outlives servers that do not answer, says
// so once, and prints the change it finds when they answer again.
func TestKVWatchRetries(t *testing.T) {
	t.Setenv("RAFTING_CA", "")
	t.Setenv("RAFTING_TENANT", "")
	unavailable := `503 {"error":{"code":"unavailable","message":"no leader","retry_after_ms":1}}`
	missing := `404 {"error":{"code":"not_found","message":"key w not found"}}`
	answers := []string{missing}
	for range 3 {
		answers = append(answers, unavailable) // one round of the client's attempts
	}
	answers = append(answers, `200 {"index":50,"kv":{"key":"w","value":"b24=","text":"on","create_index":50,"mod_index":50,"version":1}}`)
	addr, requests := stubKV(t, answers...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runKV(ctx, []string{"watch", "w", "--servers", addr, "--token", stubToken}, strings.NewReader(""), &out, &errb)
	}()
	waitFor(t, &out, "PUT w 50 on\n", 5*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(errb.String(), "retrying"); n != 1 || !strings.Contains(errb.String(), "resumed at index 50") {
		t.Errorf("stderr:\n%s\nwant one retrying and a resumed", errb.String())
	}
	if r := requests(); r[0] != "GET /v1/tenants/acme/kv/w?consistent=true" || !strings.HasPrefix(r[1], "GET /v1/tenants/acme/kv/w?index=40&wait=1m0s") {
		t.Errorf("sent %q", r[:2])
	}
}

// stubToken is a well-formed token of tenant acme.
const stubToken = "rft_acme_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
