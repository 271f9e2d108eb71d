package httpapi_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/servertest"
)

// lockedBuffer is a log's destination shared by the nodes' goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAccessLog: at debug, each request has a line with its request ID
// (the X-Request-Id answered), route, status and who asked; no token is
// ever in the log, not even a refused one.
func TestAccessLog(t *testing.T) {
	var logs lockedBuffer
	c := servertest.Start(t, servertest.Options{Nodes: 1,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	token := c.CreateTenant("acme", api.Quotas{})
	ok := c.Do(1, token, http.MethodGet, "/v1/tenants/acme/services", nil)
	bad := "rft_acme_" + strings.Repeat("A", 43)
	refused := c.Do(1, bad, http.MethodGet, "/v1/tenants/acme/services", nil)
	if ok.Status != http.StatusOK || refused.Status != http.StatusUnauthorized {
		t.Fatalf("answers %d and %d, want 200 and 401", ok.Status, refused.Status)
	}
	type line struct {
		Msg       string `json:"msg"`
		RequestID string `json:"request_id"`
		Method    string `json:"method"`
		Route     string `json:"route"`
		Path      string `json:"path"`
		Status    string `json:"status"`
		By        string `json:"by"`
	}
	find := func(id string) (line, bool) {
		for _, l := range strings.Split(logs.String(), "\n") {
			var rec line
			if json.Unmarshal([]byte(l), &rec) == nil && rec.Msg == "request" && rec.RequestID == id {
				return rec, true
			}
		}
		return line{}, false
	}
	for _, tt := range []struct {
		resp   *servertest.Response
		status string
		by     string
	}{{ok, "200", "tenant acme"}, {refused, "401", "anonymous"}} {
		id := tt.resp.Header.Get("X-Request-Id")
		rec, found := find(id)
		if id == "" || !found || rec.Method != http.MethodGet || rec.Path != "/v1/tenants/acme/services" || rec.Route == "" ||
			rec.Status != tt.status || rec.By != tt.by {
			t.Errorf("access log line of request %q = %+v (found %v), want GET /v1/tenants/acme/services %s by %s", id, rec, found, tt.status, tt.by)
		}
	}
	// A session's ID is a secret too (DESIGN.md: whoever knows it can keep
	// the session alive or end it): its paths are logged with its tag.
	session := "sess-accesslog-0123456789abcdef"
	opened := c.Do(1, token, http.MethodPut, "/v1/tenants/acme/sessions/"+session, api.SessionRequest{TTLMs: 5000})
	// A keepalive may meet a leader whose session manager has not seen its
	// leadership yet: 503 with Retry-After, retried as a client does.
	keepalive := c.Do(1, token, http.MethodPut, "/v1/tenants/acme/sessions/"+session+"/keepalive", struct{}{})
	for end := time.Now().Add(5 * time.Second); keepalive.Status == http.StatusServiceUnavailable && time.Now().Before(end); {
		time.Sleep(100 * time.Millisecond)
		keepalive = c.Do(1, token, http.MethodPut, "/v1/tenants/acme/sessions/"+session+"/keepalive", struct{}{})
	}
	for _, r := range []*servertest.Response{opened, keepalive,
		c.Do(1, token, http.MethodDelete, "/v1/tenants/acme/sessions/"+session, nil),
	} {
		rec, found := find(r.Header.Get("X-Request-Id"))
		if r.Status/100 != 2 || !found || !strings.Contains(rec.Path, api.SessionTag(session)) {
			t.Errorf("session request = %d, its access line %+v (found %v): want its path with the session's tag %s", r.Status, rec, found, api.SessionTag(session))
		}
	}
	// The secret is what follows "rft_acme_"; base64url may hold "_" itself,
	// so it is cut by the prefix, not at the last "_".
	secret := strings.TrimPrefix(token, "rft_acme_")
	for i, s := range []string{token, bad, servertest.AdminToken, secret, session} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the log holds secret %d of 5 (token, refused token, admin token, tenant secret, session ID)", i+1)
		}
	}
}
