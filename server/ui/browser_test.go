package ui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/sdk"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/server/ui"
	"github.com/rafting/rafting/tenants"
)

// screenshots, when set, is where TestDashboard saves PNGs of the main
// views (docs/ui: `go test ./server/ui -run TestDashboard -ui.screenshots
// ../../docs/ui`, or RAFTING_UI_SCREENSHOTS=dir). Ordinary runs save none.
var screenshots = flag.String("ui.screenshots", os.Getenv("RAFTING_UI_SCREENSHOTS"), "save screenshots of the dashboard's views into this directory")

// memberEnv makes the test binary a member process (see member).
const memberEnv = "RAFTING_UI_TEST_MEMBER"

func TestMain(m *testing.M) {
	if id := os.Getenv(memberEnv); id != "" {
		member(id)
		return
	}
	goleak.VerifyTestMain(m)
}

// member is a master-standby member of service "billing", run in a
// process of its own so the test can kill -9 it: it joins, prints
// "joined", and runs until it is killed (SIGTERM: it leaves).
func member(id string) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	m, err := sdk.Join(ctx, sdk.Instance{Service: "billing", ID: id, Address: "127.0.0.1:9" + id[len(id)-3:],
		Mode: sdk.MasterStandby, Zone: "zone-" + id[len(id)-1:], Meta: map[string]string{"version": "1.4.2"}})
	if err != nil {
		fmt.Println("join failed:", err)
		os.Exit(1)
	}
	fmt.Println("joined")
	<-ctx.Done()
	_ = m.Leave(context.Background())
}

// startMember starts a member process; the test's cleanup kills it by PID.
func startMember(t *testing.T, c *servertest.Cluster, token, id string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), memberEnv+"="+id, "RAFTING_SERVERS="+strings.Join(c.Addrs(), ","), "RAFTING_TOKEN="+token)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(out)
	joined := make(chan string, 1)
	go func() {
		for lines.Scan() {
			select {
			case joined <- lines.Text():
			default:
			}
		}
	}()
	select {
	case l := <-joined:
		if l != "joined" {
			t.Fatalf("member %s: %s", id, l)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("member %s did not join in 30 s", id)
	}
	return cmd
}

// chromium finds Debian's chromium, installing it as the peers are
// installed (scripts/install-chromium.sh) when it is missing and this
// test may: as root, or in CI. Elsewhere the test is skipped, saying how.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("chromium is not installed and this is neither root nor CI: run scripts/install-chromium.sh")
	}
	script, _ := filepath.Abs("../../scripts/install-chromium.sh")
	out, err := exec.Command("bash", script).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("install-chromium: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("install-chromium: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// browser starts a headless chromium; the test's cleanup ends it and
// checks that its process is gone.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	if os.Getuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // chromium refuses its sandbox as root
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	proc := chromedp.FromContext(ctx).Browser.Process()
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // kills the browser by its PID and waits for it
		if proc != nil {
			if err := proc.Signal(syscall.Signal(0)); err == nil {
				t.Errorf("chromium (pid %d) still runs after the test", proc.Pid)
			}
		}
	})
	return ctx
}

// page runs actions with a deadline.
func page(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// until waits until a JavaScript expression is true in the page, at most
// timeout, and returns how long it took.
func until(t *testing.T, ctx context.Context, what, expr string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	tctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(tctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		shown, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("app").innerText.slice(0, 3000)`))
		t.Fatalf("%s: not shown within %v (%v); the page shows:\n%s", what, timeout, err, shown)
	}
	return time.Since(start)
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// text is the JavaScript for the text of the first element matching sel
// ("" when none).
func text(sel string) string {
	return fmt.Sprintf(`((document.querySelector(%q) || {}).textContent || "")`, sel)
}

func login(t *testing.T, ctx context.Context, base, token string) {
	t.Helper()
	page(t, ctx, "log in",
		chromedp.Navigate(base+"/ui"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SetValue(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login-button")),
		chromedp.WaitVisible(chromedp.CSS("#app")),
	)
}

func logout(t *testing.T, ctx context.Context) {
	t.Helper()
	page(t, ctx, "log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#token")))
}

func tab(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	page(t, ctx, "tab "+name, chromedp.Click(chromedp.CSS(`#tabs [data-tab="`+name+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#view-"+name)))
}

// confirm clicks an action's button and confirms in the dialog.
func confirm(t *testing.T, ctx context.Context, what, button string) {
	t.Helper()
	page(t, ctx, what,
		chromedp.Click(chromedp.CSS(button)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		chromedp.WaitNotVisible(chromedp.CSS("#confirm")),
	)
}

// shots are the views TestDashboard photographs: docs/ui holds one PNG
// of each (make ui-screenshots), and no other.
var shots []string

func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	shots = append(shots, name)
	if *screenshots == "" {
		return
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(*screenshots, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*screenshots, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func register(t *testing.T, c *servertest.Cluster, token, service, id string, body api.RegisterRequest) {
	t.Helper()
	r := c.Do(1, token, http.MethodPut, "/v1/tenants/acme/services/"+service+"/instances/"+id, body)
	if r.Status != http.StatusOK && r.Status != http.StatusCreated {
		t.Fatalf("register %s/%s: %d %s", service, id, r.Status, r.Body)
	}
}

func service(t *testing.T, c *servertest.Cluster, token, name string) api.ServiceResponse {
	t.Helper()
	r := c.Do(1, token, http.MethodGet, "/v1/tenants/acme/services/"+name, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET service %s: %d %s", name, r.Status, r.Body)
	}
	var s api.ServiceResponse
	r.JSON(t, &s)
	return s
}

// TestPageHeaders: the page and its assets carry the strict
// Content-Security-Policy and are served without a token; the feed needs
// one; the page holds no inline script.
func TestPageHeaders(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	base := "http://" + c.Addr(1)
	for _, p := range []string{"/ui", "/ui/", "/ui/app.js", "/ui/app.css"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") != ui.CSP ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s = %d, CSP %q, nosniff %q; want 200 with the CSP", p, resp.StatusCode,
				resp.Header.Get("Content-Security-Policy"), resp.Header.Get("X-Content-Type-Options"))
		}
		if strings.HasSuffix(p, "/") || p == "/ui" {
			s := string(body)
			if strings.Contains(s, "<script>") || strings.Contains(s, "onclick=") || strings.Contains(s, "style=") {
				t.Errorf("GET %s holds inline script or style", p)
			}
		}
	}
	for _, s := range []string{"'unsafe-inline'", "'unsafe-eval'", "http:", "https:", "*"} {
		if strings.Contains(ui.CSP, s) {
			t.Errorf("CSP %q allows %s", ui.CSP, s)
		}
	}
	for _, p := range []string{"/ui/nothing.js", "/ui/index.html"} {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
	if r := c.Do(1, "", http.MethodGet, "/ui/events", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("GET /ui/events without a token = %d, want 401", r.Status)
	}
}

// readToken is the cluster's read-only admin token.
var readToken = tenants.NewSecret()

// TestDashboard drives the dashboard in a real headless chromium against a
// real three-node cluster: log in with each kind of token, see nodes,
// tenants, services and sessions, see a registration within a second, a
// master change after a kill -9 of the master's process, a drain and an
// undrain, a resign and a token rotation made from the page, and
// tenant-written HTML shown as inert text.
func TestDashboard(t *testing.T) {
	ctx := browser(t)
	c := servertest.Start(t, servertest.Options{Configure: func(cfg *config.Config) {
		cfg.ReadToken = readToken
		cfg.Zone = fmt.Sprintf("eu-%d", cfg.NodeID)
	}})
	base := "http://" + c.Addr(1)
	admin := servertest.AdminToken
	acme := c.CreateTenant("acme", api.Quotas{MaxInstances: 50, MaxSessions: 20})
	c.CreateTenant("zeta", api.Quotas{})
	w := func(n int) *int { return &n }
	register(t, c, acme, "web", "web-1", api.RegisterRequest{Address: "10.0.0.1:8080", Zone: "eu-1", Weight: w(100), Meta: map[string]string{"version": "2.0.1"}})
	register(t, c, acme, "web", "web-2", api.RegisterRequest{Address: "10.0.0.2:8080", Zone: "eu-2", Weight: w(50)})

	// The admin: nodes with their leaderships, shards with their leaders.
	login(t, ctx, base, admin)
	until(t, ctx, "three nodes", `document.querySelectorAll("#nodes tr[data-node]").length === 3`, 10*time.Second)
	until(t, ctx, "the shards' leaders", `[...document.querySelectorAll("#shards tr[data-shard] .leader")].length >= 3 &&
		[...document.querySelectorAll("#shards tr[data-shard] .leader")].every(e => e.textContent.startsWith("node "))`, 10*time.Second)
	if who := eval[string](t, ctx, text("#who")); who != "admin" {
		t.Errorf("logged in as %q, want admin", who)
	}
	// Placement: two tenants, three replicas each, on three nodes.
	until(t, ctx, "each node's tenant replicas and zone", `[...document.querySelectorAll("#nodes tr[data-node]")].every(r =>
		r.querySelector(".replicas").textContent === "2" && r.querySelector(".zone").textContent === "eu-" + r.dataset.node)`, 10*time.Second)

	// Members of a master-standby service, each a process of its own.
	procs := map[string]*exec.Cmd{}
	for _, id := range []string{"ms-101", "ms-102", "ms-103"} {
		procs[id] = startMember(t, c, acme, id)
	}

	tab(t, ctx, "tenants")
	until(t, ctx, "both tenants with usage", `document.querySelector('#tenants tr[data-tenant="acme"]') !== null &&
		document.querySelector('#tenants tr[data-tenant="zeta"]') !== null &&
		document.querySelector('#tenants tr[data-tenant="acme"]').textContent.includes("5 / 50")`, 10*time.Second)

	// Services: the admin follows the first tenant, acme.
	tab(t, ctx, "services")
	until(t, ctx, "service web with its instances", `document.querySelectorAll('[data-service="web"] tr[data-instance]').length === 2`, 10*time.Second)
	until(t, ctx, "billing's master", text(`[data-service="billing"] .master-instance`)+`.startsWith("ms-")`, 10*time.Second)
	// An instance's state, weight, zone and address.
	for _, tt := range []struct{ sel, want string }{{".state", "ready"}, {".weight", "50"}, {".zone", "eu-2"}, {".address", "10.0.0.2:8080"}} {
		if got := eval[string](t, ctx, text(`[data-service="web"] tr[data-instance="web-2"] `+tt.sel)); got != tt.want {
			t.Errorf("web-2's %s shows %q, want %q", tt.sel, got, tt.want)
		}
	}

	// A registration shows within a second, without a reload.
	register(t, c, acme, "web", "web-3", api.RegisterRequest{Address: "10.0.0.3:8080", Zone: "eu-3"})
	took := until(t, ctx, "web-3 after its registration", `document.querySelector('[data-service="web"] tr[data-instance="web-3"]') !== null`, 5*time.Second)
	t.Logf("a registration showed %v after it was answered", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("a registration showed %v after it was answered, want within 1 s", took)
	}

	// So does the first instance of a new service (the service list is
	// asked every 500 ms, then the service at once).
	register(t, c, acme, "api", "api-1", api.RegisterRequest{Address: "10.0.1.1:9090", Zone: "eu-1"})
	took = until(t, ctx, "api-1 of a new service", `document.querySelector('[data-service="api"] tr[data-instance="api-1"]') !== null`, 5*time.Second)
	t.Logf("a new service's first instance showed %v after it was answered", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("a new service's first instance showed %v after it was answered, want within 1 s", took)
	}

	shot(t, ctx, "services")
	// Sessions, as GET .../sessions lists them: the members' three, and one
	// that owns nothing, by tag; never an ID.
	bare := "sess-ui-bare-" + tenants.NewSecret()[:16]
	if r := c.Do(1, acme, http.MethodPut, "/v1/tenants/acme/sessions/"+bare, api.SessionRequest{TTLMs: 600_000}); r.Status != http.StatusCreated {
		t.Fatalf("open a session: %d %s", r.Status, r.Body)
	}
	tab(t, ctx, "sessions")
	until(t, ctx, "four sessions", `document.querySelectorAll("#sessions tr[data-session]").length === 4`, 10*time.Second)
	row := fmt.Sprintf(`#sessions tr[data-session=%q]`, api.SessionTag(bare))
	if ttl := eval[string](t, ctx, text(row+" .ttl")); ttl != "600 s" {
		t.Errorf("the bare session's TTL shows %q, want 600 s", ttl)
	}
	if n := eval[int](t, ctx, `[...document.querySelectorAll("#sessions tr[data-session] .instances")].filter(e => e.textContent.startsWith("billing/ms-")).length`); n != 3 {
		t.Errorf("%d sessions show a billing instance, want the members' 3", n)
	}
	if shown := eval[string](t, ctx, `document.getElementById("app").innerText`); strings.Contains(shown, bare) {
		t.Error("the page shows a session ID")
	}
	shot(t, ctx, "sessions")
	tab(t, ctx, "nodes")
	shot(t, ctx, "nodes")
	tab(t, ctx, "tenants")
	shot(t, ctx, "tenants")
	tab(t, ctx, "services")

	// kill -9 of the master's process: the page shows its successor.
	before := service(t, c, acme, "billing").Master
	if before == nil || procs[before.Instance] == nil {
		t.Fatalf("billing's master is %+v, want one of the member processes", before)
	}
	until(t, ctx, "billing's master as REST says", text(`[data-service="billing"] .master-instance`)+fmt.Sprintf(" === %q", before.Instance), 5*time.Second)
	// The moment the cluster grants the successor, as a REST watcher of the
	// same node sees it (a blocking query), to compare the page with.
	granted := make(chan time.Time, 1)
	watchCtx, stopWatch := context.WithTimeout(context.Background(), 30*time.Second)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		var index uint64
		for watchCtx.Err() == nil {
			r, err := c.DoErr(watchCtx, 1, acme, http.MethodGet, fmt.Sprintf("/v1/tenants/acme/services/billing?index=%d&wait=10s", index), nil, nil)
			var s api.ServiceResponse
			if err != nil || r.Status != http.StatusOK || json.Unmarshal(r.Body, &s) != nil {
				select { // a refusal: ask again shortly
				case <-watchCtx.Done():
				case <-time.After(20 * time.Millisecond):
				}
				continue
			}
			if s.Master != nil && s.Master.Instance != before.Instance {
				granted <- time.Now()
				return
			}
			index = s.Index
		}
	}()
	defer func() { stopWatch(); <-watchDone }()
	killed := time.Now()
	if err := procs[before.Instance].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "a new master after kill -9", fmt.Sprintf(`(() => { const m = %s; return m.startsWith("ms-") && m !== %q })()`,
		text(`[data-service="billing"] .master-instance`), before.Instance), 15*time.Second)
	onPage := time.Now()
	after := service(t, c, acme, "billing").Master
	select {
	case at := <-granted:
		t.Logf("kill -9 of %s's process: master %s granted %v later, on the page %v after that", before.Instance, after.Instance,
			at.Sub(killed).Round(time.Millisecond), onPage.Sub(at).Round(time.Millisecond))
		if onPage.Sub(at) > time.Second {
			t.Errorf("the new master showed %v after the cluster granted it, want within 1 s", onPage.Sub(at))
		}
	case <-time.After(10 * time.Second):
		t.Error("a REST watcher of billing did not see the new master the page shows")
	}
	shown := eval[string](t, ctx, text(`[data-service="billing"] .fencing-token`))
	if after == nil || shown != fmt.Sprint(after.FencingToken) || after.FencingToken <= before.FencingToken {
		t.Errorf("after the kill: REST %+v, the page's fencing token %s; want a higher token than %d, shown", after, shown, before.FencingToken)
	}
	// And since when it holds it, as REST says (UTC, to the second).
	if since, want := eval[string](t, ctx, text(`[data-service="billing"] .since`)), after.Since.UTC().Format("2006-01-02 15:04:05Z"); since != want {
		t.Errorf("the new master shows since %q, want %q", since, want)
	}

	// A drain made elsewhere (an operator's PUT, as a member's Leave
	// drains first) shows within a second, as does its undrain.
	for _, to := range []api.State{api.StateDraining, api.StateReady} {
		register(t, c, acme, "web", "web-3", api.RegisterRequest{Address: "10.0.0.3:8080", Zone: "eu-3", State: to})
		took := until(t, ctx, "web-3 "+string(to), text(`[data-service="web"] tr[data-instance="web-3"] .state`)+fmt.Sprintf(" === %q", to), 5*time.Second)
		t.Logf("web-3 %s showed %v after the PUT was answered", to, took.Round(time.Millisecond))
		if took > time.Second {
			t.Errorf("web-3 %s showed %v after the PUT was answered, want within 1 s", to, took)
		}
	}

	// Drain and undrain web-1 from the page, after a confirmation.
	confirm(t, ctx, "drain web-1", `[data-service="web"] tr[data-instance="web-1"] [data-action="drain"]`)
	until(t, ctx, "web-1 draining", text(`[data-service="web"] tr[data-instance="web-1"] .state`)+` === "draining"`, 5*time.Second)
	if s := service(t, c, acme, "web"); instance(s, "web-1").State != api.StateDraining || instance(s, "web-1").Weight != 100 ||
		instance(s, "web-1").Meta["version"] != "2.0.1" {
		t.Errorf("after a drain from the page, REST shows %+v; want web-1 draining, weight and meta kept", instance(s, "web-1"))
	}
	confirm(t, ctx, "undrain web-1", `[data-service="web"] tr[data-instance="web-1"] [data-action="undrain"]`)
	until(t, ctx, "web-1 ready", text(`[data-service="web"] tr[data-instance="web-1"] .state`)+` === "ready"`, 5*time.Second)
	// A cancelled confirmation does nothing.
	page(t, ctx, "cancel a drain",
		chromedp.Click(chromedp.CSS(`[data-service="web"] tr[data-instance="web-2"] [data-action="drain"]`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-cancel")),
		chromedp.Click(chromedp.CSS("#confirm-cancel")),
		chromedp.WaitNotVisible(chromedp.CSS("#confirm")))
	if s := service(t, c, acme, "web"); instance(s, "web-2").State != api.StateReady {
		t.Errorf("a cancelled drain changed web-2: %+v", instance(s, "web-2"))
	}

	// Resign the master from the page: the other candidate takes over.
	resigned := after.Instance
	confirm(t, ctx, "resign billing's master", `[data-service="billing"] [data-action="resign"]`)
	until(t, ctx, "a new master after the resign", fmt.Sprintf(`(() => { const m = %s; return m.startsWith("ms-") && m !== %q })()`,
		text(`[data-service="billing"] .master-instance`), resigned), 15*time.Second)

	// What a tenant wrote is text, never HTML.
	payloads := map[string]string{
		"address": `<img src=x onerror="window.__xss=1">`,
		"zone":    `<svg onload="window.__xss=2">`,
		"script":  `<script>window.__xss=3</script>`,
		"img":     `<img src=x onerror=window.__xss=4>`,
	}
	register(t, c, acme, "web", "evil", api.RegisterRequest{Address: payloads["address"], Zone: payloads["zone"],
		Meta: map[string]string{"a": payloads["script"], "b": payloads["img"]}})
	until(t, ctx, "the hostile instance", `document.querySelector('[data-service="web"] tr[data-instance="evil"]') !== null`, 5*time.Second)
	row = `[data-service="web"] tr[data-instance="evil"]`
	if got := eval[string](t, ctx, text(row+" .address")); got != payloads["address"] {
		t.Errorf("the address shows as %q, want the text %q", got, payloads["address"])
	}
	if got := eval[string](t, ctx, text(row+" .zone")); got != payloads["zone"] {
		t.Errorf("the zone shows as %q, want the text %q", got, payloads["zone"])
	}
	if got, want := eval[string](t, ctx, text(row+" .meta")), "a="+payloads["script"]+"\nb="+payloads["img"]; got != want {
		t.Errorf("the meta shows as %q, want the text %q", got, want)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("#app img, #app script, #app svg").length`); n != 0 {
		t.Errorf("the page holds %d img, script or svg elements: tenant text became HTML", n)
	}
	if x := eval[string](t, ctx, `String(window.__xss)`); x != "undefined" {
		t.Errorf("window.__xss = %s: a payload ran", x)
	}
	// And the page's CSP holds in the browser: a script element added
	// with inline code, or an inline handler, does not run.
	eval[bool](t, ctx, `(() => {
		const s = document.createElement("script"); s.textContent = "window.__inline = 1"; document.body.append(s);
		const i = document.createElement("img"); i.setAttribute("onerror", "window.__inline = 2"); i.src = "data:,x"; document.body.append(i);
		return true })()`)
	until(t, ctx, "the blocked image to fail", `document.querySelector('body > img') !== null && document.querySelector('body > img').complete`, 5*time.Second)
	if x := eval[string](t, ctx, `String(window.__inline)`); x != "undefined" {
		t.Errorf("window.__inline = %s: inline script ran despite the CSP", x)
	}
	eval[bool](t, ctx, `(() => { document.querySelector('body > img').remove(); return true })()`)

	// The admin rotates a tenant's token from the page; the new one works.
	tab(t, ctx, "tenants")
	// Not confirm: the dialog stays, or opens again at once, to show the
	// new token, so it may never be seen closed.
	page(t, ctx, "rotate zeta's token",
		chromedp.Click(chromedp.CSS(`#tenants tr[data-tenant="zeta"] [data-action="rotate"]`)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-ok")),
		chromedp.Click(chromedp.CSS("#confirm-ok")))
	until(t, ctx, "the new token", text("#confirm-detail")+`.startsWith("rft_zeta_")`, 10*time.Second)
	newToken := eval[string](t, ctx, text("#confirm-detail"))
	page(t, ctx, "close the token", chromedp.Click(chromedp.CSS("#confirm-ok")), chromedp.WaitNotVisible(chromedp.CSS("#confirm")))
	until(t, ctx, "the shown token to leave the page", text("#confirm-detail")+` === ""`, 5*time.Second)
	r := c.Do(2, newToken, http.MethodGet, "/v1/tenants/zeta/services", nil)
	for deadline := time.Now().Add(10 * time.Second); r.Err() != nil && r.Err().Code.Retryable() && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond) // node 2's replica catching up: 503, retry
		r = c.Do(2, newToken, http.MethodGet, "/v1/tenants/zeta/services", nil)
	}
	if r.Status != http.StatusOK {
		t.Errorf("the rotated token: GET services = %d %s", r.Status, r.Body)
	}

	// The admin follows another tenant.
	eval[bool](t, ctx, `(() => { const s = document.getElementById("tenant-select"); s.value = "zeta"; s.dispatchEvent(new Event("change")); return true })()`)
	tab(t, ctx, "services")
	until(t, ctx, "zeta's (no) services", text("#services-tenant")+` === "zeta" && `+text("#services")+` === "no services"`, 10*time.Second)

	// A tenant's token: its own tenant only, no nodes.
	logout(t, ctx)
	login(t, ctx, base, acme)
	until(t, ctx, "acme's services", `document.querySelectorAll('[data-service="web"] tr[data-instance]').length === 4`, 10*time.Second)
	if who := eval[string](t, ctx, text("#who")); who != "tenant acme" {
		t.Errorf("logged in as %q, want tenant acme", who)
	}
	if v := eval[bool](t, ctx, `document.querySelector('#tabs [data-tab="nodes"]').hidden && document.querySelector("#tenants tr[data-tenant='zeta']") === null`); !v {
		t.Error("a tenant's token sees the nodes tab or another tenant")
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-action="drain"]').length`); n == 0 {
		t.Error("a tenant's token sees no drain action")
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('[data-action="rotate"]').length`); n != 0 {
		t.Errorf("a tenant's token sees %d token rotations, an admin's action", n)
	}

	// The read-only token: everything, no action.
	logout(t, ctx)
	login(t, ctx, base, readToken)
	until(t, ctx, "nodes for the read-only token", `document.querySelectorAll("#nodes tr[data-node]").length === 3`, 10*time.Second)
	tab(t, ctx, "services")
	until(t, ctx, "services for the read-only token", `document.querySelectorAll('[data-service="web"] tr[data-instance]').length === 4`, 10*time.Second)
	if n := eval[int](t, ctx, `document.querySelectorAll("[data-action]").length`); n != 0 {
		t.Errorf("the read-only token sees %d actions, want none", n)
	}
	if who := eval[string](t, ctx, text("#who")); who != "read-only admin" {
		t.Errorf("logged in as %q, want read-only admin", who)
	}

	// A token that is not accepted goes back to the login, saying so; the
	// token is in no URL the page went to.
	logout(t, ctx)
	page(t, ctx, "a wrong token",
		chromedp.SetValue(chromedp.CSS("#token"), "rft_acme_"+tenants.NewSecret()),
		chromedp.Click(chromedp.CSS("#login-button")))
	until(t, ctx, "the refusal", text("#login-error")+`.includes("not accepted")`, 10*time.Second)
	if u := eval[string](t, ctx, `location.href + " " + performance.getEntries().map(e => e.name).join(" ")`); strings.Contains(u, "rft_") || strings.Contains(u, "rfa_") {
		t.Errorf("a token went into a URL: %s", u)
	}
	// Everything the page loaded came from the node: no CDN.
	if other := eval[[]string](t, ctx, fmt.Sprintf(`performance.getEntries().filter(e => e.entryType === "resource" || e.entryType === "navigation").map(e => e.name).filter(n => !n.startsWith(%q))`, base+"/")); len(other) > 0 {
		t.Errorf("the page loaded from elsewhere than its node: %v", other)
	}

	// docs/ui's screenshots are this test's: one of each view it takes,
	// none of a view it no longer takes.
	files, err := filepath.Glob("../../docs/ui/*.png")
	if err != nil {
		t.Fatal(err)
	}
	var inDocs []string
	for _, f := range files {
		inDocs = append(inDocs, strings.TrimSuffix(filepath.Base(f), ".png"))
	}
	slices.Sort(inDocs)
	taken := slices.Sorted(slices.Values(shots))
	if !slices.Equal(inDocs, taken) {
		t.Errorf("docs/ui holds %v, this test takes %v: make ui-screenshots", inDocs, taken)
	}
}

func instance(s api.ServiceResponse, id string) api.Instance {
	for _, i := range s.Instances {
		if i.ID == id {
			return i
		}
	}
	return api.Instance{}
}
