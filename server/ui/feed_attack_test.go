package ui_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/config"
	"github.com/rafting/rafting/server/servertest"
	"github.com/rafting/rafting/server/ui"
)

// openFeed opens a feed and returns its answer; the test's cleanup (or
// the returned cancel) closes it.
func openFeed(t *testing.T, base, token, query string) (*http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/ui/events"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	// A transport of its own: every feed on a connection of its own, as
	// browser tabs over HTTP/1.1.
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stop := func() { cancel(); resp.Body.Close() }
	t.Cleanup(stop)
	return resp, stop
}

// TestFeedCap: one token holds at most ui.MaxFeeds feeds on a node; the
// next is refused 429, with the dashboard's headers, and other tokens are
// not affected. Before the cap a tenant's token opened feeds without end
// (a stream each, hundreds on one HTTP/2 connection), each a goroutine per
// followed service asking the API a few times a second.
func TestFeedCap(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1, Configure: func(cfg *config.Config) { cfg.ReadToken = readToken }})
	base := "http://" + c.Addr(1)
	acme := c.CreateTenant("acme", api.Quotas{})
	zeta := c.CreateTenant("zeta", api.Quotas{})
	var stops []context.CancelFunc
	for i := range ui.MaxFeeds {
		resp, stop := openFeed(t, base, acme, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("acme's feed %d = %d, want 200", i+1, resp.StatusCode)
		}
		stops = append(stops, stop)
	}
	resp, _ := openFeed(t, base, acme, "")
	var body []byte
	if resp.StatusCode != http.StatusOK { // a feed's body never ends
		body, _ = io.ReadAll(resp.Body)
	}
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Content-Security-Policy") != ui.CSP {
		t.Fatalf("acme's feed %d = %d (CSP %q) %s, want 429 with the CSP", ui.MaxFeeds+1, resp.StatusCode,
			resp.Header.Get("Content-Security-Policy"), body)
	}
	for _, tok := range []string{zeta, servertest.AdminToken, readToken} {
		if resp, _ := openFeed(t, base, tok, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("another token's feed while acme holds all of its own = %d, want 200", resp.StatusCode)
		}
	}
	// A tab closed gives its place back.
	stops[0]()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, stop := openFeed(t, base, acme, "")
		if resp.StatusCode == http.StatusOK {
			break
		}
		stop()
		if time.Now().After(deadline) {
			t.Fatalf("acme's feed after one was closed = %d, want 200", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFeedEndsOnRevokedToken: a feed whose token is revoked (rotated with
// previous_valid_ms 0) says so (problem, 401) and ends, instead of asking
// on with a dead token for as long as its connection stays open.
func TestFeedEndsOnRevokedToken(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	base := "http://" + c.Addr(1)
	acme := c.CreateTenant("acme", api.Quotas{})
	register(t, c, acme, "web", "web-1", api.RegisterRequest{Address: "10.0.0.1:80"})
	resp, _ := openFeed(t, base, acme, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("feed = %d", resp.StatusCode)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// The feed is live before the rotation.
	for l := range lines {
		if strings.HasPrefix(l, "event: service") {
			break
		}
	}
	zero := int64(0)
	if r := c.Do(1, servertest.AdminToken, http.MethodPost, "/v1/tenants/acme/token", api.RotateTokenRequest{PreviousValidMs: &zero}); r.Status != http.StatusOK {
		t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	told := false
	deadline := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				if !told {
					t.Error("the feed ended without telling the page its token was refused (problem, 401)")
				}
				return
			}
			if d, ok := strings.CutPrefix(l, "data: "); ok && strings.Contains(d, `"status":401`) {
				told = true
			}
		case <-deadline:
			t.Fatalf("the feed of a revoked token still open 10 s after the rotation (told the page: %v)", told)
		}
	}
}

// TestFeedStalledReader: a client that opens a feed and never reads it is
// ended once a write waits longer than the feed's write timeout. Before,
// nothing bounded the write: the feed held its queue of events (each a
// whole service's answer, up to max_instances instances with their meta)
// and every producer blocked behind it for as long as the connection
// stayed open.
func TestFeedStalledReader(t *testing.T) {
	defer ui.SetWriteTimeout(time.Second)()
	// Unpaced: a producer faster than the kernel's buffers (at
	// FeedBytesPerSecond they hold the 4 s this client stalls).
	defer ui.SetFeedPace(1 << 40)()
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	acme := c.CreateTenant("acme", api.Quotas{WritesPerSecond: 10000, Burst: 20000, RequestsPerSecond: 10000})
	pad := strings.Repeat("x", 3000)
	reg := func(id string, v int) {
		register(t, c, acme, "big", id, api.RegisterRequest{Address: "10.0.0.1:80",
			Meta: map[string]string{"pad": pad, "v": fmt.Sprint(v)}})
	}
	for i := range 200 { // a service's answer of about 600 KB
		reg(fmt.Sprintf("i-%03d", i), 0)
	}
	conn, err := net.Dial("tcp", c.Addr(1))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ui/events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", c.Addr(1), acme)
	// Each change is a new event of the whole service; the client takes
	// none of them.
	for v := 1; v <= 60; v++ {
		reg("i-000", v)
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	// Now read: a feed that was ended gives what the kernel held, then
	// EOF; one still open goes on.
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a feed whose client read nothing for 4 s is still open (%d bytes read in 10 s); want it ended after its 1 s write timeout", n)
	}
}

// TestUIRefusalsHeaders: every answer under /ui carries the dashboard's
// headers (its CSP, no framing, nosniff), its refusals too: the feed's 401
// (answered before the feed runs), another method, a deeper path.
func TestUIRefusalsHeaders(t *testing.T) {
	c := servertest.Start(t, servertest.Options{Nodes: 1})
	base := "http://" + c.Addr(1)
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{http.MethodGet, "/ui/events", "", http.StatusUnauthorized},
		{http.MethodGet, "/ui/events", "rafting_nobody_xxxxxxxxxxxxxxxxxxxxxxxx", http.StatusUnauthorized},
		{http.MethodPost, "/ui/events", servertest.AdminToken, http.StatusMethodNotAllowed},
		{http.MethodPost, "/ui", "", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/ui/app.js", "", http.StatusMethodNotAllowed},
		{http.MethodGet, "/ui/a/b", "", http.StatusNotFound},
		{http.MethodGet, "/ui/events?tenant=%3Cx%3E", servertest.AdminToken, http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want || resp.Header.Get("Content-Security-Policy") != ui.CSP ||
			resp.Header.Get("X-Frame-Options") != "DENY" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s = %d, CSP %q, X-Frame-Options %q; want %d with the dashboard's headers", tc.method, tc.path,
				resp.StatusCode, resp.Header.Get("Content-Security-Policy"), resp.Header.Get("X-Frame-Options"), tc.want)
		}
	}
}
