package ui_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rafting/rafting/server/ui"
)

// TestFeedRefusalKeepsLogin: a refusal of the feed that is not a 401
// leaves the page logged in, saying why. A 403 is "this token may not",
// not "this token is not known": the page shows it and does not ask
// again (the answer would be the same); a 404 or a 503 (a node without
// the feed yet, mid-upgrade, or not ready) is asked again. Only a 401
// sends the page back to the login (TestDashboard's wrong token).
func TestFeedRefusalKeepsLogin(t *testing.T) {
	ctx := browser(t)
	tests := []struct {
		status int
		retry  bool // the page asks the feed again
	}{
		{http.StatusForbidden, false},
		{http.StatusNotFound, true},
		{http.StatusServiceUnavailable, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			var asked atomic.Int32
			mux := http.NewServeMux()
			d := ui.New(http.NotFoundHandler(), nil)
			mux.Handle("/ui", d)
			mux.Handle("/ui/", d)
			mux.Handle("GET /ui/events", ui.Secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				asked.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				fmt.Fprintf(w, `{"error": {"code": "refused", "message": "refused %d by the test"}}`, tt.status)
			})))
			srv := httptest.NewServer(mux)
			defer srv.Close()
			login(t, ctx, srv.URL, "rfa_any-token")
			until(t, ctx, "the refusal's reason", text("#problem")+fmt.Sprintf(`.includes("refused %d by the test") || `, tt.status)+
				text("#live")+fmt.Sprintf(`.includes("refused %d by the test")`, tt.status), 5*time.Second)
			if tt.retry {
				deadline := time.Now().Add(5 * time.Second)
				for asked.Load() < 2 && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if n := asked.Load(); n < 2 {
					t.Errorf("a %d: the feed was asked %d times in 5 s, want it asked again", tt.status, n)
				}
			} else {
				// Four times the page's first wait before it asks again
				// (500 ms): a second request would have come.
				time.Sleep(2 * time.Second)
				if n := asked.Load(); n != 1 {
					t.Errorf("a %d: the feed was asked %d times, want once", tt.status, n)
				}
			}
			if v := eval[bool](t, ctx, `!document.getElementById("app").hidden && document.getElementById("login").hidden && !document.getElementById("logout").hidden`); !v {
				t.Errorf("a %d of the feed sent the page to the login: %q", tt.status, eval[string](t, ctx, text("#login-error")))
			}
			logout(t, ctx)
		})
	}
}
