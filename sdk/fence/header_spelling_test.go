package fence_test

// Red-team tests that FAIL on the current code: each is a confirmed
// weakness. Not committed (see the red-team report).

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rafting/rafting/sdk/fence"
)

// TestRedTeamTransportNoToken: Transport never sends without a token, and
// never sends the header a request already carried under another key.
func TestRedTeamTransportNoToken(t *testing.T) {
	var got []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, strings.Join(r.Header.Values(fence.Header), "|"))
		mu.Unlock()
	}))
	defer srv.Close()
	var tok atomic.Uint64
	cl := &http.Client{Transport: &fence.Transport{Token: func() (uint64, bool) { v := tok.Load(); return v, v != 0 }, Base: srv.Client().Transport}}
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPut, srv.URL, strings.NewReader("x"))
	if _, err := cl.Do(req); err == nil {
		t.Fatal("sent without a token")
	}
	tok.Store(7)
	req, _ = http.NewRequest(http.MethodPut, srv.URL, nil)
	req.Header["rafting-fencing-token"] = []string{"3"}
	req.Header.Set(fence.Header, "3")
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "7" {
		t.Errorf("the server saw %q, want exactly one request with 7", got)
	}
}
